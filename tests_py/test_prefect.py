"""dbflow inside Prefect: the run-logger bridge, pools shared by mapped and
async tasks, the health tasks and the DatabaseCredentials block."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

prefect = pytest.importorskip("prefect", reason="Prefect is installed by the test command")

from prefect import flow, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

import dbflow  # noqa: E402
from dbflow.prefect import (  # noqa: E402
    DatabaseCredentials,
    database_health_check,
    validate_database_prerequisites,
)


@pytest.fixture(scope="module", autouse=True)
def prefect_backend() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def run_logs(flow_run_id: Any) -> list[str]:
    """The log lines Prefect stored for a flow run (its tasks included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            return [entry.message for entry in logs]

    return asyncio.run(read())


def test_dbflow_events_reach_the_run_logs(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "m"
    name = env.database(auto_migrate="off")
    (root / name).mkdir(parents=True)
    (root / name / "V1__Bridge_check.sql").write_text("SELECT 1;\n")
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"sv_{uuid.uuid4().hex[:12]}")
    config = env.config()

    @task
    def migrate() -> dict[str, Any]:
        with dbflow.DatabaseManager(name, config=config, migrations_dir=root) as db:
            return db.run_migrations()

    @flow
    def bridged() -> Any:
        assert migrate()["applied"] == ["V1"]
        from prefect.runtime import flow_run

        return flow_run.id

    flow_run_id = bridged()
    logs = run_logs(flow_run_id)
    assert any("applying migration" in line and "V1__Bridge_check.sql" in line for line in logs), (
        logs
    )


def test_events_on_runtime_threads_reach_the_run_that_caused_them(
    env, admin, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Awaitables and the iter_query producer run on dbflow's runtime threads;
    their events still land in the logs of the flow run that started them."""
    root = tmp_path / "m"
    name = env.database(auto_migrate="off", pool_size=1, max_overflow=0)
    (root / name).mkdir(parents=True)
    (root / name / "V1__Async_bridge.sql").write_text("SELECT 1;\n")
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"sv_{uuid.uuid4().hex[:12]}")
    config = env.config()

    @task
    async def migrate() -> dict[str, Any]:
        async with dbflow.AsyncDatabaseManager(name, config=config, migrations_dir=root) as db:
            return await db.run_migrations()

    @flow
    async def async_bridged() -> Any:
        assert (await migrate())["applied"] == ["V1"]
        from prefect.runtime import flow_run

        return flow_run.id

    logs = run_logs(asyncio.run(async_bridged()))
    assert any("applying migration" in line and "V1__Async_bridge.sql" in line for line in logs), (
        logs
    )

    # The iter_query producer checks a connection out on a runtime thread:
    # make its checkout find the pooled connection closed by the server.
    db = dbflow.DatabaseManager(name, config=config)
    pid = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
    admin.execute_query("SELECT pg_terminate_backend(:pid)", {"pid": pid})
    time.sleep(0.2)  # the backend exits and closes its socket

    @flow
    def streamed() -> Any:
        assert [r["n"] for r in db.iter_query("SELECT generate_series(1, 3) AS n")] == [1, 2, 3]
        from prefect.runtime import flow_run

        return flow_run.id

    try:
        logs = run_logs(streamed())
    finally:
        db.dispose()
    assert any("the server closed an idle connection" in line for line in logs), logs


def test_server_messages_reach_the_run_log_once(env) -> None:  # type: ignore[no-untyped-def]
    """A procedure's RAISE NOTICE lands in the run's log, once, from a sync
    task and from an async one, and in the ProcedureResult too."""
    name = env.database(pool_release_grace=0)
    config = env.config()
    proc = f"progress_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with dbflow.DatabaseManager(name, config=config) as db:
        db.execute_query(
            f"CREATE PROCEDURE {proc}(step text) LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE NOTICE 'import step % done', step; END $$"
        )

    @task
    def sync_step() -> list[str]:
        with dbflow.DatabaseManager(name, config=config) as db:
            return db.call_procedure(proc, {"step": "sync-one"}).messages

    @task
    async def async_step() -> list[str]:
        async with dbflow.AsyncDatabaseManager(name, config=config) as db:
            return (await db.call_procedure(proc, {"step": "async-two"})).messages

    @flow
    async def steps() -> Any:
        assert sync_step() == ["import step sync-one done"]
        assert await async_step() == ["import step async-two done"]
        from prefect.runtime import flow_run

        return flow_run.id

    try:
        logs = run_logs(asyncio.run(steps()))
    finally:
        with dbflow.DatabaseManager(name, config=config) as db:
            db.execute_query(f"DROP PROCEDURE {proc}")
    for step in ("sync-one", "async-two"):
        lines = [line for line in logs if f"import step {step} done" in line]
        assert lines == [f"[{name}] import step {step} done"], logs


def test_outside_a_run_events_go_to_the_dbflow_logger(env, caplog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="dbflow")
    root = tmp_path / "m"
    name = env.database(auto_migrate="off")
    (root / name).mkdir(parents=True)
    (root / name / "V1__Outside.sql").write_text("SELECT 1;\n")
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"sv_{uuid.uuid4().hex[:12]}")
    errors: list[BaseException] = []

    def in_a_plain_thread() -> None:
        try:
            with dbflow.DatabaseManager(name, config=env.config(), migrations_dir=root) as db:
                db.run_migrations()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=in_a_plain_thread)
    t.start()
    t.join(30)
    assert not errors
    assert any("V1__Outside.sql" in r.getMessage() for r in caplog.records if r.name == "dbflow")


def test_mapped_tasks_share_one_pool_within_its_limit(env, server_connections) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2, max_overflow=2, pool_timeout=30)
    config = env.config()
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server_connections(name))
            time.sleep(0.02)

    @task
    def lookup(i: int) -> int:
        # The original design's pattern: a manager per mapped task.
        with dbflow.DatabaseManager(name, config=config) as db:
            return int(db.execute_query("SELECT :i AS i, pg_sleep(0.05)", {"i": i})[0]["i"])

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def fan_out() -> list[int]:
        return [f.result() for f in lookup.map(list(range(32)))]

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        assert fan_out() == list(range(32))
    finally:
        done.set()
        sampler.join(5)
    assert 2 <= peak <= 4, f"peak {peak} sessions; limit pool_size + max_overflow = 4"


def test_async_tasks_use_the_same_pool(env) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2, max_overflow=0)
    config = env.config()

    @task
    async def lookup(i: int) -> int:
        with dbflow.DatabaseManager(name, config=config) as db:
            return int(db.execute_query("SELECT :i AS i", {"i": i})[0]["i"])

    @flow
    async def async_flow() -> list[int]:
        return list(await asyncio.gather(*(lookup(i) for i in range(6))))

    assert asyncio.run(async_flow()) == list(range(6))
    probe = dbflow.DatabaseManager(name, config=config)
    assert probe.get_pool_status()["connections_opened"] <= 2
    probe.dispose()


def test_async_manager_in_async_flows_and_tasks(env, server_connections) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2, max_overflow=1)
    config = env.config()
    env_table = f"async_flow_{uuid.uuid4().hex[:8]}"
    peak = 0

    @task
    async def write(i: int) -> int:
        async with dbflow.AsyncDatabaseManager(name, config=config) as db:
            async with db.transaction() as tx:
                await tx.execute_query(f"INSERT INTO {env_table} (id) VALUES (:i)", {"i": i})
                await tx.execute_query("SELECT pg_sleep(0.05)")
            return i

    @flow
    async def async_flow() -> tuple[list[int], int]:
        nonlocal peak
        async with dbflow.AsyncDatabaseManager(name, config=config) as db:
            await db.execute_query(f"CREATE TABLE {env_table} (id int PRIMARY KEY)")
            writes = asyncio.gather(*(write(i) for i in range(12)))
            while not writes.done():
                peak = max(peak, server_connections(name))
                await asyncio.sleep(0.01)
            done = list(await writes)
            count = await db.execute_query(f"SELECT count(*) AS n FROM {env_table}")
            await db.execute_query(f"DROP TABLE {env_table}")
            return done, int(count[0]["n"])

    done, count = asyncio.run(async_flow())
    assert sorted(done) == list(range(12)) and count == 12
    assert 1 <= peak <= 3, f"{peak} sessions; pool_size + max_overflow is 3"


def test_health_tasks_have_the_original_shapes(env) -> None:  # type: ignore[no-untyped-def]
    good = env.database("prefect_good")
    env.set("PREFECT_DOWN_CONNECTION_STRING", "postgresql://u:p@127.0.0.1:1/x")
    os.environ["DBFLOW_ENVS_DIR"] = str(env.root)
    os.environ["DBFLOW_ENVIRONMENT"] = "test"
    try:

        @flow
        def checks() -> tuple[dict[str, Any], bool, bool]:
            report = database_health_check([good, "prefect_down"], "rpa3")
            ok = validate_database_prerequisites([good], "rpa3")
            not_ok = validate_database_prerequisites(["prefect_down"], "rpa3")
            return report, ok, not_ok

        report, ok, not_ok = checks()
    finally:
        del os.environ["DBFLOW_ENVS_DIR"], os.environ["DBFLOW_ENVIRONMENT"]
        dbflow.dispose_all()
    assert report["flow_name"] == "rpa3" and report["overall_status"] == "degraded"
    assert set(report["databases"]) == {good, "prefect_down"}
    assert report["databases"][good]["status"] == "healthy"
    assert report["timestamp"]
    assert ok is True and not_ok is False


def test_database_credentials_block(pg_url: str, env) -> None:  # type: ignore[no-untyped-def]
    block = DatabaseCredentials(connection_string=pg_url, pool_size=2, max_overflow=1)
    block.save("dbflow-test-credentials", overwrite=True)
    loaded = DatabaseCredentials.load("dbflow-test-credentials")
    secret = pg_url.split(":")[2].split("@")[0]
    assert secret not in repr(loaded)
    db = dbflow.DatabaseManager("blockdb", config=env.config(), credentials=loaded)
    try:
        assert db.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
        status = db.get_pool_status()
        assert (status["pool_size"], status["max_overflow"]) == (2, 1)
        assert secret not in repr(db)
    finally:
        db.dispose()


def read_artifacts(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            return list(
                await client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                    )
                )
            )

    return asyncio.run(read())


def test_health_and_migrations_publish_artifacts(env, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The health task reads the configuration as flows do: from the environment.
    monkeypatch.setenv("DBFLOW_ENVIRONMENT", "test")
    monkeypatch.setenv("DBFLOW_ENVS_DIR", str(env.root))
    name = env.database(auto_migrate="off")
    root = tmp_path / "m"
    (root / name).mkdir(parents=True)
    table = f"art_{uuid.uuid4().hex[:10]}"
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"sv_{table}")
    (root / name / "V1__Art.sql").write_text(f"CREATE TABLE {table} (id int);\n")
    (root / name / "V2__Art_row.sql").write_text(f"INSERT INTO {table} VALUES (1);\n")
    config = env.config()

    @flow
    def with_artifacts() -> Any:
        with dbflow.DatabaseManager(name, config=config, migrations_dir=root) as db:
            db.run_migrations()
        database_health_check([name], "artifact-flow")
        from prefect.runtime import flow_run

        return flow_run.id

    try:
        run_id = with_artifacts()
        artifacts = {a.key: a for a in read_artifacts(run_id)}
        migrations = artifacts[f"dbflow-migrations-{name}"]
        assert migrations.type == "markdown"
        assert (
            "| V1 | V1__Art.sql |" in migrations.data
            and "| V2 | V2__Art_row.sql |" in migrations.data
        )
        assert "Now at **V2**" in migrations.data
        health = artifacts["dbflow-health-artifact-flow"]
        assert health.type == "table"
        rows = json.loads(health.data) if isinstance(health.data, str) else health.data
        assert rows[0]["database"] == name and rows[0]["status"] == "healthy"
        assert rows[0]["type"] == "postgresql"
        assert rows[0]["pending_migrations"] == "none"
    finally:
        with dbflow.DatabaseManager(name, config=config) as db:
            db.execute_query(f"DROP TABLE IF EXISTS {table}")
            db.execute_query(f"DROP TABLE IF EXISTS sv_{table}")


def test_migration_artifact_can_be_turned_off(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = env.database(auto_migrate="off", migration_artifact="false")
    root = tmp_path / "m"
    (root / name).mkdir(parents=True)
    table = f"art_{uuid.uuid4().hex[:10]}"
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"sv_{table}")
    (root / name / "V1__Art.sql").write_text(f"CREATE TABLE {table} (id int);\n")
    config = env.config()

    @flow
    def quiet() -> Any:
        with dbflow.DatabaseManager(name, config=config, migrations_dir=root) as db:
            assert db.run_migrations()["applied"] == ["V1"]
        from prefect.runtime import flow_run

        return flow_run.id

    try:
        assert read_artifacts(quiet()) == []
    finally:
        with dbflow.DatabaseManager(name, config=config) as db:
            db.execute_query(f"DROP TABLE IF EXISTS {table}")
            db.execute_query(f"DROP TABLE IF EXISTS sv_{table}")


# ---- DatabaseCredentials as Prefect's DatabaseBlock ---------------------------


@pytest.fixture
def block(pg_url: str) -> Iterator[DatabaseCredentials]:
    credentials = DatabaseCredentials(connection_string=pg_url, database_name="dbblock")
    yield credentials
    credentials.close()


def test_a_flow_written_for_sqlalchemy_connector_runs_on_the_block(pg_url: str) -> None:
    """prefect-recipes' SqlAlchemyConnector flow, with the block swapped."""
    DatabaseCredentials(connection_string=pg_url, database_name="dbblock").save(
        "dbflow-dbblock", overwrite=True
    )
    table = f"customers_{uuid.uuid4().hex[:8]}"

    @task
    def setup_table(block_name: str) -> None:
        with DatabaseCredentials.load(block_name) as connector:
            connector.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (name varchar, address varchar);"
            )
            connector.execute(
                f"INSERT INTO {table} (name, address) VALUES (:name, :address);",
                parameters={"name": "Marvin", "address": "Highway 42"},
            )
            connector.execute_many(
                f"INSERT INTO {table} (name, address) VALUES (:name, :address);",
                seq_of_parameters=[
                    {"name": "Ford", "address": "Highway 42"},
                    {"name": "Unknown", "address": "Highway 42"},
                ],
            )

    @task
    def fetch_data(block_name: str) -> list[Any]:
        all_rows = []
        with DatabaseCredentials.load(block_name) as connector:
            while True:
                new_rows = connector.fetch_many(f"SELECT * FROM {table}", size=2)
                if len(new_rows) == 0:
                    break
                all_rows.append(new_rows)
        return all_rows

    @flow
    def sqlalchemy_flow(block_name: str) -> list[Any]:
        setup_table(block_name)
        return fetch_data(block_name)

    try:
        pages = sqlalchemy_flow("dbflow-dbblock")
        assert [len(p) for p in pages] == [2, 1]
        assert sorted(r[0] for p in pages for r in p) == ["Ford", "Marvin", "Unknown"]
    finally:
        with DatabaseCredentials.load("dbflow-dbblock") as connector:
            connector.execute(f"DROP TABLE IF EXISTS {table}")


def test_block_paging_continues_then_never_serves_a_stale_result(block, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    table = f"paging_{uuid.uuid4().hex[:8]}"
    block.execute(f"CREATE TABLE {table} (n int)")
    try:
        block.execute_many(f"INSERT INTO {table} VALUES (:n)", [{"n": i} for i in range(1, 5)])
        query = f"SELECT n FROM {table} ORDER BY n"
        assert block.fetch_one(query) == (1,)
        assert block.fetch_many(query, size=2) == [(2,), (3,)]
        # The data changes while the result is open: it continues as it was read.
        block.execute(f"INSERT INTO {table} VALUES (5)")
        assert block.fetch_many(query, size=10) == [(4,)]
        assert block.fetch_many(query, size=10) == []  # exhausted: closed
        # The next call runs the statement again and sees the change.
        assert block.fetch_many(query, size=10) == [(1,), (2,), (3,), (4,), (5,)]
        assert block.fetch_one(query) is None
        assert block.fetch_one(query) == (1,)
        block.reset_cursors()
        assert block.fetch_one(query) == (1,)
        # Different parameters are a different result.
        ranged = f"SELECT n FROM {table} WHERE n > :above ORDER BY n"
        assert block.fetch_one(ranged, {"above": 3}) == (4,)
        assert block.fetch_one(ranged, {"above": 1}) == (2,)
        assert block.fetch_all(query) == [(1,), (2,), (3,), (4,), (5,)]
    finally:
        block.reset_cursors()
        block.execute(f"DROP TABLE {table}")


def test_block_async_twins(block) -> None:  # type: ignore[no-untyped-def]
    table = f"asyncblock_{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[Any, Any, Any, Any]:
        async with block as connector:
            await connector.aexecute(f"CREATE TABLE {table} (n int)")
            await connector.aexecute_many(
                f"INSERT INTO {table} VALUES (:n)", [{"n": 1}, {"n": 2}, {"n": 3}]
            )
            query = f"SELECT n FROM {table} ORDER BY n"
            first = await connector.afetch_one(query)
            rest = await connector.afetch_many(query, size=5)
            done = await connector.afetch_many(query, size=5)
            everything = await connector.afetch_all(query)
            await connector.aexecute(f"DROP TABLE {table}")
            return first, rest, done, everything

    first, rest, done, everything = asyncio.run(main())
    assert (first, rest, done) == ((1,), [(2,), (3,)], [])
    assert everything == [(1,), (2,), (3,)]


def test_block_calls_procedures_and_runs_scripts(block) -> None:  # type: ignore[no-untyped-def]
    """The block's `execute` runs a script of several statements (result
    sets read and discarded); `call_procedure` returns a ProcedureResult."""
    table = f"blockproc_{uuid.uuid4().hex[:8]}"
    proc = f"blockproc_add_{uuid.uuid4().hex[:8]}"
    block.execute(
        f"CREATE TABLE {table} (n int); INSERT INTO {table} VALUES (1); SELECT n FROM {table}"
    )
    block.execute(
        f"CREATE PROCEDURE {proc}(v int, INOUT total int) LANGUAGE plpgsql AS $$ BEGIN "
        f"INSERT INTO {table} VALUES (v); SELECT sum(n) INTO total FROM {table}; "
        "RAISE NOTICE 'added %', v; END $$"
    )
    try:
        result = block.call_procedure(proc, {"v": 2, "total": None}, output={"total": "int"})
        assert (result.output, result.messages) == ({"total": 3}, ["added 2"])

        async def again() -> Any:
            async with block as connector:
                return await connector.acall_procedure(
                    proc, {"v": 3, "total": None}, output={"total": "int"}
                )

        assert asyncio.run(again()).output == {"total": 6}
    finally:
        block.execute(f"DROP PROCEDURE {proc}; DROP TABLE {table}")


def test_a_flow_calls_a_sql_server_procedure_with_a_table_value(env, mssql_test_url: str) -> None:  # type: ignore[no-untyped-def]
    """The issue's whole story in one flow: a procedure with a table-valued
    parameter, two result sets, OUTPUT parameters, a return code and PRINT
    messages, read in one call; the messages in the run's log, once."""
    name = env.database(url=mssql_test_url, pool_release_grace=0)
    config = env.config()
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    id_list, proc = f"dbo.flow_ids_{suffix}", f"dbo.flow_import_{suffix}"
    with dbflow.DatabaseManager(name, config=config) as db:
        db.execute_query(f"CREATE TYPE {id_list} AS TABLE (id int NOT NULL, label nvarchar(40))")
        db.execute_query(
            f"""CREATE PROCEDURE {proc} @batch int, @ids {id_list} READONLY,
    @imported int OUTPUT, @note nvarchar(100) OUTPUT AS
BEGIN
    PRINT 'import of batch ' + CAST(@batch AS nvarchar(10)) + ' started';
    SELECT @imported = COUNT(*) FROM @ids;
    SELECT id, label FROM @ids ORDER BY id;
    SELECT @batch AS batch, @imported AS imported;
    SET @note = N'batch ' + CAST(@batch AS nvarchar(10)) + N' ok';
    PRINT 'import of batch ' + CAST(@batch AS nvarchar(10)) + ' finished';
    RETURN 0;
END"""
        )

    @task
    def import_batch() -> dbflow.ProcedureResult:
        with dbflow.DatabaseManager(name, config=config) as db:
            return db.call_procedure(
                proc,
                {"batch": 7, "ids": dbflow.TableValue(id_list, [(2, "b"), (1, "a's")])},
                output={"imported": "int", "note": "nvarchar(100)"},
            )

    @flow
    def survey_import() -> Any:
        result = import_batch()
        from prefect.runtime import flow_run

        return flow_run.id, result

    try:
        flow_run_id, result = survey_import()
    finally:
        with dbflow.DatabaseManager(name, config=config) as db:
            db.execute_query(f"DROP PROCEDURE {proc}")
            db.execute_query(f"DROP TYPE {id_list}")
    assert result.result_sets == [
        [{"id": 1, "label": "a's"}, {"id": 2, "label": "b"}],
        [{"batch": 7, "imported": 2}],
    ]
    assert result.output == {"imported": 2, "note": "batch 7 ok"}
    assert result.return_value == 0
    messages = ["import of batch 7 started", "import of batch 7 finished"]
    assert result.messages == messages
    logs = run_logs(flow_run_id)
    for message in messages:
        assert [line for line in logs if message in line] == [f"[{name}] {message}"], logs
