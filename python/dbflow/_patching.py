"""Process-wide substitution of database managers (for tests): visible from
every thread, so Prefect tasks on worker threads see it too."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
# A stack, so patches nest: the innermost one that names a database wins.
_stack: list[tuple[dict[str, Callable[[], Any]], Callable[[str], Any] | None]] = []


def push(named: dict[str, Callable[[], Any]], default: Callable[[str], Any] | None) -> None:
    with _lock:
        _stack.append((named, default))


def pop() -> None:
    with _lock:
        _stack.pop()


def lookup(database_name: str) -> Any | None:
    if not _stack:  # the common case: no test patching; no lock
        return None
    with _lock:
        layers = list(reversed(_stack))
    for named, default in layers:
        factory = named.get(database_name)
        if factory is not None:
            return factory()
        if default is not None:
            return default(database_name)
    return None
