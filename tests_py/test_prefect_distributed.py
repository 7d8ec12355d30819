"""Prefect beyond one process: managers that travel (pickled as what they
are), flows on Dask and Ray task runners with worker processes, one console
line per dbflow event. Each flow runs as users run it, in a process of its
own with its own temporary Prefect server."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect", reason="Prefect is installed by the test command")

import dbflow


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[str]:
    """One Prefect server for every process of these flows: the scripts and
    their Dask or Ray workers report to it instead of each starting its own."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield str(PREFECT_API_URL.value())


def run_script(tmp_path: Path, code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `code` as a script; output goes to files, and the whole process
    group is ended afterwards, so no straggler (a worker, a server) can hold
    the test up."""
    from prefect.settings import PREFECT_API_URL

    script = tmp_path / "flow_script.py"
    script.write_text(textwrap.dedent(code))
    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    out, err = tmp_path / "script.out", tmp_path / "script.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=stdout,
            stderr=stderr,
            cwd=tmp_path,
            env=env,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, returncode, out.read_text(), err.read_text())


def last_json(done: subprocess.CompletedProcess[str]) -> Any:
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    return json.loads(lines[-1])


# ---- managers that travel ---------------------------------------------------


def test_a_pickled_manager_is_what_it_is_and_no_secret(env, pg_password: str) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2, max_overflow=1)
    db = env.manager(name)
    try:
        data = pickle.dumps(db)
        assert pg_password.encode() not in data
        again = pickle.loads(data)
        assert type(again) is dbflow.DatabaseManager
        assert again.execute_query("SELECT 1 AS x") == [{"x": 1}]
        # Attached to this process's pool, not a copy of anything.
        assert db.get_pool_status()["users"] == 2
        from prefect.utilities.hashing import hash_objects

        assert hash_objects(db) == hash_objects(again) == hash_objects(env.manager(name))
        assert hash_objects(db) != hash_objects(env.manager(env.database()))
        asynced = dbflow.AsyncDatabaseManager(name, config=env.config())
        assert type(pickle.loads(pickle.dumps(asynced))) is dbflow.AsyncDatabaseManager
        again.close()
    finally:
        db.dispose()


def unpickled_elsewhere(tmp_path: Path, data: bytes) -> subprocess.CompletedProcess[str]:
    """Unpickle a manager in a fresh process; a ConfigurationError is printed."""
    (tmp_path / "manager.pickle").write_bytes(data)
    done = run_script(
        tmp_path,
        """
        import pickle, dbflow
        try:
            pickle.loads(open("manager.pickle", "rb").read())
        except dbflow.ConfigurationError as e:
            print("ConfigurationError:", e)
        """,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_manager_arriving_without_its_configuration_names_the_key(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = env.database()
    data = pickle.dumps(env.manager(name))
    (env.root / ".env.test").unlink()
    done = unpickled_elsewhere(tmp_path, data)
    assert f"TEST_GLOBAL_{name.upper()}_CONNECTION_STRING" in done.stdout, done.stdout


def test_an_unsaved_credentials_block_stays_in_its_process(pg_url: str, tmp_path: Path) -> None:
    from dbflow.prefect import DatabaseCredentials

    block = DatabaseCredentials(connection_string=pg_url)
    db = dbflow.DatabaseManager("unsaved_block_db", credentials=block)
    try:
        data = pickle.dumps(db)
        assert pg_url.split(":")[2].split("@")[0].encode() not in data
        assert pickle.loads(data).execute_query("SELECT 1 AS x") == [{"x": 1}]
        done = unpickled_elsewhere(tmp_path, data)
        assert "unsaved credentials block" in done.stdout, done.stdout + done.stderr
        assert "save the block" in done.stdout
    finally:
        db.dispose()


def test_settings_given_in_code_stay_in_their_process(env, pg_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A manager configured in code must not arrive elsewhere and quietly
    use that process's env file for the same name."""
    name = env.database()  # the env file configures it too...
    pg_password = pg_url.split(":")[2].split("@")[0]
    config = env.config().with_settings(name, {"connection_string": pg_url, "pool_size": 3})
    db = dbflow.DatabaseManager(name, config=config)  # ...but code says otherwise
    try:
        data = pickle.dumps(db)
        assert pg_password.encode() not in data
        again = pickle.loads(data)  # this process: the same settings
        assert again.get_pool_status()["pool_size"] == 3
        assert again.execute_query("SELECT 1 AS x") == [{"x": 1}]
        done = unpickled_elsewhere(tmp_path, data)
        assert "settings given in code" in done.stdout, done.stdout + done.stderr
        assert f"{name.upper()}_CONNECTION_STRING" in done.stdout
        assert f"{name.upper()}_POOL_SIZE" in done.stdout
        assert pg_password not in done.stdout + done.stderr
    finally:
        db.dispose()


def test_a_manager_passed_to_mapped_tasks_logs_no_hash_errors(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2, max_overflow=1)
    done = run_script(
        tmp_path,
        f"""
        import json
        from prefect import flow, task
        import dbflow

        @task
        def square(db, n):
            sql = "SELECT CAST(:n AS int) * CAST(:n AS int) AS sq"
            return db.execute_query(sql, {{"n": n}})[0]["sq"]

        @flow
        def squares():
            db = dbflow.DatabaseManager(
                {name!r}, config=dbflow.ConfigManager("test", envs_dir={str(env.root)!r})
            )
            return [f.result() for f in square.map(db, [1, 2, 3, 4])]

        print(json.dumps({{"squares": squares()}}))
        """,
    )
    assert done.returncode == 0, done.stderr
    assert last_json(done) == {"squares": [1, 4, 9, 16]}
    output = done.stdout + done.stderr
    assert "Unable to create hash" not in output and "Traceback" not in output, output


# ---- one line per event -----------------------------------------------------


def test_each_dbflow_event_reaches_the_console_once_inside_a_run(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = env.database(auto_migrate="off")
    root = tmp_path / "migrations"
    (root / name).mkdir(parents=True)
    table = f"once_{os.getpid()}"
    (root / name / "V1__Once.sql").write_text(f"CREATE TABLE {table} (id int);\n")
    done = run_script(
        tmp_path,
        f"""
        from prefect import flow
        import dbflow

        @flow
        def migrate():
            db = dbflow.DatabaseManager(
                {name!r},
                config=dbflow.ConfigManager("test", envs_dir={str(env.root)!r}),
                migrations_dir={str(root)!r},
            )
            db.run_migrations()
            db.execute_query("DROP TABLE {table}")
            db.execute_query("DROP TABLE schema_version")

        migrate()
        """,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if "applying migration" in line]
    assert len(lines) == 1, output
    assert "Flow run" in lines[0], lines  # through the run logger, so it is in the UI too


# ---- distributed task runners -----------------------------------------------

DISTRIBUTED_FLOW = """
import json, os, sys, uuid
from prefect import flow, task
import dbflow

ENVS, ROOT, NAME, TABLE = {envs!r}, {root!r}, {name!r}, {table!r}


def own_manager():
    return dbflow.DatabaseManager(
        NAME, config=dbflow.ConfigManager("test", envs_dir=ENVS), migrations_dir=ROOT
    )


@task
def write(db, item):
    # Every task migrates (each file applies once) and writes with both the
    # manager it was handed and one of its own.
    # `run` tells this execution of the task from another one of the same
    # item, should the runner execute a task twice (a worker lost).
    run = uuid.uuid4().hex
    mine = own_manager()
    mine.run_migrations()
    db.execute_query(
        f"INSERT INTO {{TABLE}} (item, pid, how, run) VALUES (:item, :pid, 'passed', :run)",
        {{"item": item, "pid": os.getpid(), "run": run}},
    )
    mine.execute_query(
        f"INSERT INTO {{TABLE}} (item, pid, how, run) VALUES (:item, :pid, 'own', :run)",
        {{"item": item, "pid": os.getpid(), "run": run}},
    )
    return os.getpid()


@flow(task_runner=RUNNER)
def fan_out(items):
    db = own_manager()
    pids = [f.result() for f in write.map(db, items)]
    return sorted(set(pids))


if __name__ == "__main__":  # worker processes import this file too
    print(json.dumps({{"pids": fan_out(list(range(24)))}}))
"""


def distributed_setup(env, tmp_path: Path) -> tuple[str, Path, str]:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2, max_overflow=1, auto_migrate="off")
    root = tmp_path / "migrations"
    (root / name).mkdir(parents=True)
    # Tables of their own (data and migration history), so what one run
    # leaves behind cannot reach another test.
    table = f"fan_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"{table}_history")
    (root / name / "V1__Fan.sql").write_text(
        f"CREATE TABLE {table} (item int, pid int, how varchar(10), run varchar(32));\n"
    )
    (root / name / "V2__Marker.sql").write_text(
        f"CREATE TABLE {table}_marker (n int);\nINSERT INTO {table}_marker VALUES (1);\n"
    )
    return name, root, table


def check_distributed(
    env, name: str, table: str, done: subprocess.CompletedProcess[str], peak: int, processes: int
) -> None:  # type: ignore[no-untyped-def]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pids = last_json(done)["pids"]
    assert len(pids) >= 2, f"rows came from one process only: {pids}"
    with env.manager(name) as db:
        try:
            rows = db.execute_query(f"SELECT item, how, pid, run FROM {table} ORDER BY item, how")
            applied = db.execute_query(
                f"SELECT version FROM {table}_history ORDER BY installed_rank"
            )
            marker = db.execute_query(f"SELECT n FROM {table}_marker")
        finally:
            for dropped in (table, f"{table}_marker", f"{table}_history"):
                db.execute_query(f"DROP TABLE IF EXISTS {dropped}")
    # Every item was written; each execution of a task wrote exactly one row
    # each way (a statement sent twice would show as two rows of one run).
    # A runner may execute a task again after losing a worker: that is a
    # second run of the item, not a repeated statement.
    runs: dict[tuple[int, str], list[str]] = {}
    for r in rows:
        runs.setdefault((r["item"], r["run"]), []).append(r["how"])
    assert sorted({item for item, _ in runs}) == list(range(24))
    assert all(sorted(hows) == ["own", "passed"] for hows in runs.values()), runs
    assert {r["pid"] for r in rows} == set(pids)
    assert marker == [{"n": 1}]
    assert [r["version"] for r in applied] == ["1", "2"]
    assert peak <= processes * 3, f"{peak} sessions for {processes} processes of 2 + 1"


class SessionWatch:
    """The peak number of server sessions of a database's pools, counted on
    the server while a flow runs elsewhere."""

    def __init__(self, env, name: str) -> None:  # type: ignore[no-untyped-def]
        self.app = f"dbflow_test_{name}_{os.getpid()}"
        self.watcher = env.manager(env.database(pool_size=1, max_overflow=0))
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            n = self.watcher.execute_query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = :app",
                {"app": self.app},
            )[0]["n"]
            self.peak = max(self.peak, int(n))
            time.sleep(0.05)

    def __enter__(self) -> SessionWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.watcher.dispose()


RUNNERS = {
    "dask": (
        "prefect_dask",
        "from prefect_dask import DaskTaskRunner\n"
        "RUNNER = DaskTaskRunner(cluster_kwargs={'n_workers': 2, 'processes': True, "
        "'threads_per_worker': 2, 'dashboard_address': None})\n",
    ),
    # Ray runs at most num_cpus task worker processes.
    "ray": (
        "prefect_ray",
        "from prefect_ray import RayTaskRunner\n"
        "RUNNER = RayTaskRunner(init_kwargs={'num_cpus': 2, 'include_dashboard': False})\n",
    ),
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_distributed_task_runner_with_worker_processes(env, tmp_path: Path, runner: str) -> None:  # type: ignore[no-untyped-def]
    module, setup = RUNNERS[runner]
    pytest.importorskip(module, reason=f"{module} is installed by the test command")
    name, root, table = distributed_setup(env, tmp_path)
    code = setup + DISTRIBUTED_FLOW.format(
        envs=str(env.root), root=str(root), name=name, table=table
    )
    with SessionWatch(env, name) as watch:
        done = run_script(tmp_path, code, timeout=600)
    # The flow's own process and two worker processes.
    check_distributed(env, name, table, done, watch.peak, processes=3)
