"""Shared fixtures: a real PostgreSQL reached over TCP with password auth.

The test command (scripts/test) starts the server and exports
DBFLOW_TEST_POSTGRES_URL; without it the integration tests cannot run, and
the session fails loudly instead of skipping them.
"""

from __future__ import annotations

import itertools
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends import (
    Backend,
    mssql_url,
    pgbouncer,
    pgbouncer_urls,
    postgres,
    sqlserver,
    with_database,
)

import dbflow

_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("DBFLOW_TEST_POSTGRES_URL"):
        raise pytest.UsageError(
            "DBFLOW_TEST_POSTGRES_URL is not set; run the suite with scripts/test, "
            "which starts a PostgreSQL server and sets it"
        )


@pytest.fixture(scope="session")
def pg_url() -> str:
    return os.environ["DBFLOW_TEST_POSTGRES_URL"]


@pytest.fixture(scope="session")
def pg_password(pg_url: str) -> str:
    password = urllib.parse.urlsplit(pg_url).password
    assert password, "the test server must use password authentication"
    return password


def with_options(url: str, **options: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query.extend(options.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class Env:
    """Writes `.env.test` files and builds managers against them."""

    def __init__(self, root: Path, pg_url: str) -> None:
        self.root = root
        self.pg_url = pg_url
        self.lines: list[str] = []

    def set(self, key: str, value: object) -> None:
        self.lines.append(f"TEST_GLOBAL_{key}={value}")
        (self.root / ".env.test").write_text("\n".join(self.lines) + "\n")

    def database(
        self,
        name: str | None = None,
        url: str | None = None,
        backend: Backend | None = None,
        **settings: object,
    ) -> str:
        """Configure a database (on `backend`, or `url`, default the
        PostgreSQL test server) with its own pool; returns its name."""
        name = name or f"db{next(_counter)}"
        if backend is not None:
            url = backend.url
            settings = {**backend.settings, **settings}
        app = f"dbflow_test_{name}_{os.getpid()}"
        target = with_options(url or self.pg_url, application_name=app)
        self.set(f"{name.upper()}_CONNECTION_STRING", target)
        for key, value in settings.items():
            self.set(f"{name.upper()}_{key.upper()}", value)
        return name

    def config(self, flow_name: str | None = None) -> dbflow.ConfigManager:
        return dbflow.ConfigManager(environment="test", flow_name=flow_name, envs_dir=self.root)

    def manager(self, name: str, flow_name: str | None = None) -> dbflow.DatabaseManager:
        return dbflow.DatabaseManager(name, config=self.config(flow_name))


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> Env:
    return Env(tmp_path, pg_url)


@pytest.fixture
def db(env: Env) -> Iterator[dbflow.DatabaseManager]:
    name = env.database(pool_release_grace=0)
    manager = env.manager(name)
    yield manager
    manager.dispose()


@pytest.fixture
def admin(env: Env) -> Iterator[dbflow.DatabaseManager]:
    """A separate pool for watching the server (pg_stat_activity)."""
    name = env.database("admin_watch", pool_size=1, max_overflow=0)
    manager = env.manager(name)
    yield manager
    manager.dispose()


@pytest.fixture
def server_connections(admin: dbflow.DatabaseManager) -> Callable[[str], int]:
    """How many server backends a manager's pool has open right now."""

    def count(database_name: str) -> int:
        rows = admin.execute_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = :app",
            {"app": f"dbflow_test_{database_name}_{os.getpid()}"},
        )
        return int(rows[0]["n"])

    return count


@pytest.fixture
def table(db: dbflow.DatabaseManager) -> Iterator[str]:
    """A fresh table name, dropped afterwards."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    yield name
    db.execute_query(f"DROP TABLE IF EXISTS {name}")


# ---- the contract suite: the same tests on every backend ------------------


MSSQL_SKIP = "DBFLOW_TEST_MSSQL_URL is not set: no SQL Server-protocol server to test against"


@pytest.fixture(scope="session")
def mssql_test_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of our own on the SQL Server named by DBFLOW_TEST_MSSQL_URL,
    created for the session and dropped afterwards."""
    base = mssql_url()
    if base is None:
        pytest.skip(MSSQL_SKIP)
    root = tmp_path_factory.mktemp("mssql-admin")
    (root / ".env.test").write_text(f"TEST_GLOBAL_MSSQL_ADMIN_CONNECTION_STRING={base}\n")
    config = dbflow.ConfigManager("test", envs_dir=root)
    admin = dbflow.DatabaseManager("mssql_admin", config=config)
    name = f"dbflow_test_{os.getpid()}"
    admin.execute_query(f"IF DB_ID('{name}') IS NULL CREATE DATABASE [{name}]")
    try:
        yield with_database(base, name)
    finally:
        admin.execute_query(
            f"IF DB_ID('{name}') IS NOT NULL BEGIN "
            f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
            f"DROP DATABASE [{name}]; END"
        )
        admin.dispose()


@pytest.fixture(params=["postgresql", "pgbouncer", "sqlserver"])
def backend(request: pytest.FixtureRequest, pg_url: str) -> Backend:
    if request.param == "postgresql":
        return postgres(pg_url)
    if request.param == "pgbouncer":
        urls = pgbouncer_urls()
        if urls is None:
            pytest.fail("DBFLOW_TEST_PGBOUNCER_URL is not set; scripts/pg-server start sets it")
        return pgbouncer(*urls)
    if mssql_url() is None:
        pytest.skip(MSSQL_SKIP)
    return sqlserver(request.getfixturevalue("mssql_test_url"))


@pytest.fixture
def bdb(env: Env, backend: Backend) -> Iterator[dbflow.DatabaseManager]:
    """A manager for the parametrized backend, with a pool of its own."""
    name = env.database(backend=backend, pool_release_grace=0)
    manager = env.manager(name)
    yield manager
    manager.dispose()


@pytest.fixture
def btable(bdb: dbflow.DatabaseManager) -> Iterator[str]:
    name = f"t_{os.getpid()}_{next(_counter)}"
    yield name
    bdb.execute_query(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def bsessions(env: Env, backend: Backend) -> Iterator[Callable[[str], int]]:
    """How many server sessions a configured database's pool has open."""
    watcher_name = env.database(
        "watch_" + backend.name, backend=backend, pool_size=1, max_overflow=0
    )
    watcher = env.manager(watcher_name)

    def count(database_name: str) -> int:
        app = f"dbflow_test_{database_name}_{os.getpid()}"
        if backend.count_sessions is not None:
            return backend.count_sessions(app)
        return int(watcher.execute_query(backend.sessions_sql, {"app": app})[0]["n"])

    yield count
    watcher.dispose()
