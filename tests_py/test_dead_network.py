"""A network path that dies without a reset never leaves a call waiting
past its deadline (issue #26, item 4).

Each test reaches a real server through netpath.DeadablePath (a veth pair
into a network namespace whose link the test takes down: packets dropped,
nothing reset) with `socket_timeout=3` and `connect_timeout=3`. For every
case it checks the call's outcome, how long after the cut it ended against
the deadline, what reached the server (counted over a direct connection)
and the pool afterwards. Durations land in the test report's properties.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import netpath
import pytest
from backends import Backend

import dbflow

pytestmark = [
    pytest.mark.backends("postgresql", "sqlserver"),
    pytest.mark.skipif(netpath.available() is not None, reason=str(netpath.available())),
]

DEADLINE = 3.0
#: What a loaded machine may add to a kernel timer firing and the error
#: reaching Python. A call that hung would take minutes.
SLACK = 6.0


@pytest.fixture
def path(backend: Backend) -> Iterator[netpath.DeadablePath]:
    p = netpath.DeadablePath(urllib.parse.urlsplit(backend.url).port or 0)
    yield p
    p.close()


def through(path: netpath.DeadablePath, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{path.host}:{path.port}"))


@pytest.fixture
def across(
    env: Any, backend: Backend, path: netpath.DeadablePath
) -> Iterator[Callable[..., dbflow.DatabaseManager]]:
    """Managers whose every connection crosses the path."""
    made: list[dbflow.DatabaseManager] = []

    def manager(**settings: object) -> dbflow.DatabaseManager:
        name = env.database(
            url=through(path, backend.url),
            **{
                **backend.settings,
                "pool_size": 1,
                "max_overflow": 0,
                "pool_release_grace": 0,
                "socket_timeout": DEADLINE,
                "connect_timeout": 3,
                **settings,
            },
        )
        made.append(env.manager(name))
        return made[-1]

    yield manager
    for m in made:
        m.dispose()


@pytest.fixture
def marks(
    bdb: dbflow.DatabaseManager, backend: Backend, path: netpath.DeadablePath
) -> Iterator[str]:
    name = f"marks_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    bdb.execute_query(backend.ddl(f"CREATE TABLE {name} (v {{int}}, pad {{text}})"))
    yield name
    # The server's side of a cut link is still open (its peer is the relay,
    # which lives): a load it was receiving holds the table until the
    # relays go and the server sees the link end.
    path.close()
    bdb.execute_query(f"DROP TABLE IF EXISTS {name}")


def count(bdb: dbflow.DatabaseManager, table: str) -> int:
    return int(bdb.execute_query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


class Call:
    """A call on its own thread; the test cuts the path meanwhile."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self.result: object = None
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], object]) -> None:
        try:
            self.result = work()
        except BaseException as e:
            self.error = e
        self.ended_at = time.monotonic()

    def seconds_after_cut(
        self, path: netpath.DeadablePath, record: Callable[[str, object], None]
    ) -> float:
        """Wait for the call to end; how long after the cut it did (also
        written to the test report)."""
        self._thread.join(DEADLINE + SLACK + 30)
        assert not self._thread.is_alive(), "the call still waits on a dead network"
        assert path.cut_at is not None, "the path was never cut"
        after = self.ended_at - path.cut_at
        record("seconds_after_cut", round(after, 2))
        return after


def assert_stopped_answering(error: BaseException | None) -> None:
    assert isinstance(error, dbflow.DatabaseConnectionError), repr(error)
    assert "the server stopped answering" in str(error), str(error)
    assert "socket_timeout" in str(error)


def assert_recovers(db: dbflow.DatabaseManager, path: netpath.DeadablePath) -> None:
    """With the link back, the same manager works again: the dead
    connection was discarded, not handed out."""
    path.restore()
    assert db.execute_query("SELECT 1 AS one") == [{"one": 1}]
    status = db.get_pool_status()
    assert status["checked_out"] == 0 and status["checked_in"] == 1, status


def test_a_black_hole_while_the_server_works_ends_the_call_at_the_deadline(
    across: Callable[..., dbflow.DatabaseManager],
    path: netpath.DeadablePath,
    backend: Backend,
    record_property: Callable[[str, object], None],
) -> None:
    db = across()
    db.execute_query("SELECT 1 AS one")
    # The request is sent and acknowledged; the server works for 30 s and
    # the link dies meanwhile: only the keepalive probes can notice.
    call = Call(lambda: db.execute_query(backend.sleep_sql(30)))
    time.sleep(0.5)
    path.cut()
    after = call.seconds_after_cut(path, record_property)
    assert_stopped_answering(call.error)
    assert DEADLINE - 1.0 <= after <= DEADLINE + SLACK, after
    assert call.error.may_have_run  # type: ignore[union-attr]
    assert_recovers(db, path)


def test_a_request_swallowed_by_the_network_ends_at_the_deadline_and_runs_nowhere(
    across: Callable[..., dbflow.DatabaseManager],
    path: netpath.DeadablePath,
    bdb: dbflow.DatabaseManager,
    marks: str,
    record_property: Callable[[str, object], None],
) -> None:
    # No pre-ping: the insert itself is the first packet into the void.
    db = across(pool_pre_ping=False)
    db.execute_query("SELECT 1 AS one")
    path.cut()
    call = Call(lambda: db.execute_query(f"INSERT INTO {marks} (v, pad) VALUES (1, 'x')"))
    after = call.seconds_after_cut(path, record_property)
    assert_stopped_answering(call.error)
    assert DEADLINE - 0.5 <= after <= DEADLINE + SLACK, after
    # The kernel had taken the bytes: dbflow cannot know they never arrived.
    assert call.error.may_have_run  # type: ignore[union-attr]
    assert_recovers(db, path)
    assert count(bdb, marks) == 0


def test_a_dead_path_at_checkout_is_found_by_the_pre_ping_and_the_connect_timeout(
    across: Callable[..., dbflow.DatabaseManager],
    path: netpath.DeadablePath,
    bdb: dbflow.DatabaseManager,
    marks: str,
    record_property: Callable[[str, object], None],
) -> None:
    db = across()
    db.execute_query("SELECT 1 AS one")
    time.sleep(1.2)  # idle long enough for the pre-ping
    path.cut()
    call = Call(lambda: db.execute_query(f"INSERT INTO {marks} (v, pad) VALUES (1, 'x')"))
    after = call.seconds_after_cut(path, record_property)
    # The ping dies at the socket deadline, the new connection's SYN at the
    # connect timeout: the insert was never sent.
    assert isinstance(call.error, dbflow.DatabaseConnectionError), repr(call.error)
    assert "connect timeout" in str(call.error), str(call.error)
    assert not call.error.may_have_run
    assert after <= DEADLINE + 3 + SLACK, after
    assert_recovers(db, path)
    assert count(bdb, marks) == 0


def test_a_login_into_a_black_hole_ends_at_the_connect_timeout(
    across: Callable[..., dbflow.DatabaseManager],
    path: netpath.DeadablePath,
    record_property: Callable[[str, object], None],
) -> None:
    db = across()
    path.cut()
    started = time.monotonic()
    with pytest.raises(dbflow.DatabaseConnectionError, match="connect timeout") as raised:
        db.execute_query("SELECT 1 AS one")
    took = time.monotonic() - started
    record_property("seconds", round(took, 2))
    assert 3 - 0.5 <= took <= 3 + SLACK, took
    assert not raised.value.may_have_run
    assert_recovers(db, path)


def test_a_black_hole_mid_stream_ends_iteration_at_the_deadline(
    across: Callable[..., dbflow.DatabaseManager],
    path: netpath.DeadablePath,
    bdb: dbflow.DatabaseManager,
    marks: str,
    record_property: Callable[[str, object], None],
) -> None:
    bdb.bulk_insert(marks, [(i, "p" * 200) for i in range(50_000)])
    db = across()
    seen = 0

    def read_all() -> None:
        nonlocal seen
        for _row in db.iter_query(f"SELECT v, pad FROM {marks} ORDER BY v", batch_size=500):
            seen += 1
            if seen == 500:
                path.cut()
            if seen % 500 == 0:
                # A consumer slower than the wire: the stream waits on it.
                time.sleep(0.01)

    call = Call(read_all)
    after = call.seconds_after_cut(path, record_property)
    record_property("rows_before_the_error", seen)
    assert_stopped_answering(call.error)
    assert seen < 50_000, "the whole result arrived before the cut"
    # What was already in this process and its kernel is read first, at
    # most 100 pauses of 10 ms.
    assert after <= DEADLINE + SLACK + 1, after
    assert_recovers(db, path)


def test_a_black_hole_mid_bulk_load_writes_nothing(
    across: Callable[..., dbflow.DatabaseManager],
    path: netpath.DeadablePath,
    bdb: dbflow.DatabaseManager,
    marks: str,
    record_property: Callable[[str, object], None],
) -> None:
    db = across()
    db.execute_query("SELECT 1 AS one")

    def rows() -> Iterator[tuple[int, str]]:
        for i in range(2_000_000):
            if i == 20_000:
                path.cut()
            yield (i, "p" * 100)

    call = Call(lambda: db.bulk_insert(marks, rows()))
    after = call.seconds_after_cut(path, record_property)
    assert_stopped_answering(call.error)
    assert after <= DEADLINE + SLACK, after
    assert_recovers(db, path)
    assert count(bdb, marks) == 0


def test_health_check_answers_within_its_own_deadline_on_a_dead_path(
    across: Callable[..., dbflow.DatabaseManager],
    path: netpath.DeadablePath,
    record_property: Callable[[str, object], None],
) -> None:
    db = across(health_timeout=1, socket_timeout=30, connect_timeout=30)
    db.execute_query("SELECT 1 AS one")
    path.cut()
    started = time.monotonic()
    health = db.health_check()
    took = time.monotonic() - started
    record_property("seconds", round(took, 2))
    assert health["status"] == "unhealthy", health
    assert took <= 1 + SLACK, took
    path.restore()


def test_a_long_statement_on_a_healthy_path_is_not_cut(
    across: Callable[..., dbflow.DatabaseManager], backend: Backend
) -> None:
    """Silence from the server's side is not death: its kernel answers the
    probes while the statement runs longer than the deadline."""
    db = across()
    rows = db.execute_query(backend.sleep_sql(DEADLINE * 2))
    assert len(rows) <= 1, rows  # pg_sleep's one empty row, or none


def test_200_ms_of_latency_keeps_every_answer_right_and_the_pool_within_bounds(
    env: Any, backend: Backend, bdb: dbflow.DatabaseManager, marks: str
) -> None:
    """A slow link is not a dead one: a round trip of 200 ms each way never
    trips the socket deadline, and eight threads share a pool of three."""
    from concurrent.futures import ThreadPoolExecutor

    from faults import FaultProxy

    proxy = FaultProxy(urllib.parse.urlsplit(backend.url).port or 0)
    proxy.delay(0.2)
    parts = urllib.parse.urlsplit(backend.url)
    url = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{proxy.port}")
    )
    name = env.database(
        url=url,
        **{**backend.settings, "pool_size": 2, "max_overflow": 1, "socket_timeout": DEADLINE},
    )
    db = env.manager(name)
    try:

        def work(i: int) -> int:
            db.execute_query(f"INSERT INTO {marks} (v, pad) VALUES (:v, 'x')", {"v": i})
            return int(db.execute_query("SELECT :v AS v", {"v": i})[0]["v"])

        with ThreadPoolExecutor(8) as threads:
            assert sorted(threads.map(work, range(24))) == list(range(24))
        status = db.get_pool_status()
        assert status["checked_out"] == 0 and status["connections_opened"] <= 3, status
        assert count(bdb, marks) == 24
        assert proxy.down > 0 and proxy.latency == 0.2
    finally:
        db.dispose()
        proxy.close()
