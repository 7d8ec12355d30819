"""dbflow: pooled, migrated, monitored PostgreSQL and SQL Server access for Prefect flows.

>>> from dbflow import DatabaseManager
>>> with DatabaseManager("rpa_db") as db:
...     rows = db.execute_query("SELECT * FROM customers WHERE status = :status",
...                             {"status": "active"})
"""

from __future__ import annotations

import atexit
from os import PathLike
from typing import cast

from typing_extensions import Self

from dbflow import _patching
from dbflow._native import (
    ConfigManager,
    Savepoint,
    Transaction,
    __version__,
    check_params,
    dispose_all,
    health_check_all,
    rewrite_sql,
)
from dbflow._native import DatabaseManager as _NativeDatabaseManager
from dbflow._native import _shutdown as _native_shutdown
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


class DatabaseManager(_NativeDatabaseManager):
    """Pooled access to one configured database (see the README).

    All work happens in the native core; this subclass only lets
    ``dbflow.testing.patch_databases`` hand out test doubles.
    """

    def __new__(
        cls,
        database_name: str,
        *,
        environment: str | None = None,
        flow_name: str | None = None,
        config: ConfigManager | None = None,
        migrations_dir: str | PathLike[str] | None = None,
    ) -> Self:
        patched = _patching.lookup(database_name)
        if patched is not None:
            # A test double standing in for this database (it satisfies
            # DatabaseManagerProtocol, which flow code relies on).
            return cast(Self, patched)
        return super().__new__(
            cls,
            database_name,
            environment=environment,
            flow_name=flow_name,
            config=config,
            migrations_dir=migrations_dir,
        )


__all__ = [
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

# Close pooled connections politely when the interpreter exits.
atexit.register(_native_shutdown)
