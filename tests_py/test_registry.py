"""The database types are declared once, by the backends registered in the
native core; the Python places that must list them are checked against
that registry, and nothing accepts a name it does not know."""

from __future__ import annotations

import typing

import pytest

import dbflow
from dbflow._native import database_types, maintenance_sql, timeout_sqlstate
from dbflow.testing import plugin


def test_the_registry_lists_every_backend_once() -> None:
    names = database_types()
    assert names == ["postgresql", "sqlserver"]
    assert len(set(names)) == len(names)


def test_the_credentials_block_offers_exactly_the_registered_types() -> None:
    prefect = pytest.importorskip("dbflow.prefect")
    annotation = prefect.DatabaseCredentials.model_fields["database_type"].annotation
    (literal,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    assert set(typing.get_args(literal)) == set(database_types())


def test_the_pytest_plugin_knows_a_test_server_for_every_type() -> None:
    assert set(plugin.TEST_SERVERS) == set(database_types())


@pytest.mark.parametrize("call", ["rewrite_sql", "check_params"])
def test_an_unknown_dialect_is_an_error_naming_the_known_ones(call: str) -> None:
    function = getattr(dbflow, call)
    with pytest.raises(ValueError, match="postgresql or sqlserver") as info:
        function("SELECT :a", dialect="mysql") if call == "rewrite_sql" else function(
            "SELECT :a", {"a": 1}, dialect="mysql"
        )
    assert "mysql" in str(info.value)


def test_dialects_are_looked_up_by_any_registered_spelling() -> None:
    assert dbflow.rewrite_sql("SELECT :a", dialect="mssql") == ("SELECT @P1", ["a"])
    assert dbflow.rewrite_sql("SELECT :a", dialect="PG") == ("SELECT $1", ["a"])
    assert dbflow.rewrite_sql("SELECT :a") == ("SELECT $1", ["a"])


def test_maintenance_sql_comes_from_the_backend() -> None:
    assert maintenance_sql("postgresql", "empty_tables", ["a", "b"]) == [
        "TRUNCATE a, b RESTART IDENTITY CASCADE"
    ]
    assert maintenance_sql("sqlserver", "empty_tables", ["a", "b"]) == [
        "DELETE FROM a",
        "DELETE FROM b",
    ]
    (drop,) = maintenance_sql("sqlserver", "drop_database", ["test_x"])
    assert "DROP DATABASE [test_x]" in drop
    assert timeout_sqlstate("postgres") == "57014"
    assert timeout_sqlstate("sqlserver") is None
    with pytest.raises(ValueError, match="postgresql or sqlserver"):
        maintenance_sql("oracle", "create_database", ["test_x"])
    with pytest.raises(ValueError, match="takes one name"):
        maintenance_sql("postgresql", "create_database", [])
    with pytest.raises(ValueError, match="action must be"):
        maintenance_sql("postgresql", "vacuum", ["t"])
