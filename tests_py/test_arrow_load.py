"""bulk_insert of Arrow data (pyarrow, Polars, pandas, iter_arrow streams)
into real servers: every value back exactly, columns matched by name, bad
data refused with nothing written, and database-to-database streaming in
both directions between PostgreSQL and SQL Server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import dbflow

pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")

UTC = dt.timezone.utc

PG_TABLE = """CREATE TABLE {name} (
    id bigint PRIMARY KEY, small smallint, amount numeric(12, 2), label text,
    at timestamptz, naive timestamp, day date, t time, flag boolean, u uuid,
    doc jsonb, f double precision, blob bytea, maybe integer,
    extra text DEFAULT 'default')"""

MS_TABLE = """CREATE TABLE {name} (
    id bigint PRIMARY KEY, small smallint, amount decimal(12, 2), label nvarchar(200),
    at datetimeoffset(6), naive datetime2(6), day date, t time(6), flag bit,
    u uniqueidentifier, doc nvarchar(max), f float, blob varbinary(100), maybe int,
    extra nvarchar(20) DEFAULT 'default')"""

COLUMNS = [
    "id",
    "small",
    "amount",
    "label",
    "at",
    "naive",
    "day",
    "t",
    "flag",
    "u",
    "doc",
    "f",
    "blob",
    "maybe",
]


def source_rows(n: int, time_micros: bool = True) -> list[dict[str, Any]]:
    """`time_micros=False` for Babelfish, whose `time` column stores some
    microsecond values one lower (7919 µs as 7918, with parameters too)."""
    base = dt.datetime(2024, 3, 1, 12, 30, 15, 123456)
    return [
        {
            "id": i,
            "small": (i % 600) - 300,
            "amount": Decimal(i * 125 - 40000).scaleb(-2),
            "label": f"label {i} — é" if i % 7 else None,
            "at": (base + dt.timedelta(minutes=i)).replace(tzinfo=UTC),
            "naive": base - dt.timedelta(hours=i),
            "day": dt.date(2020, 1, 1) + dt.timedelta(days=i),
            "t": dt.time(i % 24, i % 60, i % 60, (i * 7919) % 1_000_000 if time_micros else 0),
            "flag": i % 2 == 0,
            "u": uuid.UUID(int=i * 0x1234567890ABCDEF),
            "doc": f'{{"i": {i}}}',
            "f": i / 3,
            "blob": bytes([i % 256, 0, 255]),
            "maybe": None if i % 3 == 0 else i,
        }
        for i in range(1, n + 1)
    ]


def arrow_table(rows: list[dict[str, Any]]) -> Any:
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("small", pa.int16()),
            ("amount", pa.decimal128(12, 2)),
            ("label", pa.string()),
            ("at", pa.timestamp("us", tz="UTC")),
            ("naive", pa.timestamp("us")),
            ("day", pa.date32()),
            ("t", pa.time64("us")),
            ("flag", pa.bool_()),
            ("u", pa.uuid()),
            ("doc", pa.string()),
            ("f", pa.float64()),
            ("blob", pa.binary()),
            ("maybe", pa.int32()),
        ]
    )
    return pa.Table.from_pylist([{**r, "u": r["u"].bytes} for r in rows], schema=schema)


@pytest.fixture
def mdb(env, mssql_test_url: str) -> Iterator[dbflow.DatabaseManager]:  # type: ignore[no-untyped-def]
    name = env.database(url=mssql_test_url, pool_release_grace=0)
    manager = env.manager(name)
    yield manager
    manager.dispose()


@pytest.fixture
def pg_table(db: dbflow.DatabaseManager) -> Iterator[str]:
    db.execute_query("DROP TABLE IF EXISTS arrow_load")
    db.execute_query(PG_TABLE.format(name="arrow_load"))
    yield "arrow_load"
    db.execute_query("DROP TABLE IF EXISTS arrow_load")


@pytest.fixture
def ms_table(mdb: dbflow.DatabaseManager) -> Iterator[str]:
    mdb.execute_query("IF OBJECT_ID('arrow_load') IS NOT NULL DROP TABLE arrow_load")
    mdb.execute_query(MS_TABLE.format(name="arrow_load"))
    yield "arrow_load"
    mdb.execute_query("IF OBJECT_ID('arrow_load') IS NOT NULL DROP TABLE arrow_load")


def stored(db: dbflow.DatabaseManager, table: str) -> list[dict[str, Any]]:
    rows = db.execute_query(f"SELECT {', '.join(COLUMNS)}, extra FROM {table} ORDER BY id")
    for r in rows:
        if isinstance(r["doc"], dict):  # jsonb comes back parsed
            r["doc"] = '{"i": ' + str(r["doc"]["i"]) + "}"
        r["blob"] = bytes(r["blob"]) if r["blob"] is not None else None
        r["at"] = r["at"].astimezone(UTC) if r["at"] is not None else None
    return rows


def expected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "extra": "default"} for r in rows]


FORMS = {
    "pyarrow Table": lambda t: t,
    "RecordBatchReader": lambda t: pa.RecordBatchReader.from_batches(t.schema, t.to_batches(700)),
    "RecordBatch": lambda t: t.combine_chunks().to_batches()[0],
    "Polars DataFrame": lambda t: pl.from_arrow(t),
    "pandas DataFrame": lambda t: t.to_pandas(),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_value_loads_exactly_into_postgresql(
    db: dbflow.DatabaseManager, pg_table: str, form: str
) -> None:
    rows = source_rows(2500)
    data = FORMS[form](arrow_table(rows))
    assert db.bulk_insert(pg_table, data) == len(rows)
    assert stored(db, pg_table) == expected(rows)


@pytest.mark.parametrize("form", ["pyarrow Table", "Polars DataFrame", "RecordBatchReader"])
def test_every_value_loads_exactly_into_sql_server(
    mdb: dbflow.DatabaseManager, ms_table: str, form: str
) -> None:
    rows = source_rows(1500, time_micros=False)
    data = FORMS[form](arrow_table(rows))
    assert mdb.bulk_insert(ms_table, data) == len(rows)
    assert stored(mdb, ms_table) == expected(rows)


def test_postgresql_to_sql_server_and_back_streaming(
    db: dbflow.DatabaseManager, pg_table: str, mdb: dbflow.DatabaseManager, ms_table: str
) -> None:
    rows = source_rows(3000, time_micros=False)
    db.bulk_insert(pg_table, arrow_table(rows))
    select = f"SELECT {', '.join(COLUMNS)} FROM arrow_load"
    assert mdb.bulk_insert(ms_table, db.iter_arrow(select, batch_rows=512)) == len(rows)
    assert stored(mdb, ms_table) == expected(rows)
    db.execute_query(f"TRUNCATE {pg_table}")
    assert db.bulk_insert(pg_table, mdb.iter_arrow(select, batch_rows=700)) == len(rows)
    assert stored(db, pg_table) == expected(rows)


def test_a_column_the_table_lacks_is_refused_before_anything_is_written(
    db: dbflow.DatabaseManager, pg_table: str
) -> None:
    data = pa.table({"id": [1, 2], "colour": ["red", "blue"]})
    with pytest.raises(dbflow.ParameterError, match="arrow_load has no column colour") as info:
        db.bulk_insert(pg_table, data)
    assert info.value.operation == "bulk_insert"
    assert db.execute_query(f"SELECT count(*) AS n FROM {pg_table}") == [{"n": 0}]


def test_a_value_its_column_cannot_take_names_row_column_and_both_types(
    db: dbflow.DatabaseManager, pg_table: str
) -> None:
    batches = [
        pa.record_batch(
            {"id": pa.array([1, 2], pa.int64()), "small": pa.array([1, 2], pa.int64())}
        ),
        pa.record_batch(
            {"id": pa.array([3, 4], pa.int64()), "small": pa.array([3, 70000], pa.int64())}
        ),
    ]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    with pytest.raises(dbflow.ParameterError, match=r"row 3, column small: 70000 is out of range"):
        db.bulk_insert(pg_table, reader)
    with pytest.raises(
        dbflow.ParameterError,
        match=r"row 0, column day: an Arrow (Utf8|string) cannot be written to a DATE column",
    ):
        db.bulk_insert(pg_table, pa.table({"id": [9], "day": [b"x".decode()]}))
    assert db.execute_query(f"SELECT count(*) AS n FROM {pg_table}") == [{"n": 0}]


def test_digits_a_numeric_column_would_round_are_refused(
    db: dbflow.DatabaseManager, pg_table: str
) -> None:
    data = pa.table({"id": [1], "amount": pa.array([Decimal("1.005")], pa.decimal128(12, 3))})
    with pytest.raises(
        dbflow.ParameterError, match=r"1\.005 has more than the 2 fractional digits"
    ):
        db.bulk_insert(pg_table, data)
    exact = pa.table({"id": [1], "amount": pa.array([Decimal("1.500")], pa.decimal128(12, 3))})
    db.bulk_insert(pg_table, exact)
    assert db.execute_query(f"SELECT amount FROM {pg_table}") == [{"amount": Decimal("1.50")}]


def test_nanoseconds_postgresql_would_round_are_refused(
    db: dbflow.DatabaseManager, pg_table: str
) -> None:
    at = pa.array([1_700_000_000_000_000_123], pa.timestamp("ns", tz="UTC"))
    with pytest.raises(dbflow.ParameterError, match="nanoseconds"):
        db.bulk_insert(pg_table, pa.table({"id": [1], "at": at}))
    whole = pa.array([1_700_000_000_000_123_000], pa.timestamp("ns", tz="UTC"))
    db.bulk_insert(pg_table, pa.table({"id": [1], "at": whole}))
    (row,) = db.execute_query(f"SELECT at FROM {pg_table}")
    assert row["at"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123, tzinfo=UTC)


def test_a_stream_that_fails_midway_writes_nothing(
    db: dbflow.DatabaseManager, pg_table: str
) -> None:
    schema = pa.schema([("id", pa.int64())])

    def batches() -> Iterator[Any]:
        yield pa.record_batch({"id": pa.array(range(0, 1000), pa.int64())})
        yield pa.record_batch({"id": pa.array(range(1000, 2000), pa.int64())})
        raise RuntimeError("the source broke")

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    with pytest.raises(dbflow.ParameterError, match="the source broke"):
        db.bulk_insert(pg_table, reader)
    assert db.execute_query(f"SELECT count(*) AS n FROM {pg_table}") == [{"n": 0}]


def test_columns_are_for_tuples_not_arrow_data(db: dbflow.DatabaseManager, pg_table: str) -> None:
    with pytest.raises(dbflow.ParameterError, match="columns= is for rows given as tuples"):
        db.bulk_insert(pg_table, pa.table({"id": [1]}), columns=["id"])


def test_async_bulk_insert_of_arrow_data(env, pg_table: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    rows = source_rows(800)
    name = env.database(pool_release_grace=0)

    async def main() -> int:
        async with dbflow.AsyncDatabaseManager(name, config=env.config()) as adb:
            return await adb.bulk_insert(pg_table, pl.from_arrow(arrow_table(rows)))

    assert asyncio.run(main()) == len(rows)
    reader = env.manager(name)
    try:
        assert stored(reader, pg_table) == expected(rows)
    finally:
        reader.dispose()


def test_a_source_query_failing_midway_raises_its_own_error_and_writes_nothing(
    db: dbflow.DatabaseManager, pg_table: str
) -> None:
    failing = (
        "SELECT g::bigint AS id, (1 / (g - 150000))::smallint AS small "
        "FROM generate_series(1, 200000) g"
    )
    with pytest.raises(dbflow.QueryError) as info:
        db.bulk_insert(pg_table, db.iter_arrow(failing, batch_rows=1000))
    assert info.value.sqlstate == "22012"  # division_by_zero, the source's own error
    assert info.value.operation == "iter_arrow"
    assert db.execute_query(f"SELECT count(*) AS n FROM {pg_table}") == [{"n": 0}]
