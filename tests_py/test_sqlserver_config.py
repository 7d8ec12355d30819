"""SQL Server configuration and connection failures that need no server:
every connection-string form, and real connection attempts against a closed
port and a black hole."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbflow
from dbflow import ConfigManager, ConfigurationError, DatabaseConnectionError


def manager(tmp_path: Path, conn: str, extra: str = "") -> dbflow.DatabaseManager:
    (tmp_path / ".env.development").write_text(
        f"DEVELOPMENT_GLOBAL_SURVEYHUB_CONNECTION_STRING={conn}\n{extra}"
    )
    return dbflow.DatabaseManager("SurveyHub", config=ConfigManager(envs_dir=tmp_path))


@pytest.mark.parametrize(
    ("conn", "redacted"),
    [
        (
            "mssql+pyodbc://user:pw1@survey-server:1433/survey_hub?driver=ODBC+Driver+17+for+SQL+Server",
            "mssql://user:***@survey-server:1433/survey_hub",
        ),
        ("mssql+pymssql://user:pw1@h/db", "mssql://user:***@h/db"),
        (
            "mssql://user:pw1@h:1444/db?encrypt=off&TrustServerCertificate=yes",
            "mssql://user:***@h:1444/db",
        ),
        ("sqlserver://h:1433;databaseName=db;user=user;password=pw1", "mssql://user:***@h:1433/db"),
        (
            "jdbc:sqlserver://h\\SQLEXPRESS;databaseName=db;user=user;password=pw1",
            "mssql://user:***@h/db",
        ),
        (
            "Server=tcp:h,1433;Database=db;User Id=user;Password=pw1;Encrypt=True;"
            "TrustServerCertificate=False",
            "mssql://user:***@h:1433/db",
        ),
    ],
)
def test_every_form_is_detected_and_redacted(tmp_path: Path, conn: str, redacted: str) -> None:
    db = manager(tmp_path, conn)
    try:
        assert db.database_type == "sqlserver"
        assert db.connection_string.startswith(redacted)
        assert "pw1" not in repr(db) and "pw1" not in db.connection_string
        assert db.get_pool_status()["connections_opened"] == 0
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("conn", "named"),
    [
        ("mssql://u:p@h/db?colour=blue", "colour"),
        (
            "Server=h;Database=db;User Id=u;Password=p;Integrated Security=SSPI",
            "Integrated Security",
        ),
        ("Server=h;Database=db;User Id=u;Password=p;Max Pool Size=50", "POOL_SIZE"),
        ("mssql://u:p@h/db?encrypt=yes&Encrypt=no", "twice"),
    ],
)
def test_unknown_or_conflicting_options_are_configuration_errors(
    tmp_path: Path, conn: str, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named) as info:
        manager(tmp_path, conn)
    assert "DEVELOPMENT_GLOBAL_SURVEYHUB_CONNECTION_STRING" in str(info.value)


def test_trust_and_ca_file_contradict(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="contradict"):
        manager(tmp_path, "mssql://u:p@127.0.0.1:1/db?TrustServerCertificate=yes&ca_file=/x.pem")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection(tmp_path: Path) -> None:
    db = manager(tmp_path, f"mssql://sa:Secret-Pw-9@127.0.0.1:{closed_port()}/db?encrypt=off")
    try:
        with pytest.raises(DatabaseConnectionError) as info:
            db.execute_query("SELECT 1")
        assert "refused" in str(info.value)
        assert "Secret-Pw-9" not in str(info.value)
        assert info.value.database == "SurveyHub"
    finally:
        db.dispose()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    for s in accepted:
        s.close()
    server.close()


def test_black_holed_server_honours_the_connect_timeout(tmp_path: Path, black_hole: int) -> None:
    db = manager(
        tmp_path,
        f"mssql://sa:p@127.0.0.1:{black_hole}/db?encrypt=off",
        "DEVELOPMENT_GLOBAL_SURVEYHUB_CONNECT_TIMEOUT=0.5\n",
    )
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseConnectionError, match="connect timeout"):
            db.execute_query("SELECT 1")
        assert time.monotonic() - started < 3
    finally:
        db.dispose()
