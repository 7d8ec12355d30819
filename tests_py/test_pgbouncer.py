"""Behind PgBouncer in transaction-pooling mode, many clients share a few
server sessions: with PREPARED_STATEMENTS=false nothing of one client's
(prepared statements, settings) may outlive its transaction. The contract
suite also runs through PgBouncer (its `pgbouncer` parameter)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from backends import Backend, pgbouncer, pgbouncer_urls, with_database

import dbflow


@pytest.fixture
def bouncer() -> Backend:
    urls = pgbouncer_urls()
    if urls is None:
        pytest.fail("DBFLOW_TEST_PGBOUNCER_URL is not set; scripts/pg-server start sets it")
    return pgbouncer(*urls)


@pytest.fixture
def events_db(pg_database, bouncer: Backend) -> str:  # type: ignore[no-untyped-def]
    """A fresh database; its PgBouncer URL."""
    return with_database(bouncer.url, pg_database())


# Each client thread runs statements of several shapes (so names collide if
# they leak between sessions), transactions with savepoints, execute_many,
# a streamed read and a deadline, and reports what failed.
CLIENTS = textwrap.dedent(
    """
    import dbflow, json, sys, threading
    worker, envs, prepared = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    lines = [f"TEST_GLOBAL_EV_CONNECTION_STRING={sys.argv[4]}",
             "TEST_GLOBAL_EV_POOL_SIZE=4", "TEST_GLOBAL_EV_MAX_OVERFLOW=4",
             f"TEST_GLOBAL_EV_PREPARED_STATEMENTS={prepared}"]
    import pathlib
    pathlib.Path(envs, ".env.test").write_text("\\n".join(lines) + "\\n")
    db = dbflow.DatabaseManager("ev", config=dbflow.ConfigManager("test", envs_dir=envs))
    errors = []

    def client(k):
        base = (worker * 100 + k) * 1000
        q = db.execute_query
        try:
            for i in range(15):
                key = base + i
                q("INSERT INTO events (id, worker, note) VALUES (:id, :w, :n)",
                  {"id": key, "w": worker, "n": f"c{k}"})
                assert q("SELECT id FROM events WHERE id = :id", {"id": key}) == [{"id": key}]
                assert q("SELECT :a::int + :b::int AS s", {"a": i, "b": k}) == [{"s": i + k}]
                update = "UPDATE events SET note = :n WHERE id = :id"
                with db.transaction() as tx:
                    tx.execute_query(update, {"n": "tx", "id": key})
                    with tx.savepoint():
                        tx.execute_query(update, {"n": "inner", "id": key})
                    try:
                        with tx.savepoint():
                            tx.execute_query(update, {"n": "undone", "id": key})
                            tx.execute_query("SELECT 1 / 0")
                    except dbflow.QueryError:
                        pass
                db.execute_many("INSERT INTO events (id, worker, note) VALUES (:id, :w, 'many')",
                                [{"id": -(key * 10 + j + 1), "w": worker} for j in range(3)])
                streamed = db.iter_query("SELECT * FROM events WHERE worker = :w LIMIT 5",
                                         {"w": worker}, batch_size=2)
                assert sum(1 for _ in streamed) <= 5
                db.execute_query_with_timeout("SELECT count(*) AS n FROM events", None, 5)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")

    sys.stdin.readline()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.dispose()
    print(json.dumps({"errors": errors}))
    """
)


def run_clients(tmp_path: Path, url: str, prepared: str, workers: int = 4) -> list[str]:
    procs = []
    for w in range(workers):
        envs = tmp_path / f"{prepared}-{w}"
        envs.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CLIENTS, str(w), str(envs), prepared, url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    errors: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        errors.extend(json.loads(out)["errors"])
    return errors


EVENTS = "CREATE TABLE events (id bigint PRIMARY KEY, worker int NOT NULL, note text)"


def test_many_clients_share_server_sessions_without_leaking_statements(
    env, tmp_path: Path, events_db: str
) -> None:  # type: ignore[no-untyped-def]
    db = env.manager(env.database(url=events_db, prepared_statements="false"))
    db.execute_query(EVENTS)
    # 4 processes x 8 threads x pools of 4+4 = up to 32 clients on
    # PgBouncer's 20 server sessions.
    assert run_clients(tmp_path, events_db, "false") == []
    rows = db.execute_query(
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, "
        "count(*) FILTER (WHERE note = 'inner') AS inner_done FROM events"
    )
    assert rows == [{"n": 4 * 8 * 15 * 4, "ids": 4 * 8 * 15 * 4, "inner_done": 4 * 8 * 15}]


def test_the_same_clients_fail_with_prepared_statements_on(
    env, tmp_path: Path, events_db: str
) -> None:  # type: ignore[no-untyped-def]
    """The control: PgBouncer's transaction pooling really does break named
    statements that outlive a transaction, so the test above can fail."""
    db = env.manager(env.database(url=events_db, prepared_statements="false"))
    db.execute_query(EVENTS)
    errors = run_clients(tmp_path, events_db, "true", workers=2)
    assert errors, "named statements survived transaction pooling; the control proves nothing"
    assert any("prepared statement" in e for e in errors), errors[:3]


def test_server_sessions_keep_nothing_from_their_clients(env, bouncer: Backend) -> None:  # type: ignore[no-untyped-def]
    name = env.database(backend=bouncer, pool_size=10, max_overflow=0, query_timeout=7)
    db = env.manager(name)
    try:
        for i in range(30):
            db.execute_query_with_timeout("SELECT :i::int AS i", {"i": i}, 3)
            with db.transaction() as tx:
                tx.execute_query("SET LOCAL statement_timeout = 2000")
                assert tx.execute_query("SHOW statement_timeout") == [{"statement_timeout": "2s"}]
            assert db.execute_query("SHOW statement_timeout") == [{"statement_timeout": "7s"}]
        seen: list[dict[str, object]] = []

        def probe() -> None:
            with db.transaction() as tx:
                seen.extend(
                    tx.execute_query(
                        "SELECT (SELECT count(*) FROM pg_prepared_statements) AS statements, "
                        "current_setting('statement_timeout') AS deadline, pg_backend_pid() AS pid"
                    )
                )

        threads = [threading.Thread(target=probe) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(seen) == 10
        # Only the probe's own statement exists in each session, and the
        # per-transaction deadline is the configured one, not a leftover.
        assert {(r["statements"], r["deadline"]) for r in seen} == {(1, "7s")}
    finally:
        db.dispose()


def test_statements_that_refuse_a_transaction_still_run(
    env, bouncer: Backend, events_db: str
) -> None:  # type: ignore[no-untyped-def]
    db = env.manager(env.database(url=events_db, prepared_statements="false"))
    db.execute_query(EVENTS)
    db.execute_many(
        "INSERT INTO events (id, worker) VALUES (:id, 1)", [{"id": i} for i in range(100)]
    )
    assert db.execute_query("VACUUM events") == []
    assert db.execute_query("CREATE INDEX CONCURRENTLY events_worker ON events (worker)") == []
    assert db.execute_query(
        "SELECT indisvalid AS ok FROM pg_index WHERE indexrelid = 'events_worker'::regclass"
    ) == [{"ok": True}]
    # Inside the caller's transaction the server's refusal is the answer.
    with pytest.raises(dbflow.QueryError) as info, db.transaction() as tx:
        tx.execute_query("VACUUM events")
    assert info.value.sqlstate == "25001"


def test_pgbouncer_mode_refuses_startup_options(env, bouncer: Backend) -> None:  # type: ignore[no-untyped-def]
    name = env.database(
        url=bouncer.url + "?options=-c%20search_path%3Dpublic", prepared_statements="false"
    )
    with pytest.raises(dbflow.ConfigurationError, match="'options' startup parameter"):
        env.manager(name)


def test_async_manager_through_pgbouncer(env, bouncer: Backend, events_db: str) -> None:  # type: ignore[no-untyped-def]
    name = env.database(url=events_db, prepared_statements="false", pool_size=3, max_overflow=2)
    config = env.config()

    async def main() -> tuple[int, int, list[int]]:
        async with dbflow.AsyncDatabaseManager(name, config=config) as db:
            await db.execute_query(EVENTS)

            async def client(k: int) -> None:
                for i in range(10):
                    key = k * 100 + i
                    async with db.transaction() as tx:
                        await tx.execute_query(
                            "INSERT INTO events (id, worker) VALUES (:id, :k)", {"id": key, "k": k}
                        )
                    await db.execute_query("SELECT id FROM events WHERE id = :id", {"id": key})

            await asyncio.gather(*(client(k) for k in range(12)))
            streamed = [r["id"] async for r in db.iter_query("SELECT id FROM events ORDER BY id")]
            n = await db.bulk_insert("events", [(10_000 + i, 99, "b") for i in range(50)])
            count = (await db.execute_query("SELECT count(*) AS n FROM events"))[0]["n"]
            return n, int(count), streamed

    loaded, count, streamed = asyncio.run(main())
    assert loaded == 50 and count == 12 * 10 + 50
    assert streamed == sorted(k * 100 + i for k in range(12) for i in range(10))
