"""dbflow's log events into Prefect run logs.

The native core logs to the ``dbflow`` logger. Sync work is driven on the
calling thread (the GIL is released and the thread blocks on the shared
runtime), so its events are emitted on the run's thread, where Prefect's run
context is current. Work on runtime threads for a Python call (awaitables,
the ``iter_query`` producer) carries that call's ``contextvars`` context, and
its events are emitted inside it. Either way this handler finds the run with
``get_run_logger()`` and forwards the event. Outside a run
(``MissingContextError``), or for background work no call is waiting on
(closing an idle pool), the record simply continues to the ``dbflow``
logger's other handlers. Prefect is never imported here unless the
application already imported it.
"""

from __future__ import annotations

import logging
import sys


class PrefectRunLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "prefect" not in sys.modules:
            return
        try:
            from prefect.exceptions import MissingContextError
            from prefect.logging import get_run_logger
        except ImportError:  # pragma: no cover - a broken Prefect install
            return
        try:
            run_logger = get_run_logger()
        except MissingContextError:
            return
        except Exception:  # pragma: no cover - never let logging break a query
            return
        try:
            run_logger.log(
                record.levelno, record.getMessage(), extra={"dbflow": getattr(record, "dbflow", {})}
            )
        except Exception:  # pragma: no cover
            self.handleError(record)


def install() -> None:
    logger = logging.getLogger("dbflow")
    if not any(isinstance(h, PrefectRunLogHandler) for h in logger.handlers):
        logger.addHandler(PrefectRunLogHandler())
    if logger.level == logging.NOTSET:
        # INFO events (migrations applied, retries, pool closed) are worth
        # seeing in run logs; set the dbflow logger's level to change it.
        logger.setLevel(logging.INFO)
