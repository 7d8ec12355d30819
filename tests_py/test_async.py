"""AsyncDatabaseManager: the same operations on asyncio, without blocking
the event loop, with cancellation that never leaves a bad connection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dbflow
from dbflow import AsyncDatabaseManager


def manager(env, **settings: object) -> AsyncDatabaseManager:  # type: ignore[no-untyped-def]
    name = env.database(**settings)
    return AsyncDatabaseManager(name, config=env.config())


def test_the_operations(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "m"
    name = env.database(auto_migrate="off")
    (root / name).mkdir(parents=True)
    table = f"aio_{name}"
    (root / name / "V1__Table.sql").write_text(
        f"CREATE TABLE {table} (id int PRIMARY KEY, v text);\n"
    )
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"sv_{name}_{int(time.time() * 1000)}")

    async def main() -> None:
        async with AsyncDatabaseManager(name, config=env.config(), migrations_dir=root) as db:
            assert (await db.run_migrations())["current_version"] == "V1"
            assert await db.execute_query("SELECT :x AS x", {"x": 1}) == [{"x": 1}]
            assert await db.execute_query("SELECT :x AS x", {"x": 1}, as_tuples=True) == [(1,)]
            assert (
                await db.execute_many(
                    f"INSERT INTO {table} VALUES (:id, :v)", [{"id": 1, "v": "a"}]
                )
                == 1
            )
            assert (
                await db.bulk_insert(table, [(i, "b") for i in range(2, 102)], columns=["id", "v"])
                == 100
            )
            async with db.transaction() as tx:
                await tx.execute_query(
                    f"INSERT INTO {table} VALUES (:id, :v)", {"id": 500, "v": "tx"}
                )
            with pytest.raises(RuntimeError):
                async with db.transaction() as tx:
                    await tx.execute_query(
                        f"INSERT INTO {table} VALUES (:id, :v)", {"id": 501, "v": "no"}
                    )
                    raise RuntimeError
            ids = [
                row["id"]
                async for row in db.iter_query(f"SELECT id FROM {table} ORDER BY id", batch_size=30)
            ]
            assert ids == [*range(1, 102), 500]
            results = await db.execute_transaction([f"SELECT count(*) AS n FROM {table}"])
            assert results == [[{"n": 102}]]
            assert (await db.health_check())["status"] == "healthy"
            with pytest.raises(dbflow.IntegrityError):
                await db.execute_query(f"INSERT INTO {table} VALUES (1, 'dup')")
            with pytest.raises(dbflow.ParameterError):
                await db.execute_query("SELECT :missing")
            await db.execute_query(f"DROP TABLE {table}")

    asyncio.run(main())


def test_long_loads_from_generators_all_or_nothing(env) -> None:  # type: ignore[no-untyped-def]
    """The async manager hands rows to the running load as it converts them:
    everything arrives; a bad row or the rows' own exception late in the
    load writes nothing, and the exception is the caller's, unchanged."""
    n = 5000
    table = f"aio_long_{env.database()}"

    class RanDry(Exception):
        pass

    def rows(bad_at: int | None = None, raise_at: int | None = None):  # type: ignore[no-untyped-def]
        for i in range(n):
            if i == raise_at:
                raise RanDry("no more rows")
            yield {"id": i, "v": object() if i == bad_at else f"v{i}"}

    async def main() -> None:
        async with manager(env) as db:
            await db.execute_query(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
            insert = f"INSERT INTO {table} (id, v) VALUES (:id, :v)"
            try:
                for load in (
                    lambda r: db.bulk_insert(table, r),
                    lambda r: db.execute_many(insert, r),
                ):
                    with pytest.raises(dbflow.ParameterError, match=f"row {n - 3}"):
                        await load(rows(bad_at=n - 3))
                    with pytest.raises(RanDry, match="no more rows"):
                        await load(rows(raise_at=n - 3))
                    assert await db.execute_query(f"SELECT COUNT(*) AS n FROM {table}") == [
                        {"n": 0}
                    ]
                    assert await load(rows()) == n
                    got = await db.execute_query(
                        f"SELECT COUNT(*) AS n, SUM(id) AS s, MAX(v) AS top FROM {table}"
                    )
                    assert got == [{"n": n, "s": n * (n - 1) // 2, "top": "v999"}]
                    await db.execute_query(f"DELETE FROM {table}")
                await db.bulk_insert(table, rows())
                sql = f"SELECT id, v, id AS again FROM {table} WHERE id < :n ORDER BY id"
                streamed = [r async for r in db.iter_query(sql, {"n": 600}, 128, as_tuples=True)]
                assert streamed == [(i, f"v{i}", i) for i in range(600)]
                assert db.get_pool_status()["checked_out"] == 0
            finally:
                await db.execute_query(f"DROP TABLE {table}")

    asyncio.run(main())


def test_hundred_coroutines_without_blocking_the_loop(env) -> None:  # type: ignore[no-untyped-def]
    """Deterministic, not timed: every query waits on the server for a lock
    that only the event loop itself can release, after it has seen the
    whole pool (5 + 10) waiting. A call that blocked the loop would never
    let it get there; the server's statement timeout ends such a run with
    an error instead of a hang."""
    db = manager(env, pool_size=5, max_overflow=10, query_timeout=60)
    holder = manager(env, pool_size=1, max_overflow=0)
    key = 7_700_000 + os.getpid()

    async def main() -> list[int]:
        await holder.execute_query("SELECT pg_advisory_lock(:k)", {"k": key})
        queries = asyncio.gather(
            *(
                db.execute_query(
                    "SELECT :i AS i FROM (SELECT pg_advisory_xact_lock_shared(:k)) AS l",
                    {"i": i, "k": key},
                )
                for i in range(100)
            )
        )
        while db.get_pool_status()["checked_out"] < 15:
            await asyncio.sleep(0.005)
        assert not queries.done()
        assert db.get_pool_status()["checked_out"] == 15
        await holder.execute_query("SELECT pg_advisory_unlock(:k)", {"k": key})
        rows = await queries
        return [r[0]["i"] for r in rows]

    try:
        assert asyncio.run(main()) == list(range(100))
    finally:
        db.dispose()
        holder.dispose()


def test_cancellation_discards_the_connection(env, admin) -> None:  # type: ignore[no-untyped-def]
    db = manager(env, pool_size=1, max_overflow=0)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(db.execute_query("SELECT pg_sleep(3)"), 0.3)
        await asyncio.sleep(0.2)
        assert db.get_pool_status()["checked_out"] == 0
        assert await db.execute_query("SELECT 1 AS ok") == [{"ok": 1}]

    try:
        asyncio.run(main())
    finally:
        db.dispose()


def test_no_noise_when_the_loop_ends(env) -> None:  # type: ignore[no-untyped-def]
    name = env.database()
    code = textwrap.dedent(
        f"""
        import asyncio, dbflow
        cfg = dbflow.ConfigManager("test", envs_dir={str(env.root)!r})
        async def main():
            db = dbflow.AsyncDatabaseManager({name!r}, config=cfg)
            await db.execute_query("SELECT 1")
            task = asyncio.create_task(db.execute_query("SELECT pg_sleep(2)"))
            await asyncio.sleep(0.1)
            task.cancel()
        asyncio.run(main())
        """
    )
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
