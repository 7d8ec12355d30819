"""Health, metrics, timeouts, retries, and real faults: a restarted server,
killed backends, a stalled network, a full pool."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import FaultProxy

import dbflow
from dbflow import (
    DatabaseConnectionError,
    PoolTimeoutError,
    QueryError,
    QueryTimeoutError,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def proxy(pg_url: str) -> Iterator[FaultProxy]:
    p = FaultProxy(urllib.parse.urlsplit(pg_url).port or 5432)
    yield p
    p.close()


def via(proxy: FaultProxy, pg_url: str) -> str:
    parts = urllib.parse.urlsplit(pg_url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


HEALTH_KEYS = {
    "database_name",
    "database_type",
    "status",
    "connection",
    "query_test",
    "migration_status",
    "response_time_ms",
    "error",
    "timestamp",
}


def test_health_check_healthy_and_read_only(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = env.database()
    db = dbflow.DatabaseManager(name, config=env.config(), migrations_dir=tmp_path / "none")
    try:
        h = db.health_check()
        assert set(h) == HEALTH_KEYS
        assert h["status"] == "healthy" and h["connection"] and h["query_test"]
        assert h["migration_status"] == "read_only"
        assert h["error"] is None and h["response_time_ms"] > 0
        assert h["timestamp"].endswith("+00:00")
    finally:
        db.dispose()


def test_health_degraded_by_pending_migrations_and_slowness(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "m"
    name = env.database(auto_migrate="off")
    # A history of its own: nothing another test applied can count here.
    env.set(f"{name.upper()}_MIGRATIONS_TABLE", f"sv_{uuid.uuid4().hex[:12]}")
    (root / name).mkdir(parents=True)
    (root / name / "V1__noop.sql").write_text("SELECT 1;\n")
    db = dbflow.DatabaseManager(name, config=env.config(), migrations_dir=root)
    slow_name = env.database(health_slow_threshold=0)
    slow = env.manager(slow_name)
    try:
        h = db.health_check()
        assert h["status"] == "degraded"
        assert h["migration_status"] == {"current_version": None, "pending_migrations": ["V1"]}
        assert "pending" in h["error"]
        assert slow.health_check()["status"] == "degraded"
    finally:
        db.dispose()
        slow.dispose()


def test_health_unhealthy_without_raising_or_leaking_secrets(env) -> None:  # type: ignore[no-untyped-def]
    env.set("GONE_CONNECTION_STRING", "postgresql://u:Sup3r-secret@127.0.0.1:1/x")
    db = env.manager("gone")
    try:
        h = db.health_check()
        assert h["status"] == "unhealthy" and h["connection"] is False
        assert "refused" in h["error"] and "Sup3r-secret" not in h["error"]
    finally:
        db.dispose()


def test_black_holed_server_is_unhealthy_within_the_health_deadline(
    env,
    proxy: FaultProxy,
    pg_url: str,  # type: ignore[no-untyped-def]
) -> None:
    proxy.stall()
    name = env.database(url=via(proxy, pg_url), health_timeout=1, connect_timeout=30)
    db = env.manager(name)
    try:
        started = time.monotonic()
        h = db.health_check()
        assert time.monotonic() - started < 1.6
        assert h["status"] == "unhealthy"
        assert "deadline" in h["error"]
    finally:
        db.dispose()


def test_black_holed_server_honours_the_connect_timeout(
    env, proxy: FaultProxy, pg_url: str
) -> None:  # type: ignore[no-untyped-def]
    proxy.stall()
    name = env.database(url=via(proxy, pg_url), connect_timeout=0.5, pool_timeout=10)
    db = env.manager(name)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseConnectionError, match="connect timeout"):
            db.execute_query("SELECT 1")
        assert time.monotonic() - started < 1.5
    finally:
        db.dispose()


def test_health_check_all_overall_status(env) -> None:  # type: ignore[no-untyped-def]
    good = env.database("good_db")
    env.set("DOWN_DB_CONNECTION_STRING", "postgresql://u:p@127.0.0.1:1/x")
    cfg = env.config()
    report = dbflow.health_check_all(["good_db", "down_db", "nowhere_db"], config=cfg)
    assert report["overall_status"] == "degraded"
    dbs = report["databases"]
    assert dbs[good]["status"] == "healthy"
    assert dbs["down_db"]["status"] == "unhealthy"
    assert dbs["nowhere_db"]["status"] == "not_configured"
    assert "NOWHERE_DB_CONNECTION_STRING" in dbs["nowhere_db"]["error"]
    assert report["healthy_count"] == 1 and report["total_databases"] == 3
    assert dbflow.health_check_all(["good_db"], config=cfg)["overall_status"] == "healthy"
    assert dbflow.health_check_all(["down_db"], config=cfg)["overall_status"] == "unhealthy"
    assert dbflow.health_check_all(["nowhere_db"], config=cfg)["overall_status"] == "not_configured"
    dbflow.dispose_all()


def test_metrics_count_what_happened(db: dbflow.DatabaseManager) -> None:
    for _ in range(5):
        db.execute_query("SELECT generate_series(1, 3) AS n")
    with pytest.raises(QueryError):
        db.execute_query("SELECT * FROM nope_not_here")
    with pytest.raises(dbflow.ParameterError):
        db.execute_query("SELECT :missing")
    m = db.get_metrics()
    assert m["queries"] == 5 and m["rows_returned"] == 15
    assert m["errors"]["query"] == 1 and m["errors"]["parameter"] == 1
    assert m["errors_total"] == 2
    assert m["query_latency_ms"]["count"] == 5
    assert 0 < m["query_latency_ms"]["p50"] <= m["query_latency_ms"]["p99"]
    assert m["pool_acquire_ms"]["count"] == 6  # the parameter error never took a connection
    assert m["connections_opened"] == 1


def test_every_statement_of_a_transaction_is_counted(db: dbflow.DatabaseManager) -> None:
    before = db.get_metrics()["queries"]
    with db.transaction() as tx:
        tx.execute_query("SELECT 1")
        tx.execute_many("SELECT CAST(:x AS int)", [{"x": 1}, {"x": 2}])
        with pytest.raises(QueryError):
            with tx.savepoint():
                tx.execute_many("SELECT * FROM nope_not_here WHERE x = :x", [{"x": 1}])
    m = db.get_metrics()
    assert m["queries"] - before == 2
    assert m["errors"]["query"] >= 1


def test_execute_query_with_timing(db: dbflow.DatabaseManager) -> None:
    ok = db.execute_query_with_timing("SELECT :x AS x", {"x": 1})
    assert ok["status"] == "success" and ok["results"] == [{"x": 1}] and ok["row_count"] == 1
    assert ok["execution_time_ms"] >= 0
    bad = db.execute_query_with_timing("SELECT * FROM nope_not_here")
    assert bad["status"] == "error" and bad["results"] == [] and "nope_not_here" in bad["error"]
    assert bad["error_type"] == "QueryError"


def test_timeout_stops_the_statement_on_the_server(env, admin: dbflow.DatabaseManager) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=1, max_overflow=0)
    db = env.manager(name)
    app = f"dbflow_test_{name}_{os.getpid()}"
    try:
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError) as info:
            db.execute_query_with_timeout("SELECT pg_sleep(5)", timeout=0.5)
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed <= 0.5 * 1.1 + 0.2, elapsed
        assert info.value.sqlstate == "57014" and "deadline" in str(info.value)
        time.sleep(0.3)
        busy = admin.execute_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = :app "
            "AND state = 'active'",
            {"app": app},
        )
        assert busy == [{"n": 0}]
        assert db.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
        assert db.get_pool_status()["checked_out"] == 0
        assert db.get_metrics()["timeouts"] == 1
    finally:
        db.dispose()


def test_timeout_defaults_to_database_timeout(env) -> None:  # type: ignore[no-untyped-def]
    name = env.database()
    env.set("DATABASE_TIMEOUT", 0.3)
    db = env.manager(name)
    try:
        with pytest.raises(QueryTimeoutError):
            db.execute_query_with_timeout("SELECT pg_sleep(3)")
        assert db.execute_query("SELECT pg_sleep(0.5) AS s") == [
            {"s": ""}
        ]  # plain queries: no deadline
    finally:
        db.dispose()


def test_timeout_when_the_network_stalls(env, proxy: FaultProxy, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    name = env.database(url=via(proxy, pg_url), pool_size=1, max_overflow=0)
    db = env.manager(name)
    try:
        assert db.execute_query("SELECT 1 AS x") == [{"x": 1}]
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError):
            db.execute_query_with_timeout("SELECT 1", timeout=0.5)
        assert time.monotonic() - started <= 0.5 * 1.1 + 0.2
        assert db.get_pool_status()["checked_out"] == 0  # the stuck connection was discarded
        proxy.resume()
        assert db.execute_query("SELECT 2 AS x") == [{"x": 2}]
    finally:
        db.dispose()


FLAKY = """
CREATE OR REPLACE FUNCTION {fn}(fail_times int, code text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('{fn}_calls') <= fail_times THEN
    RAISE EXCEPTION 'injected %', code USING ERRCODE = code;
  END IF;
  RETURN 1;
END $$
"""


@pytest.fixture
def flaky(db: dbflow.DatabaseManager) -> Iterator[str]:
    fn = f"flaky_{os.getpid()}_{time.monotonic_ns() % 100000}"
    db.execute_query(f"CREATE SEQUENCE {fn}_calls")
    db.execute_query(FLAKY.format(fn=fn))
    yield fn
    db.execute_query(f"DROP FUNCTION {fn}(int, text)")
    db.execute_query(f"DROP SEQUENCE {fn}_calls")


@pytest.mark.parametrize("code", ["40001", "40P01"])
def test_transient_failures_are_retried(
    db: dbflow.DatabaseManager, flaky: str, code: str, caplog
) -> None:  # type: ignore[no-untyped-def]
    import logging

    caplog.set_level(logging.WARNING, logger="dbflow")
    rows = db.execute_query_with_retry(
        f"SELECT {flaky}(2, :code) AS ok",
        {"code": code},
        attempts=3,
        min_delay=0.01,
        max_delay=0.05,
    )
    assert rows == [{"ok": 1}]
    assert db.get_metrics()["retries"] == 2
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_retries_give_up_after_the_attempts(db: dbflow.DatabaseManager, flaky: str) -> None:
    with pytest.raises(QueryError) as info:
        db.execute_query_with_retry(
            f"SELECT {flaky}(5, '40001') AS ok", attempts=2, min_delay=0.01, max_delay=0.01
        )
    assert info.value.sqlstate == "40001" and "after 2 attempts" in str(info.value)


def test_permanent_errors_are_not_retried(db: dbflow.DatabaseManager, flaky: str) -> None:
    with pytest.raises(dbflow.IntegrityError):
        db.execute_query_with_retry(f"SELECT {flaky}(1, '23505')", attempts=5, min_delay=0.01)
    assert db.get_metrics()["retries"] == 0
    assert db.execute_query_safe(f"SELECT {flaky}(0, '40001') AS ok") == [{"ok": 1}]


def test_statement_that_may_have_run_is_not_rerun_unless_idempotent(
    env,
    proxy: FaultProxy,
    pg_url: str,
    db: dbflow.DatabaseManager,
    table: str,  # type: ignore[no-untyped-def]
) -> None:
    db.execute_query(f"CREATE TABLE {table} (n int)")
    name = env.database(url=via(proxy, pg_url), pool_size=1, max_overflow=0)
    cut = env.manager(name)
    # The row is written, then the network drops before the answer arrives:
    # did it commit? The caller cannot know, so dbflow does not run it again.
    sql = f"WITH w AS (INSERT INTO {table} VALUES (1) RETURNING n) SELECT n, pg_sleep(0.6) FROM w"

    def cut_soon() -> None:
        time.sleep(0.3)
        proxy.cut()

    try:
        threading.Thread(target=cut_soon).start()
        with pytest.raises(DatabaseConnectionError):
            cut.execute_query_with_retry(sql, attempts=3, min_delay=0.01)
        assert cut.get_metrics()["retries"] == 0
        time.sleep(0.6)
        assert db.execute_query(f"SELECT count(*) AS n FROM {table}") == [{"n": 1}]
        threading.Thread(target=cut_soon).start()
        rows = cut.execute_query_with_retry(sql, attempts=3, min_delay=0.5, idempotent=True)
        assert [r["n"] for r in rows] == [1]
        assert cut.get_metrics()["retries"] == 1
    finally:
        cut.dispose()


def test_connection_refused_before_sending_is_retried(env) -> None:  # type: ignore[no-untyped-def]
    env.set("REFUSED_CONNECTION_STRING", "postgresql://u:p@127.0.0.1:1/x")
    db = env.manager("refused")
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseConnectionError, match="after 3 attempts"):
            db.execute_query_with_retry("SELECT 1", attempts=3, min_delay=0.05, max_delay=0.1)
        assert time.monotonic() - started >= 0.05 * 0.75 * 2
        assert db.get_metrics()["retries"] == 2
    finally:
        db.dispose()


def test_fifty_threads_on_a_pool_of_fifteen(env) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=5, max_overflow=10, pool_timeout=1)
    db = env.manager(name)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(3):
            try:
                db.execute_query("SELECT pg_sleep(0.2)")
                result = "ok"
            except PoolTimeoutError:
                result = "pool_timeout"
            except BaseException as e:  # pragma: no cover - reported below
                result = repr(e)
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=work) for _ in range(50)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert len(outcomes) == 150
        assert set(outcomes) <= {"ok", "pool_timeout"}, set(outcomes)
        assert "ok" in outcomes
        assert db.get_pool_status()["checked_out"] == 0
    finally:
        db.dispose()


def test_interrupted_transaction_leaves_nothing_half_written(
    db: dbflow.DatabaseManager, admin, table: str
) -> None:  # type: ignore[no-untyped-def]
    db.execute_query(f"CREATE TABLE {table} (n int)")
    with pytest.raises(DatabaseConnectionError):
        with db.transaction() as tx:
            tx.execute_query(f"INSERT INTO {table} VALUES (1)")
            pid = tx.execute_query("SELECT pg_backend_pid() AS pid")[0]["pid"]
            admin.execute_query("SELECT pg_terminate_backend(:pid)", {"pid": pid})
            time.sleep(0.2)
            tx.execute_query(f"INSERT INTO {table} VALUES (2)")
    assert db.execute_query(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


def test_network_cut_mid_transaction_leaves_nothing(
    env, proxy: FaultProxy, pg_url: str, db: dbflow.DatabaseManager, table: str
) -> None:  # type: ignore[no-untyped-def]
    db.execute_query(f"CREATE TABLE {table} (n int)")
    name = env.database(url=via(proxy, pg_url))
    cut = env.manager(name)
    try:
        with pytest.raises(DatabaseConnectionError):
            with cut.transaction() as tx:
                tx.execute_query(f"INSERT INTO {table} VALUES (1)")
                proxy.cut()
                tx.execute_query(f"INSERT INTO {table} VALUES (2)")
        time.sleep(0.3)
        assert db.execute_query(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]
    finally:
        cut.dispose()


def test_server_restart_mid_workload(env, pg_url: str, admin) -> None:  # type: ignore[no-untyped-def]
    name = env.database(pool_size=4, max_overflow=4, pool_timeout=5, connect_timeout=2)
    db = env.manager(name)
    stop = threading.Event()
    failures: list[BaseException] = []
    successes_after: list[float] = []
    restarted_at: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            try:
                db.execute_query("SELECT 1")
                if restarted_at:
                    with lock:
                        successes_after.append(time.monotonic())
            except DatabaseConnectionError:
                pass
            except BaseException as e:  # pragma: no cover - reported below
                failures.append(e)
            time.sleep(0.01)

    threads = [threading.Thread(target=work) for _ in range(6)]
    port = str(urllib.parse.urlsplit(pg_url).port)
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        subprocess.run(
            [str(REPO / "scripts" / "pg-server"), "restart"],
            check=True,
            env=dict(os.environ, DBFLOW_PG_PORT=port),
            timeout=60,
        )
        restarted_at.append(time.monotonic())
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a thread hung"
        assert not failures, failures
        assert successes_after and successes_after[0] - restarted_at[0] < 1.0
        app = f"dbflow_test_{name}_{os.getpid()}"
        open_now = admin.execute_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = :app", {"app": app}
        )[0]["n"]
        assert open_now <= 8
    finally:
        stop.set()
        db.dispose()


def test_a_statement_prepared_before_a_schema_change_is_prepared_afresh(
    db: dbflow.DatabaseManager, table: str
) -> None:
    """A migration that alters a table must not break the flows' cached
    `SELECT *` ("cached plan must not change result type"): outside a
    transaction the statement is prepared again, once."""
    db.execute_query(f"CREATE TABLE {table} (a int)")
    db.execute_query(f"INSERT INTO {table} VALUES (1)")
    select = f"SELECT * FROM {table}"
    for _ in range(3):
        assert db.execute_query(select) == [{"a": 1}]
    db.execute_query(f"ALTER TABLE {table} ADD b int")
    assert db.execute_query(select) == [{"a": 1, "b": None}]
    assert [r for r in db.iter_query(select)] == [{"a": 1, "b": None}]
    db.execute_query(f"ALTER TABLE {table} ADD c int")
    # Inside a transaction the server has aborted it: the error is the caller's.
    with pytest.raises(QueryError) as info:
        with db.transaction() as tx:
            tx.execute_query(select)
    assert info.value.sqlstate == "0A000"
    assert db.execute_query(select) == [{"a": 1, "b": None, "c": None}]
