"""dbflow: pooled, migrated, monitored PostgreSQL and SQL Server access for Prefect flows.

>>> from dbflow import DatabaseManager
>>> with DatabaseManager("rpa_db") as db:
...     rows = db.execute_query("SELECT * FROM customers WHERE status = :status",
...                             {"status": "active"})
"""

from __future__ import annotations

import atexit

from dbflow._native import (
    ConfigManager,
    DatabaseManager,
    Savepoint,
    Transaction,
    __version__,
    dispose_all,
    health_check_all,
    rewrite_sql,
)
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

__all__ = [
    "ChecksumMismatchError",
    "ConfigManager",
    "ConfigurationError",
    "DatabaseConnectionError",
    "DatabaseError",
    "DatabaseManager",
    "IntegrityError",
    "MigrationError",
    "ParameterError",
    "PoolTimeoutError",
    "QueryError",
    "QueryTimeoutError",
    "Savepoint",
    "Transaction",
    "TransactionError",
    "__version__",
    "dispose_all",
    "health_check_all",
    "rewrite_sql",
]

# Close pooled connections politely when the interpreter exits.
atexit.register(_native_shutdown)
