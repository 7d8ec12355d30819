"""Pools: shared per database per process, QueuePool limits, pre-ping,
release with a grace period, and real parallelism with the GIL released."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pytest

import dbflow
from dbflow import DatabaseConnectionError, PoolTimeoutError


def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_managers_of_one_database_share_one_pool(env, server_connections) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2)
    a, b = env.manager(name), env.manager(name)
    try:
        a.execute_query("SELECT 1")
        b.execute_query("SELECT 1")
        status = a.get_pool_status()
        assert status["users"] == 2
        assert status["connections_opened"] == 1
        assert b.get_pool_status()["connections_opened"] == 1
        assert server_connections(name) == 1
    finally:
        a.dispose()
        b.close()


def test_exhausted_pool_raises_pool_timeout_naming_limits(env) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=1, max_overflow=0, pool_timeout=0.3)
    db = env.manager(name)
    try:
        with db.transaction():
            with pytest.raises(PoolTimeoutError) as info:
                db.execute_query("SELECT 1")
        message = str(info.value)
        assert "pool_size=1" in message and "max_overflow=0" in message
        assert isinstance(info.value, TimeoutError)
        assert info.value.database == name
        # Once the transaction returned its connection the pool works again.
        assert db.execute_query("SELECT 1 AS x") == [{"x": 1}]
    finally:
        db.dispose()


def test_overflow_connections_are_closed_when_returned(env, server_connections) -> None:  # type: ignore[no-untyped-def]
    """OVERFLOW_IDLE_TIMEOUT=0 is QueuePool's rule. The three connections come
    back at once: each return sees the others, so exactly one stays."""
    name = env.database(pool_size=1, max_overflow=2, pool_timeout=5, overflow_idle_timeout=0)
    db = env.manager(name)
    holding = threading.Barrier(3)
    release = threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with db.transaction() as tx:
                tx.execute_query("SELECT 1")
                holding.wait(10)
                release.wait(10)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        assert wait_until(lambda: db.get_pool_status()["checked_out"] == 3)
        status = db.get_pool_status()
        assert status["overflow"] == 2
        assert server_connections(name) == 3
        release.set()
        for t in threads:
            t.join(10)
        assert not errors
        assert wait_until(lambda: server_connections(name) == 1), "overflow connections stayed open"
        status = db.get_pool_status()
        assert (status["checked_in"], status["checked_out"], status["overflow"]) == (1, 0, 0)
    finally:
        release.set()
        db.dispose()


def test_overflow_connections_are_reused_by_bursts_then_closed_when_idle(
    env, server_connections
) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=1, max_overflow=2, pool_timeout=5, overflow_idle_timeout=1.5)
    db = env.manager(name)

    def burst() -> None:
        barrier = threading.Barrier(3)
        errors: list[BaseException] = []

        def hold() -> None:
            try:
                with db.transaction() as tx:
                    tx.execute_query("SELECT 1")
                    barrier.wait(10)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=hold) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors

    try:
        for _ in range(4):
            burst()
            time.sleep(0.2)
        status = db.get_pool_status()
        # Three sessions were needed at once; no burst opened another.
        assert status["connections_opened"] == 3
        assert (status["checked_in"], status["overflow"]) == (3, 2)
        assert server_connections(name) == 3
        assert wait_until(lambda: server_connections(name) == 1, seconds=6), (
            "idle overflow stayed open"
        )
        status = db.get_pool_status()
        assert (status["checked_in"], status["checked_out"], status["overflow"]) == (1, 0, 0)
        assert db.execute_query("SELECT 1 AS x") == [{"x": 1}]
        assert db.get_pool_status()["connections_opened"] == 3
    finally:
        db.dispose()


def test_overflow_churn_never_exceeds_the_limit_on_the_server(env, admin) -> None:  # type: ignore[no-untyped-def]
    """Overflow connections close as they are returned while others open:
    the server must never see more than pool_size + max_overflow sessions,
    not even while a closing one is on its way out."""
    name = env.database(pool_size=1, max_overflow=1, pool_timeout=30, overflow_idle_timeout=0)
    app = f"dbflow_test_{name}_{os.getpid()}"
    db = env.manager(name)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        # Bursts and pauses: the pool shrinks to pool_size and grows again.
        rng = random.Random()
        try:
            while not stop.is_set():
                db.execute_query("SELECT 1")
                time.sleep(rng.random() * 0.004)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=churn) for _ in range(6)]
    for w in workers:
        w.start()
    peak = 0
    deadline = time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            n = admin.execute_query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = :app",
                {"app": app},
            )[0]["n"]
            peak = max(peak, int(n))
    finally:
        stop.set()
        for w in workers:
            w.join(30)
        db.dispose()
    assert not errors
    assert db.get_pool_status()["connections_opened"] > 5, "no overflow churn happened"
    assert 1 <= peak <= 2, f"the server saw {peak} sessions; the limit is 2"


def test_eight_threads_run_eight_queries_at_once(env, db: dbflow.DatabaseManager) -> None:  # type: ignore[no-untyped-def]
    # Each query waits, server-side, until the seven others have started
    # while it still runs; if the GIL or the pool serialized the calls, the
    # first would wait alone, give up and return false.
    name = env.database(pool_size=8, max_overflow=0)
    many = env.manager(name)
    tag = f"overlap_{uuid.uuid4().hex}"
    db.execute_query(
        """CREATE OR REPLACE FUNCTION dbflow_wait_for_peers(tag text, peers int, tries int)
           RETURNS bool LANGUAGE plpgsql AS $$
           BEGIN
             FOR i IN 1..tries LOOP
               PERFORM pg_stat_clear_snapshot();
               IF (SELECT count(*) FROM pg_stat_activity
                   WHERE query LIKE '%' || tag || '%'
                     AND pid <> pg_backend_pid()) >= peers THEN
                 RETURN true;
               END IF;
               PERFORM pg_sleep(0.05);
             END LOOP;
             RETURN false;
           END $$"""
    )
    sql = f"SELECT dbflow_wait_for_peers('{tag}', 7, 200) AS ok"
    results: list[bool] = []
    lock = threading.Lock()

    def run() -> None:
        ok = many.execute_query(sql)[0]["ok"]
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=run) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [True] * 8
    finally:
        many.dispose()


@pytest.mark.parametrize("through", ["manager", "transaction"])
def test_a_call_waiting_for_the_server_lets_other_python_threads_run(
    db: dbflow.DatabaseManager, through: str
) -> None:
    # A call keeps the GIL only while it checks for a quick answer; one it
    # must sleep for is waited for with the GIL released. A pure-Python
    # thread notes when it runs: held through the wait, the GIL would let it
    # run only before the call began or after it returned.
    ran_at: list[float] = []
    stop = threading.Event()

    def python_work() -> None:
        while not stop.is_set():
            sum(range(1000))
            ran_at.append(time.monotonic())

    worker = threading.Thread(target=python_work)
    worker.start()
    try:
        sql = "SELECT 1 AS done FROM pg_sleep(0.5)"
        began = time.monotonic()
        if through == "manager":
            rows = db.execute_query(sql)
        else:
            with db.transaction() as tx:
                rows = tx.execute_query(sql)
        ended = time.monotonic()
    finally:
        stop.set()
        worker.join()
    assert rows == [{"done": 1}]
    during = [t for t in ran_at if began + 0.1 < t < ended - 0.1]
    assert len(during) > 100, f"{len(during)} steps of Python work during a 0.5 s wait"


def test_pre_ping_replaces_a_connection_killed_by_the_server(env, admin) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=1, max_overflow=0)
    db = env.manager(name)
    try:
        pid = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        admin.execute_query("SELECT pg_terminate_backend(:pid)", {"pid": pid})
        time.sleep(1.2)  # idle long enough that checkout pre-pings
        new_pid = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        assert new_pid != pid
        assert db.get_pool_status()["invalid"] >= 1
    finally:
        db.dispose()


def test_a_connection_that_dies_mid_statement_is_not_retried(env, admin) -> None:  # type: ignore[no-untyped-def]
    """A statement that reached the server may have run: its failure goes to
    the caller, never silently to a second connection."""
    name = env.database(pool_size=1, max_overflow=0)
    db = env.manager(name)
    try:
        pid = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        killer = threading.Timer(
            0.5, lambda: admin.execute_query("SELECT pg_terminate_backend(:pid)", {"pid": pid})
        )
        killer.start()
        with pytest.raises(DatabaseConnectionError) as info:
            db.execute_query("SELECT pg_sleep(3)")
        killer.join()
        assert info.value.database == name
        assert db.execute_query("SELECT 1 AS x") == [{"x": 1}]
        assert db.get_pool_status()["connections_opened"] == 2
    finally:
        db.dispose()


def test_last_release_closes_the_pool_after_the_grace_period(env, server_connections) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=2, pool_release_grace=0.3)
    with env.manager(name) as db:
        db.execute_query("SELECT 1")
        assert server_connections(name) == 1
    # Within the grace period a new manager reuses the warm connection.
    with env.manager(name) as again:
        again.execute_query("SELECT 1")
        assert again.get_pool_status()["connections_opened"] == 1
    assert wait_until(lambda: server_connections(name) == 0), (
        "pool did not close after its grace period"
    )


def test_dispose_closes_connections_now(env, server_connections) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=3, pool_release_grace=60)
    db = env.manager(name)
    other = env.manager(name)
    db.execute_query("SELECT 1")
    assert server_connections(name) == 1
    db.dispose()
    assert wait_until(lambda: server_connections(name) == 0)
    with pytest.raises(DatabaseConnectionError, match="disposed"):
        db.execute_query("SELECT 1")
    # Others sharing the pool transparently reconnect, as with SQLAlchemy's dispose().
    assert other.execute_query("SELECT 1 AS x") == [{"x": 1}]
    other.dispose()


def test_interpreter_exit_closes_pools_cleanly(env, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    name = env.database()
    code = (
        "import dbflow\n"
        f"cfg = dbflow.ConfigManager('test', envs_dir={str(env.root)!r})\n"
        f"db = dbflow.DatabaseManager({name!r}, config=cfg)\n"
        "assert db.execute_query('SELECT 1 AS x') == [{'x': 1}]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_pool_recycle_replaces_old_connections(env) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=1, max_overflow=0, pool_recycle=1)
    db = env.manager(name)
    try:
        first = db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        assert db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"] == first
        time.sleep(1.2)
        assert db.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"] != first
    finally:
        db.dispose()
