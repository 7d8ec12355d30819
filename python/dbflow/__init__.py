"""dbflow: pooled, migrated, monitored PostgreSQL and SQL Server access for Prefect flows.

Flow code writes

    from dbflow import DatabaseManager
    with DatabaseManager("rpa_db") as db:
        rows = db.execute_query("SELECT * FROM customers WHERE status = :status",
                                {"status": "active"})
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from os import PathLike
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from typing_extensions import Self

from dbflow import _artifacts, _logbridge, _patching, _travel
from dbflow._native import AsyncDatabaseManager as _NativeAsyncDatabaseManager
from dbflow._native import (
    AsyncRowIterator,
    AsyncSavepoint,
    AsyncTransaction,
    ConfigManager,
    Savepoint,
    Transaction,
    __version__,
    check_params,
    dispose_all,
    overall_status,
    rewrite_sql,
)
from dbflow._native import DatabaseManager as _NativeDatabaseManager
from dbflow._native import _shutdown as _native_shutdown
from dbflow._native import health_check_all as _native_health_check_all
from dbflow._procedures import ProcedureResult, TableValue
from dbflow.exceptions import (
    ChecksumMismatchError,
    ConfigurationError,
    DatabaseConnectionError,
    DatabaseError,
    IntegrityError,
    MigrationError,
    MultipleResultSetsError,
    ParameterError,
    PoolTimeoutError,
    QueryError,
    QueryTimeoutError,
    TransactionError,
)
from dbflow.protocol import (
    AsyncDatabaseManagerProtocol,
    AsyncTransactionProtocol,
    DatabaseManagerProtocol,
    TransactionProtocol,
)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Constructor:
    """The constructor both managers share: ``dbflow.testing.patch_databases``
    may hand out a test double instead, and ``credentials=`` (a
    ``dbflow.prefect.DatabaseCredentials`` block, or anything with
    ``.settings()``) beats the environment and env files;
    ``password_provider=`` is asked for the password of every new connection.
    Managers pickle as what they are (``dbflow._travel``)."""

    # What the manager was made from; turned into a ticket only when pickled.
    _made_from: tuple[Any, Any, Any, Any]

    def __new__(
        cls,
        database_name: str,
        *,
        environment: str | None = None,
        flow_name: str | None = None,
        config: ConfigManager | None = None,
        migrations_dir: str | PathLike[str] | None = None,
        credentials: Any = None,
        password_provider: Callable[[], str] | None = None,
    ) -> Self:
        patched = _patching.lookup(database_name)
        if patched is not None:
            # A double standing in for this database (it satisfies
            # DatabaseManagerProtocol, which flow code relies on).
            return cast(Self, cls._as_double(patched))
        base = config
        if credentials is not None:
            base = config or ConfigManager(environment, flow_name)
            config = base.with_settings(database_name, credentials.settings())
            environment = flow_name = None
        # The next class in the MRO is the native manager.
        manager = super().__new__(  # type: ignore[call-arg]
            cls,
            database_name,
            environment=environment,
            flow_name=flow_name,
            config=config,
            migrations_dir=migrations_dir,
            password_provider=password_provider,
        )
        manager._made_from = (base, migrations_dir, credentials, password_provider)
        return manager

    def __reduce__(self) -> tuple[Any, ...]:
        # What the manager is, never a connection or a secret: the receiving
        # process attaches to its own pool (see dbflow._travel).
        return (_travel.arrive, (type(self), _travel.Ticket.of(self, *self._made_from)))

    @staticmethod
    def _as_double(patched: Any) -> Any:
        return patched


class DatabaseManager(_Constructor, _NativeDatabaseManager):
    """Pooled access to one configured database.

    ``DatabaseManager(database_name, *, environment=None, flow_name=None,
    config=None, migrations_dir=None, credentials=None, password_provider=None)``:

    - ``database_name``: the logical name the settings use
      (``<ENV>_GLOBAL_<NAME>_CONNECTION_STRING`` and the other keys).
    - ``environment`` / ``flow_name``: which settings to read (default: the
      ``DBFLOW_ENVIRONMENT`` / ``PREFECT_ENVIRONMENT`` environment, else
      ``development``); a flow's own keys beat the global ones.
    - ``config``: a ``ConfigManager`` to read them from instead (it carries
      the environment, flow and env-file directory).
    - ``migrations_dir``: the root holding ``<name>/V1__*.sql`` (default:
      ``<NAME>_MIGRATIONS_DIR``, ``MIGRATIONS_DIR``, then ``migrations/``).
    - ``credentials``: a ``dbflow.prefect.DatabaseCredentials`` block (or
      anything with ``.settings()``), whose settings beat the environment.
    - ``password_provider``: a callable taking no arguments that returns the
      password (a ``str``); called for every new connection (on a worker
      thread, within ``<NAME>_CREDENTIAL_TIMEOUT``), never cached, so a
      rotated password is picked up by the next connection while open ones
      keep working. The connection string then carries no password.

    Managers of one database share one pool per process; ``close()`` (or
    leaving ``with``) releases it. The work happens in the native core with
    the GIL released. A manager pickles as what it is (never a connection or
    a secret), so it can be a task argument on Dask and Ray.
    """

    def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Apply pending migrations in order (up to ``target``), then due
        repeatable files, under a database-wide lock; ``placeholders`` beat
        the settings; ``dry_run`` returns what would run and changes nothing.
        Inside a Prefect flow run the report is also a markdown artifact."""
        report = super().run_migrations(
            target, out_of_order=out_of_order, placeholders=placeholders, dry_run=dry_run
        )
        if _artifacts.wants_migration_report(self, report):
            _artifacts.publish_migrations(self, report, self.get_migration_status())
        return report


def _coroutine(native: Callable[_P, Awaitable[_T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """The native async method `native` as a coroutine function.

    Why these wrappers exist: a native method returns an asyncio Future
    (pyo3-async-runtimes), which ``await`` accepts but ``asyncio.create_task``
    refuses ("a coroutine was expected"), and it needs a running event loop
    when called, so ``asyncio.run(db.ping())`` would fail; the coroutine
    makes the native call when it runs.
    ``tests_py/test_async_parity.py`` checks that both still hold. The
    wrapper keeps the stub's signature for type checkers (ParamSpec) and for
    ``inspect.signature`` (``__wrapped__``)."""

    @functools.wraps(native)
    async def method(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await native(*args, **kwargs)

    # One text for both managers: the sync member's, awaited.
    sync = getattr(_NativeDatabaseManager, native.__name__, None)
    if not native.__doc__ and sync is not None and sync.__doc__:
        method.__doc__ = sync.__doc__
    return method


_Native = _NativeAsyncDatabaseManager


class AsyncDatabaseManager(_Constructor, _NativeAsyncDatabaseManager):
    """``DatabaseManager`` for asyncio: the same constructor and every member,
    as coroutines where it does I/O (``await db.execute_query(...)``,
    ``async with``, ``async for row in db.iter_query(...)``). The work runs on
    dbflow's shared runtime; the event loop never blocks. Cancelling an
    awaiting task discards the connection it was using."""

    @staticmethod
    def _as_double(patched: Any) -> Any:
        # The doubles patch_databases gives DatabaseManager, with coroutines.
        from dbflow.testing.mock import as_async

        return as_async(patched)

    # The native awaitables as coroutine functions (see _coroutine); only
    # execute_query (overloaded) and run_migrations (the Prefect artifact)
    # are written out.
    execute_query_with_timeout = _coroutine(_Native.execute_query_with_timeout)
    execute_query_with_retry = _coroutine(_Native.execute_query_with_retry)
    execute_query_safe = _coroutine(_Native.execute_query_safe)
    execute_query_with_timing = _coroutine(_Native.execute_query_with_timing)
    execute_many = _coroutine(_Native.execute_many)
    execute_transaction = _coroutine(_Native.execute_transaction)
    call_procedure = _coroutine(_Native.call_procedure)
    execute_query_sets = _coroutine(_Native.execute_query_sets)
    bulk_insert = _coroutine(_Native.bulk_insert)
    fetch_arrow = _coroutine(_Native.fetch_arrow)
    fetch_polars = _coroutine(_Native.fetch_polars)
    fetch_pandas = _coroutine(_Native.fetch_pandas)
    health_check = _coroutine(_Native.health_check)
    ping = _coroutine(_Native.ping)
    baseline_migrations = _coroutine(_Native.baseline_migrations)
    get_migration_status = _coroutine(_Native.get_migration_status)
    validate_migrations = _coroutine(_Native.validate_migrations)
    rollback_migrations = _coroutine(_Native.rollback_migrations)
    repair_migrations = _coroutine(_Native.repair_migrations)

    @overload
    async def execute_query(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        as_tuples: Literal[False] = False,
    ) -> list[dict[str, Any]]: ...
    @overload
    async def execute_query(
        self, sql: str, params: Mapping[str, Any] | None = None, *, as_tuples: Literal[True]
    ) -> list[tuple[Any, ...]]: ...
    async def execute_query(
        self, sql: str, params: Mapping[str, Any] | None = None, *, as_tuples: bool = False
    ) -> list[dict[str, Any]] | list[tuple[Any, ...]]:
        """Rows as dicts; ``as_tuples=True``: tuples in column order."""
        if as_tuples:
            return await super().execute_query(sql, params, as_tuples=True)
        return await super().execute_query(sql, params)

    async def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """``DatabaseManager.run_migrations``, awaited (the Prefect artifact too)."""
        report = await super().run_migrations(
            target, out_of_order=out_of_order, placeholders=placeholders, dry_run=dry_run
        )
        if _artifacts.wants_migration_report(self, report):
            status = await super().get_migration_status()
            await _artifacts.apublish_migrations(self, report, status)
        return report


def health_check_all(
    database_names: Sequence[str],
    *,
    environment: str | None = None,
    flow_name: str | None = None,
    config: ConfigManager | None = None,
    migrations_dir: str | PathLike[str] | None = None,
) -> dict[str, Any]:
    """Check several databases concurrently and add ``overall_status``
    (databases replaced by ``dbflow.testing.patch_databases`` report their
    stand-in's health). ``migrations_dir`` is the root holding each
    database's migrations directory, as managers take it."""
    names = list(database_names)
    doubles = {n: d for n in names if (d := _patching.lookup(n)) is not None}
    real = [n for n in names if n not in doubles]
    report = _native_health_check_all(
        real,
        environment=environment,
        flow_name=flow_name,
        config=config,
        migrations_dir=migrations_dir,
    )
    if doubles:
        checked = report["databases"]
        for name, double in doubles.items():
            checked[name] = double.health_check()
        report["databases"] = {n: checked[n] for n in names}
        statuses = [d["status"] for d in report["databases"].values()]
        report["overall_status"] = overall_status(statuses)
        report["healthy_count"] = statuses.count("healthy")
        report["total_databases"] = len(names)
    return report


__all__ = [
    "AsyncDatabaseManager",
    "AsyncDatabaseManagerProtocol",
    "AsyncRowIterator",
    "AsyncSavepoint",
    "AsyncTransaction",
    "AsyncTransactionProtocol",
    "ChecksumMismatchError",
    "ConfigManager",
    "ConfigurationError",
    "DatabaseConnectionError",
    "DatabaseError",
    "DatabaseManager",
    "DatabaseManagerProtocol",
    "IntegrityError",
    "MigrationError",
    "MultipleResultSetsError",
    "ParameterError",
    "PoolTimeoutError",
    "ProcedureResult",
    "QueryError",
    "QueryTimeoutError",
    "Savepoint",
    "TableValue",
    "Transaction",
    "TransactionError",
    "TransactionProtocol",
    "__version__",
    "check_params",
    "dispose_all",
    "health_check_all",
    "rewrite_sql",
]

_logbridge.install()

# Close pooled connections politely when the interpreter exits.
atexit.register(_native_shutdown)
