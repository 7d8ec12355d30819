"""Table-valued parameters (`dbflow.TableValue`) on the real servers: the
protocol's TVP to Microsoft SQL Server, a bulk load into a temporary table on
Babelfish (which mishandles the TVP type), both producing the same rows;
PostgreSQL refuses them with the idiom to use instead."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import dbflow
from dbflow import ParameterError, TableValue

pytestmark = pytest.mark.backends("sqlserver")

_names = itertools.count()

ALL_TYPES = """CREATE TYPE {name} AS TABLE (
    id int NOT NULL, big bigint NULL, label nvarchar(100) NULL, amount decimal(12, 4) NULL,
    ratio float NULL, flag bit NULL, raw varbinary(100) NULL, day date NULL,
    clock time(6) NULL, stamp datetime2(6) NULL, aware datetimeoffset(6) NULL,
    ident uniqueidentifier NULL
)"""

COLUMNS = "id, big, label, amount, ratio, flag, raw, day, clock, stamp, aware, ident"

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "big": 9_007_199_254_740_993,
        "label": 'it\'s "quoted" — ünïcode',
        "amount": Decimal("-12345678.1234"),
        "ratio": 0.1,
        "flag": True,
        "raw": b"\x00\xffab'",
        "day": dt.date(2024, 2, 29),
        "clock": dt.time(23, 59, 59, 123456),
        "stamp": dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        "aware": dt.datetime(
            2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
        "ident": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    },
    {"id": 2, **{c: None for c in COLUMNS.split(", ")[1:]}},
    {
        "id": 3,
        "big": -1,
        "label": "",
        "amount": Decimal("0.5000"),
        "ratio": -2.5e-300,
        "flag": False,
        "raw": b"",
        "day": dt.date(1, 1, 1),
        "clock": dt.time(0, 0),
        "stamp": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "aware": dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "ident": uuid.UUID(int=0),
    },
]


@pytest.fixture
def types(bdb: dbflow.DatabaseManager) -> Iterator[Any]:
    """Create table types (and procedures using them) for a test."""
    made: list[tuple[str, str]] = []

    def create(kind: str, ddl_template: str) -> str:
        name = f"dbo.tv_{kind.lower()}_{os.getpid()}_{next(_names)}"
        bdb.execute_query(ddl_template.format(name=name))
        made.append((kind, name))
        return name

    yield create
    for kind, name in reversed(made):
        bdb.execute_query(f"DROP {kind} IF EXISTS {name}")


def manager_with(env: Any, backend: Any, table_values: str) -> dbflow.DatabaseManager:
    """A manager whose connection string chooses the TVP encoding."""
    joiner = "&" if "?" in backend.url else "?"
    url = f"{backend.url}{joiner}table_values={table_values}"
    return env.manager(env.database(url=url, pool_release_grace=0, **backend.settings))


def test_every_value_type_and_null_round_trips(bdb: dbflow.DatabaseManager, types: Any) -> None:
    row_type = types("TYPE", ALL_TYPES)
    echo = types(
        "PROCEDURE",
        "CREATE PROCEDURE {name} @rows "
        + row_type
        + f" READONLY, @n int OUTPUT AS BEGIN SELECT @n = COUNT(*) FROM @rows; "
        f"SELECT {COLUMNS} FROM @rows ORDER BY id; END",
    )
    result = bdb.call_procedure(echo, {"rows": TableValue(row_type, ROWS)}, output={"n": "int"})
    assert result.output == {"n": 3}
    assert result.result_sets == [ROWS]
    # The same rows as tuples in the type's column order, through a query.
    tuples = [tuple(r[c] for c in COLUMNS.split(", ")) for r in ROWS]
    assert (
        bdb.execute_query(
            f"SELECT {COLUMNS} FROM :rows ORDER BY id", {"rows": TableValue(row_type, tuples)}
        )
        == ROWS
    )


def test_a_hundred_thousand_rows_in_one_call(bdb: dbflow.DatabaseManager, types: Any) -> None:
    id_list = types("TYPE", "CREATE TYPE {name} AS TABLE (id int NOT NULL, name nvarchar(40) NULL)")
    summary = types(
        "PROCEDURE",
        "CREATE PROCEDURE {name} @ids " + id_list + " READONLY, @total bigint OUTPUT AS BEGIN "
        "SELECT @total = SUM(CAST(id AS bigint)) FROM @ids; "
        "SELECT COUNT(*) AS n, COUNT(name) AS named, MAX(name) AS last FROM @ids; RETURN 0; END",
    )
    rows = [(i, None if i % 10 == 0 else f"o'name {i:06d}") for i in range(1, 100_001)]
    result = bdb.call_procedure(
        summary, {"ids": TableValue(id_list, rows)}, output={"total": "bigint"}
    )
    assert result.output == {"total": 100_000 * 100_001 // 2}
    assert result.result_sets == [[{"n": 100_000, "named": 90_000, "last": "o'name 099999"}]]
    assert result.return_value == 0


def test_native_and_bulk_encodings_give_the_same_rows(
    env: Any, backend: Any, bdb: dbflow.DatabaseManager, types: Any
) -> None:
    if backend.product == "babelfish":
        # Babelfish pastes TVP strings into SQL unescaped and garbles
        # decimals beside NULLs: compare with values it handles.
        row_type = types(
            "TYPE",
            "CREATE TYPE {name} AS TABLE (id int NOT NULL, label nvarchar(50) NULL, "
            "amount decimal(12, 2) NULL, day date NULL, flag bit NULL, "
            "ident uniqueidentifier NULL)",
        )
        rows: list[dict[str, Any]] = [
            {
                "id": i,
                "label": None if i % 3 == 0 else f"row {i}",
                "amount": Decimal(f"{i}.25"),
                "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
                "flag": i % 2 == 0,
                "ident": uuid.UUID(int=i),
            }
            for i in range(1, 201)
        ]
        columns = "id, label, amount, day, flag, ident"
    else:
        row_type = types("TYPE", ALL_TYPES)
        rows = ROWS
        columns = COLUMNS
    sql = f"SELECT {columns} FROM :rows ORDER BY id"
    native = manager_with(env, backend, "native")
    as_bulk = manager_with(env, backend, "bulk")
    try:
        from_native = native.execute_query(sql, {"rows": TableValue(row_type, rows)})
        from_bulk = as_bulk.execute_query(sql, {"rows": TableValue(row_type, rows)})
        assert from_native == from_bulk == rows
        if backend.product == "babelfish":
            # Never more than Babelfish survives, and never by default.
            many = [{**rows[0], "id": i} for i in range(2_000)]
            with pytest.raises(ParameterError, match="at most 1000"):
                native.execute_query(sql, {"rows": TableValue(row_type, many)})
    finally:
        native.dispose()
        as_bulk.dispose()


def test_arrow_data_as_a_table_value(bdb: dbflow.DatabaseManager, types: Any) -> None:
    pa = pytest.importorskip("pyarrow")
    id_list = types("TYPE", "CREATE TYPE {name} AS TABLE (id int NOT NULL, name nvarchar(40) NULL)")
    data = pa.table({"name": ["a", None, "c"], "id": pa.array([3, 1, 2], pa.int32())})
    assert bdb.execute_query(
        "SELECT id, name FROM :ids ORDER BY id", {"ids": TableValue(id_list, data)}
    ) == [{"id": 1, "name": None}, {"id": 2, "name": "c"}, {"id": 3, "name": "a"}]


def test_bad_table_values_are_refused_before_anything_runs(
    bdb: dbflow.DatabaseManager, types: Any, btable: str
) -> None:
    id_list = types("TYPE", "CREATE TYPE {name} AS TABLE (id int NOT NULL, name nvarchar(40) NULL)")
    bdb.execute_query(f"CREATE TABLE {btable} (id int)")
    insert = f"INSERT INTO {btable} (id) SELECT id FROM :ids"
    with pytest.raises(ParameterError, match='has no column "nme"'):
        bdb.execute_query(insert, {"ids": TableValue(id_list, [{"id": 1, "nme": "x"}])})
    with pytest.raises(ParameterError, match="2 columns"):
        bdb.execute_query(insert, {"ids": TableValue(id_list, [(1,)])})
    with pytest.raises(ParameterError, match="out of range"):
        bdb.execute_query(insert, {"ids": TableValue(id_list, [(2**40, "big")])})
    with pytest.raises(ParameterError, match="not a table type name"):
        bdb.execute_query(insert, {"ids": TableValue("dbo.x; DROP TABLE y", [(1, "a")])})
    with pytest.raises(dbflow.QueryError):
        bdb.execute_query(insert, {"ids": TableValue("dbo.no_such_type_here", [(1, "a")])})
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable}") == [{"n": 0}]


@pytest.mark.backends("postgresql", "pgbouncer")
def test_postgres_refuses_a_table_value_and_shows_the_idiom(bdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(ParameterError) as caught:
        bdb.execute_query("SELECT * FROM :ids", {"ids": TableValue("ids", [(1,), (2,)])})
    assert "unnest(:ids)" in str(caught.value) and "= ANY(:ids)" in str(caught.value)
    # The idiom itself, with the same rows.
    assert bdb.execute_query(
        "SELECT id FROM unnest(CAST(:ids AS int[])) AS t(id) ORDER BY id", {"ids": [2, 1]}
    ) == [{"id": 1}, {"id": 2}]


def test_table_values_in_a_rolled_back_transaction_and_from_asyncio(
    env: Any, backend: Any, bdb: dbflow.DatabaseManager, types: Any, btable: str
) -> None:
    import asyncio

    bdb.execute_query(f"CREATE TABLE {btable} (id int, doc nvarchar(max))")
    row_type = types("TYPE", "CREATE TYPE {name} AS TABLE (id int NOT NULL, doc nvarchar(max))")
    store = types(
        "PROCEDURE",
        "CREATE PROCEDURE {name} @rows "
        + row_type
        + f" READONLY, @stored int OUTPUT AS BEGIN INSERT INTO {btable} SELECT id, doc FROM @rows; "
        f"SELECT @stored = COUNT(*) FROM {btable}; END",
    )
    # A dict or list goes into a text column as JSON, as in any parameter.
    rows = [{"id": 1, "doc": {"k": [1, 2]}}, {"id": 2, "doc": ["a", None]}]

    class Undo(Exception):
        pass

    with pytest.raises(Undo):
        with bdb.transaction() as tx:
            result = tx.call_procedure(
                store, {"rows": TableValue(row_type, rows)}, output={"stored": "int"}
            )
            assert result.output == {"stored": 2}
            raise Undo
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable}") == [{"n": 0}]

    manager = dbflow.AsyncDatabaseManager(
        env.database(backend=backend, pool_release_grace=0), config=env.config()
    )

    async def run() -> Any:
        async with manager.transaction() as tx:
            await tx.call_procedure(
                store, {"rows": TableValue(row_type, rows)}, output={"stored": "int"}
            )
        return await manager.call_procedure(
            store, {"rows": TableValue(row_type, [(3, "plain")])}, output={"stored": "int"}
        )

    try:
        assert asyncio.run(run()).output == {"stored": 3}
    finally:
        manager.dispose()
    assert bdb.execute_query(f"SELECT id, doc FROM {btable} ORDER BY id") == [
        {"id": 1, "doc": '{"k": [1, 2]}'},
        {"id": 2, "doc": '["a", null]'},
        {"id": 3, "doc": "plain"},
    ]
