"""Arrow results: the type mapping of each backend, value by value, with
the exact Arrow type (PostgreSQL directly and through PgBouncer; SQL Server
whenever DBFLOW_TEST_MSSQL_URL is set). What has no exact mapping fails the
read with a QueryError naming the column and what to do, and the manager
stays usable."""

from __future__ import annotations

import ctypes
import datetime as dt
import itertools
import math
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import dbflow
from dbflow import QueryError

pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")

UTC = dt.timezone.utc
_names = itertools.count()

POSTGRES = pytest.mark.backends("postgresql", "pgbouncer")
SQLSERVER = pytest.mark.backends("sqlserver")


def one(db: dbflow.DatabaseManager, expression: str, suffix: str = "") -> tuple[Any, Any]:
    """The Arrow type and the Python value of `expression` read as column v."""
    table = db.fetch_arrow(f"SELECT {expression} AS v{suffix}")
    assert table.num_rows == 1 and table.column_names == ["v"]
    return table.schema.field("v").type, table.column("v")[0].as_py()


def still_usable(db: dbflow.DatabaseManager) -> None:
    """The pool gave the connection back and the next read works."""
    assert db.fetch_arrow("SELECT 7 AS ok").to_pylist() == [{"ok": 7}]
    assert db.get_pool_status()["checked_out"] == 0


def case_id(case: Any) -> str | None:
    return None if hasattr(case, "marks") else str(case[0])


# ---- PostgreSQL ------------------------------------------------------------


PG_VALUES: list[Any] = [
    ("(-32768)::int2", pa.int16(), -32768),
    ("(-2147483648)::int4", pa.int32(), -2147483648),
    ("9223372036854775807::int8", pa.int64(), 9223372036854775807),
    ("NULL::int8", pa.int64(), None),
    ("(-12345.67)::numeric(10,2)", pa.decimal128(10, 2), Decimal("-12345.67")),
    ("1.5::numeric(10,4)", pa.decimal128(10, 4), Decimal("1.5000")),
    ("0::numeric(5,2)", pa.decimal128(5, 2), Decimal("0.00")),
    (
        "99999999999999999999999999999999999999::numeric(38,0)",
        pa.decimal128(38, 0),
        Decimal("99999999999999999999999999999999999999"),
    ),
    pytest.param(
        "(-0.99999999999999999999999999999999999999)::numeric(38,38)",
        pa.decimal128(38, 38),
        Decimal("-0.99999999999999999999999999999999999999"),
        id="numeric(38,38) 38 nines",
    ),
    (
        "0.00000000000000000000000000000000000001::numeric(38,38)",
        pa.decimal128(38, 38),
        Decimal("1E-38"),
    ),
    (
        "(-123456789012345678901234567890.12345678)::numeric(38,8)",
        pa.decimal128(38, 8),
        Decimal("-123456789012345678901234567890.12345678"),
    ),
    ("NULL::numeric(12,4)", pa.decimal128(12, 4), None),
    # Unconstrained numeric: its exact text, as PostgreSQL prints it.
    ("'123.4500'::numeric", pa.string(), "123.4500"),
    ("'-0.000001'::numeric", pa.string(), "-0.000001"),
    ("'1e30'::numeric", pa.string(), "1000000000000000000000000000000"),
    ("NULL::numeric", pa.string(), None),
    ("12.34::money", pa.decimal128(19, 2), Decimal("12.34")),
    ("(-92233720368547758.08)::money", pa.decimal128(19, 2), Decimal("-92233720368547758.08")),
    ("1.5::float4", pa.float32(), 1.5),
    ("0.1::float8", pa.float64(), 0.1),
    ("'-Infinity'::float8", pa.float64(), -math.inf),
    ("'héllo'::text", pa.string(), "héllo"),
    ("'ab'::varchar(5)", pa.string(), "ab"),
    ("'ab'::char(4)", pa.string(), "ab  "),
    ('\'{"b": [1, 2], "a": null}\'::json', pa.string(), '{"b": [1, 2], "a": null}'),
    ('\'{"b": [1, 2], "a": null}\'::jsonb', pa.string(), '{"a": null, "b": [1, 2]}'),
    ("'<a>x</a>'::xml", pa.string(), "<a>x</a>"),
    ("'\\x00ff10'::bytea", pa.binary(), b"\x00\xff\x10"),
    ("''::bytea", pa.binary(), b""),
    ("true", pa.bool_(), True),
    ("NULL::bool", pa.bool_(), None),
    ("DATE '2024-02-29'", pa.date32(), dt.date(2024, 2, 29)),
    ("DATE '1969-12-31'", pa.date32(), dt.date(1969, 12, 31)),
    ("TIME '13:14:15.123456'", pa.time64("us"), dt.time(13, 14, 15, 123456)),
    (
        "TIMESTAMP '2024-01-02 03:04:05.678901'",
        pa.timestamp("us"),
        dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    ),
    ("TIMESTAMP '1900-03-01 00:00:00'", pa.timestamp("us"), dt.datetime(1900, 3, 1)),
    (
        "INTERVAL '1 year 2 months 3 days 04:05:06.789'",
        pa.month_day_nano_interval(),
        pa.MonthDayNano([14, 3, (4 * 3600 + 5 * 60 + 6) * 10**9 + 789_000_000]),
    ),
    ("INTERVAL '-1 day'", pa.month_day_nano_interval(), pa.MonthDayNano([0, -1, 0])),
    ("'{1,NULL,3}'::int4[]", pa.list_(pa.int32()), [1, None, 3]),
    ("'{}'::int4[]", pa.list_(pa.int32()), []),
    ("NULL::int4[]", pa.list_(pa.int32()), None),
    ("'{a,NULL,\"b c\"}'::text[]", pa.list_(pa.string()), ["a", None, "b c"]),
    ("'{1.50,NULL}'::numeric(6,2)[]", pa.list_(pa.decimal128(6, 2)), [Decimal("1.50"), None]),
]


@POSTGRES
@pytest.mark.parametrize(
    ("expression", "arrow_type", "value"), PG_VALUES, ids=[case_id(v) for v in PG_VALUES]
)
def test_postgres_types(
    bdb: dbflow.DatabaseManager, expression: str, arrow_type: Any, value: Any
) -> None:
    got_type, got = one(bdb, expression)
    assert got_type == arrow_type
    assert got == value
    if isinstance(value, Decimal):
        assert str(got) == str(value)  # the scale too, not only the number


@POSTGRES
def test_postgres_timestamptz_is_the_same_instant_in_utc(bdb: dbflow.DatabaseManager) -> None:
    # The session's time zone is not UTC: the value still comes as the
    # instant, labelled UTC (PgBouncer: SET LOCAL, inside one transaction).
    with bdb.transaction() as tx:
        tx.execute_query("SET LOCAL TIME ZONE 'Asia/Kolkata'")
        assert tx.execute_query("SELECT current_setting('TimeZone') AS tz") == [
            {"tz": "Asia/Kolkata"}
        ]
        table = tx.fetch_arrow(
            "SELECT TIMESTAMPTZ '2024-07-01 12:00:00.123456+02' AS v, NULL::timestamptz AS n"
        )
    assert table.schema.field("v").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("n").type == pa.timestamp("us", tz="UTC")
    got = table.column("v")[0].as_py()
    assert got == dt.datetime(2024, 7, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert got.utcoffset() == dt.timedelta(0)
    assert table.column("n")[0].as_py() is None


@POSTGRES
def test_postgres_uuid_is_the_canonical_extension_type(bdb: dbflow.DatabaseManager) -> None:
    value = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    table = bdb.fetch_arrow(
        "SELECT CAST(:u AS uuid) AS u, NULL::uuid AS n, ARRAY[CAST(:u AS uuid)] AS us",
        {"u": str(value)},
    )
    field = table.schema.field("u")
    assert str(field.type) == "extension<arrow.uuid>"
    assert field.type.extension_name == "arrow.uuid"
    assert field.type.storage_type == pa.binary(16)
    assert table.column("u")[0].as_py() == value
    assert table.column("u").chunk(0).storage[0].as_py() == value.bytes
    assert table.column("n")[0].as_py() is None
    assert table.schema.field("us").type.value_type.extension_name == "arrow.uuid"
    assert table.column("us")[0].as_py() == [value]
    # The field metadata as dbflow exports it (before pyarrow reads it).
    exported = c_stream_metadata(bdb.iter_arrow("SELECT gen_random_uuid() AS u, 1 AS i"))
    assert exported == {"u": UUID_METADATA, "i": {}}


class _ArrowSchema(ctypes.Structure):
    pass


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_void_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowSchema))),
    ("private_data", ctypes.c_void_p),
]


class _ArrowArrayStream(ctypes.Structure):
    _fields_ = [
        (
            "get_schema",
            ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_ArrowSchema)),
        ),
        ("get_next", ctypes.c_void_p),
        ("get_last_error", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


def _metadata(pointer: int | None) -> dict[str, str]:
    """The Arrow C data interface's metadata encoding: int32 count, then
    length-prefixed key and value bytes."""
    if not pointer:
        return {}
    at = pointer

    def int32() -> int:
        nonlocal at
        value = ctypes.c_int32.from_address(at).value
        at += 4
        return value

    def text() -> str:
        nonlocal at
        size = int32()
        value = ctypes.string_at(at, size).decode()
        at += size
        return value

    return {text(): text() for _ in range(int32())}


def c_stream_metadata(stream: Any) -> dict[str, dict[str, str]]:
    """Each top-level field's metadata as dbflow exports it over the C
    stream interface, read before any library interprets it."""
    capsule = stream.__arrow_c_stream__()
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, b"arrow_array_stream")
    c_stream = _ArrowArrayStream.from_address(address)
    schema = _ArrowSchema()
    assert c_stream.get_schema(address, ctypes.byref(schema)) == 0
    try:
        fields = {}
        for i in range(schema.n_children):
            child = schema.children[i].contents
            fields[child.name.decode()] = _metadata(child.metadata)
        return fields
    finally:
        schema.release(ctypes.byref(schema))


UUID_METADATA = {"ARROW:extension:name": "arrow.uuid", "ARROW:extension:metadata": ""}


@pytest.fixture
def pg_enum(bdb: dbflow.DatabaseManager) -> Iterator[str]:
    name = f"mood_{os.getpid()}_{next(_names)}"
    bdb.execute_query(f"CREATE TYPE {name} AS ENUM ('sad', 'ok', 'happy')")
    bdb.execute_query(f"CREATE DOMAIN {name}_d AS integer CHECK (VALUE > 0)")
    yield name
    bdb.execute_query(f"DROP DOMAIN IF EXISTS {name}_d")
    bdb.execute_query(f"DROP TYPE IF EXISTS {name}")


@POSTGRES
def test_postgres_enum_and_domain(bdb: dbflow.DatabaseManager, pg_enum: str) -> None:
    table = bdb.fetch_arrow(
        f"SELECT 'happy'::{pg_enum} AS mood, NULL::{pg_enum} AS none, "
        f"ARRAY['ok', NULL]::{pg_enum}[] AS moods, 42::{pg_enum}_d AS positive"
    )
    assert table.schema.types == [
        pa.string(),
        pa.string(),
        pa.list_(pa.string()),
        pa.int32(),
    ]
    assert table.to_pylist() == [
        {"mood": "happy", "none": None, "moods": ["ok", None], "positive": 42}
    ]


@POSTGRES
def test_postgres_nulls_in_every_column_and_the_empty_result(
    bdb: dbflow.DatabaseManager,
) -> None:
    columns = (
        "n::int2 AS a, n::int4 AS b, n::int8 AS c, n::numeric(9,3) AS d, n::numeric AS e, "
        "n::float4 AS f, n::float8 AS g, n::text AS h, n::text::bytea AS i, (n > 0) AS j, "
        "DATE '2020-01-01' + n AS k, TIMESTAMP '2020-01-01' + n * INTERVAL '1 s' AS l, "
        "TIMESTAMPTZ '2020-01-01Z' + n * INTERVAL '1 s' AS m, "
        "CASE WHEN n > 0 THEN ARRAY[n, NULL] END AS o, "
        "gen_random_uuid() AS p, n * INTERVAL '1 s' AS q, TIME '00:00' + n * INTERVAL '1 s' AS r"
    )
    types = [
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.decimal128(9, 3),
        pa.string(),
        pa.float32(),
        pa.float64(),
        pa.string(),
        pa.binary(),
        pa.bool_(),
        pa.date32(),
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
        pa.list_(pa.int32()),
        pa.uuid(),
        pa.month_day_nano_interval(),
        pa.time64("us"),
    ]
    nulls = bdb.fetch_arrow(
        f"SELECT {columns.replace('gen_random_uuid()', 'NULL::uuid')} "
        "FROM (VALUES (NULL::int), (NULL::int)) AS s(n)"
    )
    assert nulls.schema.types == types
    assert nulls.num_rows == 2
    assert all(nulls.column(i).null_count == 2 for i in range(nulls.num_columns))
    empty = bdb.fetch_arrow(f"SELECT {columns} FROM generate_series(1, 0) AS n")
    assert empty.num_rows == 0
    assert empty.column_names == list("abcdefghijklmopqr")
    assert empty.schema.types == types
    # (Polars itself cannot take an interval column: it panics on month_day_nano.)
    no_interval = columns.replace(", n * INTERVAL '1 s' AS q", "")
    frame = bdb.fetch_polars(f"SELECT {no_interval} FROM generate_series(1, 0) AS n")
    assert frame.height == 0 and frame.columns == list("abcdefghijklmopr")


def test_columns_of_the_same_name_are_all_kept(bdb: dbflow.DatabaseManager) -> None:
    sql = "SELECT 1 AS id, 'x' AS name, 2 AS id, 3 AS id"
    table = bdb.fetch_arrow(sql)
    assert table.column_names == ["id", "name", "id", "id"]
    assert [c.to_pylist() for c in table.columns] == [[1], ["x"], [2], [3]]
    stream = bdb.iter_arrow(sql)
    assert stream.column_names == ["id", "name", "id", "id"]
    assert next(stream).column_names == ["id", "name", "id", "id"]
    pandas_frame = bdb.fetch_pandas(sql)
    assert list(pandas_frame.columns) == ["id", "name", "id", "id"]
    assert pandas_frame.iloc[0].tolist() == [1, "x", 2, 3]


def test_fetch_polars_renames_a_repeated_column(bdb: dbflow.DatabaseManager) -> None:
    frame = bdb.fetch_polars("SELECT 1 AS id, 'x' AS name, 2 AS id, 3 AS id")
    assert frame.columns == ["id", "name", "id_2", "id_3"]
    assert frame.row(0) == (1, "x", 2, 3)


PG_UNMAPPED: list[tuple[str, str]] = [
    ("point(1, 2)", r'column "v" has type (?i:point), which has no Arrow mapping; cast it'),
    ("int4range(1, 5)", r'column "v" has type (?i:int4range), .*cast it in the query'),
    ("'{{1,2},{3,4}}'::int4[]", r'column "v": a 2-dimensional array.*unnest it, or cast it'),
    ("'infinity'::date", r"column \"v\": 'infinity' cannot be held .*cast it in the query"),
    ("'-infinity'::timestamp", r"column \"v\": 'infinity' cannot be held .*cast it"),
    ("'infinity'::timestamptz", r"column \"v\": 'infinity' cannot be held .*cast it"),
    ("TIME '24:00:00'", r'column "v": 24:00:00 is not an Arrow time of day; cast it'),
]


@POSTGRES
@pytest.mark.parametrize(("expression", "message"), PG_UNMAPPED, ids=[u[0] for u in PG_UNMAPPED])
def test_postgres_unmapped_values_fail_cleanly(
    bdb: dbflow.DatabaseManager, expression: str, message: str
) -> None:
    with pytest.raises(QueryError, match=message) as info:
        bdb.fetch_arrow(f"SELECT 1 AS ok, {expression} AS v")
    assert info.value.operation == "fetch_arrow"
    assert str(info.value).startswith(f"[{bdb.database_name}] fetch_arrow failed: ")
    still_usable(bdb)


@POSTGRES
def test_postgres_numeric_nan_says_what_to_do(bdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(QueryError, match=r'column "v": NaN .*cast the column'):
        bdb.fetch_arrow("SELECT 'NaN'::numeric(10,2) AS v")


@POSTGRES
def test_postgres_numeric_nan_fails_cleanly(bdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(QueryError, match=r'column "v": NaN cannot be held by decimal128'):
        bdb.fetch_arrow("SELECT 'NaN'::numeric(10,2) AS v")
    still_usable(bdb)


@POSTGRES
def test_postgres_a_bad_value_deep_in_a_result_fails_every_read_cleanly(
    bdb: dbflow.DatabaseManager,
) -> None:
    # Row 150000 (in a later batch) cannot be held; the rest of the result
    # is left unread on the wire, and the pool must not hand it on.
    sql = (
        "SELECT n, CASE WHEN n = 150000 THEN 'infinity'::date ELSE DATE '2020-01-01' END AS d "
        "FROM generate_series(1, 200000) AS n"
    )
    with pytest.raises(QueryError, match=r'column "d": \'infinity\''):
        bdb.fetch_arrow(sql)
    still_usable(bdb)
    with pytest.raises(QueryError, match=r'column "d": \'infinity\''):
        bdb.fetch_polars(sql)
    still_usable(bdb)
    stream = bdb.iter_arrow(sql, batch_rows=10_000)
    seen = 0
    with pytest.raises(QueryError, match=r'column "d": \'infinity\''):
        for batch in stream:
            seen += batch.num_rows
    assert seen == 140_000  # every full batch before the bad row
    still_usable(bdb)


# ---- SQL Server (Babelfish or Microsoft) -----------------------------------


MS_VALUES: list[Any] = [
    ("CAST(255 AS tinyint)", pa.uint8(), 255),
    ("CAST(-32768 AS smallint)", pa.int16(), -32768),
    ("CAST(-2147483648 AS int)", pa.int32(), -2147483648),
    ("CAST(9223372036854775807 AS bigint)", pa.int64(), 9223372036854775807),
    ("CAST(NULL AS int)", pa.int32(), None),
    ("CAST(1 AS bit)", pa.bool_(), True),
    ("CAST(0 AS bit)", pa.bool_(), False),
    ("CAST(1.5 AS real)", pa.float32(), 1.5),
    ("CAST(0.1 AS float)", pa.float64(), 0.1),
    ("CAST(-12345.67 AS decimal(10, 2))", pa.decimal128(10, 2), Decimal("-12345.67")),
    ("CAST(1.5 AS decimal(10, 4))", pa.decimal128(10, 4), Decimal("1.5000")),
    (
        "CAST('99999999999999999999999999999999999999' AS decimal(38, 0))",
        pa.decimal128(38, 0),
        Decimal("99999999999999999999999999999999999999"),
    ),
    (
        "CAST('-1234567890123456789012345678.1234567890' AS numeric(38, 10))",
        pa.decimal128(38, 10),
        Decimal("-1234567890123456789012345678.1234567890"),
    ),
    ("CAST(NULL AS decimal(5, 2))", pa.decimal128(5, 2), None),
    ("CAST(12.3456 AS money)", pa.decimal128(19, 4), Decimal("12.3456")),
    (
        "CAST('-922337203685477.5808' AS money)",
        pa.decimal128(19, 4),
        Decimal("-922337203685477.5808"),
    ),
    ("CAST('214748.3647' AS smallmoney)", pa.decimal128(10, 4), Decimal("214748.3647")),
    ("CAST(-1.5 AS smallmoney)", pa.decimal128(10, 4), Decimal("-1.5000")),
    pytest.param(
        "CAST(NULL AS money)",
        pa.decimal128(19, 4),
        None,
        id="NULL money",
    ),
    pytest.param(
        "CAST(NULL AS smallmoney)",
        pa.decimal128(10, 4),
        None,
        id="NULL smallmoney",
    ),
    ("CAST('ab' AS char(4))", pa.string(), "ab  "),
    ("CAST('abc' AS varchar(10))", pa.string(), "abc"),
    ("CAST(N'héllo' AS nchar(6))", pa.string(), "héllo "),
    ("CAST(N'wörld ✓' AS nvarchar(max))", pa.string(), "wörld ✓"),
    ("CAST('txt' AS text)", pa.string(), "txt"),
    ("CAST(NULL AS nvarchar(10))", pa.string(), None),
    ("CAST(0x00FF10 AS varbinary(max))", pa.binary(), b"\x00\xff\x10"),
    ("CAST(0x0102 AS varbinary(10))", pa.binary(), b"\x01\x02"),
    ("CAST('2024-02-29' AS date)", pa.date32(), dt.date(2024, 2, 29)),
    ("CAST('1969-12-31' AS date)", pa.date32(), dt.date(1969, 12, 31)),
    ("CAST('13:14:15.123456' AS time(6))", pa.time64("us"), dt.time(13, 14, 15, 123456)),
    (
        "CAST('2024-01-02T03:04:05.678901' AS datetime2(6))",
        pa.timestamp("us"),
        dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    ),
    (
        "CAST('1900-03-01T00:00:00' AS datetime2(6))",
        pa.timestamp("us"),
        dt.datetime(1900, 3, 1),
    ),
    # datetime holds 1/300 s: .997 is 299/300 s, shown (as ODBC does) as 997 ms.
    (
        "CAST('2024-01-02T03:04:05.997' AS datetime)",
        pa.timestamp("us"),
        dt.datetime(2024, 1, 2, 3, 4, 5, 997000),
    ),
    (
        "CAST('1953-06-15T23:59:59.123' AS datetime)",
        pa.timestamp("us"),
        dt.datetime(1953, 6, 15, 23, 59, 59, 123000),
    ),
    (
        "CAST('2024-01-02T03:04:00' AS smalldatetime)",
        pa.timestamp("us"),
        dt.datetime(2024, 1, 2, 3, 4),
    ),
    ("CAST(NULL AS datetime2(6))", pa.timestamp("us"), None),
]


@SQLSERVER
@pytest.mark.parametrize(
    ("expression", "arrow_type", "value"), MS_VALUES, ids=[case_id(v) for v in MS_VALUES]
)
def test_sqlserver_types(
    bdb: dbflow.DatabaseManager, expression: str, arrow_type: Any, value: Any
) -> None:
    got_type, got = one(bdb, expression)
    assert got_type == arrow_type
    assert got == value
    if isinstance(value, Decimal):
        assert str(got) == str(value)


@SQLSERVER
def test_sqlserver_datetimeoffset_is_the_same_instant_in_utc(
    bdb: dbflow.DatabaseManager,
) -> None:
    table = bdb.fetch_arrow(
        "SELECT CAST('2024-07-01T12:00:00.123456+05:30' AS datetimeoffset(6)) AS v, "
        "CAST('2024-01-01T00:30:00-08:00' AS datetimeoffset(6)) AS w, "
        "CAST(NULL AS datetimeoffset(6)) AS n"
    )
    assert table.schema.types == [pa.timestamp("us", tz="UTC")] * 3
    assert table.to_pylist() == [
        {
            "v": dt.datetime(2024, 7, 1, 6, 30, 0, 123456, tzinfo=UTC),
            "w": dt.datetime(2024, 1, 1, 8, 30, tzinfo=UTC),
            "n": None,
        }
    ]
    assert table.column("v")[0].as_py().utcoffset() == dt.timedelta(0)


@SQLSERVER
def test_sqlserver_uniqueidentifier_is_the_uuid_extension(bdb: dbflow.DatabaseManager) -> None:
    text = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    sql = (
        f"SELECT CAST('{text}' AS uniqueidentifier) AS u, "
        f"CAST(CAST('{text}' AS uniqueidentifier) AS varchar(36)) AS t, "
        "CAST(NULL AS uniqueidentifier) AS n"
    )
    table = bdb.fetch_arrow(sql)
    assert str(table.schema.field("u").type) == "extension<arrow.uuid>"
    row = table.to_pylist()[0]
    assert row["u"] == uuid.UUID(text)
    assert str(row["u"]).upper() == row["t"].upper()  # the server's own text form
    assert row["n"] is None
    exported = c_stream_metadata(bdb.iter_arrow(sql))
    assert exported == {"u": UUID_METADATA, "t": {}, "n": UUID_METADATA}
    assert bdb.execute_query(sql)[0]["u"] == row["u"]


@SQLSERVER
def test_sqlserver_nulls_and_the_empty_result(bdb: dbflow.DatabaseManager) -> None:
    columns = (
        "CAST(n AS tinyint) AS a, CAST(n AS smallint) AS b, CAST(n AS int) AS c, "
        "CAST(n AS bigint) AS d, CAST(n AS bit) AS e, CAST(n AS real) AS f, "
        "CAST(n AS float) AS g, CAST(n AS decimal(9, 3)) AS h, CAST(n AS decimal(38, 0)) AS i, "
        "CAST(n AS nvarchar(20)) AS j, CAST(CAST(n AS varchar(5)) AS varbinary(8)) AS k, "
        "CAST(NULL AS date) AS l, CAST(NULL AS time(6)) AS m, "
        "CAST(NULL AS datetime2(6)) AS o, CAST(NULL AS datetimeoffset(6)) AS p, "
        "CAST(NULL AS uniqueidentifier) AS q"
    )
    types = [
        pa.uint8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.bool_(),
        pa.float32(),
        pa.float64(),
        pa.decimal128(9, 3),
        pa.decimal128(38, 0),
        pa.string(),
        pa.binary(),
        pa.date32(),
        pa.time64("us"),
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
        pa.uuid(),
    ]
    nulls = bdb.fetch_arrow(f"SELECT {columns} FROM (VALUES (NULL), (NULL)) AS s(n)")
    assert nulls.schema.types == types
    assert nulls.num_rows == 2
    assert all(nulls.column(i).null_count == 2 for i in range(nulls.num_columns))
    empty = bdb.fetch_arrow(f"SELECT {columns} FROM (VALUES (1)) AS s(n) WHERE 1 = 0")
    assert empty.num_rows == 0
    assert empty.column_names == list("abcdefghijklmopq")
    assert empty.schema.types == types


@SQLSERVER
def test_sqlserver_money_columns_with_nulls(bdb: dbflow.DatabaseManager, btable: str) -> None:
    bdb.execute_query(f"CREATE TABLE {btable} (id int, m money, s smallmoney)")
    bdb.execute_query(
        f"INSERT INTO {btable} VALUES (1, 12.3456, -1.5), (2, NULL, NULL), (3, NULL, 2)"
    )
    table = bdb.fetch_arrow(f"SELECT m, s FROM {btable} ORDER BY id")
    assert table.schema.types == [pa.decimal128(19, 4), pa.decimal128(10, 4)]
    assert table.to_pylist() == [
        {"m": Decimal("12.3456"), "s": Decimal("-1.5000")},
        {"m": None, "s": None},
        {"m": None, "s": Decimal("2.0000")},
    ]


@SQLSERVER
def test_sqlserver_unmapped_type_fails_cleanly(bdb: dbflow.DatabaseManager) -> None:
    try:
        bdb.execute_query("SELECT CAST(1 AS sql_variant) AS v")
    except QueryError as e:
        pytest.skip(f"this server has no sql_variant: {e}")
    with pytest.raises(QueryError, match=r'column "v" has type sql_variant.*cast it') as info:
        bdb.fetch_arrow("SELECT 1 AS ok, CAST(1 AS sql_variant) AS v")
    assert info.value.operation == "fetch_arrow"
    still_usable(bdb)
    with pytest.raises(QueryError, match=r'column "v" has type sql_variant'):
        list(bdb.iter_arrow("SELECT CAST(1 AS sql_variant) AS v"))
    still_usable(bdb)
