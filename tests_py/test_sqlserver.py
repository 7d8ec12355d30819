"""SQL Server specifics: its value types, T-SQL lexical forms, TLS settings.
Runs whenever DBFLOW_TEST_MSSQL_URL is set; skipped with that reason otherwise."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import dbflow


@pytest.fixture
def mdb(env, mssql_test_url: str) -> Iterator[dbflow.DatabaseManager]:  # type: ignore[no-untyped-def]
    name = env.database(url=mssql_test_url, pool_release_grace=0)
    manager = env.manager(name)
    yield manager
    manager.dispose()


SERVER_VALUES: list[tuple[str, Any]] = [
    ("CAST(255 AS tinyint)", 255),
    ("CAST(-32768 AS smallint)", -32768),
    ("CAST(2147483647 AS int)", 2147483647),
    ("CAST(9223372036854775807 AS bigint)", 9223372036854775807),
    ("CAST(1 AS bit)", True),
    ("CAST(123.4500 AS decimal(10, 4))", Decimal("123.4500")),
    ("CAST(-0.000001 AS numeric(38, 6))", Decimal("-0.000001")),
    ("CAST(12.3456 AS money)", Decimal("12.3456")),
    ("CAST(-1.5 AS smallmoney)", Decimal("-1.5000")),
    ("CAST(0.1 AS real)", 0.1),
    ("CAST(2.25 AS float)", 2.25),
    ("CAST('ab' AS char(4))", "ab  "),
    ("CAST('abc' AS varchar(10))", "abc"),
    ("CAST(N'héllo' AS nchar(6))", "héllo "),
    ("CAST(N'wörld' AS nvarchar(max))", "wörld"),
    ("CAST('txt' AS text)", "txt"),
    ("CAST(N'ntxt' AS ntext)", "ntxt"),
    ("CAST(0x00FF AS binary(2))", b"\x00\xff"),
    ("CAST(0x0102 AS varbinary(max))", b"\x01\x02"),
    ("CAST(0x03 AS image)", b"\x03"),
    ("CAST('2024-02-29' AS date)", dt.date(2024, 2, 29)),
    ("CAST('13:14:15.1234567' AS time)", dt.time(13, 14, 15, 123456)),
    ("CAST('2024-01-02T03:04:05.123' AS datetime)", dt.datetime(2024, 1, 2, 3, 4, 5, 123000)),
    (
        "CAST('2024-01-02T03:04:05.678901' AS datetime2(6))",
        dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    ),
    ("CAST('2024-01-02T03:04:00' AS smalldatetime)", dt.datetime(2024, 1, 2, 3, 4)),
    (
        "CAST('2024-01-02T03:04:05.5+02:00' AS datetimeoffset(6))",
        dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ),
    (
        "CAST('12345678-1234-5678-1234-567812345678' AS uniqueidentifier)",
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ),
    ("CAST('<a>x</a>' AS xml)", "<a>x</a>"),
    ("CAST(NULL AS int)", None),
    ("CAST(NULL AS datetimeoffset)", None),
]


@pytest.mark.parametrize(("literal", "expected"), SERVER_VALUES, ids=[v[0] for v in SERVER_VALUES])
def test_server_values_decode(mdb: dbflow.DatabaseManager, literal: str, expected: Any) -> None:
    value = mdb.execute_query(f"SELECT {literal} AS v")[0]["v"]
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, dt.datetime):
        assert value.utcoffset() == expected.utcoffset()


def test_tsql_literals_and_brackets_are_left_alone(mdb: dbflow.DatabaseManager) -> None:
    rows = mdb.execute_query("SELECT N':not' AS [a:b], :yes AS [v] -- :comment", {"yes": 1})
    assert rows == [{"a:b": ":not", "v": 1}]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        7,
        2**40,
        1.5,
        Decimal("12.3400"),
        "x" * 100_000,
        b"\x00" * 70_000,
        dt.date(2020, 1, 2),
        dt.time(1, 2, 3, 4),
        dt.datetime(2020, 1, 2, 3, 4, 5, 6),
        dt.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        uuid.UUID(int=5),
    ],
    ids=lambda v: type(v).__name__,
)
def test_parameters_round_trip(mdb: dbflow.DatabaseManager, value: Any) -> None:
    got = mdb.execute_query("SELECT :v AS v", {"v": value})[0]["v"]
    assert got == value


def test_lists_travel_as_json_for_openjson(mdb: dbflow.DatabaseManager) -> None:
    rows = mdb.execute_query(
        "SELECT CAST([value] AS int) AS id FROM OPENJSON(:ids) ORDER BY id", {"ids": [3, 1, 2]}
    )
    assert rows == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_unsupported_values_name_the_parameter(mdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(dbflow.ParameterError, match=":span"):
        mdb.execute_query("SELECT :span", {"span": dt.timedelta(days=1)})


def test_integrity_numbers(mdb: dbflow.DatabaseManager, env) -> None:  # type: ignore[no-untyped-def]
    table = f"t_integrity_{uuid.uuid4().hex[:8]}"
    mdb.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
    try:
        mdb.execute_query(f"INSERT INTO {table} VALUES (1, 1)")
        with pytest.raises(dbflow.IntegrityError) as dup:
            mdb.execute_query(f"INSERT INTO {table} VALUES (1, 1)")
        assert dup.value.error_number == 2627
        with pytest.raises(dbflow.IntegrityError) as null:
            mdb.execute_query(f"INSERT INTO {table} VALUES (2, NULL)")
        assert null.value.error_number == 515
    finally:
        mdb.execute_query(f"DROP TABLE {table}")


def test_wrong_password_names_the_login_problem(env, mssql_test_url: str) -> None:  # type: ignore[no-untyped-def]
    import urllib.parse

    parts = urllib.parse.urlsplit(mssql_test_url)
    netloc = f"{parts.username}:not-the-Password-1@{parts.hostname}:{parts.port or 1433}"
    env.set("MSBAD_CONNECTION_STRING", urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    db = env.manager("msbad")
    try:
        with pytest.raises(dbflow.DatabaseConnectionError) as info:
            db.execute_query("SELECT 1")
        assert "not-the-Password-1" not in str(info.value)
        assert "login failed" in str(info.value).lower()
    finally:
        db.dispose()
