"""`:name` parameters: the tokenizer, binding, missing and extra keys."""

from __future__ import annotations

import pytest

import dbflow
from dbflow import ParameterError, rewrite_sql


@pytest.mark.parametrize(
    ("sql", "expected", "names"),
    [
        ("SELECT :a, :b, :a", "SELECT $1, $2, $1", ["a", "b"]),
        ("SELECT ':a' || :b", "SELECT ':a' || $1", ["b"]),
        ('SELECT ":a" FROM t', 'SELECT ":a" FROM t', []),
        ("SELECT :x::int", "SELECT $1::int", ["x"]),
        ("SELECT now()::date", "SELECT now()::date", []),
        ("SELECT 1 -- :no\n, :yes", "SELECT 1 -- :no\n, $1", ["yes"]),
        ("/* :no */ SELECT :yes", "/* :no */ SELECT $1", ["yes"]),
        ("SELECT $$ :no $$, $f$ :no $f$, :yes", "SELECT $$ :no $$, $f$ :no $f$, $1", ["yes"]),
        ("SELECT E'it\\'s :no', :yes", "SELECT E'it\\'s :no', $1", ["yes"]),
        ("SELECT arr[1:2], ts::timestamp", "SELECT arr[1:2], ts::timestamp", []),
        ("SELECT '10' \\:x", "SELECT '10' :x", []),
        ("SELECT :émoji_ñ", "SELECT $1", ["émoji_ñ"]),
    ],
)
def test_rewrite(sql: str, expected: str, names: list[str]) -> None:
    assert rewrite_sql(sql) == (expected, names)


def test_sql_server_placeholders() -> None:
    assert rewrite_sql("SELECT [a:b], N':x', :y", "sqlserver") == (
        "SELECT [a:b], N':x', @P1",
        ["y"],
    )


def test_repeated_name_binds_once(db: dbflow.DatabaseManager) -> None:
    rows = db.execute_query("SELECT :v AS a, :v + 1 AS b, :v * 2 AS c", {"v": 10})
    assert rows == [{"a": 10, "b": 11, "c": 20}]


def test_literals_comments_and_casts_are_left_alone(db: dbflow.DatabaseManager) -> None:
    rows = db.execute_query(
        "SELECT ':not_a_param' AS s, $$ :nor_this $$ AS d, :v::text AS v -- :comment\n",
        {"v": 5},
    )
    assert rows == [{"s": ":not_a_param", "d": " :nor_this ", "v": "5"}]


def test_missing_key_raises_before_anything_is_sent(db: dbflow.DatabaseManager) -> None:
    with pytest.raises(ParameterError) as info:
        db.execute_query("SELECT :present, :absent", {"present": 1})
    assert ":absent" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, dbflow.QueryError)
    assert info.value.database == db.database_name
    assert info.value.operation == "execute_query"
    # Nothing reached the server: the fresh pool never opened a connection.
    assert db.get_pool_status()["connections_opened"] == 0


def test_no_params_given_for_a_named_statement(db: dbflow.DatabaseManager) -> None:
    with pytest.raises(ParameterError, match=":x"):
        db.execute_query("SELECT :x")


def test_extra_keys_are_ignored(db: dbflow.DatabaseManager) -> None:
    row = {"id": 1, "name": "a", "unused": object()}
    assert db.execute_query("SELECT :id AS id", row) == [{"id": 1}]


def test_values_are_bound_never_interpolated(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (name text)")
    evil = "x'); DROP TABLE " + table + "; --"
    db.execute_query(f"INSERT INTO {table} VALUES (:n)", {"n": evil})
    assert db.execute_query(f"SELECT name FROM {table}") == [{"name": evil}]


def test_params_may_be_any_mapping(db: dbflow.DatabaseManager) -> None:
    from types import MappingProxyType

    assert db.execute_query("SELECT :a AS a", MappingProxyType({"a": 3})) == [{"a": 3}]


def test_non_mapping_params_is_a_parameter_error(db: dbflow.DatabaseManager) -> None:
    with pytest.raises(ParameterError, match="mapping"):
        db.execute_query("SELECT :a", [1])  # type: ignore[arg-type]


def test_execute_many_names_the_bad_row(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TABLE {table} (a int)")
    with pytest.raises(ParameterError, match="row 1"):
        db.execute_many(f"INSERT INTO {table} VALUES (:a)", [{"a": 1}, {"b": 2}])
    assert db.execute_query(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


def test_psycopg2_placeholders_get_a_hint(db: dbflow.DatabaseManager) -> None:
    with pytest.raises(dbflow.ParameterError) as info:
        db.execute_query("SELECT * FROM pg_class WHERE relname = %(name)s", {"name": "x"})
    assert ":name" in str(info.value) and "%(name)s" in str(info.value)
    # The modulo operator is no placeholder.
    assert db.execute_query("SELECT 7 % 3 AS r", {"unused": 1}) == [{"r": 1}]
