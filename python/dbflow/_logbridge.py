"""dbflow's log events into Prefect run logs.

The native core logs to the ``dbflow`` logger. Sync work is driven on the
calling thread (the GIL is released and the thread blocks on the shared
runtime), so its events are emitted on the run's thread, where Prefect's run
context is current. Work on runtime threads for a Python call (awaitables,
the ``iter_query`` producer) carries that call's ``contextvars`` context, and
its events are emitted inside it. Either way a filter on the ``dbflow``
logger finds the run with ``get_run_logger()``, forwards the event there and
stops it, so it reaches the console once (and the Prefect UI). Outside a run
(``MissingContextError``), or for background work no call is waiting on
(closing an idle pool), the record simply continues to the ``dbflow``
logger's handlers. Prefect is never imported here unless the
application already imported it.
"""

from __future__ import annotations

import logging
import sys


class PrefectRunLogBridge(logging.Filter):
    """On the ``dbflow`` logger: inside a flow or task run, an event goes to
    the run logger (console and Prefect UI) and stops there, so it is printed
    once; outside a run it continues to the ``dbflow`` logger's handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "prefect" not in sys.modules:
            return True
        try:
            from prefect.exceptions import MissingContextError
            from prefect.logging import get_run_logger
        except ImportError:  # pragma: no cover - a broken Prefect install
            return True
        try:
            run_logger = get_run_logger()
        except MissingContextError:
            return True
        except Exception:  # pragma: no cover - never let logging break a query
            return True
        try:
            run_logger.log(
                record.levelno, record.getMessage(), extra={"dbflow": getattr(record, "dbflow", {})}
            )
        except Exception:  # pragma: no cover - the record still reaches dbflow's handlers
            return True
        return False


class LastResort(logging.Handler):
    """Python's last-resort handler, with the level and logger named: a
    warning of dbflow's reaches stderr as ``WARNING dbflow: ...`` when the
    application configured no logging at all (Python's own prints only the
    message). It stands aside as soon as any handler is configured above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        logger: logging.Logger | None = logging.getLogger("dbflow")
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return
            if not logger.propagate:
                break
            logger = logger.parent
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover - as logging's own handlers do
            self.handleError(record)


def install() -> None:
    logger = logging.getLogger("dbflow")
    if not any(isinstance(f, PrefectRunLogBridge) for f in logger.filters):
        logger.addFilter(PrefectRunLogBridge())
    if not any(isinstance(h, LastResort) for h in logger.handlers):
        logger.addHandler(LastResort())
    if logger.level == logging.NOTSET:
        # INFO events (migrations applied, retries, pool closed) are worth
        # seeing in run logs; set the dbflow logger's level to change it.
        logger.setLevel(logging.INFO)
