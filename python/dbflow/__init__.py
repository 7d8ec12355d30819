"""dbflow: pooled, migrated, monitored PostgreSQL and SQL Server access for Prefect flows.

>>> from dbflow import DatabaseManager
>>> with DatabaseManager("rpa_db") as db:
...     rows = db.execute_query("SELECT * FROM customers WHERE status = :status",
...                             {"status": "active"})
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any, Literal, cast, overload

from typing_extensions import Self

from dbflow import _artifacts, _logbridge, _patching, _travel
from dbflow._native import AsyncDatabaseManager as _NativeAsyncDatabaseManager
from dbflow._native import (
    AsyncRowIterator,
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
from dbflow.exceptions import (
    ChecksumMismatchError,
    ConfigurationError,
    DatabaseConnectionError,
    DatabaseError,
    IntegrityError,
    MigrationError,
    ParameterError,
    PoolTimeoutError,
    QueryError,
    QueryTimeoutError,
    TransactionError,
)
from dbflow.protocol import DatabaseManagerProtocol, TransactionProtocol


class _Constructor:
    """The constructor both managers share: ``dbflow.testing.patch_databases``
    may hand out a test double instead, and ``credentials=`` (a
    ``dbflow.prefect.DatabaseCredentials`` block, or anything with
    ``.settings()``) beats the environment and env files. Managers pickle as
    what they are (``dbflow._travel``)."""

    # What the manager was made from; turned into a ticket only when pickled.
    _made_from: tuple[Any, Any, Any]

    def __new__(
        cls,
        database_name: str,
        *,
        environment: str | None = None,
        flow_name: str | None = None,
        config: ConfigManager | None = None,
        migrations_dir: str | PathLike[str] | None = None,
        credentials: Any = None,
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
        )
        manager._made_from = (base, migrations_dir, credentials)
        return manager

    def __reduce__(self) -> tuple[Any, ...]:
        # What the manager is, never a connection or a secret: the receiving
        # process attaches to its own pool (see dbflow._travel).
        return (_travel.arrive, (type(self), _travel.Ticket.of(self, *self._made_from)))

    @staticmethod
    def _as_double(patched: Any) -> Any:
        return patched


class DatabaseManager(_Constructor, _NativeDatabaseManager):
    """Pooled access to one configured database (see the README).

    All work happens in the native core; this subclass only adds the
    constructor's test-double and credentials hooks, pickling, and the
    Prefect artifact of a migration run.
    """

    def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        report = super().run_migrations(
            target, out_of_order=out_of_order, placeholders=placeholders, dry_run=dry_run
        )
        if _artifacts.wants_migration_report(self, report):
            _artifacts.publish_migrations(self, report, self.get_migration_status())
        return report


class AsyncDatabaseManager(_Constructor, _NativeAsyncDatabaseManager):
    """``DatabaseManager`` for asyncio: the same constructor and operations,
    as coroutines (``await db.execute_query(...)``, ``async with``,
    ``async for row in db.iter_query(...)``). The work runs on dbflow's shared
    runtime; the event loop never blocks. Cancelling an awaiting task discards
    the connection it was using."""

    @staticmethod
    def _as_double(patched: Any) -> Any:
        # The doubles patch_databases gives DatabaseManager, with coroutines.
        from dbflow.testing.mock import as_async

        return as_async(patched)

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
        if as_tuples:
            return await super().execute_query(sql, params, as_tuples=True)
        return await super().execute_query(sql, params)

    async def execute_query_with_timeout(
        self, sql: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        return await super().execute_query_with_timeout(sql, params, timeout)

    async def execute_many(self, sql: str, seq_of_params: Iterable[Mapping[str, Any]]) -> int:
        return await super().execute_many(sql, seq_of_params)

    async def execute_transaction(
        self, queries: Sequence[tuple[str, Mapping[str, Any] | None] | tuple[str] | str]
    ) -> list[list[dict[str, Any]]]:
        return await super().execute_transaction(queries)

    async def bulk_insert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any] | Sequence[Any]],
        columns: Sequence[str] | None = None,
    ) -> int:
        return await super().bulk_insert(table, rows, columns)

    async def run_migrations(
        self,
        target: str | int | float | None = None,
        *,
        out_of_order: bool = False,
        placeholders: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        report = await super().run_migrations(
            target, out_of_order=out_of_order, placeholders=placeholders, dry_run=dry_run
        )
        if _artifacts.wants_migration_report(self, report):
            status = await super().get_migration_status()
            await _artifacts.apublish_migrations(self, report, status)
        return report

    async def baseline_migrations(
        self, version: str | int | float | None = None, description: str = "<< Flyway Baseline >>"
    ) -> dict[str, Any]:
        return await super().baseline_migrations(version, description)

    async def get_migration_status(self) -> dict[str, Any]:
        return await super().get_migration_status()

    async def health_check(self) -> dict[str, Any]:
        return await super().health_check()


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
    "AsyncRowIterator",
    "AsyncTransaction",
    "ChecksumMismatchError",
    "ConfigManager",
    "ConfigurationError",
    "DatabaseConnectionError",
    "DatabaseError",
    "DatabaseManager",
    "DatabaseManagerProtocol",
    "IntegrityError",
    "MigrationError",
    "ParameterError",
    "PoolTimeoutError",
    "QueryError",
    "QueryTimeoutError",
    "Savepoint",
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
