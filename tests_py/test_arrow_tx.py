"""Arrow results inside transactions (sync and async) and on the
AsyncDatabaseManager, on every backend: a transaction's reads see its own
uncommitted rows, and its connection refuses other statements while an
iter_arrow stream holds it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from backends import Backend

import dbflow
from dbflow import AsyncDatabaseManager, ParameterError, TransactionError

pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds}s: {what}")
        time.sleep(0.02)


BUSY = r"transaction\.{op} failed: the transaction's connection is streaming an iter_arrow result"


def fill(backend: Backend, table: str, rows: int) -> str:
    """INSERT of ids 1..rows (value = id * 1.5), server-side."""
    if backend.name == "postgresql":
        return f"INSERT INTO {table} (id, v) SELECT n, n * 1.5 FROM generate_series(1, {rows}) n"
    return (
        f"INSERT INTO {table} (id, v) SELECT TOP ({rows}) "
        "ROW_NUMBER() OVER (ORDER BY (SELECT 1)), ROW_NUMBER() OVER (ORDER BY (SELECT 1)) * 1.5 "
        "FROM sys.all_objects a CROSS JOIN sys.all_objects b"
    )


@pytest.fixture
def ledger(bdb: dbflow.DatabaseManager, backend: Backend, btable: str) -> str:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}}, v {{numeric}})"))
    return btable


def ids(table: Any) -> list[int]:
    return sorted(table.column("id").to_pylist())


def test_transaction_reads_see_uncommitted_rows_and_streams_hold_the_connection(
    bdb: dbflow.DatabaseManager, backend: Backend, ledger: str
) -> None:
    sql = f"SELECT id, v FROM {ledger} ORDER BY id"
    with bdb.transaction() as tx:
        tx.execute_query(fill(backend, ledger, 1000))
        table = tx.fetch_arrow(sql)
        assert table.num_rows == 1000
        assert table.schema.types == [pa.int32(), pa.decimal128(12, 4)]
        assert table.column("v")[999].as_py() == Decimal("1500.0000")
        frame = tx.fetch_polars(sql)
        assert frame.height == 1000 and frame["id"].to_list() == list(range(1, 1001))
        pandas_frame = tx.fetch_pandas(sql, dtype_backend="pyarrow")
        assert pandas_frame["v"].dtype == pd.ArrowDtype(pa.decimal128(12, 4))

        stream = tx.iter_arrow(sql, batch_rows=10)
        assert stream.column_names == ["id", "v"]
        first = next(stream)
        assert first.column("id").to_pylist() == list(range(1, 11))
        # The connection is the stream's until it ends: other statements are
        # refused with the reason instead of waiting on it.
        with pytest.raises(TransactionError, match=BUSY.format(op="execute_query")):
            tx.execute_query("SELECT 1 AS one")
        with pytest.raises(TransactionError, match=BUSY.format(op="fetch_arrow")):
            tx.fetch_arrow("SELECT 1 AS one")
        with pytest.raises(TransactionError, match=BUSY.format(op="iter_arrow")):
            tx.iter_arrow("SELECT 1 AS one")
        rest = list(stream)
        assert all(b.num_rows == 10 for b in rest) and len(rest) == 99
        assert [i for b in rest for i in b.column("id").to_pylist()] == list(range(11, 1001))
        # Read to the end: the transaction goes on.
        tx.execute_query(f"INSERT INTO {ledger} (id, v) VALUES (:id, :v)", {"id": 0, "v": 2})
        assert tx.fetch_arrow(f"SELECT COUNT(*) AS n FROM {ledger}").to_pylist() == [{"n": 1001}]
        streamed = pa.RecordBatchReader.from_stream(tx.iter_arrow(sql, batch_rows=300))
        assert streamed.read_all().num_rows == 1001
        tx.commit()
    assert ids(bdb.fetch_arrow(sql)) == list(range(0, 1001))
    assert bdb.get_pool_status()["checked_out"] == 0


def test_a_rolled_back_transaction_read_its_rows_and_left_none(
    bdb: dbflow.DatabaseManager, backend: Backend, ledger: str
) -> None:
    sql = f"SELECT id, v FROM {ledger}"
    with pytest.raises(RuntimeError, match="undo"):
        with bdb.transaction() as tx:
            tx.execute_query(fill(backend, ledger, 5))
            assert ids(tx.fetch_arrow(sql)) == [1, 2, 3, 4, 5]
            assert sum(b.num_rows for b in tx.iter_arrow(sql, batch_rows=2)) == 5
            raise RuntimeError("undo")
    assert bdb.fetch_arrow(sql).num_rows == 0


def test_a_transaction_goes_on_after_its_stream_is_closed_early(
    bdb: dbflow.DatabaseManager, backend: Backend, ledger: str
) -> None:
    sql = f"SELECT id, v FROM {ledger} ORDER BY id"
    with bdb.transaction() as tx:
        tx.execute_query(fill(backend, ledger, 1000))
        stream = tx.iter_arrow(sql, batch_rows=10)
        assert next(stream).num_rows == 10
        stream.close()
        assert list(stream) == []
        # The stream's reader lets go of the connection once it sees the close.
        counted: list[Any] = []

        def free() -> bool:
            try:
                counted.extend(tx.execute_query(f"SELECT COUNT(*) AS n FROM {ledger}"))
            except TransactionError as e:
                assert "iter_arrow" in str(e)
                return False
            return True

        wait_until(free, "the transaction's connection back from the closed stream")
        assert counted == [{"n": 1000}]
        tx.execute_query(f"DELETE FROM {ledger} WHERE id > 10")
        assert tx.fetch_arrow("SELECT 5 AS five").to_pylist() == [{"five": 5}]
    assert ids(bdb.fetch_arrow(sql)) == list(range(1, 11))
    assert bdb.get_pool_status()["checked_out"] == 0


def test_a_transaction_statement_right_after_close_runs(
    bdb: dbflow.DatabaseManager, backend: Backend, ledger: str
) -> None:
    tx = bdb.transaction()
    tx.__enter__()
    try:
        tx.execute_query(fill(backend, ledger, 20_000))
        for _ in range(5):
            stream = tx.iter_arrow(f"SELECT id, v FROM {ledger}", batch_rows=10)
            next(stream)
            stream.close()
            assert tx.execute_query("SELECT 1 AS one") == [{"one": 1}]
    finally:
        end(tx)


def end(tx: dbflow.Transaction) -> None:
    """Roll back `tx` once its stream has let go of the connection (a test
    that fails must not leave a transaction holding locks the table's
    teardown would wait on)."""

    def rolled_back() -> bool:
        try:
            tx.rollback()
        except TransactionError as e:
            return "iter_arrow" not in str(e)
        return True

    if tx.active:
        wait_until(rolled_back, "the transaction rolled back")


def test_an_exception_while_a_transaction_streams_rolls_it_back(
    bdb: dbflow.DatabaseManager, backend: Backend, ledger: str
) -> None:
    tx = bdb.transaction()
    stream = None
    try:
        with pytest.raises(ValueError, match="stop here"):
            with tx:
                tx.execute_query(fill(backend, ledger, 1000))
                stream = tx.iter_arrow(f"SELECT id FROM {ledger}", batch_rows=10)
                next(stream)
                raise ValueError("stop here")
        assert bdb.get_pool_status()["checked_out"] == 0
        assert bdb.fetch_arrow(f"SELECT COUNT(*) AS n FROM {ledger}").to_pylist() == [{"n": 0}]
    finally:
        if stream is not None:
            stream.close()
        end(tx)


# ---- AsyncDatabaseManager ----------------------------------------------------


@pytest.fixture
def adb_name(env, backend: Backend) -> str:  # type: ignore[no-untyped-def]
    return str(env.database(backend=backend, pool_release_grace=0))


@pytest.fixture
def aconfig(env) -> Iterator[dbflow.ConfigManager]:  # type: ignore[no-untyped-def]
    yield env.config()


def test_async_manager_arrow_reads(
    adb_name: str, aconfig: dbflow.ConfigManager, backend: Backend, ledger: str
) -> None:
    sql = f"SELECT id, v FROM {ledger} WHERE id IS NULL OR id <= :top ORDER BY id"

    async def main() -> dict[str, Any]:
        async with AsyncDatabaseManager(adb_name, config=aconfig) as adb:
            await adb.execute_query(fill(backend, ledger, 2000))
            await adb.execute_query(f"INSERT INTO {ledger} (id, v) VALUES (NULL, NULL)")
            out: dict[str, Any] = {
                "table": await adb.fetch_arrow(sql, {"top": 1500}),
                "split": await adb.fetch_arrow(sql, {"top": 1500}, partition_on="id", partitions=3),
                "polars": await adb.fetch_polars(sql, {"top": 1500}),
                "pandas": await adb.fetch_pandas(sql, {"top": 1500}),
            }
            batches = []
            async for batch in adb.iter_arrow(sql, {"top": 1500}, batch_rows=400):
                batches.append(batch)
            out["batches"] = batches
            stream = adb.iter_arrow(sql, {"top": 1500}, batch_rows=100)
            out["first"] = await stream.__anext__()
            await stream.aclose()
            out["after_close"] = [b async for b in stream]
            with pytest.raises(ParameterError, match=r"fetch_arrow failed: partition_on="):
                await adb.fetch_arrow(sql, {"top": 1}, partition_on="id")
            with pytest.raises(ParameterError, match=r"iter_arrow failed: batch_rows"):
                adb.iter_arrow(sql, {"top": 1}, batch_rows=0)
            deadline = asyncio.get_running_loop().time() + 10
            while adb.get_pool_status()["checked_out"] and (
                asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.02)
            out["status"] = adb.get_pool_status()
            out["again"] = await adb.fetch_arrow("SELECT 3 AS three")
            return out

    got = asyncio.run(main())
    table = got["table"]
    assert table.num_rows == 1501 and table.schema.types == [pa.int32(), pa.decimal128(12, 4)]
    assert table.column("id").to_pylist()[:2] in ([None, 1], [1, 2])  # NULLs sort by backend
    assert sorted(i for i in table.column("id").to_pylist() if i is not None) == list(
        range(1, 1501)
    )
    key = lambda r: (r["id"] is not None, r["id"] or 0)  # noqa: E731
    assert sorted(got["split"].to_pylist(), key=key) == sorted(table.to_pylist(), key=key)
    assert got["polars"].height == 1501 and got["polars"]["v"].null_count() == 1
    assert str(got["pandas"]["id"].dtype) == "Int32"
    assert [b.num_rows for b in got["batches"]] == [400, 400, 400, 301]
    assert all(isinstance(b, pa.RecordBatch) for b in got["batches"])
    assert got["first"].num_rows == 100
    assert got["after_close"] == []
    assert got["status"]["checked_out"] == 0
    assert got["again"].to_pylist() == [{"three": 3}]


def test_async_transactions(
    adb_name: str, aconfig: dbflow.ConfigManager, backend: Backend, ledger: str
) -> None:
    sql = f"SELECT id, v FROM {ledger} ORDER BY id"

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with AsyncDatabaseManager(adb_name, config=aconfig) as adb:
            async with adb.transaction() as tx:
                await tx.execute_query(fill(backend, ledger, 500))
                out["table"] = await tx.fetch_arrow(sql)
                out["polars"] = await tx.fetch_polars(sql)
                out["pandas"] = await tx.fetch_pandas(sql)
                stream = tx.iter_arrow(sql, batch_rows=50)
                first = await stream.__anext__()
                with pytest.raises(TransactionError, match=BUSY.format(op="execute_query")):
                    await tx.execute_query("SELECT 1 AS one")
                with pytest.raises(TransactionError, match=BUSY.format(op="fetch_polars")):
                    await tx.fetch_polars("SELECT 1 AS one")
                out["streamed"] = [first] + [b async for b in stream]
                await tx.execute_query(f"DELETE FROM {ledger} WHERE id > 400")
                out["inside"] = await tx.fetch_arrow(f"SELECT COUNT(*) AS n FROM {ledger}")
            out["after"] = await adb.fetch_arrow(f"SELECT COUNT(*) AS n FROM {ledger}")
            with pytest.raises(ZeroDivisionError):
                async with adb.transaction() as tx:
                    await tx.execute_query(f"DELETE FROM {ledger}")
                    out["emptied"] = await tx.fetch_arrow(sql)
                    raise ZeroDivisionError
            out["kept"] = await adb.fetch_arrow(f"SELECT COUNT(*) AS n FROM {ledger}")
        return out

    got = asyncio.run(main())
    assert got["table"].column("id").to_pylist() == list(range(1, 501))
    assert got["polars"]["v"].to_list()[:2] == [Decimal("1.5000"), Decimal("3.0000")]
    assert got["pandas"]["v"].tolist()[-1] == Decimal("750.0000")
    assert [b.num_rows for b in got["streamed"]] == [50] * 10
    assert [i for b in got["streamed"] for i in b.column("id").to_pylist()] == list(range(1, 501))
    assert got["inside"].to_pylist() == [{"n": 400}]
    assert got["after"].to_pylist() == [{"n": 400}]
    assert got["emptied"].num_rows == 0 and got["emptied"].column_names == ["id", "v"]
    assert got["kept"].to_pylist() == [{"n": 400}]


@pytest.mark.backends("postgresql")
def test_async_arrow_reads_are_coroutines(adb_name: str, aconfig: dbflow.ConfigManager) -> None:
    adb = AsyncDatabaseManager(adb_name, config=aconfig)
    try:
        assert asyncio.run(adb.fetch_arrow("SELECT 1 AS one")).to_pylist() == [{"one": 1}]

        async def main() -> Any:
            return await asyncio.create_task(adb.fetch_polars("SELECT 2 AS two"))

        assert asyncio.run(main()).to_dicts() == [{"two": 2}]
    finally:
        adb.dispose()
