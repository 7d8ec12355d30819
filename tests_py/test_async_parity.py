"""The members AsyncDatabaseManager shares with DatabaseManager, against the
real PostgreSQL: ping, the query variants, metrics, the migration commands
and the plain readers; and the async mock answering the same members."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from projects import Project

import dbflow
from dbflow import AsyncDatabaseManager, ChecksumMismatchError, MigrationError
from dbflow._native import AsyncDatabaseManager as NativeAsyncDatabaseManager
from dbflow.testing import AsyncMockDatabaseManager, MockDatabaseManager


def manager(env, **settings: object) -> AsyncDatabaseManager:  # type: ignore[no-untyped-def]
    return AsyncDatabaseManager(env.database(**settings), config=env.config())


def test_native_awaitables_are_futures_so_the_wrappers_stay(env) -> None:  # type: ignore[no-untyped-def]
    """The reasons dbflow/__init__.py wraps the native methods: they return
    asyncio Futures, which create_task refuses, and need a running loop when
    called; the wrappers are coroutines, which make the call when they run."""
    name = env.database()
    native = NativeAsyncDatabaseManager(name, config=env.config())
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.run(native.ping())  # type: ignore[arg-type]
    assert asyncio.run(AsyncDatabaseManager(name, config=env.config()).ping()) is None

    async def main() -> None:
        future = native.ping()
        assert not inspect.iscoroutine(future)
        with pytest.raises(TypeError, match="coroutine"):
            task = asyncio.create_task(future)  # type: ignore[arg-type]
            await task
        await future
        db = AsyncDatabaseManager(name, config=env.config())
        assert await asyncio.create_task(db.ping()) is None
        rows = await asyncio.create_task(db.execute_query_with_retry("SELECT 1 AS one"))
        assert rows == [{"one": 1}]

    asyncio.run(main())


def test_ping(env, pg_url: str, pg_password: str) -> None:  # type: ignore[no-untyped-def]
    wrong = pg_url.replace(f":{pg_password}@", ":not-the-password@")
    assert wrong != pg_url

    async def main() -> None:
        async with manager(env) as db:
            assert await db.ping() is None
        async with manager(env, url=wrong, pool_timeout=5) as bad:
            with pytest.raises(dbflow.DatabaseConnectionError) as info:
                await bad.ping()
            assert "not-the-password" not in str(info.value)

    asyncio.run(main())


def test_execute_query_with_retry(env) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with manager(env) as db:
            got = await db.execute_query_with_retry(
                "SELECT :x AS x", {"x": 7}, attempts=3, min_delay=0, max_delay=0, idempotent=True
            )
            assert got == [{"x": 7}]
            # A statement error is not transient: raised at once, not retried.
            before = db.get_metrics()["retries"]
            with pytest.raises(dbflow.QueryError) as info:
                await db.execute_query_with_retry("SELECT 1 / 0", attempts=5, min_delay=2)
            assert "execute_query_with_retry" in str(info.value)
            assert "attempts" not in str(info.value)
            assert db.get_metrics()["retries"] == before
            # The arguments are validated once, as the sync manager does.
            with pytest.raises(dbflow.ParameterError, match="non-negative"):
                await db.execute_query_with_retry("SELECT 1", min_delay=-1)
            with pytest.raises(dbflow.ParameterError):
                await db.execute_query_with_retry("SELECT :missing")

    asyncio.run(main())


def test_execute_query_safe_both_ways(env) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with manager(env) as db:
            assert await db.execute_query_safe("SELECT :v AS v", {"v": "a"}) == [{"v": "a"}]
            got = await db.execute_query_safe("SELECT :v AS v", {"v": "b"}, False)
            assert got == [{"v": "b"}]
            with pytest.raises(dbflow.QueryError, match="execute_query_with_retry"):
                await db.execute_query_safe("SELECT * FROM no_such_table_here")
            with pytest.raises(dbflow.QueryError, match=r"execute_query\b failed"):
                await db.execute_query_safe("SELECT * FROM no_such_table_here", None, False)

    asyncio.run(main())


def test_execute_query_with_timing(env) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with manager(env) as db:
            done = await db.execute_query_with_timing(
                "SELECT n FROM generate_series(1, :k) AS n", {"k": 3}
            )
            assert done["status"] == "success"
            assert done["results"] == [{"n": 1}, {"n": 2}, {"n": 3}]
            assert done["row_count"] == 3
            assert isinstance(done["execution_time_ms"], float)
            assert done["execution_time_ms"] >= 0
            assert "error" not in done
            failed = await db.execute_query_with_timing("SELECT * FROM no_such_table_here")
            assert failed["status"] == "error"
            assert failed["error_type"] == "QueryError"
            assert "no_such_table_here" in failed["error"]
            assert (failed["results"], failed["row_count"]) == ([], 0)
            assert failed["execution_time_ms"] >= 0
            bad = await db.execute_query_with_timing("SELECT :missing")
            assert (bad["status"], bad["error_type"]) == ("error", "ParameterError")

    asyncio.run(main())


def test_get_metrics_counts_the_calls(env) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with manager(env) as db:
            start = db.get_metrics()
            assert start["database_name"] == db.database_name
            await db.execute_query("SELECT 1")
            await db.execute_query_with_retry("SELECT 1")
            await db.execute_query_with_timeout("SELECT 1", timeout=5)
            with pytest.raises(dbflow.QueryError):
                await db.execute_query("SELECT * FROM no_such_table_here")
            now = db.get_metrics()
            # Statements that ran count as queries (with their rows and
            # latency); the failed one counts as an error.
            assert now["queries"] == start["queries"] + 3
            assert now["rows_returned"] == start["rows_returned"] + 3
            assert now["query_latency_ms"]["count"] == start["query_latency_ms"]["count"] + 3
            assert now["errors_total"] == start["errors_total"] + 1
            assert now["errors"]["query"] == start["errors"]["query"] + 1

    asyncio.run(main())


def test_the_readers_match_the_sync_manager(env, pg_password: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = env.database(migration_artifact="false")
    (tmp_path / name).mkdir()
    cfg = env.config(flow_name="nightly")
    sync = dbflow.DatabaseManager(name, config=cfg, migrations_dir=tmp_path)
    db = AsyncDatabaseManager(name, config=cfg, migrations_dir=tmp_path)
    try:
        assert pg_password not in db.connection_string
        assert "***" in db.connection_string
        assert db.connection_string == sync.connection_string
        assert db.migrations_dir == sync.migrations_dir == tmp_path / name
        assert (db.database_name, db.database_type) == (name, "postgresql")
        assert (db.environment, db.flow_name, db.migration_artifact) == ("test", "nightly", False)
        assert pg_password not in repr(db)
        assert db.get_pool_status()["database_name"] == name
    finally:
        db.dispose()
        sync.dispose()


MIGRATIONS = {
    "V1__People.sql": "CREATE TABLE people (id int PRIMARY KEY, name varchar(50));\n",
    "V2__Phone.sql": "ALTER TABLE people ADD phone varchar(20);\n",
    "V3__Seed.sql": "INSERT INTO people (id, name) VALUES (1, 'Ada'), (2, 'Grace');\n",
    "U3__Seed.sql": "DELETE FROM people;\n",
    "U2__Phone.sql": "ALTER TABLE people DROP COLUMN phone;\n",
}


@pytest.mark.backends("postgresql")
def test_validate_repair_rollback_migrations(project: Project) -> None:
    project.write(MIGRATIONS)

    async def main() -> None:
        async with AsyncDatabaseManager(
            project.name, config=project.env.config(), migrations_dir=project.root
        ) as db:
            assert db.migrations_dir == project.dir
            assert (await db.run_migrations())["applied"] == ["V1", "V2", "V3"]
            assert await db.validate_migrations() is None
            (project.dir / "V2__Phone.sql").write_text("ALTER TABLE people ADD phone text;\n")
            with pytest.raises(ChecksumMismatchError, match=r"V2__Phone\.sql"):
                await db.validate_migrations()
            assert await db.repair_migrations() == {"removed_failed": 0, "realigned": 1}
            assert await db.validate_migrations(out_of_order=False) is None
            assert await db.rollback_migrations("V1") == ["V3", "V2"]
            status = await db.get_migration_status()
            assert status["current_version"] == "V1"
            assert status["pending_migrations"] == ["V2", "V3"]
            assert await db.execute_query("SELECT COUNT(*) AS n FROM people") == [{"n": 0}]
            with pytest.raises(MigrationError, match="U1"):
                await db.rollback_migrations(0)
            assert (await db.run_migrations())["applied"] == ["V2", "V3"]
            assert await db.execute_query("SELECT COUNT(*) AS n FROM people") == [{"n": 2}]

    asyncio.run(main())


def test_async_mock_answers_every_member() -> None:
    mock = MockDatabaseManager("SurveyHub", migrations_dir="/srv/migrations")
    mock.add_result("SELECT * FROM t", [{"id": 1}])
    db = AsyncMockDatabaseManager(mock)

    async def main() -> None:
        baseline = await db.baseline_migrations("5", "Existing schema")
        assert baseline == {"baseline_version": "V5", "description": "Existing schema"}
        assert (await db.get_migration_status())["current_version"] == "V5"
        assert await db.ping() is None
        assert await db.validate_migrations() is None
        assert await db.repair_migrations() == {"removed_failed": 0, "realigned": 0}
        with pytest.raises(MigrationError):
            await db.rollback_migrations("V1")
        assert await db.execute_query_with_retry("SELECT * FROM t", attempts=2) == [{"id": 1}]
        assert await db.execute_query_safe("SELECT * FROM t", None, False) == [{"id": 1}]
        timed = await db.execute_query_with_timing("SELECT * FROM t")
        assert (timed["status"], timed["results"]) == ("success", [{"id": 1}])
        assert [r async for r in db.iter_query("SELECT * FROM t", as_tuples=True)] == [(1,)]

    asyncio.run(main())
    assert [c.method for c in mock.calls if c.sql is not None] == [
        "execute_query_with_retry",
        "execute_query_safe",
        "execute_query_with_timing",
        "iter_query",
    ]
    assert {"baseline_migrations", "ping", "validate_migrations", "repair_migrations"} <= {
        c.method for c in mock.calls
    }
    assert db.get_metrics()["queries"] == 4
    assert db.connection_string == "mock://SurveyHub"
    assert db.migrations_dir == Path("/srv/migrations")
    assert (db.database_name, db.environment, db.migration_artifact) == ("SurveyHub", "test", False)
    db.dispose()
    assert mock.closed


def test_an_async_transaction_has_what_the_sync_one_has(env, backend, btable) -> None:  # type: ignore[no-untyped-def]
    """commit() and rollback() inside the block, savepoints that roll back
    alone, and `active`, on every backend."""
    db = AsyncDatabaseManager(env.database(backend=backend), config=env.config())
    count = f"SELECT COUNT(*) AS n FROM {btable}"

    async def main() -> None:
        await db.execute_query(backend.ddl(f"CREATE TABLE {btable} (v {{int}})"))
        tx = db.transaction()
        assert not tx.active
        async with tx:
            assert tx.active
            await tx.execute_query(f"INSERT INTO {btable} (v) VALUES (1)")
            async with tx.savepoint():
                await tx.execute_query(f"INSERT INTO {btable} (v) VALUES (2)")
            with pytest.raises(ZeroDivisionError):
                async with tx.savepoint():
                    await tx.execute_query(f"INSERT INTO {btable} (v) VALUES (3)")
                    raise ZeroDivisionError
            await tx.commit()
            assert not tx.active
            with pytest.raises(dbflow.TransactionError, match="not open"):
                await tx.execute_query(f"INSERT INTO {btable} (v) VALUES (4)")
        assert await db.execute_query(f"SELECT v FROM {btable} ORDER BY v") == [{"v": 1}, {"v": 2}]
        async with db.transaction() as tx:
            await tx.execute_query(f"INSERT INTO {btable} (v) VALUES (5)")
            await tx.rollback()
        assert await db.execute_query(count) == [{"n": 2}]
        assert db.get_pool_status()["checked_out"] == 0

    try:
        asyncio.run(main())
    finally:
        db.dispose()


def test_the_async_mock_transaction_records_what_it_is_asked() -> None:
    mock = AsyncMockDatabaseManager(MockDatabaseManager("m", strict=False))

    async def main() -> None:
        async with mock.transaction() as tx:
            assert tx.active
            async with tx.savepoint():
                await tx.execute_query("INSERT INTO t VALUES (1)")
            await tx.rollback()
            assert not tx.active

    asyncio.run(main())
    methods = [c.method for c in mock.calls]
    assert methods == [
        "begin",
        "savepoint",
        "transaction.execute_query",
        "release_savepoint",
        "rollback",
    ], methods
