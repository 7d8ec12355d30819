"""OpenTelemetry spans and metrics with the real SDK (issue #28): its
in-memory span exporter and metric reader, against both servers, inside a
real Prefect flow with mapped tasks.

The providers are process-wide and set once; this module sets them for
its tests and puts the API's globals back afterwards (a test-only reset of
OpenTelemetry's private state), so later tests run without them.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from backends import Backend
from envs import Env

pytest.importorskip(
    "opentelemetry.sdk", reason="opentelemetry-sdk is installed by the test command"
)

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

import dbflow

pytestmark = pytest.mark.backends("postgresql", "sqlserver")

SYSTEM = {"postgresql": "postgresql", "sqlserver": "microsoft.sql_server"}
SECRET_VALUE = "value-that-must-not-leak-4242"


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def db_spans(self) -> list[ReadableSpan]:
        return [
            s for s in self.spans.get_finished_spans() if s.instrumentation_scope.name == "dbflow"
        ]

    def metric(self, name: str) -> list[Any]:
        points: list[Any] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == name:
                        points.extend(m.data.data_points)
        return points


@pytest.fixture(scope="module")
def otel_providers() -> Iterator[Otel]:
    otel = Otel()
    trace.set_tracer_provider(otel.tracer_provider)
    metrics.set_meter_provider(otel.meter_provider)
    yield otel
    otel.tracer_provider.shutdown()
    otel.meter_provider.shutdown()
    # Test-only: forget the providers, as OpenTelemetry's own test utilities do.
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
    from opentelemetry.metrics import _internal as metrics_internal

    metrics_internal._METER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]


@pytest.fixture
def otel(otel_providers: Otel) -> Otel:
    otel_providers.spans.clear()
    return otel_providers


def every_value(span: ReadableSpan) -> str:
    """Everything a span says, for searching it for what must not be there."""
    parts = [span.name, json.dumps(dict(span.attributes or {}), default=str)]
    parts += [json.dumps(dict(e.attributes or {}), default=str) for e in span.events]
    parts.append(span.status.description or "")
    return "\n".join(parts)


def manager(env: Env, backend: Backend, **settings: object) -> dbflow.DatabaseManager:
    return env.manager(env.database(backend=backend, pool_release_grace=0, **settings))


def server_password(backend: Backend) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(backend.url).password or "")


def test_a_query_is_a_client_span_on_the_stable_conventions(
    env: Env, backend: Backend, btable: str, otel: Otel
) -> None:
    db = manager(env, backend)
    db.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, v {{text}})"))
    otel.spans.clear()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        db.execute_query(
            f"INSERT INTO {btable} (id, v) VALUES (:id, :v)", {"id": 1, "v": SECRET_VALUE}
        )
        rows = db.execute_query(f"SELECT v FROM {btable} WHERE id = :id", {"id": 1})
    assert rows == [{"v": SECRET_VALUE}]
    insert, select = otel.db_spans()
    for span in (insert, select):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == caller.get_span_context().span_id
        a = dict(span.attributes or {})
        assert a["db.system.name"] == SYSTEM[backend.name]
        assert a["db.collection.name"] == btable
        assert a["dbflow.database"].startswith("db")
        assert a["server.address"] == "127.0.0.1"
        assert isinstance(a["server.port"], int)
        assert a["db.namespace"]
        assert SECRET_VALUE not in every_value(span)
        assert server_password(backend) not in every_value(span)
    assert insert.name == f"INSERT {btable}"
    assert (
        dict(insert.attributes or {})["db.query.text"]
        == f"INSERT INTO {btable} (id, v) VALUES (:id, :v)"
    )
    assert dict(insert.attributes or {})["db.operation.name"] == "INSERT"
    assert select.name == f"SELECT {btable}"
    assert dict(select.attributes or {})["db.response.returned_rows"] == 1
    assert select.start_time is not None and select.end_time is not None
    assert insert.end_time is not None and insert.end_time <= select.start_time
    db.dispose()


def test_an_integrity_error_carries_its_code_and_never_the_value(
    env: Env, backend: Backend, btable: str, otel: Otel
) -> None:
    db = manager(env, backend)
    db.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, v {{text}})"))
    db.execute_query(f"INSERT INTO {btable} (id, v) VALUES (424242, 'a')")
    otel.spans.clear()
    with pytest.raises(dbflow.IntegrityError) as raised:
        db.execute_query(
            f"INSERT INTO {btable} (id, v) VALUES (:id, :v)", {"id": 424242, "v": SECRET_VALUE}
        )
    if backend.name == "postgresql":  # the exception keeps the server's words: Key (id)=(424242)
        assert "424242" in str(raised.value)
    (span,) = otel.db_spans()
    a = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert a["error.type"] == "dbflow.IntegrityError"
    assert a["db.response.status_code"] in {"23505", "2627"}
    (event,) = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "dbflow.IntegrityError"
    everything = every_value(span)
    assert "424242" not in everything and SECRET_VALUE not in everything
    db.dispose()


def test_parameters_and_the_servers_words_only_when_opted_in(
    env: Env, backend: Backend, btable: str, otel: Otel
) -> None:
    db = manager(env, backend, trace_parameters="true")
    db.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY)"))
    db.execute_query(f"INSERT INTO {btable} (id) VALUES (:id)", {"id": 777001})
    otel.spans.clear()
    db.execute_query(f"SELECT id FROM {btable} WHERE id = :id", {"id": 777001})
    with pytest.raises(dbflow.IntegrityError):
        db.execute_query(f"INSERT INTO {btable} (id) VALUES (:id)", {"id": 777001})
    select, insert = otel.db_spans()
    assert dict(select.attributes or {})["db.query.parameter.id"] == "777001"
    assert "duplicate key" in (insert.status.description or "")
    db.dispose()


def test_a_transaction_is_a_span_with_a_child_per_statement(
    env: Env, backend: Backend, btable: str, otel: Otel
) -> None:
    db = manager(env, backend)
    db.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY)"))
    otel.spans.clear()
    with db.transaction() as tx:
        tx.execute_query(f"INSERT INTO {btable} (id) VALUES (1)")
        tx.execute_query(f"SELECT id FROM {btable}")
    first, second, transaction = otel.db_spans()
    assert transaction.name == "transaction"
    for child in (first, second):
        assert child.parent is not None and child.parent.span_id == transaction.context.span_id
        assert dict(child.attributes or {})["dbflow.operation"] == "transaction.execute_query"
    assert transaction.start_time is not None and first.start_time is not None
    assert transaction.start_time <= first.start_time
    assert transaction.end_time is not None and second.end_time is not None
    assert transaction.end_time >= second.end_time
    db.dispose()


def test_batches_streams_and_loads(env: Env, backend: Backend, btable: str, otel: Otel) -> None:
    db = manager(env, backend)
    db.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY, v {{text}})"))
    otel.spans.clear()
    db.execute_many(
        f"INSERT INTO {btable} (id, v) VALUES (:id, :v)", [{"id": i, "v": "x"} for i in range(25)]
    )
    db.bulk_insert(btable, [{"id": 100 + i, "v": "y"} for i in range(10)])
    seen = 0
    for _ in db.iter_query(f"SELECT id FROM {btable} ORDER BY id", batch_size=5):
        seen += 1
    iterated = time.time_ns()
    many, bulk, stream = otel.db_spans()
    assert dict(many.attributes or {})["db.operation.batch.size"] == 25
    assert dict(bulk.attributes or {})["db.operation.batch.size"] == 10
    assert dict(bulk.attributes or {})["db.collection.name"] == btable
    assert seen == 35
    assert dict(stream.attributes or {})["dbflow.operation"] == "iter_query"
    assert stream.end_time is not None and stream.end_time <= iterated
    db.dispose()


def test_an_arrow_load_counts_every_row_of_every_batch(
    env: Env, backend: Backend, btable: str, otel: Otel
) -> None:
    pa = pytest.importorskip("pyarrow")
    db = manager(env, backend)
    db.execute_query(backend.ddl(f"CREATE TABLE {btable} (id {{int}} PRIMARY KEY)"))
    # Batches larger than the feed's parts, the second smaller than the
    # rows before it: every part counts its own rows.
    table = pa.Table.from_batches(
        [
            pa.record_batch({"id": pa.array(range(20_000), pa.int32())}),
            pa.record_batch({"id": pa.array(range(20_000, 25_000), pa.int32())}),
        ]
    )
    otel.spans.clear()
    assert db.bulk_insert(btable, table) == 25_000
    (load,) = otel.db_spans()
    assert dict(load.attributes or {})["db.operation.batch.size"] == 25_000
    db.dispose()


def test_async_calls_are_children_of_the_awaiting_task_span(
    env: Env, backend: Backend, otel: Otel
) -> None:
    name = env.database(backend=backend, pool_release_grace=0)
    tracer = trace.get_tracer("test")

    async def run() -> tuple[int, int]:
        async with dbflow.AsyncDatabaseManager(name, config=env.config()) as db:

            async def one(i: int) -> int:
                with tracer.start_as_current_span(f"job{i}") as job:
                    await db.execute_query("SELECT 1 AS one")
                    return int(job.get_span_context().span_id)

            ids = await asyncio.gather(one(1), one(2))
            return ids[0], ids[1]

    first, second = asyncio.run(run())
    parents = sorted(s.parent.span_id for s in otel.db_spans() if s.parent is not None)
    assert parents == sorted([first, second])


def test_pool_metrics_match_the_pool_status_under_load(
    env: Env, backend: Backend, otel: Otel
) -> None:
    """8 threads hold a connection each (inside a transaction) while 2 more
    wait: the metrics read then must say what get_pool_status() says."""
    db = manager(env, backend, pool_size=8, max_overflow=0, pool_timeout=30)
    db.execute_query("SELECT 1 AS warm")
    holding = threading.Barrier(9)
    release = threading.Event()

    def hold() -> None:
        with db.transaction() as tx:
            tx.execute_query("SELECT 1 AS held")
            holding.wait()
            release.wait(30)

    def wait_for_one() -> None:
        db.execute_query("SELECT 1 AS waited")

    holders = [threading.Thread(target=hold) for _ in range(8)]
    waiters = [threading.Thread(target=wait_for_one) for _ in range(2)]
    for t in holders:
        t.start()
    holding.wait(30)
    for t in waiters:
        t.start()
    deadline = time.monotonic() + 10
    while db.get_pool_status()["waiting"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    status = db.get_pool_status()
    pool = db.database_name

    def observed(name: str, **attrs: str) -> int:
        for p in otel.metric(name):
            a = dict(p.attributes)
            if a.get("db.client.connection.pool.name") == pool and all(
                a.get(k) == v for k, v in attrs.items()
            ):
                return int(p.value)
        raise AssertionError(f"no {name} point for {pool}")

    try:
        assert status["checked_out"] == 8 and status["waiting"] == 2
        assert observed("db.client.connection.count", **{"db.client.connection.state": "used"}) == 8
        assert (
            observed("db.client.connection.count", **{"db.client.connection.state": "idle"})
            == status["checked_in"]
        )
        assert observed("db.client.connection.pending_requests") == 2
        assert observed("db.client.connection.max") == 8
        assert observed("db.client.connection.idle.max") == 8
    finally:
        release.set()
        for t in holders + waiters:
            t.join(30)
    waits = [
        p
        for p in otel.metric("db.client.connection.wait_time")
        if p.attributes.get("db.client.connection.pool.name") == pool
    ]
    assert waits and waits[0].count >= 10
    durations = [
        p
        for p in otel.metric("db.client.operation.duration")
        if p.attributes.get("db.system.name") == SYSTEM[backend.name]
    ]
    assert durations and all(p.sum > 0 for p in durations)
    db.dispose()


def test_a_slow_statement_is_one_warning_without_values(
    env: Env, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    db = manager(env, backend, slow_query_seconds="0.2")
    with caplog.at_level(logging.WARNING, logger="dbflow"):
        db.execute_query(backend.sleep_sql(0.3))
        db.execute_query("SELECT :v AS v", {"v": SECRET_VALUE})
    slow = [r for r in caplog.records if "slow statement" in r.getMessage()]
    assert len(slow) == 1, [r.getMessage() for r in caplog.records]
    message = slow[0].getMessage()
    assert backend.sleep_sql(0.3) in message and "database=" in message
    assert SECRET_VALUE not in caplog.text
    db.dispose()


PREFECT_FLOW = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)

    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner
    import dbflow

    root = tempfile.mkdtemp()
    Path(root, ".env.test").write_text(f"TEST_GLOBAL_OT_CONNECTION_STRING={sys.argv[1]}\\n")
    config = dbflow.ConfigManager("test", envs_dir=root)

    @task
    def lookup(i: int) -> int:
        db = dbflow.DatabaseManager("ot", config=config)
        return int(db.execute_query("SELECT :i AS i", {"i": i})[0]["i"])

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def mapped() -> list[int]:
        return [f.result() for f in lookup.map(range(6))]

    assert mapped() == list(range(6))
    provider.force_flush()
    out = [
        {
            "name": s.name,
            "scope": s.instrumentation_scope.name,
            "id": s.context.span_id,
            "parent": s.parent.span_id if s.parent else None,
            "attributes": {
                k: v for k, v in (s.attributes or {}).items() if isinstance(v, (str, int))
            },
        }
        for s in spans.get_finished_spans()
    ]
    print(json.dumps(out))
    """
)


def test_spans_are_children_of_their_prefect_task_runs(backend: Backend, tmp_path: Any) -> None:
    """A real Prefect flow (its own temporary server, in a process of its
    own: the providers are set before Prefect starts) maps six tasks over
    four threads; each task's query span is the child of its task run's span."""
    pytest.importorskip("prefect")
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Prefect's temporary server may take longer than its 20 s default
        # to start on a loaded machine (the whole suite running beside it).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    done = subprocess.run(
        [sys.executable, "-c", PREFECT_FLOW, backend.url],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spans = json.loads(done.stdout.strip().splitlines()[-1])
    tasks = {s["id"]: s for s in spans if s["attributes"].get("prefect.run.type") == "task"}
    queries = [s for s in spans if s["scope"] == "dbflow"]
    assert len(tasks) == 6 and len(queries) == 6, [s["name"] for s in spans]
    for query in queries:
        assert query["parent"] in tasks, query
        assert query["attributes"]["db.system.name"] == SYSTEM[backend.name]
    assert len({q["parent"] for q in queries}) == 6


def test_a_provider_set_after_dbflow_was_used_is_honoured(backend: Backend) -> None:
    script = textwrap.dedent(
        """
        import sys, tempfile
        from pathlib import Path
        import dbflow
        root = tempfile.mkdtemp()
        Path(root, ".env.test").write_text(f"TEST_GLOBAL_LATE_CONNECTION_STRING={sys.argv[1]}\\n")
        db = dbflow.DatabaseManager("late", config=dbflow.ConfigManager("test", envs_dir=root))
        db.execute_query("SELECT 1 AS before")
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        db.execute_query("SELECT 2 AS after")
        finished = spans.get_finished_spans()
        print(len(finished), finished[0].attributes["db.query.text"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, backend.url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "SELECT", "2", "AS", "after"]


# ---- sqlcommenter comments (<DB>_QUERY_COMMENTS) ----------------------------


@pytest.mark.backends("postgresql")  # pg_stat_activity; SQL Server's side is the test below
def test_the_comment_is_seen_in_pg_stat_activity_while_the_statement_runs(
    env: Env, backend: Backend, otel: Otel
) -> None:
    name = env.database(backend=backend, query_comments="true", pool_release_grace=0)
    db = env.manager(name)
    watcher = env.manager(env.database("watch_comments", pool_size=1))
    tracer = trace.get_tracer("test")
    seen: list[str] = []
    with tracer.start_as_current_span("score_batch") as current:
        trace_id = f"{current.get_span_context().trace_id:032x}"
        span_id = f"{current.get_span_context().span_id:016x}"
        # The statement runs in a thread that carries this span as current.
        context = contextvars.copy_context()
        sleeper = threading.Thread(
            target=context.run, args=(db.execute_query, "SELECT pg_sleep(:s)", {"s": 1.5})
        )
        sleeper.start()
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            # The session while it sleeps: the statement is first described
            # under its plain text (cached without the comment), and on a
            # busy machine that moment can be seen too.
            seen = [
                r["query"]
                for r in watcher.execute_query(
                    "SELECT query FROM pg_stat_activity WHERE application_name = :app "
                    "AND wait_event = 'PgSleep'",
                    {"app": f"dbflow_test_{name}_{os.getpid()}"},
                )
            ]
            time.sleep(0.05)
        sleeper.join(10)
    assert seen, "the statement never showed in pg_stat_activity"
    (query,) = seen
    assert query.startswith("SELECT pg_sleep($1) /*application='dbflow_test_")
    assert f"traceparent='00-{trace_id}-{span_id}-0" in query  # then the span's flags
    db.dispose()
    watcher.dispose()


def test_comments_keep_the_prepared_statement_cache(env: Env, backend: Backend, otel: Otel) -> None:
    """Five calls under five spans (five different comments) use one cached
    statement: PostgreSQL's session lists one prepared statement for the
    text, SQL Server prepares none (a commented statement goes by its text)."""
    db = manager(env, backend, query_comments="true", pool_size=1, max_overflow=0)
    tracer = trace.get_tracer("test")
    sql = "SELECT :v AS v;  -- a trailing comment of the caller's own"
    with db.transaction() as tx:
        for i in range(5):
            with tracer.start_as_current_span(f"call{i}"):
                assert tx.execute_query(sql, {"v": i}) == [{"v": i}]
        if backend.name == "postgresql":
            named = tx.execute_query(
                "SELECT count(*) AS n FROM pg_prepared_statements "
                "WHERE statement LIKE 'SELECT $1 AS v%'"
            )
            assert named == [{"n": 1}]
            commented = tx.execute_query(
                "SELECT count(*) AS n FROM pg_prepared_statements "
                # (spelled in parts: this statement's own text is listed too)
                "WHERE statement LIKE '%' || 'trace' || 'parent=' || '%'"
            )
            assert commented == [{"n": 0}]
    db.dispose()


@pytest.mark.backends("sqlserver")  # SQL Server's prepared handles
def test_sql_server_sends_a_commented_statement_by_its_text(
    env: Env, backend: Backend, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dbflow")
    plain = manager(env, backend, pool_size=1)
    commented = manager(env, backend, pool_size=1, query_comments="true")
    for db in (plain, commented):
        for i in range(3):
            assert db.execute_query("SELECT :v AS v", {"v": i}) == [{"v": i}]
    prepared = [r for r in caplog.records if r.getMessage().startswith("statement prepared")]
    assert len(prepared) == 1, "the plain manager prepares once; the commented one never"
    plain.dispose()
    commented.dispose()
