"""Shared fixtures: a real PostgreSQL reached over TCP with password auth.

The test command (scripts/test) starts the server and exports
DBFLOW_TEST_POSTGRES_URL; without it the integration tests cannot run, and
the session fails loudly instead of skipping them.
"""

from __future__ import annotations

import itertools
import os
import tempfile
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
    sqlserver_product,
    with_database,
)
from envs import Env
from projects import Project

import dbflow
from dbflow.testing import create_test_database, drop_test_database

_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): the backends a contract test applies to (default: all)"
    )
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

BACKENDS = ("postgresql", "pgbouncer", "sqlserver")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using `backend` runs on each backend it applies to:
    `@pytest.mark.backends("postgresql", ...)` narrows the set, so a test
    written for one dialect is not generated (nor skipped) for the others."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = [b for b in BACKENDS if marker is None or b in marker.args]
    metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture(scope="session")
def mssql_server() -> Iterator[tuple[str, str]]:
    """The SQL Server named by DBFLOW_TEST_MSSQL_URL: a database of our own
    on it (created for the session, dropped afterwards) and the product
    ("sqlserver" or "babelfish"), read once from @@VERSION."""
    base = mssql_url()
    if base is None:
        pytest.skip(MSSQL_SKIP)
    with tempfile.TemporaryDirectory(prefix="dbflow-mssql-admin-") as root:
        (Path(root) / ".env.test").write_text(f"TEST_GLOBAL_MSSQL_ADMIN_CONNECTION_STRING={base}\n")
        config = dbflow.ConfigManager("test", envs_dir=root)
        admin = dbflow.DatabaseManager("mssql_admin", config=config)
        product = sqlserver_product(admin.execute_query("SELECT @@VERSION AS v")[0]["v"])
        name = f"test_dbflow_{os.getpid()}"
        drop_test_database(admin, name)
        create_test_database(admin, name)
        try:
            yield with_database(base, name), product
        finally:
            dbflow.dispose_all()
            drop_test_database(admin, name)
            admin.dispose()


@pytest.fixture(scope="session")
def mssql_test_url(mssql_server: tuple[str, str]) -> str:
    return mssql_server[0]


@pytest.fixture
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
    url, product = request.getfixturevalue("mssql_server")
    return sqlserver(url, product)


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


# ---- a migrations project on a fresh database of each backend --------------


@pytest.fixture
def pg_database(env: Env, pg_url: str) -> Iterator[Callable[[], str]]:
    """Make fresh PostgreSQL databases owned by the test user: each call
    returns a new database's name. They are created and dropped by the
    superuser, so the forced drop may end any session in them — autovacuum's
    included, which the test user may not end (SQLSTATE 42501)."""
    superuser = env.manager(
        env.database(url=os.environ["DBFLOW_TEST_POSTGRES_ADMIN_URL"], pool_size=1)
    )
    owner = urllib.parse.urlsplit(pg_url).username
    made: list[str] = []

    def make() -> str:
        name = f"test_db_{os.getpid()}_{next(_counter)}"
        superuser.execute_query(f"CREATE DATABASE {name} OWNER {owner}")
        made.append(name)
        return name

    yield make
    dbflow.dispose_all()
    for name in made:
        superuser.execute_query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    superuser.dispose()


@pytest.fixture
def fresh_url(env, backend: Backend) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A new, empty database on the backend's server, dropped afterwards
    (on PostgreSQL by the superuser over a direct connection, so the forced
    drop may end any session, PgBouncer's and autovacuum's included)."""
    if backend.name == "postgresql":
        admin_db = env.database(url=os.environ["DBFLOW_TEST_POSTGRES_ADMIN_URL"], pool_size=1)
    else:
        admin_db = env.database(backend=backend, pool_size=1, max_overflow=0)
    admin = env.manager(admin_db)
    name = f"test_mig_{os.getpid()}_{next(_counter)}"
    owner = urllib.parse.urlsplit(backend.url).username
    if backend.name == "postgresql":
        admin.execute_query(f"CREATE DATABASE {name} OWNER {owner}")
    else:
        create_test_database(admin, name)
    try:
        yield with_database(backend.url, name)
    finally:
        dbflow.dispose_all()
        if backend.name == "postgresql":
            admin.execute_query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        else:
            drop_test_database(admin, name)
        admin.dispose()


@pytest.fixture
def project(tmp_path: Path, env, fresh_url: str, backend: Backend) -> Project:  # type: ignore[no-untyped-def]
    return Project(tmp_path / "migrations", env, fresh_url, backend)
