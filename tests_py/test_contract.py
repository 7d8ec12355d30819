"""The DatabaseManager contract, run unchanged on every backend.

PostgreSQL always runs; SQL Server runs whenever DBFLOW_TEST_MSSQL_URL is set
(e.g. mssql://sa:pass@127.0.0.1:1433/master?encrypt=off) and is reported as
skipped, with that reason, otherwise.
"""

from __future__ import annotations

import datetime as dt
import gc
import threading
import time
import urllib.parse
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from backends import Backend

import dbflow
from dbflow import IntegrityError, ParameterError, PoolTimeoutError, QueryError, TransactionError

UTC = dt.timezone.utc


def count(db: dbflow.DatabaseManager, table: str) -> int:
    return int(db.execute_query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


def test_query_returns_list_of_dicts(bdb: dbflow.DatabaseManager, backend: Backend) -> None:
    assert bdb.database_type == backend.name
    assert bdb.execute_query("SELECT 1 AS one, 'two' AS two") == [{"one": 1, "two": "two"}]


def test_rows_as_tuples_and_large_results(bdb: dbflow.DatabaseManager, backend: Backend) -> None:
    sql = "SELECT 1 AS a, 'x' AS b, NULL AS c"
    assert bdb.execute_query(sql, as_tuples=True) == [(1, "x", None)]
    many = (
        "SELECT n, n * 2 AS twice FROM generate_series(1, 10000) AS n"
        if backend.name == "postgresql"
        else "SELECT TOP 10000 ROW_NUMBER() OVER (ORDER BY (SELECT 1)) AS n, "
        "2 * ROW_NUMBER() OVER (ORDER BY (SELECT 1)) AS twice "
        "FROM sys.all_objects a CROSS JOIN sys.all_objects b"
    )
    gc.enable()
    dicts = bdb.execute_query(many)
    assert gc.isenabled(), "the collector paused for building rows must be resumed"
    tuples = bdb.execute_query(many, as_tuples=True)
    assert [tuple(d.values()) for d in dicts] == tuples
    # Past several conversion batches, in order, nothing lost or repeated.
    assert tuples[-1] == (10000, 20000) and len(tuples) == 10000
    assert [t[0] for t in tuples] == list(range(1, 10001))
    gc.disable()
    try:
        bdb.execute_query(many)
        assert not gc.isenabled(), "a collector the application disabled stays disabled"
    finally:
        gc.enable()


def test_the_collector_runs_while_a_query_waits_on_the_server(
    bdb: dbflow.DatabaseManager, backend: Backend
) -> None:
    slow = backend.sleep_sql(0.6)
    gc.enable()
    waiting = threading.Thread(target=bdb.execute_query, args=(slow,))
    waiting.start()
    time.sleep(0.3)
    try:
        # Rows are built with the collector paused, but no rows have come:
        # other threads keep their garbage collection meanwhile.
        assert gc.isenabled()
    finally:
        waiting.join(10)
    assert gc.isenabled()


# PostgreSQL dates reach year 5874897; SQL Server's stop at 9999.
@pytest.mark.backends("postgresql", "pgbouncer")
def test_a_value_python_cannot_hold_fails_the_read_cleanly(bdb: dbflow.DatabaseManager) -> None:
    # Row 9000 (in a later conversion batch) holds a date past Python's year 9999.
    sql = (
        "SELECT n, CASE WHEN n = 9000 THEN DATE '20000-01-01' ELSE DATE '2020-01-01' END AS d "
        "FROM generate_series(1, 10000) AS n"
    )
    with pytest.raises(ValueError, match=r"column d: .*year.*d::text"):
        bdb.execute_query(sql)
    with pytest.raises(ValueError, match=r"column d: .*year"):
        bdb.execute_query(sql, as_tuples=True)
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
    assert bdb.get_pool_status()["checked_out"] == 0


def test_parameters_bind_repeat_and_ignore_extras(bdb: dbflow.DatabaseManager) -> None:
    rows = bdb.execute_query(
        "SELECT :a AS a, :b AS b, :a AS again", {"a": 7, "b": "x", "extra": object()}
    )
    assert rows == [{"a": 7, "b": "x", "again": 7}]


def test_missing_parameter_raises_before_sending(bdb: dbflow.DatabaseManager) -> None:
    with pytest.raises(ParameterError, match=":b"):
        bdb.execute_query("SELECT :a AS a, :b AS b", {"a": 1})
    assert bdb.get_pool_status()["connections_opened"] == 0


def test_values_are_never_interpolated(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (name {{text}})"))
    evil = f"x'); DROP TABLE {btable}; --"
    bdb.execute_query(f"INSERT INTO {btable} (name) VALUES (:n)", {"n": evil})
    assert bdb.execute_query(f"SELECT name FROM {btable}") == [{"name": evil}]


def round_trip_values(backend: Backend) -> dict[str, tuple[str, Any]]:
    return {
        "i": ("{int}", -42),
        "b": ("{bigint}", 2**40),
        "t": ("{text}", "héllo ' wörld " * 500),
        "n": ("{numeric}", Decimal("1234.5600")),
        "f": ("{float}", 2.5),
        "flag": ("{bool}", True),
        "raw": ("{bytes}", b"\x00\x01\xff"),
        "d": ("{date}", dt.date(2024, 2, 29)),
        "tm": ("{time}", dt.time(13, 14, 15, 123456)),
        "ts": ("{timestamp}", dt.datetime(2024, 1, 2, 3, 4, 5, 678901)),
        "tz": ("{timestamptz}", dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)),
        "u": ("{uuid}", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        "nothing": ("{int}", None),
    }


def test_values_round_trip_through_typed_columns(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    values = round_trip_values(backend)
    columns = ", ".join(f"{k} {backend.ddl(ty)}" for k, (ty, _) in values.items())
    bdb.execute_query(f"CREATE TABLE {btable} ({columns})")
    row = {k: v for k, (_, v) in values.items()}
    names = ", ".join(row)
    bdb.execute_query(
        f"INSERT INTO {btable} ({names}) VALUES ({', '.join(':' + k for k in row)})", row
    )
    got = bdb.execute_query(f"SELECT {names} FROM {btable}")[0]
    assert got == row
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in row.items()}


def test_datetimes_of_any_tzinfo_keep_their_instant(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    """zoneinfo (and dateutil, pendulum) zones are not fixed offsets: the
    offset is the one the datetime itself reports, summer and winter."""
    berlin = ZoneInfo("Europe/Berlin")
    values = [
        dt.datetime(2026, 7, 1, 12, 0, 0, 250000, tzinfo=berlin),  # +02:00
        dt.datetime(2026, 1, 1, 12, 0, tzinfo=berlin),  # +01:00
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("America/St_Johns")),  # -03:30
        dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))),
    ]
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}}, at {{timestamptz}})"))
    insert = f"INSERT INTO {btable} (id, at) VALUES (:id, :at)"
    bdb.execute_query(insert, {"id": 0, "at": values[0]})
    bdb.execute_many(insert, [{"id": i, "at": v} for i, v in enumerate(values) if i in (1, 2)])
    bdb.bulk_insert(btable, [{"id": 3, "at": values[3]}])
    got = bdb.execute_query(f"SELECT id, at FROM {btable} ORDER BY id")
    assert [r["at"] for r in got] == values  # aware datetimes compare as instants
    assert [r["at"] - v for r, v in zip(got, values, strict=True)] == [dt.timedelta(0)] * 4


def test_execute_many_is_one_transaction(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, v {{text}})"))
    insert = f"INSERT INTO {btable} (id, v) VALUES (:id, :v)"
    assert bdb.execute_many(insert, [{"id": i, "v": str(i)} for i in range(50)]) == 50
    with pytest.raises(IntegrityError) as info:
        bdb.execute_many(insert, [{"id": 100, "v": "x"}, {"id": 1, "v": "dup"}])
    assert (info.value.sqlstate, info.value.error_number) in {("23505", None), (None, 2627)}
    assert count(bdb, btable) == 50


def test_execute_many_values_may_change_type_between_chunks(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    """Thousands of rows go in several statements, the later ones bound to
    the first one's parameter types: a value those types refuse (a bigger
    int, a UUID as text, an int where a Decimal was) must still go in."""
    bdb.execute_query(
        backend.ddl(
            f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, big {{bigint}}, ref {{uuid}}, "
            f"score {{numeric}})"
        )
    )
    n = 3000

    def row(i: int) -> dict[str, Any]:
        late = i >= n // 2
        ref = uuid.UUID(int=i)
        return {
            "id": i,
            "big": 2**40 + i if late else i,
            "ref": str(ref) if late else ref,
            "score": None if i % 7 == 0 else (i if late else Decimal(i) / 4),
        }

    insert = f"INSERT INTO {btable} (id, big, ref, score) VALUES (:id, :big, :ref, :score)"
    assert bdb.execute_many(insert, (row(i) for i in range(n))) == n
    got = bdb.execute_query(f"SELECT id, big, ref, score FROM {btable} ORDER BY id")
    want = [
        {
            **r,
            "ref": uuid.UUID(str(r["ref"])),
            "score": None if r["score"] is None else Decimal(r["score"]),
        }
        for r in map(row, range(n))
    ]
    assert len(got) == n
    assert got == want


def test_execute_many_updates_and_deletes_in_bulk(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    """Statements other than a plain INSERT (here UPDATE and DELETE, more
    sets than one round trip carries on PostgreSQL) apply every set, with
    values whose types change along the way, and count the rows."""
    bdb.execute_query(
        backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, big {{bigint}}, v {{text}})")
    )
    n = 2500
    bdb.bulk_insert(btable, [(i, 0, "") for i in range(n)], columns=["id", "big", "v"])
    sets = [
        {"id": i, "big": 2**40 + i if i > 1200 else i, "v": None if i % 9 == 0 else f"v{i}"}
        for i in range(n)
    ]
    update = f"UPDATE {btable} SET big = :big, v = :v WHERE id = :id"
    assert bdb.execute_many(update, sets) == n
    got = bdb.execute_query(f"SELECT id, big, v FROM {btable} ORDER BY id")
    assert got == sets
    delete = f"DELETE FROM {btable} WHERE id = :id"
    assert bdb.execute_many(delete, [{"id": i} for i in range(0, n, 2)]) == n // 2
    assert count(bdb, btable) == n // 2


def test_execute_many_stops_at_the_failing_set_and_applies_none(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(
        backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, v {{text}} NOT NULL)")
    )
    bdb.bulk_insert(btable, [(i, "kept") for i in range(2000)], columns=["id", "v"])
    sets = [{"id": i, "v": None if i == 1500 else "changed"} for i in range(2000)]
    with pytest.raises(IntegrityError):
        bdb.execute_many(f"UPDATE {btable} SET v = :v WHERE id = :id", sets)
    assert bdb.execute_query(f"SELECT DISTINCT v FROM {btable}") == [{"v": "kept"}]
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]  # the connection is sound
    assert bdb.get_pool_status()["checked_out"] == 0


@pytest.mark.backends("postgresql", "pgbouncer")
def test_execute_many_of_a_statement_returning_rows_runs_every_set(
    bdb: dbflow.DatabaseManager, btable: str
) -> None:
    bdb.execute_query(f"CREATE TABLE {btable} (id int PRIMARY KEY, v text)")
    bdb.bulk_insert(btable, [(i, "a") for i in range(1200)], columns=["id", "v"])
    sql = f"UPDATE {btable} SET v = :v WHERE id = :id RETURNING id"
    assert bdb.execute_many(sql, [{"id": i, "v": "b"} for i in range(1200)]) == 1200
    assert bdb.execute_query(f"SELECT COUNT(*) AS n FROM {btable} WHERE v = 'b'") == [{"n": 1200}]


@pytest.mark.backends("postgresql", "pgbouncer")
def test_execute_many_upserts_the_same_key_many_times(
    bdb: dbflow.DatabaseManager, btable: str
) -> None:
    """An upsert runs set by set (pipelined), so one batch may touch a key
    again and again, which one multi-row statement could not."""
    bdb.execute_query(f"CREATE TABLE {btable} (id int PRIMARY KEY, hits int NOT NULL)")
    upsert = (
        f"INSERT INTO {btable} (id, hits) VALUES (:id, 1) "
        f"ON CONFLICT (id) DO UPDATE SET hits = {btable}.hits + 1"
    )
    assert bdb.execute_many(upsert, [{"id": i % 10} for i in range(3000)]) == 3000
    got = bdb.execute_query(f"SELECT id, hits FROM {btable} ORDER BY id")
    assert got == [{"id": i, "hits": 300} for i in range(10)]


def test_execute_transaction_all_or_nothing(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY)"))
    results = bdb.execute_transaction(
        [
            (f"INSERT INTO {btable} (id) VALUES (:id)", {"id": 1}),
            (f"SELECT COUNT(*) AS n FROM {btable}", None),
        ]
    )
    assert results == [[], [{"n": 1}]]
    with pytest.raises(IntegrityError):
        bdb.execute_transaction(
            [
                (f"INSERT INTO {btable} (id) VALUES (:id)", {"id": 2}),
                (f"INSERT INTO {btable} (id) VALUES (:id)", {"id": 1}),
            ]
        )
    assert count(bdb, btable) == 1


def test_transaction_context_commit_rollback_savepoint(
    bdb: dbflow.DatabaseManager, backend: Backend, btable: str
) -> None:
    bdb.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY)"))
    with bdb.transaction() as tx:
        tx.execute_query(f"INSERT INTO {btable} (id) VALUES (1)")
        with pytest.raises(IntegrityError):
            with tx.savepoint():
                tx.execute_query(f"INSERT INTO {btable} (id) VALUES (2)")
                tx.execute_query(f"INSERT INTO {btable} (id) VALUES (1)")
        tx.execute_query(f"INSERT INTO {btable} (id) VALUES (3)")
    assert bdb.execute_query(f"SELECT id FROM {btable} ORDER BY id") == [{"id": 1}, {"id": 3}]

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with bdb.transaction() as tx:
            tx.execute_query(f"INSERT INTO {btable} (id) VALUES (4)")
            raise Boom
    assert count(bdb, btable) == 2
    with pytest.raises(TransactionError):
        tx.execute_query("SELECT 1")
    status = bdb.get_pool_status()
    assert status["checked_out"] == 0


def test_query_errors_carry_the_server_code(bdb: dbflow.DatabaseManager, backend: Backend) -> None:
    with pytest.raises(QueryError) as info:
        bdb.execute_query("SELECT * FROM no_such_table_anywhere")
    if backend.name == "postgresql":
        assert info.value.sqlstate == "42P01" and info.value.error_number is None
    else:
        assert info.value.error_number in backend.missing_table_numbers
        assert info.value.sqlstate is None
    assert info.value.database == bdb.database_name
    assert bdb.execute_query("SELECT 1 AS ok") == [{"ok": 1}]


def test_pool_limits_and_overflow(env, backend: Backend, bsessions) -> None:  # type: ignore[no-untyped-def]
    name = env.database(backend=backend, pool_size=1, max_overflow=1, pool_timeout=0.3)
    db = env.manager(name)
    try:
        with db.transaction(), db.transaction():
            assert db.get_pool_status()["overflow"] == 1
            with pytest.raises(PoolTimeoutError, match="max_overflow=1"):
                db.execute_query("SELECT 1")
        deadline = time.monotonic() + 5
        while bsessions(name) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bsessions(name) == 1
        assert db.get_pool_status()["overflow"] == 0
    finally:
        db.dispose()


def test_threads_share_one_pool_within_its_limit(env, backend: Backend, bsessions) -> None:  # type: ignore[no-untyped-def]
    name = env.database(backend=backend, pool_size=2, max_overflow=2)
    managers = [env.manager(name) for _ in range(8)]
    errors: list[BaseException] = []

    def work(db: dbflow.DatabaseManager) -> None:
        try:
            for _ in range(20):
                assert db.execute_query("SELECT 1 AS x") == [{"x": 1}]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(m,)) for m in managers]
    peak = 0
    for t in threads:
        t.start()
    # Count the pool's sessions on the server while the work runs.
    while any(t.is_alive() for t in threads):
        peak = max(peak, bsessions(name))
        time.sleep(0.01)
    for t in threads:
        t.join(60)
    try:
        assert not errors
        assert 1 <= peak <= 4, f"{peak} sessions at once; pool_size + max_overflow is 4"
        assert managers[0].get_pool_status()["users"] == 8
        # Overflow closes once idle for OVERFLOW_IDLE_TIMEOUT (2 s by default).
        deadline = time.monotonic() + 10
        while bsessions(name) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bsessions(name) <= 2
    finally:
        for m in managers:
            m.dispose()


def test_dead_connection_is_replaced(env, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    name = env.database(backend=backend, pool_size=1, max_overflow=0)
    killer = env.database(backend=backend, pool_size=1, max_overflow=0)
    db, admin = env.manager(name), env.manager(killer)
    try:
        pid = db.execute_query(backend.backend_pid_sql)[0]["pid"]
        if backend.console is not None:
            # Through PgBouncer our connections are its clients: drop them there.
            database = urllib.parse.urlsplit(backend.url).path.lstrip("/")
            backend.console(f"KILL {database}")
            backend.console(f"RESUME {database}")
        elif backend.name == "postgresql":
            admin.execute_query(backend.kill_sql, {"pid": pid})
        else:
            admin.execute_query(f"KILL {int(pid)}")
        time.sleep(1.2)  # idle past the pre-ping threshold
        assert db.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
        assert db.get_pool_status()["invalid"] >= 1
        if backend.via == "direct" and backend.name == "postgresql":
            # SQL Server may reuse a session id at once; PgBouncer may hand
            # out any of its server sessions.
            assert db.execute_query(backend.backend_pid_sql)[0]["pid"] != pid
    finally:
        db.dispose()
        admin.dispose()


def end_sessions(backend: Backend, admin: dbflow.DatabaseManager, pids: list[int]) -> None:
    """End sessions from outside, as an administrator or a restart would."""
    if backend.console is not None:
        database = urllib.parse.urlsplit(backend.url).path.lstrip("/")
        backend.console(f"KILL {database}")
        backend.console(f"RESUME {database}")
    for pid in pids if backend.console is None else []:
        if backend.name == "postgresql":
            admin.execute_query(backend.kill_sql, {"pid": pid})
        else:
            admin.execute_query(f"KILL {int(pid)}")


@pytest.mark.parametrize("pre_ping", ["true", "false"])
def test_connections_the_server_ended_moments_ago_are_never_handed_out(  # type: ignore[no-untyped-def]
    env, backend: Backend, bsessions, pre_ping: str
) -> None:
    """The sessions are ended while idle in the pool and used again at once,
    well inside the pre-ping idle threshold: the socket already says they
    are closed, so no caller sees the server's farewell."""
    name = env.database(backend=backend, pool_size=3, max_overflow=0, pool_pre_ping=pre_ping)
    killer = env.database(backend=backend, pool_size=1, max_overflow=0)
    db, admin = env.manager(name), env.manager(killer)
    try:
        barrier = threading.Barrier(3)
        pids: list[int] = []

        def hold() -> None:
            with db.transaction() as tx:
                pids.append(tx.execute_query(backend.backend_pid_sql)[0]["pid"])
                barrier.wait(10)

        threads = [threading.Thread(target=hold) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(set(pids)) == 3 and db.get_pool_status()["checked_in"] == 3
        end_sessions(backend, admin, pids)
        deadline = time.monotonic() + 10
        while bsessions(name) > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bsessions(name) == 0
        for _ in range(6):
            assert db.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
        with db.transaction() as tx:
            assert tx.execute_query("SELECT 2 AS ok") == [{"ok": 2}]
        assert db.get_pool_status()["invalid"] >= 3
    finally:
        db.dispose()
        admin.dispose()


def test_configured_query_timeout_raises_and_pool_recovers(env, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    name = env.database(backend=backend, pool_size=1, max_overflow=0, query_timeout=0.5)
    db = env.manager(name)
    slow = backend.sleep_sql(3)
    try:
        started = time.monotonic()
        with pytest.raises(dbflow.QueryTimeoutError) as info:
            db.execute_query(slow)
        assert time.monotonic() - started < 2.5
        assert isinstance(info.value, TimeoutError)
        assert info.value.database == name
        assert db.execute_query("SELECT 1 AS ok") == [{"ok": 1}]
        assert db.get_pool_status()["checked_out"] == 0
    finally:
        db.dispose()
