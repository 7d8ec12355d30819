"""Helpers that create, empty or drop databases — and refuse to touch one
that is not a test database, so a misconfigured run cannot reach
production data."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterable

from dbflow import ConfigurationError, DatabaseManager, DatabaseManagerProtocol, QueryError
from dbflow._native import maintenance_sql

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NotATestDatabaseError(ConfigurationError):
    """The helper was pointed at a database that is not a test database."""


def ensure_test_database(database: str, environment: str | None = None) -> None:
    """Raise unless `database` is named ``test_...`` or `environment` is ``test``."""
    if database.lower().startswith("test_") or (environment or "").lower() == "test":
        return
    raise NotATestDatabaseError(
        f"refusing to modify database '{database}': it is not a test database. "
        "Test helpers only act on databases named test_* or in the 'test' environment; "
        "point DBFLOW_TEST_POSTGRES_URL / the test configuration at a test server",
        database=database,
        operation="test isolation guard",
    )


def _checked_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise NotATestDatabaseError(f"'{name}' is not a plain identifier", database=name)
    return name


def _database_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def create_test_database(admin: DatabaseManagerProtocol, name: str) -> None:
    """Create database `name` (must be ``test_*``) using an admin connection."""
    ensure_test_database(name)
    for statement in maintenance_sql(
        admin.database_type, "create_database", [_checked_ident(name)]
    ):
        admin.execute_query(statement)


def drop_test_database(admin: DatabaseManagerProtocol, name: str, *, wait: float = 15.0) -> None:
    """Drop database `name` (must be ``test_*``), closing its sessions.

    Where the server cannot end other sessions (Babelfish has no ``ALTER
    DATABASE ... ROLLBACK IMMEDIATE``), a session still running a statement
    a test abandoned keeps the database in use: the drop is tried again for
    up to `wait` seconds, then its error is raised."""
    ensure_test_database(name)
    statements = maintenance_sql(admin.database_type, "drop_database", [_checked_ident(name)])
    deadline = time.monotonic() + wait
    while True:
        try:
            for statement in statements:
                admin.execute_query(statement)
            return
        except QueryError as e:
            if "currently in use" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.25)


def truncate_tables(
    db: DatabaseManagerProtocol,
    tables: Iterable[str],
    *,
    database: str | None = None,
    environment: str | None = None,
) -> None:
    """Empty `tables` of a test database (name ``test_*`` or environment ``test``)."""
    target = database or _target_database(db)
    ensure_test_database(target, environment or getattr(db, "environment", None))
    names = [_checked_ident(t) for t in tables]
    if not names:
        return
    db.execute_transaction(list(maintenance_sql(db.database_type, "empty_tables", names)))


def _target_database(db: DatabaseManagerProtocol) -> str:
    if isinstance(db, DatabaseManager):
        return _database_of(db.connection_string) or db.database_name
    return db.database_name
