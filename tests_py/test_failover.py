"""Several PostgreSQL hosts with libpq's semantics, and a real failover
(issue #26, item 1).

Every test runs against replicas.ReplicatedPair: a primary and its
synchronous streaming standby on loopback, both real servers reached over
TCP with a password. Failover is done for real: the primary stopped with
``-m immediate``, the standby promoted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import netpath
import pytest
import replicas
from envs import Env

import dbflow

pytestmark = pytest.mark.skipif(replicas.available() is not None, reason=str(replicas.available()))


@pytest.fixture
def pair() -> Iterator[replicas.ReplicatedPair]:
    p = replicas.ReplicatedPair()
    yield p
    p.close()


def manager(env: Env, url: str, **settings: object) -> dbflow.DatabaseManager:
    name = env.database(url=url, **{"pool_release_grace": 0, "connect_timeout": 3, **settings})
    return env.manager(name)


def server_port(db: dbflow.DatabaseManager) -> int:
    return int(db.execute_query("SELECT inet_server_port() AS p")[0]["p"])


def in_recovery(db: dbflow.DatabaseManager) -> bool:
    return bool(db.execute_query("SELECT pg_is_in_recovery() AS r")[0]["r"])


class Writer:
    """A flow's loop: one INSERT every 50 ms through the manager, each
    outcome kept as the flow saw it."""

    def __init__(self, db: dbflow.DatabaseManager) -> None:
        self.db = db
        self.committed: list[tuple[int, float]] = []
        self.maybe: list[int] = []
        self.not_run: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            try:
                self.db.execute_query("INSERT INTO writes (seq) VALUES (:seq)", {"seq": seq})
                self.committed.append((seq, time.monotonic()))
            except dbflow.DatabaseError as e:
                (self.maybe if getattr(e, "may_have_run", True) else self.not_run).append(seq)
                self.errors.append(str(e))
            time.sleep(0.05)

    def first_commit_after(self, moment: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [t for _, t in self.committed if t > moment]
            if later:
                return later[0]
            time.sleep(0.02)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the writer hung"


def test_writes_resume_after_a_failover_with_nothing_lost_or_doubled(
    env: Env, pair: replicas.ReplicatedPair, record_property: Any
) -> None:
    url = pair.url(pair.primary_port, pair.standby_port, target_session_attrs="read-write")
    db = manager(env, url, pool_size=2, max_overflow=0)
    db.execute_query("CREATE TABLE writes (seq int NOT NULL)")  # no key: a duplicate would show
    assert server_port(db) == pair.primary_port
    writer = Writer(db)
    try:
        time.sleep(1.0)
        before = len(writer.committed)
        assert before >= 5, writer.errors
        pair.crash_primary()
        time.sleep(1.0)  # the flow keeps trying: refused, or only a standby
        pair.promote()
        promoted = time.monotonic()
        resumed = writer.first_commit_after(promoted, timeout=15)
        assert resumed is not None, writer.errors[-3:]
        record_property("seconds_from_promotion_to_first_write", round(resumed - promoted, 3))
        assert resumed - promoted < 5.0
        time.sleep(0.5)
    finally:
        writer.stop()
    assert server_port(db) == pair.standby_port
    assert not in_recovery(db)
    # What the flow saw during the outage: typed errors naming the cause.
    assert any("none of the 2 servers gave a read-write session" in e for e in writer.errors), (
        writer.errors
    )
    assert not any("password" in e.lower() and replicas.PASSWORD in e for e in writer.errors)

    check = manager(env, pair.url(pair.standby_port), pool_size=1, max_overflow=0)
    stored = Counter(r["seq"] for r in check.execute_query("SELECT seq FROM writes"))
    committed = {seq for seq, _ in writer.committed}
    record_property("writes_committed", len(committed))
    record_property("writes_maybe_run", len(writer.maybe))
    assert all(stored[seq] == 1 for seq in committed), (
        "a write the flow saw committed is lost or doubled"
    )
    assert all(stored[seq] == 0 for seq in writer.not_run), (
        "a write refused before it ran is stored"
    )
    assert all(stored[seq] <= 1 for seq in writer.maybe)
    assert set(stored) <= committed | set(writer.maybe)
    check.dispose()
    db.dispose()


def test_a_demoted_primary_is_left_at_the_first_write(
    env: Env, pair: replicas.ReplicatedPair
) -> None:
    """The pool's connection to a server that turned read-only (SQLSTATE
    25006) is discarded; the write, refused whole, runs on the new primary."""
    url = pair.url(pair.primary_port, pair.standby_port, target_session_attrs="read-write")
    db = manager(env, url, pool_size=1, max_overflow=0, retry_attempts=2, retry_min_delay=0.1)
    db.execute_query("CREATE TABLE writes (seq int NOT NULL)")
    assert server_port(db) == pair.primary_port
    # Fence the old primary (read-only for every session) and promote the standby.
    pair.psql(pair.primary_port, "ALTER SYSTEM SET default_transaction_read_only = on")
    pair.psql(pair.primary_port, "SELECT pg_reload_conf()")
    pair.promote()
    wait_until(lambda: pair.psql(pair.standby_port, "SELECT pg_is_in_recovery()") == "f")
    pair.psql(pair.standby_port, "SELECT 1", database=replicas.DATABASE)
    with pytest.raises(dbflow.DatabaseError) as refused:
        db.execute_query("INSERT INTO writes (seq) VALUES (1)")
    assert "read-only now" in str(refused.value)
    db.execute_query_with_retry("INSERT INTO writes (seq) VALUES (2)")
    assert server_port(db) == pair.standby_port
    on_new = pair.psql(
        pair.standby_port,
        "SELECT string_agg(seq::text, ',') FROM writes",
        database=replicas.DATABASE,
    )
    assert on_new == "2"
    db.dispose()


def wait_until(ready: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("attrs", "standby"),
    [
        ("any", False),
        ("read-write", False),
        ("primary", False),
        ("read-only", True),
        ("standby", True),
        ("prefer-standby", True),
    ],
)
def test_session_attrs_choose_the_server(
    env: Env, pair: replicas.ReplicatedPair, attrs: str, standby: bool
) -> None:
    # The primary first: `read-only` and the standby rules must skip it.
    db = manager(
        env, pair.url(pair.primary_port, pair.standby_port, target_session_attrs=attrs), pool_size=1
    )
    assert in_recovery(db) is standby
    assert server_port(db) == (pair.standby_port if standby else pair.primary_port)
    db.dispose()


def test_no_matching_server_and_the_fallback_of_prefer_standby(
    env: Env, pair: replicas.ReplicatedPair
) -> None:
    only_primary = pair.url(pair.primary_port, target_session_attrs="standby")
    db = manager(env, only_primary, pool_size=1)
    with pytest.raises(dbflow.DatabaseConnectionError) as none:
        db.execute_query("SELECT 1")
    message = str(none.value)
    assert "none of the 1 servers gave a session on a standby" in message
    assert f"127.0.0.1:{pair.primary_port}: the session is a read-write primary" in message
    assert replicas.PASSWORD not in message
    db.dispose()
    prefer = manager(
        env, pair.url(pair.primary_port, target_session_attrs="prefer-standby"), pool_size=1
    )
    assert not in_recovery(prefer), "prefer-standby takes the primary when no standby answers"
    prefer.dispose()


def test_a_host_that_is_down_is_skipped_and_the_query_form(
    env: Env, pair: replicas.ReplicatedPair
) -> None:
    down = pair.url(pair.standby_port).replace("@127.0.0.1:", "@127.0.0.1:1,127.0.0.1:")
    db = manager(env, down, pool_size=1)
    assert server_port(db) == pair.standby_port
    db.dispose()
    # libpq's other spelling: ?host=h1,h2&port=p1,p2
    listed = (
        f"postgresql://{replicas.USER}:{replicas.PASSWORD}@/{replicas.DATABASE}"
        f"?host=127.0.0.1,127.0.0.1&port={pair.standby_port},{pair.primary_port}&target_session_attrs=primary"
    )
    db = manager(env, listed, pool_size=1)
    assert server_port(db) == pair.primary_port
    db.dispose()


def test_random_order_spreads_new_connections(env: Env, pair: replicas.ReplicatedPair) -> None:
    url = pair.url(pair.primary_port, pair.standby_port, load_balance_hosts="random")
    seen = Counter()
    for _ in range(16):
        db = manager(env, url, pool_size=1, max_overflow=0)
        seen[server_port(db)] += 1
        db.dispose()
    assert set(seen) == {pair.primary_port, pair.standby_port}, seen


@pytest.mark.skipif(netpath.available() is not None, reason=str(netpath.available()))
def test_a_host_that_swallows_packets_costs_one_connect_timeout(
    env: Env, pair: replicas.ReplicatedPair, record_property: Any
) -> None:
    path = netpath.DeadablePath(pair.primary_port)
    try:
        path.cut()  # the first host's SYNs go nowhere
        url = pair.url(pair.standby_port).replace(
            "@127.0.0.1:", f"@{path.host}:{path.port},127.0.0.1:"
        )
        db = manager(env, url, pool_size=1, connect_timeout=2)
        started = time.monotonic()
        assert server_port(db) == pair.standby_port
        took = time.monotonic() - started
        record_property("seconds_to_connect_past_a_silent_host", round(took, 3))
        assert 2.0 <= took < 2.0 + 6.0
        db.dispose()
    finally:
        path.close()
