"""OpenTelemetry for dbflow's operations, called by the native core.

The core keeps one span per database operation (its attributes on the
stable database conventions, gathered in Rust) and hands it here when it
ends, or earlier when a child needs it as a parent (a transaction's
statements). Nothing here runs unless a tracer or meter provider was set;
the core checks that cheaply before every operation, so a provider set
after dbflow was used is honoured.
"""

from __future__ import annotations

import contextvars
import json
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from dbflow import __version__

SCOPE = "dbflow"

#: The attributes the operation-duration metric keeps (the conventions'
#: list: low cardinality, no query text).
_METRIC_ATTRIBUTES = (
    "db.system.name",
    "db.namespace",
    "db.operation.name",
    "db.collection.name",
    "db.query.summary",
    "db.response.status_code",
    "error.type",
    "server.address",
    "server.port",
)

# The conventions' advice for durations of database calls, in seconds.
_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]


def providers_set() -> bool:
    """Whether a tracer or meter provider has been set (the proxies are
    what the API hands out before)."""
    tracing = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    measuring = type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"
    return tracing or measuring


class _Instruments:
    """The tracer and the instruments of the providers set now; made again
    when a provider changes."""

    def __init__(self) -> None:
        self.tracer_provider: object = None
        self.meter_provider: object = None
        self.tracer: trace.Tracer | None = None
        self.duration: Any = None
        self.wait_time: Any = None
        self.use_time: Any = None
        self.create_time: Any = None
        self.timeouts: Any = None

    def refresh(self) -> None:
        tracer_provider = trace.get_tracer_provider()
        if tracer_provider is not self.tracer_provider:
            self.tracer_provider = tracer_provider
            self.tracer = None
            if not isinstance(tracer_provider, trace.ProxyTracerProvider):
                self.tracer = tracer_provider.get_tracer(SCOPE, __version__)
        meter_provider = metrics.get_meter_provider()
        if meter_provider is not self.meter_provider:
            self.meter_provider = meter_provider
            self.duration = None
            if type(meter_provider).__name__ != "_ProxyMeterProvider":
                self._make_instruments(meter_provider)

    def _make_instruments(self, provider: metrics.MeterProvider) -> None:
        meter = provider.get_meter(SCOPE, __version__)

        def seconds(name: str, description: str) -> metrics.Histogram:
            return meter.create_histogram(
                name,
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            )

        self.duration = seconds(
            "db.client.operation.duration", "Duration of database client operations."
        )
        self.wait_time = seconds(
            "db.client.connection.wait_time",
            "The time it took to obtain an open connection from the pool.",
        )
        self.use_time = seconds(
            "db.client.connection.use_time",
            "The time between borrowing a connection and returning it to the pool.",
        )
        self.create_time = seconds(
            "db.client.connection.create_time", "The time it took to create a new connection."
        )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to "
            "obtain a connection from the pool.",
        )
        from dbflow import _pool_metrics

        _pool_metrics.observe(meter)


_instruments = _Instruments()


def _parent_context(parent: Any, caller: contextvars.Context | None) -> otel_context.Context | None:
    if parent is not None:
        return trace.set_span_in_context(parent)
    if caller is not None:
        # Work done on the runtime's threads for a call made elsewhere: the
        # caller's context holds its current span (a Prefect task's).
        return caller.run(otel_context.get_current)
    return None  # this thread's current context


def _shown(attributes: dict[str, Any]) -> dict[str, Any]:
    """The span's attributes: `dbflow.query.parameters` (JSON, there only
    when the user opted in) as the conventions' `db.query.parameter.<key>`."""
    if "dbflow.query.parameters" not in attributes:
        return attributes  # the SDK keeps a copy of its own
    shown = dict(attributes)
    for key, value in json.loads(shown.pop("dbflow.query.parameters")).items():
        if value is not None:
            shown[f"db.query.parameter.{key}"] = value
    return shown


def start(
    name: str,
    parent: Any,
    caller: contextvars.Context | None,
    start_ns: int,
    attributes: dict[str, Any],
) -> Any:
    """Start the span of an operation that has not ended: a child needs it
    as its parent. None without a tracer."""
    _instruments.refresh()
    tracer = _instruments.tracer
    if tracer is None:
        return None
    return tracer.start_span(
        name,
        context=_parent_context(parent, caller),
        kind=SpanKind.CLIENT,
        attributes=_shown(attributes),
        start_time=start_ns,
    )


def emit(
    name: str,
    parent: Any,
    caller: contextvars.Context | None,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
    error_message: str | None,
) -> None:
    """An operation ended whose span was not started: it is made and ended
    at once (the common case: one call, its attributes checked once)."""
    _instruments.refresh()
    tracer = _instruments.tracer
    if tracer is not None:
        span = tracer.start_span(
            name,
            context=_parent_context(parent, caller),
            kind=SpanKind.CLIENT,
            attributes=_shown(attributes),
            start_time=start_ns,
        )
        _close(span, end_ns, attributes, error_message)
    _record_metrics(start_ns, end_ns, attributes)


def end(
    span: Any,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
    error_message: str | None,
) -> None:
    """An operation whose span was started ended: the span gets the
    attributes learned since, its outcome, and ends."""
    span.set_attributes(_shown(attributes))
    _close(span, end_ns, attributes, error_message)
    _record_metrics(start_ns, end_ns, attributes)


def _close(span: Any, end_ns: int, attributes: dict[str, Any], error_message: str | None) -> None:
    error_type = attributes.get("error.type")
    if error_type is not None:
        description = error_message or str(error_type)
        # Not record_exception: the exception object carries the server's
        # own words, which may quote the values it refused.
        span.add_event(
            "exception",
            {"exception.type": str(error_type), "exception.message": description},
            timestamp=end_ns,
        )
        span.set_status(Status(StatusCode.ERROR, description))
    span.end(end_time=end_ns)


def _record_metrics(start_ns: int, end_ns: int, attributes: dict[str, Any]) -> None:
    instruments = _instruments
    if instruments.duration is None:
        return
    took = max(end_ns - start_ns, 0) / 1e9
    if attributes.get("db.system.name") is not None and "dbflow.operation" in attributes:
        kept = {k: attributes[k] for k in _METRIC_ATTRIBUTES if k in attributes}
        instruments.duration.record(took, kept)
    pool = {"db.client.connection.pool.name": attributes.get("dbflow.database", "")}
    waited = attributes.get("dbflow.pool.wait_s")
    if waited is not None:
        instruments.wait_time.record(waited, pool)
        instruments.use_time.record(max(took - waited, 0.0), pool)
    created = attributes.get("dbflow.pool.create_s")
    if created is not None:
        instruments.create_time.record(created, pool)
    if attributes.get("error.type") == "dbflow.PoolTimeoutError":
        instruments.timeouts.add(1, pool)
