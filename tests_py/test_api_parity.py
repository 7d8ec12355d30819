"""The two managers, the two mocks and the two protocols have the same
public members: a member added to one and forgotten in another fails here.
The async ones have each member that does I/O as a coroutine function.

(mypy's protocol check in ``protocol_check.py`` cannot see a member missing
from ``AsyncMockDatabaseManager``, whose ``__getattr__`` reaches the sync
double's extras; this test looks at the class itself.)"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from dbflow import (
    AsyncDatabaseManager,
    AsyncDatabaseManagerProtocol,
    DatabaseManager,
    DatabaseManagerProtocol,
)
from dbflow.testing import AsyncMockDatabaseManager, MockDatabaseManager

# Members the async manager has as plain methods on purpose: no I/O
# (get_metrics, get_pool_status, close, dispose), or used with `async with`
# / `async for` rather than awaited (transaction, iter_query, iter_arrow).
PLAIN_IN_ASYNC = {
    "get_metrics",
    "get_pool_status",
    "close",
    "dispose",
    "transaction",
    "iter_query",
    "iter_arrow",
}


# AsyncDatabaseManager (python/dbflow/__init__.py) does not wrap these native
# awaitables with _coroutine, as it does every other I/O member.
def member_kind_cases(names: set[str]) -> list[Any]:
    return sorted(names)


# Overloaded in the protocols (by `as_tuples`); mypy checks those.
OVERLOADED = {"execute_query", "iter_query"}

# Members only a mock has (scripting and inspection), not manager members;
# the mock direction is checked against the real managers' members only.
MOCK_EXTRAS = {
    "add_result",
    "assert_called_with_sql",
    "assert_not_called",
    "call_count",
    "calls",
    "closed",
    "connection_error",
    "fail_on_call",
    "health_status",
    "max_overflow",
    "migrations",
    "named",
    "pool_exhausted_error",
    "pool_size",
    "queries_matching",
    "reset",
    "strict",
    "timeout_error",
}


def public(obj: Any) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def is_property(cls: type, name: str) -> bool:
    """A property or a native getter (a data descriptor), not a method."""
    return inspect.isdatadescriptor(inspect.getattr_static(cls, name))


SYNC = public(DatabaseManager)
ASYNC = public(AsyncDatabaseManager)


def test_the_managers_have_the_same_members() -> None:
    assert SYNC - ASYNC == set(), "missing from AsyncDatabaseManager"
    assert ASYNC - SYNC == set(), "missing from DatabaseManager"


def test_the_protocols_declare_every_member() -> None:
    assert public(DatabaseManagerProtocol) == SYNC
    assert public(AsyncDatabaseManagerProtocol) == ASYNC


def test_the_mocks_have_every_member() -> None:
    # The sync mock on an instance (some members are instance attributes);
    # the async mock on its class, so its __getattr__ (which reaches the
    # sync double) cannot stand in for a member.
    mock = MockDatabaseManager()
    assert SYNC - public(mock) == set(), "missing from MockDatabaseManager"
    assert public(mock) - SYNC == MOCK_EXTRAS, "a mock extra not listed in MOCK_EXTRAS"
    missing = ASYNC - public(AsyncMockDatabaseManager)
    assert missing == set(), "missing from AsyncMockDatabaseManager"
    assert public(AsyncMockDatabaseManager) - ASYNC == set()  # `.sync` is set per instance


@pytest.mark.parametrize("name", member_kind_cases(SYNC))
def test_each_member_has_the_same_kind(name: str) -> None:
    if is_property(DatabaseManager, name):
        for cls in (AsyncDatabaseManager, AsyncMockDatabaseManager):
            assert is_property(cls, name), (cls, name)
        # The sync mock keeps some (environment, flow_name) as attributes.
        assert not callable(getattr(MockDatabaseManager(), name))
        return
    for cls in (DatabaseManager, MockDatabaseManager):
        assert not is_property(cls, name), (cls, name)
        assert not inspect.iscoroutinefunction(getattr(cls, name)), (cls, name)
    for cls in (AsyncDatabaseManager, AsyncMockDatabaseManager):
        assert not is_property(cls, name), (cls, name)
        method = getattr(cls, name)
        assert callable(method), (cls, name)
        if name in PLAIN_IN_ASYNC:
            assert not inspect.iscoroutinefunction(method), (cls, name)
        else:
            assert inspect.iscoroutinefunction(method), f"{cls.__name__}.{name} is not a coroutine"


@pytest.mark.parametrize("name", sorted(n for n in SYNC if not is_property(DatabaseManager, n)))
def test_each_method_takes_the_same_arguments(name: str) -> None:
    def parameters(cls: type) -> list[tuple[str, Any]]:
        signature = inspect.signature(getattr(cls, name))
        return [(p.name, p.kind) for p in signature.parameters.values() if p.name != "self"]

    expected = parameters(DatabaseManager)
    classes: list[type] = [AsyncDatabaseManager, MockDatabaseManager, AsyncMockDatabaseManager]
    if name not in OVERLOADED:
        # An overloaded protocol method has no signature of its own at runtime.
        classes += [DatabaseManagerProtocol, AsyncDatabaseManagerProtocol]
    for cls in classes:
        assert parameters(cls) == expected, cls


def test_context_managers() -> None:
    for cls in (DatabaseManager, MockDatabaseManager):
        assert hasattr(cls, "__enter__") and hasattr(cls, "__exit__")
    for cls in (AsyncDatabaseManager, AsyncMockDatabaseManager):
        assert hasattr(cls, "__aenter__") and hasattr(cls, "__aexit__")


def test_the_transactions_have_the_same_members() -> None:
    """Both managers' transactions (and savepoints) and their mocks offer
    the same members; what does I/O in the async one is awaitable."""
    from dbflow import AsyncSavepoint, AsyncTransaction, Savepoint, Transaction
    from dbflow.testing.async_mock import _AsyncMockSavepoint, _AsyncMockTransaction
    from dbflow.testing.mock import MockSavepoint, MockTransaction

    members = public(Transaction)
    assert members == {
        "active",
        "call_procedure",
        "commit",
        "execute_many",
        "execute_query",
        "execute_query_sets",
        "fetch_arrow",
        "fetch_pandas",
        "fetch_polars",
        "iter_arrow",
        "rollback",
        "savepoint",
    }
    for other in (AsyncTransaction, _AsyncMockTransaction):
        assert public(other) == members, other
    mock_members = public(MockTransaction(MockDatabaseManager("m")))
    assert mock_members == members
    for savepoint in (Savepoint, AsyncSavepoint, MockSavepoint, _AsyncMockSavepoint):
        assert public(savepoint) == set(), savepoint
    for name in (
        "commit",
        "rollback",
        "execute_query",
        "execute_many",
        "execute_query_sets",
        "call_procedure",
        "fetch_arrow",
        "fetch_polars",
        "fetch_pandas",
    ):
        assert inspect.iscoroutinefunction(getattr(_AsyncMockTransaction, name)), name
    # Used with `async for`, not awaited.
    assert not inspect.iscoroutinefunction(_AsyncMockTransaction.iter_arrow)
    # The transactions' Arrow and procedure members take the same arguments
    # (no partitions).
    for name in (
        "fetch_arrow",
        "fetch_polars",
        "fetch_pandas",
        "iter_arrow",
        "call_procedure",
        "execute_query_sets",
    ):

        def parameters(cls: type) -> list[tuple[str, Any]]:
            signature = inspect.signature(getattr(cls, name))  # noqa: B023
            return [(p.name, p.kind) for p in signature.parameters.values() if p.name != "self"]

        for other in (AsyncTransaction, MockTransaction, _AsyncMockTransaction):
            assert parameters(other) == parameters(Transaction), (other, name)
    assert inspect.iscoroutinefunction(_AsyncMockSavepoint.__aenter__)
    assert hasattr(AsyncSavepoint, "__aenter__") and hasattr(AsyncSavepoint, "__aexit__")


@pytest.mark.parametrize(
    "cls",
    [
        DatabaseManager,
        AsyncDatabaseManager,
        "ConfigManager",
        "Transaction",
        "AsyncTransaction",
        "Savepoint",
        "AsyncSavepoint",
    ],
)
def test_every_public_member_says_what_it_does(cls: Any) -> None:
    """`help(dbflow.X)` explains the class and each of its members."""
    import dbflow

    if isinstance(cls, str):
        cls = getattr(dbflow, cls)
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no docstring"
    context = {"__enter__", "__exit__", "__aenter__", "__aexit__"}
    undocumented = [
        name
        for name in sorted(dir(cls))
        if (not name.startswith("_") or name in context)
        and callable(getattr(cls, name))
        and not (getattr(cls, name).__doc__ or "").strip()
    ]
    assert undocumented == [], f"{cls.__name__}: {undocumented}"
    if hasattr(cls, "baseline_migrations"):
        # The default is shown, not pyo3's placeholder for a Rust constant.
        signature = str(inspect.signature(cls.baseline_migrations))
        assert "description='<< Flyway Baseline >>'" in signature, signature


def test_the_constructors_take_the_same_login_arguments() -> None:
    """A flow that passes ``password_provider=`` runs on the real managers and
    on ``MockDatabaseManager`` (which ``patch_databases`` hands out for both)."""
    for cls in (DatabaseManager, AsyncDatabaseManager):
        assert "password_provider" in inspect.signature(cls.__new__).parameters, cls
    mock = inspect.signature(MockDatabaseManager.__init__).parameters
    assert mock["password_provider"].kind is inspect.Parameter.KEYWORD_ONLY
    MockDatabaseManager("m", password_provider=lambda: "secret")
