"""``patch_databases``: make ``DatabaseManager(name)`` return test doubles."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dbflow import _patching


@contextlib.contextmanager
def patch_databases(
    managers: Mapping[str, Any] | None = None,
    *,
    default: Any | Callable[[str], Any] | None = None,
) -> Iterator[None]:
    """Inside the block (or the decorated function), ``DatabaseManager(name)``
    returns ``managers[name]``; names not listed get ``default`` (an object,
    or a callable taking the name) or, without one, the real manager.

    A value may be a manager-like object (returned as is, every time) or a
    zero-argument callable creating one per construction. The patch is
    process-wide, so Prefect tasks running on worker threads see it too.
    Works as a decorator as well (``@patch_databases({...})``).
    """
    named: dict[str, Callable[[], Any]] = {}
    for name, value in (managers or {}).items():
        named[name] = value if _is_factory(value) else _constant(value)
    fallback: Callable[[str], Any] | None
    if default is None:
        fallback = None
    elif _is_factory(default):
        fallback = default
    else:
        instance = default
        fallback = lambda _name: instance  # noqa: E731
    _patching.push(named, fallback)
    try:
        yield
    finally:
        _patching.pop()


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _is_factory(value: Any) -> bool:
    # Managers are callable-free objects; a plain function or lambda is a factory.
    return callable(value) and not hasattr(value, "execute_query")
