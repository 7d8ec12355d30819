"""dbflow beyond one process: forked children get fresh pools, and many
worker processes share one database correctly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dbflow

FORK_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, sys, threading
    import dbflow

    def child(db, queue):
        inherited = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        queue.put({"pid": inherited, "opened": db.get_pool_status()["connections_opened"]})

    cfg = dbflow.ConfigManager("test", envs_dir=sys.argv[1])
    db = dbflow.DatabaseManager(sys.argv[2], config=cfg)
    parent_pid = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
    stop = threading.Event()
    def work():
        while not stop.is_set():
            db.execute_query("SELECT 1")
    busy = threading.Thread(target=work)
    if sys.argv[3] == "busy":
        busy.start()  # fork while another thread is using the pool
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(db, queue))
    proc.start()
    result = queue.get(timeout=60)
    proc.join(30)
    stop.set()
    if busy.is_alive():
        busy.join(10)
    after = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
    print(json.dumps(dict(result, parent=parent_pid, after=after, exitcode=proc.exitcode)))
    """
)


def run_fork(env, mode: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    # In a fresh interpreter: the test process carries other suites' threads.
    name = env.database(pool_size=1, max_overflow=0 if mode == "idle" else 1)
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(env.root), name, mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_forked_child_gets_fresh_connections(env) -> None:  # type: ignore[no-untyped-def]
    result = run_fork(env, "idle")
    assert result["pid"] != result["parent"], "the child used its parent's connection"
    assert result["opened"] == 1, "the child opened a pool of its own"
    assert result["exitcode"] == 0
    # The parent's connection survived the child: nothing was written to it.
    assert result["after"] == result["parent"]


def test_fork_while_another_thread_uses_the_pool(env) -> None:  # type: ignore[no-untyped-def]
    result = run_fork(env, "busy")
    assert result["exitcode"] == 0
    assert result["pid"] != result["parent"]


WORKER = textwrap.dedent(
    """
    import dbflow, json, sys
    worker, envs, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    cfg = dbflow.ConfigManager("test", envs_dir=envs)
    sys.stdin.readline()  # all workers start together
    with dbflow.DatabaseManager("shared", config=cfg, migrations_dir=root) as db:
        report = db.run_migrations()
        rows = [{"id": worker * 1000 + i, "worker": worker} for i in range(300)]
        written = 0
        for start in range(0, len(rows), 50):
            written += db.execute_many(
                "INSERT INTO events (id, worker) VALUES (:id, :worker)", rows[start:start + 50]
            )
    print(json.dumps({"applied": report["applied"], "written": written}))
    """
)


def test_many_workers_write_exactly_once_within_their_pools(
    env,
    tmp_path: Path,
    pg_url: str,
    admin,  # type: ignore[no-untyped-def]
    pg_database,
) -> None:
    from backends import with_database
    from envs import with_options

    database = pg_database()
    app = f"dbflow_workers_{uuid.uuid4().hex[:8]}"
    envs = tmp_path / "envs"
    envs.mkdir()
    url = with_options(with_database(pg_url, database), application_name=app)
    (envs / ".env.test").write_text(
        f"TEST_GLOBAL_SHARED_CONNECTION_STRING={url}\n"
        "TEST_GLOBAL_SHARED_POOL_SIZE=2\nTEST_GLOBAL_SHARED_MAX_OVERFLOW=1\n"
        "TEST_GLOBAL_SHARED_AUTO_MIGRATE=off\n"
    )
    root = tmp_path / "migrations"
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "V1__Events.sql").write_text(
        "CREATE TABLE events (id int PRIMARY KEY, worker int NOT NULL);\n"
    )
    (root / "shared" / "V2__Index.sql").write_text(
        "CREATE INDEX events_worker ON events (worker);\n"
    )
    workers = 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(k), str(envs), str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(workers)
    ]
    peak = 0
    try:
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        while any(p.poll() is None for p in procs):
            n = admin.execute_query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = :app",
                {"app": app},
            )[0]["n"]
            peak = max(peak, n)
            time.sleep(0.02)
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            reports.append(json.loads(out))
        assert sorted(v for r in reports for v in r["applied"]) == ["V1", "V2"]
        assert all(r["written"] == 300 for r in reports)
        assert 1 <= peak <= workers * (2 + 1), peak
        name = env.database("check_workers", url=with_database(pg_url, database))
        check = env.manager(name)
        rows = check.execute_query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events")
        assert rows == [{"n": workers * 300, "ids": workers * 300}]
        assert check.execute_query("SELECT count(*) AS n FROM schema_version") == [{"n": 2}]
        check.dispose()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        dbflow.dispose_all()
