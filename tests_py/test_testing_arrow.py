"""dbflow.testing: the Arrow members of the doubles (fetch_arrow, iter_arrow,
fetch_polars, fetch_pandas, Arrow data given to bulk_insert), answered
from the scripted rows, sync, async and in transactions."""

from __future__ import annotations

import asyncio
import decimal
import inspect
import re
import sys
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")

import dbflow  # noqa: E402
from dbflow import ParameterError  # noqa: E402
from dbflow.testing import (  # noqa: E402
    AsyncMockDatabaseManager,
    MockDatabaseManager,
    UnscriptedQueryError,
    patch_databases,
)
from dbflow.testing.arrow_mock import AsyncMockArrowBatches, MockArrowBatches  # noqa: E402

ORDERS = "SELECT id, customer, total, note FROM orders"
ROWS = [
    {"id": 1, "customer": "Ada", "total": decimal.Decimal("10.50"), "note": None},
    {"id": 2, "customer": "Grace", "total": decimal.Decimal("7.25"), "note": "gift"},
    {"id": 3, "customer": "Edsger", "total": None, "note": None},
]
SCHEMA = pa.schema(
    [
        ("id", pa.int32()),
        ("customer", pa.string()),
        ("total", pa.decimal128(12, 2)),
        ("note", pa.string()),
    ]
)


def scripted(**kwargs: Any) -> MockDatabaseManager:
    mock = MockDatabaseManager("shop", strict=True)
    mock.add_result(ORDERS, ROWS, **kwargs)
    return mock


# ---- fetch_arrow -----------------------------------------------------------


def test_fetch_arrow_infers_the_types_from_the_scripted_values() -> None:
    mock = scripted()
    table = mock.fetch_arrow(ORDERS)
    assert isinstance(table, pa.Table)
    assert table.column_names == ["id", "customer", "total", "note"]
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("customer").type == pa.string()
    assert pa.types.is_decimal(table.schema.field("total").type)
    assert table.to_pylist() == ROWS
    # The same rows execute_query answers with.
    assert mock.execute_query(ORDERS) == table.to_pylist()
    assert [c.method for c in mock.calls] == ["fetch_arrow", "execute_query"]


def test_a_scripted_schema_types_the_answer() -> None:
    mock = scripted(arrow_schema=SCHEMA)
    table = mock.fetch_arrow(ORDERS)
    assert table.schema == SCHEMA
    assert table.to_pylist() == ROWS
    # An all-NULL column keeps the type the schema gives it (inferred: null).
    assert table.column("note").null_count == 2
    assert (
        MockDatabaseManager()
        .add_result("SELECT x", [{"x": None}])
        .fetch_arrow("SELECT x")
        .schema.field("x")
        .type
        == pa.null()
    )


def test_a_scripted_schema_missing_a_row_key_is_an_error() -> None:
    mock = MockDatabaseManager()
    mock.add_result("SELECT a, b", [{"a": 1, "b": 2}], arrow_schema=pa.schema([("a", pa.int8())]))
    with pytest.raises(ValueError, match=r"row 0 has \['b'\]"):
        mock.fetch_arrow("SELECT a, b")
    # A name the row lacks is NULL.
    mock.add_result("SELECT a", [{}], arrow_schema=pa.schema([("a", pa.int8())]))
    assert mock.fetch_arrow("SELECT a").to_pylist() == [{"a": None}]


def test_empty_results_with_and_without_a_schema() -> None:
    mock = MockDatabaseManager()
    mock.add_result("SELECT nothing", [])
    mock.add_result("SELECT typed nothing", [], arrow_schema=SCHEMA)
    mock.add_result("INSERT INTO t VALUES (1)", 1)  # a row count: no rows
    for sql in ("SELECT nothing", "SELECT unscripted", "INSERT INTO t VALUES (1)"):
        table = mock.fetch_arrow(sql)
        assert (table.num_rows, table.num_columns) == (0, 0), sql
    typed = mock.fetch_arrow("SELECT typed nothing")
    assert typed.num_rows == 0 and typed.schema == SCHEMA
    frame = mock.fetch_polars("SELECT typed nothing")
    assert frame.height == 0 and frame.columns == ["id", "customer", "total", "note"]
    assert frame.schema["total"] == pl.Decimal(12, 2)
    assert mock.fetch_pandas("SELECT nothing").shape == (0, 0)


def test_strict_scripted_errors_and_callables_as_for_execute_query() -> None:
    mock = scripted()
    with pytest.raises(UnscriptedQueryError, match=r"\[shop\] fetch_arrow: no result scripted"):
        mock.fetch_arrow("SELECT 1")
    mock.add_result("SELECT slow", mock.timeout_error(5))
    with pytest.raises(dbflow.QueryTimeoutError):
        mock.fetch_polars("SELECT slow")
    mock.add_result(re.compile("WHERE id = :id"), lambda sql, p: [{"id": p["id"]}])
    assert mock.fetch_arrow("SELECT id FROM t WHERE id = :id", {"id": 7}).to_pylist() == [{"id": 7}]
    call = mock.assert_called_with_sql("SELECT id FROM t WHERE id = :id", {"id": 7})
    assert call.method == "fetch_arrow" and not call.in_transaction
    mock.fail_on_call(4, mock.connection_error())  # the fourth call
    with pytest.raises(dbflow.DatabaseConnectionError):
        mock.fetch_pandas(ORDERS)


def test_parameters_are_validated_before_anything_is_recorded() -> None:
    mock = scripted()
    for method in ("fetch_arrow", "fetch_polars", "fetch_pandas", "iter_arrow"):
        with pytest.raises(ParameterError, match="no value named 'b'") as info:
            getattr(mock, method)("SELECT :a, :b", {"a": 1})
        # As the real managers name it: the operation that was called.
        assert str(info.value).startswith(f"[shop] {method} failed: the statement uses :b")
        assert info.value.operation == method
    with mock.transaction() as tx:
        for method in ("fetch_arrow", "fetch_polars", "fetch_pandas", "iter_arrow"):
            with pytest.raises(ParameterError) as info:
                getattr(tx, method)("SELECT :a, :b", {"a": 1})
            assert info.value.operation == f"transaction.{method}"
    assert [c.method for c in mock.calls] == ["begin", "commit"]


def test_named_mock_records_the_database_asked_for() -> None:
    mock = scripted()
    mock.named("warehouse").fetch_arrow(ORDERS)
    assert mock.calls[-1].database == "warehouse"


# ---- partitions ------------------------------------------------------------


@pytest.mark.parametrize("method", ["fetch_arrow", "fetch_polars", "fetch_pandas"])
def test_partition_arguments_are_validated_and_the_answer_is_unpartitioned(method: str) -> None:
    mock = scripted()
    whole = getattr(mock, method)(ORDERS)
    split = getattr(mock, method)(ORDERS, partition_on="id", partitions=4)
    assert len(split) == len(whole) == 3
    assert [c.method for c in mock.calls] == [method, method]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"partition_on": "id"}, "partition_on= needs partitions="),
        ({"partitions": 2}, "partitions= needs partition_on="),
        ({"partition_on": "id", "partitions": 0}, "partitions must be a positive int, not 0"),
        ({"partition_on": "id", "partitions": -3}, "partitions must be a positive int, not -3"),
        ({"partition_on": "id", "partitions": 2.0}, "partitions must be a positive int, not 2.0"),
        ({"partition_on": "id", "partitions": True}, "partitions must be a positive int, not True"),
        ({"partition_on": "", "partitions": 2}, "partition_on must be a column name"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ParameterError) as info:
            getattr(mock, method)(ORDERS, **kwargs)
        # str(exc) as the real managers' (src/error.rs Display).
        assert str(info.value).startswith(f"[shop] {method} failed: {message}"), kwargs
        assert info.value.operation == method and info.value.database == "shop"
    assert len(mock.calls) == 2  # the refused calls never ran


# ---- iter_arrow ------------------------------------------------------------


def test_iter_arrow_yields_batches_of_at_most_batch_rows() -> None:
    mock = MockDatabaseManager()
    mock.add_result("SELECT n FROM numbers", [{"n": n} for n in range(5)])
    batches = mock.iter_arrow("SELECT n FROM numbers", batch_rows=2)
    assert isinstance(batches, MockArrowBatches)
    assert batches.column_names == ["n"]
    assert batches.schema == pa.schema([("n", pa.int64())])
    got = list(batches)
    assert all(isinstance(b, pa.RecordBatch) for b in got)
    assert [b.num_rows for b in got] == [2, 2, 1]
    assert [n for b in got for n in b.column("n").to_pylist()] == [0, 1, 2, 3, 4]
    # The default batch size holds them all in one.
    assert [b.num_rows for b in mock.iter_arrow("SELECT n FROM numbers")] == [5]
    assert inspect.signature(mock.iter_arrow).parameters["batch_rows"].default == 65536
    assert [c.method for c in mock.calls] == ["iter_arrow", "iter_arrow"]


def test_iter_arrow_empty_close_and_bad_batch_rows() -> None:
    mock = MockDatabaseManager()
    mock.add_result("SELECT typed nothing", [], arrow_schema=SCHEMA)
    empty = mock.iter_arrow("SELECT typed nothing")
    assert list(empty) == [] and empty.schema == SCHEMA
    assert empty.column_names == ["id", "customer", "total", "note"]
    untyped = mock.iter_arrow("SELECT unscripted")
    assert list(untyped) == [] and untyped.column_names == []
    mock.add_result(ORDERS, ROWS)
    closing = mock.iter_arrow(ORDERS, batch_rows=1)
    assert next(closing).num_rows == 1
    closing.close()
    assert list(closing) == []
    with pytest.raises(ParameterError) as info:
        mock.iter_arrow(ORDERS, batch_rows=0)
    assert (
        str(info.value) == "[mock_db] iter_arrow failed: batch_rows must be a positive int, not 0"
    )
    assert info.value.operation == "iter_arrow"
    # batch_rows is a Rust usize in the real managers: the binding converts
    # it before dbflow sees it (a bool is its int).
    with pytest.raises(TypeError, match="'float' object cannot be interpreted as an integer"):
        mock.iter_arrow(ORDERS, batch_rows=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'str' object cannot be interpreted as an integer"):
        mock.iter_arrow(ORDERS, batch_rows="2")  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match="can't convert negative int to unsigned"):
        mock.iter_arrow(ORDERS, batch_rows=-1)
    with pytest.raises(OverflowError, match="int too big to convert"):
        mock.iter_arrow(ORDERS, batch_rows=2**64)
    assert [b.num_rows for b in mock.iter_arrow(ORDERS, batch_rows=True)] == [1, 1, 1]
    with mock.transaction() as tx:
        with pytest.raises(ParameterError) as info:
            tx.iter_arrow(ORDERS, batch_rows=0)
        assert str(info.value) == (
            "[mock_db] transaction.iter_arrow failed: batch_rows must be a positive int, not 0"
        )


def test_iter_arrow_is_an_arrow_c_stream_for_pyarrow_and_polars() -> None:
    mock = scripted(arrow_schema=SCHEMA)
    read = pa.RecordBatchReader.from_stream(mock.iter_arrow(ORDERS, batch_rows=2)).read_all()
    assert read.schema == SCHEMA and read.to_pylist() == ROWS
    frame = pl.DataFrame(mock.iter_arrow(ORDERS, batch_rows=2))
    assert frame.columns == ["id", "customer", "total", "note"]
    assert frame.schema["id"] == pl.Int32 and frame.schema["total"] == pl.Decimal(12, 2)
    assert frame["customer"].to_list() == ["Ada", "Grace", "Edsger"]
    # A stream takes the batches not yet iterated; the iterator is then spent.
    partial = mock.iter_arrow(ORDERS, batch_rows=1)
    assert next(partial).column("id").to_pylist() == [1]
    rest = pa.RecordBatchReader.from_stream(partial).read_all()
    assert rest.column("id").to_pylist() == [2, 3]
    assert list(partial) == []


# ---- fetch_polars, fetch_pandas --------------------------------------------


def test_fetch_polars() -> None:
    mock = scripted(arrow_schema=SCHEMA)
    frame = mock.fetch_polars(ORDERS)
    assert isinstance(frame, pl.DataFrame)
    assert frame.schema["id"] == pl.Int32 and frame.schema["note"] == pl.String
    assert frame["total"].to_list() == [decimal.Decimal("10.50"), decimal.Decimal("7.25"), None]
    assert frame.to_dicts() == ROWS
    assert mock.calls[-1].method == "fetch_polars"


def test_fetch_pandas_with_each_dtype_backend() -> None:
    mock = scripted(arrow_schema=SCHEMA)
    frame = mock.fetch_pandas(ORDERS)
    assert isinstance(frame, pd.DataFrame)
    assert str(frame["id"].dtype) == "Int32"
    assert isinstance(frame["customer"].dtype, pd.StringDtype)
    assert frame["total"].tolist()[:2] == [decimal.Decimal("10.50"), decimal.Decimal("7.25")]
    assert frame["note"].isna().tolist() == [True, False, True]
    arrow = mock.fetch_pandas(ORDERS, dtype_backend="pyarrow")
    assert all(isinstance(t, pd.ArrowDtype) for t in arrow.dtypes)
    assert arrow["total"].dtype == pd.ArrowDtype(pa.decimal128(12, 2))
    with pytest.raises(ParameterError, match="fetch_pandas: dtype_backend='numpy'"):
        mock.fetch_pandas(ORDERS, dtype_backend="numpy")
    assert [c.method for c in mock.calls] == ["fetch_pandas"] * 3


def test_a_missing_library_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    mock = scripted()
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(ImportError, match=r"fetch_polars needs polars.*dbflow\[polars\]"):
        mock.fetch_polars(ORDERS)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"fetch_pandas needs pandas.*dbflow\[pandas\]"):
        mock.fetch_pandas(ORDERS)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    for method in ("fetch_arrow", "iter_arrow"):
        with pytest.raises(ImportError, match=rf"{method} needs pyarrow.*dbflow\[arrow\]"):
            getattr(mock, method)(ORDERS)
    with pytest.raises(ImportError, match=r"bulk_insert needs pyarrow.*dbflow\[arrow\]"):
        mock.bulk_insert("orders", pa.table({"id": [1]}))


# ---- transactions ----------------------------------------------------------


def test_transactions_answer_arrow_and_record_it() -> None:
    mock = scripted(arrow_schema=SCHEMA)
    with mock.transaction() as tx:
        table = tx.fetch_arrow(ORDERS)
        batches = list(tx.iter_arrow(ORDERS, batch_rows=2))
        frame = tx.fetch_polars(ORDERS)
        pandas_frame = tx.fetch_pandas(ORDERS, dtype_backend="pyarrow")
    assert table.schema == SCHEMA and table.to_pylist() == ROWS
    assert [b.num_rows for b in batches] == [2, 1]
    assert frame.to_dicts() == ROWS
    assert pandas_frame["id"].dtype == pd.ArrowDtype(pa.int32())
    assert [c.method for c in mock.calls] == [
        "begin",
        "transaction.fetch_arrow",
        "transaction.iter_arrow",
        "transaction.fetch_polars",
        "transaction.fetch_pandas",
        "commit",
    ]
    assert all(c.in_transaction for c in mock.calls if c.sql)
    with pytest.raises(TypeError, match="partition_on"):
        with mock.transaction() as tx:
            tx.fetch_arrow(ORDERS, partition_on="id", partitions=2)  # type: ignore[call-arg]
    assert mock.calls[-1].method == "rollback"


def test_an_error_in_a_transaction_rolls_it_back() -> None:
    mock = scripted()
    mock.add_result("SELECT broken", dbflow.QueryError("boom", database="shop"))
    with pytest.raises(dbflow.QueryError):
        with mock.transaction() as tx:
            tx.fetch_arrow(ORDERS)
            tx.fetch_polars("SELECT broken")
    assert [c.method for c in mock.calls][-2:] == ["transaction.fetch_polars", "rollback"]


# ---- bulk_insert with Arrow data -------------------------------------------


def test_bulk_insert_records_arrow_data_as_dict_rows() -> None:
    mock = MockDatabaseManager()
    rows = [{"id": 1, "name": "Ada"}, {"id": 2, "name": None}]
    table = pa.Table.from_pylist(rows)
    sources: dict[str, Any] = {
        "pyarrow.Table": table,
        "pyarrow.RecordBatch": table.to_batches()[0],
        "pyarrow.RecordBatchReader": pa.RecordBatchReader.from_batches(
            table.schema, table.to_batches()
        ),
        "polars.DataFrame": pl.DataFrame(rows),
        "pandas.DataFrame": pd.DataFrame({"id": [1, 2], "name": ["Ada", None]}),
    }
    for label, source in sources.items():
        mock.reset()
        assert mock.bulk_insert("people", source) == 2, label
        call = mock.assert_called_with_sql("bulk_insert people", rows)
        assert call.method == "bulk_insert" and call.params == rows, label


def test_bulk_insert_from_iter_arrow_and_the_scripted_count() -> None:
    source = scripted(arrow_schema=SCHEMA)
    target = MockDatabaseManager("warehouse")
    assert target.bulk_insert("orders", source.iter_arrow(ORDERS, batch_rows=2)) == 3
    target.assert_called_with_sql("bulk_insert orders", ROWS)
    target.add_result("bulk_insert orders", 99)
    assert target.bulk_insert("orders", source.fetch_arrow(ORDERS)) == 99
    # Dict and tuple rows work as before.
    assert target.bulk_insert("t", [(1, "a")], columns=["id", "name"]) == 1
    assert target.calls[-1].params == [(1, "a")]


def test_bulk_insert_refuses_columns_with_arrow_data() -> None:
    mock = MockDatabaseManager("shop")
    message = (
        "[shop] bulk_insert failed: "
        "columns= is for rows given as tuples; Arrow data names its own columns"
    )
    for source in (pa.table({"id": [1]}), pl.DataFrame({"id": [1]})):
        with pytest.raises(ParameterError, match=re.escape(message)) as info:
            mock.bulk_insert("t", source, columns=["id"])
        assert info.value.operation == "bulk_insert" and info.value.database == "shop"
    assert mock.calls == []


# ---- async -----------------------------------------------------------------


def test_async_double_has_the_arrow_members() -> None:
    for name in ("fetch_arrow", "fetch_polars", "fetch_pandas", "bulk_insert"):
        assert inspect.iscoroutinefunction(getattr(AsyncMockDatabaseManager, name)), name
    assert not inspect.iscoroutinefunction(AsyncMockDatabaseManager.iter_arrow)
    sync_params = inspect.signature(MockDatabaseManager.fetch_pandas).parameters
    async_params = inspect.signature(AsyncMockDatabaseManager.fetch_pandas).parameters
    assert list(sync_params) == list(async_params)


def test_async_arrow_results() -> None:
    mock = scripted(arrow_schema=SCHEMA)
    mock.strict = False  # bulk_insert answers its row count

    async def flow_code() -> dict[str, Any]:
        async with dbflow.AsyncDatabaseManager("shop") as db:
            assert isinstance(db, AsyncMockDatabaseManager)
            batches = db.iter_arrow(ORDERS, batch_rows=2)
            assert isinstance(batches, AsyncMockArrowBatches)
            assert batches.column_names == ["id", "customer", "total", "note"]
            return {
                "table": await db.fetch_arrow(ORDERS, partition_on="id", partitions=2),
                "batches": [b async for b in batches],
                "polars": await db.fetch_polars(ORDERS),
                "pandas": await db.fetch_pandas(ORDERS, dtype_backend="pyarrow"),
                "stream": pl.DataFrame(db.iter_arrow(ORDERS)),
                "inserted": await db.bulk_insert("copy", db.iter_arrow(ORDERS)),
            }

    with patch_databases({"shop": mock}):
        got = asyncio.run(flow_code())
    assert got["table"].schema == SCHEMA and got["table"].to_pylist() == ROWS
    assert [b.num_rows for b in got["batches"]] == [2, 1]
    assert all(isinstance(b, pa.RecordBatch) for b in got["batches"])
    assert got["polars"].to_dicts() == ROWS == got["stream"].to_dicts()
    assert got["pandas"]["total"].dtype == pd.ArrowDtype(pa.decimal128(12, 2))
    assert got["inserted"] == 3
    mock.assert_called_with_sql("bulk_insert copy", ROWS)
    assert [c.method for c in mock.calls] == [
        "iter_arrow",
        "fetch_arrow",
        "fetch_polars",
        "fetch_pandas",
        "iter_arrow",
        "iter_arrow",
        "bulk_insert",
    ]


def test_async_errors_and_close() -> None:
    mock = scripted()
    adb = AsyncMockDatabaseManager(mock)

    async def run() -> None:
        with pytest.raises(
            ParameterError, match=r"\[shop\] fetch_arrow failed: partition_on= needs"
        ):
            await adb.fetch_arrow(ORDERS, partition_on="id")
        with pytest.raises(UnscriptedQueryError):
            await adb.fetch_polars("SELECT 1")
        with pytest.raises(ParameterError, match="columns= is for rows given as tuples"):
            await adb.bulk_insert("t", pa.table({"id": [1]}), columns=["id"])
        batches = adb.iter_arrow(ORDERS, batch_rows=1)
        assert (await batches.__anext__()).num_rows == 1
        await batches.aclose()
        assert [b async for b in batches] == []

    asyncio.run(run())


def test_async_transactions_answer_arrow() -> None:
    mock = scripted(arrow_schema=SCHEMA)
    adb = AsyncMockDatabaseManager(mock)

    async def run() -> list[Any]:
        async with adb.transaction() as tx:
            return [
                await tx.fetch_arrow(ORDERS),
                [b async for b in tx.iter_arrow(ORDERS, batch_rows=2)],
                await tx.fetch_polars(ORDERS),
                await tx.fetch_pandas(ORDERS),
                pa.RecordBatchReader.from_stream(tx.iter_arrow(ORDERS)).read_all(),
            ]

    table, batches, frame, pandas_frame, streamed = asyncio.run(run())
    assert table.schema == SCHEMA == streamed.schema
    assert [b.num_rows for b in batches] == [2, 1]
    assert frame.to_dicts() == ROWS
    assert str(pandas_frame["id"].dtype) == "Int32"
    assert [c.method for c in mock.calls] == [
        "begin",
        "transaction.fetch_arrow",
        "transaction.iter_arrow",
        "transaction.fetch_polars",
        "transaction.fetch_pandas",
        "transaction.iter_arrow",
        "commit",
    ]
