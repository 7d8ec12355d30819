"""Every value type, both directions, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

import dbflow

UTC = dt.timezone.utc

# (SQL literal, expected Python value)
SERVER_VALUES: list[tuple[str, Any]] = [
    ("NULL::int", None),
    ("true", True),
    ("32767::int2", 32767),
    ("(-2147483648)::int4", -2147483648),
    ("9223372036854775807::int8", 9223372036854775807),
    ("1.5::float8", 1.5),
    ("0.1::float4", 0.1),
    ("'NaN'::float8", "nan"),
    ("'Infinity'::float8", float("inf")),
    ("123.4500::numeric", Decimal("123.4500")),
    ("'-0.000001'::numeric", Decimal("-0.000001")),
    (
        "12345678901234567890123456789.123456789::numeric",
        Decimal("12345678901234567890123456789.123456789"),
    ),
    ("'NaN'::numeric", "decimal-nan"),
    ("'Infinity'::numeric", Decimal("Infinity")),
    ("'-Infinity'::numeric", Decimal("-Infinity")),
    ("'12.34'::money", Decimal("12.34")),
    ("'héllo'::text", "héllo"),
    ("'ab'::varchar(5)", "ab"),
    ("'ab'::char(4)", "ab  "),
    ("'\\x00ff'::bytea", b"\x00\xff"),
    ("'2024-02-29'::date", dt.date(2024, 2, 29)),
    ("'13:14:15.123456'::time", dt.time(13, 14, 15, 123456)),
    ("'13:14:15+02'::timetz", dt.time(13, 14, 15, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("'2024-01-02 03:04:05.678901'::timestamp", dt.datetime(2024, 1, 2, 3, 4, 5, 678901)),
    (
        "'2024-01-02 03:04:05.5+02'::timestamptz",
        dt.datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC),
    ),
    ("'1 day 02:03:04.5'::interval", dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
    ("'1 mon 1 day'::interval", dt.timedelta(days=31)),
    ("'-1 day'::interval", dt.timedelta(days=-1)),
    (
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ),
    ('\'{"a": [1, 2.5, null], "b": {"c": true}}\'::json', {"a": [1, 2.5, None], "b": {"c": True}}),
    ('\'{"k": "v"}\'::jsonb', {"k": "v"}),
    ("'[1, \"x\"]'::jsonb", [1, "x"]),
    ("ARRAY[1, NULL, 3]", [1, None, 3]),
    ("ARRAY[[1, 2], [3, 4]]", [[1, 2], [3, 4]]),
    ("ARRAY['a', 'b']::text[]", ["a", "b"]),
    ("'{}'::int[]", []),
    ("ARRAY['2024-01-01'::date]", [dt.date(2024, 1, 1)]),
    ("ARRAY[1.5::numeric]", [Decimal("1.5")]),
    ("'192.168.0.1'::inet", "192.168.0.1"),
    ("'10.0.0.0/8'::cidr", "10.0.0.0/8"),
    ("'::1/128'::inet", "::1"),
    ("'08:00:2b:01:02:03'::macaddr", "08:00:2b:01:02:03"),
    ("B'101'::bit(3)", "101"),
    ("'<a>x</a>'::xml", "<a>x</a>"),
    ("'infinity'::date", "infinity"),
]


@pytest.mark.parametrize(("literal", "expected"), SERVER_VALUES, ids=[v[0] for v in SERVER_VALUES])
def test_server_values_decode(db: dbflow.DatabaseManager, literal: str, expected: Any) -> None:
    value = db.execute_query(f"SELECT {literal} AS v")[0]["v"]
    if expected == "nan":
        assert value != value
    elif expected == "decimal-nan":
        assert isinstance(value, Decimal) and value.is_nan()
    else:
        assert value == expected
        assert type(value) is type(expected)
        if isinstance(expected, dt.datetime | dt.time):
            assert value.tzinfo == expected.tzinfo


def test_enum_domain_and_unmapped_types(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(f"CREATE TYPE {table}_mood AS ENUM ('sad', 'ok', 'happy')")
    db.execute_query(f"CREATE DOMAIN {table}_pos AS int CHECK (VALUE > 0)")
    try:
        db.execute_query(
            f"CREATE TABLE {table} (m {table}_mood, p {table}_pos, ms {table}_mood[], r int4range)"
        )
        db.execute_query(
            f"INSERT INTO {table} VALUES (:m, :p, :ms, '[1,5)')",
            {"m": "happy", "p": 7, "ms": ["sad", "ok"]},
        )
        row = db.execute_query(f"SELECT m, p, ms, r, point(1, 2) AS pt FROM {table}")[0]
        assert row["m"] == "happy"
        assert row["p"] == 7
        assert row["ms"] == ["sad", "ok"]
        # No mapping for ranges: the documented fallback is bytes/str, never a crash.
        assert isinstance(row["r"], bytes | str)
        assert row["pt"] == "(1,2)"
        # An enum compared with a str parameter, as under psycopg2.
        assert db.execute_query(
            f"SELECT count(*) AS n FROM {table} WHERE m = :m", {"m": "happy"}
        ) == [{"n": 1}]
    finally:
        db.execute_query(f"DROP TABLE IF EXISTS {table}")
        db.execute_query(f"DROP TYPE IF EXISTS {table}_mood")
        db.execute_query(f"DROP DOMAIN IF EXISTS {table}_pos")


PARAMS: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**31,
    2**63 - 1,
    2**70,
    1.25,
    float("inf"),
    Decimal("12.3400"),
    Decimal("-1E+3"),
    "text with 'quotes' and :colons",
    "",
    "ü" * 10000,
    b"\x00\x01binary",
    bytearray(b"ba"),
    dt.date(1999, 12, 31),
    dt.time(1, 2, 3, 4),
    dt.datetime(2020, 5, 6, 7, 8, 9, 123456),
    dt.datetime(2020, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    dt.timedelta(days=2, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {"a": 1, "b": [True, None, "x"]},
    [1, 2, 3],
    ["a", None],
    [[1, 2], [3, 4]],
]


@pytest.mark.parametrize("value", PARAMS, ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
def test_unconstrained_parameter_returns_its_own_type(
    db: dbflow.DatabaseManager, value: Any
) -> None:
    got = db.execute_query("SELECT :v AS v", {"v": value})[0]["v"]
    expected: Any = value
    if isinstance(value, bytearray):
        expected = bytes(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 2**63:
        expected = Decimal(value)
    assert got == expected
    assert type(got) is type(expected)


def test_aware_datetime_keeps_the_instant(db: dbflow.DatabaseManager) -> None:
    plus2 = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    got = db.execute_query("SELECT :v AS v", {"v": plus2})[0]["v"]
    assert got == plus2
    assert got.utcoffset() == dt.timedelta(0)


def test_typed_columns_round_trip(db: dbflow.DatabaseManager, table: str) -> None:
    db.execute_query(
        f"""CREATE TABLE {table} (
            i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric(12, 4), m money,
            t text, vc varchar(20), b bool, by bytea, d date, tm time, ts timestamp,
            tz timestamptz, iv interval, u uuid, j json, jb jsonb, ia int[], ta text[],
            ua uuid[], ip inet, c cidr
        )"""
    )
    row = {
        "i2": 12,
        "i4": 123456,
        "i8": 2**40,
        "f4": 1.5,
        "f8": 2.25,
        "n": Decimal("12.5"),
        "m": Decimal("9.99"),
        "t": "text",
        "vc": "varchar",
        "b": True,
        "by": b"\x01\x02",
        "d": dt.date(2024, 3, 4),
        "tm": dt.time(5, 6, 7),
        "ts": dt.datetime(2024, 3, 4, 5, 6, 7),
        "tz": dt.datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC),
        "iv": dt.timedelta(hours=3),
        "u": uuid.UUID(int=42),
        "j": {"json": [1, 2]},
        "jb": [{"x": 1}],
        "ia": [1, None, 3],
        "ta": ["x", "y"],
        "ua": [str(uuid.UUID(int=1))],
        "ip": "10.1.2.3",
        "c": "192.168.0.0/16",
    }
    cols = ", ".join(row)
    placeholders = ", ".join(f":{k}" for k in row)
    assert db.execute_query(f"INSERT INTO {table} ({cols}) VALUES ({placeholders})", row) == []
    got = db.execute_query(f"SELECT * FROM {table}")[0]
    expected = dict(row, n=Decimal("12.5000"), ua=[uuid.UUID(int=1)])
    assert got == expected


def test_strings_into_typed_columns_are_parsed_by_the_server(
    db: dbflow.DatabaseManager, table: str
) -> None:
    db.execute_query(
        f"CREATE TABLE {table} (d date, i int, u uuid, n numeric, ts timestamptz, b bool)"
    )
    db.execute_query(
        f"INSERT INTO {table} VALUES (:d, :i, :u, :n, :ts, :b)",
        {
            "d": "2024-01-31",
            "i": "42",
            "u": "00000000-0000-0000-0000-000000000001",
            "n": "1.50",
            "ts": "2024-01-31 10:00:00+00",
            "b": "yes",
        },
    )
    got = db.execute_query(
        f"SELECT * FROM {table} WHERE d >= :since AND i = :i", {"since": "2024-01-01", "i": "42"}
    )
    assert got == [
        {
            "d": dt.date(2024, 1, 31),
            "i": 42,
            "u": uuid.UUID(int=1),
            "n": Decimal("1.50"),
            "ts": dt.datetime(2024, 1, 31, 10, tzinfo=UTC),
            "b": True,
        }
    ]


def test_same_statement_with_changing_value_types(db: dbflow.DatabaseManager) -> None:
    # The statement is cached per connection; later calls with other Python
    # types still bind as psycopg2 would have.
    for value in [5, "five", None, 3_000_000_000, 2.5, [1, 2], {"k": 1}, "2024-01-01"]:
        assert db.execute_query("SELECT :v AS v", {"v": value}) == [{"v": value}]


def test_int_params_work_where_postgres_wants_int4(db: dbflow.DatabaseManager) -> None:
    rows = db.execute_query(
        "SELECT substr('abcdef', :start, :len) AS s, DATE '2024-01-01' + :days AS d",
        {"start": 2, "len": 3, "days": 10},
    )
    assert rows == [{"s": "bcd", "d": dt.date(2024, 1, 11)}]


def test_list_param_with_any(db: dbflow.DatabaseManager) -> None:
    rows = db.execute_query(
        "SELECT x FROM generate_series(1, 10) AS x WHERE x = ANY(:ids) ORDER BY x",
        {"ids": [2, 4, 99]},
    )
    assert rows == [{"x": 2}, {"x": 4}]


def test_out_of_range_value_is_rejected_by_the_server(
    db: dbflow.DatabaseManager, table: str
) -> None:
    db.execute_query(f"CREATE TABLE {table} (s int2)")
    with pytest.raises(dbflow.QueryError) as info:
        db.execute_query(f"INSERT INTO {table} VALUES (:s)", {"s": 70000})
    assert info.value.sqlstate == "22003"
    assert db.execute_query(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


def test_unsupported_python_type_is_a_parameter_error(db: dbflow.DatabaseManager) -> None:
    with pytest.raises(dbflow.ParameterError, match="object"):
        db.execute_query("SELECT :v", {"v": object()})


def test_many_rows_and_columns(db: dbflow.DatabaseManager) -> None:
    rows = db.execute_query(
        "SELECT g AS id, g::text AS name, g * 1.5 AS score, now() AS at"
        " FROM generate_series(1, 5000) g"
    )
    assert len(rows) == 5000
    assert rows[-1]["id"] == 5000 and rows[-1]["name"] == "5000"
    assert rows[1]["score"] == Decimal("3.0")


def test_dicts_into_json_are_spaced_as_psycopg2_stores_them(db: dbflow.DatabaseManager) -> None:
    """A `json` column keeps the text as sent: psycopg2's Json sends
    json.dumps's spacing, and so does dbflow."""
    value = {"x": 1, "y": [1, 2.5, None], "z": {"name": "Ada"}}
    row = db.execute_query("SELECT CAST(:v AS json)::text AS t", {"v": value})[0]
    assert row["t"] == json.dumps(value)
    listed = db.execute_query("SELECT CAST(:v AS json)::text AS t", {"v": [{"a": 1}, True]})[0]
    assert listed["t"] == '[{"a": 1}, true]'


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(seconds=-1), "-1 days +23:59:59"),
        (dt.timedelta(days=-3, seconds=-1), "-4 days +23:59:59"),
        (dt.timedelta(days=2, microseconds=5), "2 days 00:00:00.000005"),
    ],
)
def test_timedeltas_are_sent_in_pythons_own_fields(
    db: dbflow.DatabaseManager, delta: dt.timedelta, text: str
) -> None:
    """As psycopg2 sends them: days, then non-negative seconds. The fields
    matter: `-1 days +23:59:59` added across a DST change differs from
    `-00:00:01`."""
    row = db.execute_query("SELECT CAST(:d AS interval)::text AS t, :d AS back", {"d": delta})[0]
    assert row["t"] == text
    assert row["back"] == delta
