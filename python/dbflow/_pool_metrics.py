"""The connection-pool metrics of OpenTelemetry's database conventions,
observed from every open pool when the meter provider collects.

Each pool is named by its logical database name
(`db.client.connection.pool.name`); pools of one name (the same database
in several configurations) are summed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from dbflow import _native

POOL = "db.client.connection.pool.name"
STATE = "db.client.connection.state"


def _by_pool(value: Callable[[dict[str, Any]], int]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for status in _native._pool_statuses():
        totals[status["database_name"]] += value(status)
    return totals


def _connections(_options: CallbackOptions) -> Iterable[Observation]:
    for state, key in (("idle", "checked_in"), ("used", "checked_out")):
        for pool, n in _by_pool(_field(key)).items():
            yield Observation(n, {POOL: pool, STATE: state})


def _field(key: str) -> Callable[[dict[str, Any]], int]:
    return lambda status: int(status[key])


def _each(
    value: Callable[[dict[str, Any]], int],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        for pool, n in _by_pool(value).items():
            yield Observation(n, {POOL: pool})

    return observe


def observe(meter: Meter) -> None:
    """Register the pool instruments on `meter` (once per meter provider)."""
    unit = "{connection}"
    meter.create_observable_up_down_counter(
        "db.client.connection.count",
        callbacks=[_connections],
        unit=unit,
        description="The number of connections that are currently in the state described by "
        "the state attribute.",
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.max",
        callbacks=[_each(lambda s: int(s["pool_size"]) + int(s["max_overflow"]))],
        unit=unit,
        description="The maximum number of open connections allowed.",
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.idle.max",
        callbacks=[_each(lambda s: int(s["pool_size"]))],
        unit=unit,
        description="The maximum number of idle open connections allowed.",
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.pending_requests",
        callbacks=[_each(lambda s: int(s["waiting"]))],
        unit="{request}",
        description="The number of current pending requests for an open connection.",
    )
