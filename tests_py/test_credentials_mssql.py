"""Credentials that rotate on SQL Server (the TDS server of
DBFLOW_TEST_MSSQL_URL, Babelfish here): a login of the test's own whose
password is changed with ALTER LOGIN while calls run, and
`<DB>_PASSWORD_COMMAND`. Entra (`<DB>_AUTH=entra`) needs a server with
federated authentication, which Babelfish lacks: a small TDS listener here
answers PRELOGIN (TLS, FEDAUTHREQUIRED), does the TLS handshake and reads the
LOGIN7 packet, which must carry azure-identity's token (its credential class
replaced: the external SDK's, not dbflow's) as the federated-authentication
feature."""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import mssql_url
from envs import Env, with_options
from test_credentials import FakeEntraCredential, Load

import dbflow
from dbflow import ConfigurationError

_names = itertools.count()


@pytest.fixture
def base_url() -> str:
    url = mssql_url()
    if url is None:
        pytest.skip("DBFLOW_TEST_MSSQL_URL is not set")
    return url


class Login:
    """A SQL Server login of this test's own."""

    def __init__(self, env: Env, base: str) -> None:
        self.admin = env.manager(env.database(f"mssql_cred_admin{next(_names)}", url=base))
        self.name = f"dbflow_cred_{os.getpid()}_{next(_names)}"
        self.password = f"Pw_first_{next(_names)}"
        parts = urllib.parse.urlsplit(base)
        self.base = parts
        self.admin.execute_query(f"CREATE LOGIN {self.name} WITH PASSWORD = '{self.password}'")

    def rotate(self, password: str) -> None:
        self.admin.execute_query(f"ALTER LOGIN {self.name} WITH PASSWORD = '{password}'")
        self.password = password

    def url(self) -> str:
        netloc = f"{self.name}@{self.base.hostname}:{self.base.port or 1433}"
        return urllib.parse.urlunsplit(self.base._replace(netloc=netloc))

    def drop(self) -> None:
        dbflow.dispose_all()
        sessions = self.admin.execute_query(
            "SELECT session_id AS s FROM sys.dm_exec_sessions WHERE login_name = :n",
            {"n": self.name},
        )
        for row in sessions:
            self.admin.execute_query(f"KILL {int(row['s'])}")
        self.admin.execute_query(f"DROP LOGIN {self.name}")
        self.admin.dispose()


@pytest.fixture
def login(env: Env, base_url: str) -> Iterator[Login]:
    made = Login(env, base_url)
    yield made
    made.drop()


def test_password_provider_rotation_on_sql_server(env: Env, login: Login) -> None:
    lock = threading.Lock()
    given: list[str] = []

    def provider() -> str:
        with lock:
            given.append(login.password)
            return login.password

    name = env.database(
        url=login.url(), pool_size=2, max_overflow=2, pool_recycle=1, pool_release_grace=0
    )
    db = dbflow.DatabaseManager(name, config=env.config(), password_provider=provider)
    load = Load(db, sql="SELECT @@SPID AS pid")
    try:
        load.wait_calls(20)
        asked_before = len(given)
        with lock:
            login.rotate(f"Pw_second_{next(_names)}")
        time.sleep(2.5)  # recycling (1 s) replaces every pooled connection
        load.wait_calls(20)
    finally:
        load.stop()
    assert load.errors == [], load.errors[:3]
    assert given[asked_before:], "no new connection was opened after the rotation"
    assert set(given[asked_before:]) == {login.password}
    assert db.execute_query("SELECT SUSER_NAME() AS u") == [{"u": login.name}]
    db.dispose()


def test_password_command_on_sql_server(env: Env, login: Login, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(login.password + "\n")
    name = env.database(url=login.url(), password_command=f"cat {secret}", pool_release_grace=0)

    def fresh_login() -> list[dict[str, str]]:
        # A new pool: its first call is a new login.
        db = dbflow.DatabaseManager(name, config=env.config())
        try:
            return db.execute_query("SELECT SUSER_NAME() AS u")
        finally:
            db.dispose()

    assert fresh_login() == [{"u": login.name}]
    new = f"Pw_second_{next(_names)}"
    login.rotate(new)
    secret.write_text(new + "\n")
    assert fresh_login() == [{"u": login.name}]
    secret.write_text("")
    with pytest.raises(ConfigurationError, match="printed nothing"):
        fresh_login()


# -- Entra: the token in the login packet ------------------------------------


def packet(kind: int, payload: bytes, packet_id: int = 1) -> bytes:
    return struct.pack(">BBHHBB", kind, 0x01, 8 + len(payload), 0, packet_id, 0) + payload


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection")
        data += chunk
    return data


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    header = read_exact(sock, 8)
    kind, _, length = struct.unpack(">BBH", header[:4])
    return kind, read_exact(sock, length - 8)


class TdsListener:
    """Answers one connection's PRELOGIN with TLS required and federated
    authentication required, does the TLS handshake (wrapped in PRELOGIN
    packets, as TDS 7.x does), and keeps the decrypted LOGIN7 payload."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert, key)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.login: bytes | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                conn.settimeout(10)
                self._session(conn)
        except BaseException as e:
            self.failure = e

    def _session(self, conn: socket.socket) -> None:
        kind, _ = read_packet(conn)
        assert kind == 0x12, kind
        # VERSION, ENCRYPTION = ON, FEDAUTHREQUIRED = 1, terminator; data at 16.
        options = struct.pack(">BHH", 0x00, 16, 6) + struct.pack(">BHH", 0x01, 22, 1)
        options += struct.pack(">BHH", 0x06, 23, 1) + b"\xff"
        conn.sendall(packet(0x04, options + bytes([16, 0, 0, 0, 0, 0]) + b"\x01\x01"))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.context.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    conn.sendall(packet(0x12, outgoing.read()))
                kind, payload = read_packet(conn)
                incoming.write(payload)
        if outgoing.pending:
            conn.sendall(packet(0x12, outgoing.read()))
        # After the handshake the client writes TLS records unwrapped.
        plain = b""
        while len(plain) < 8 or len(plain) < struct.unpack(">H", plain[2:4])[0]:
            try:
                plain += tls.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(conn.recv(65536) or b"")
        assert plain[0] == 0x10, plain[0]  # LOGIN7
        self.login = plain[8 : struct.unpack(">H", plain[2:4])[0]]

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[TdsListener]:
    cert, key = tmp_path / "tds.crt", tmp_path / "tds.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    made = TdsListener(cert, key)
    yield made
    made.close()


def test_entra_token_reaches_the_login_packet(
    env: Env, listener: TdsListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.identity")
    import azure.identity

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", FakeEntraCredential)
    FakeEntraCredential.scopes = []
    url = with_options(
        f"mssql://127.0.0.1:{listener.port}/master", encrypt="yes", TrustServerCertificate="true"
    )
    name = env.database(url=url, auth="entra", connect_timeout=5, pool_release_grace=0)
    db = dbflow.DatabaseManager(name, config=env.config())
    with pytest.raises(dbflow.DatabaseConnectionError) as failed:
        db.execute_query("SELECT 1")  # the listener hangs up after the login
    db.dispose()
    assert listener.failure is None, listener.failure
    assert listener.login is not None
    assert FakeEntraCredential.token not in str(failed.value)
    token = FakeEntraCredential.token.encode("utf-16-le")
    # FeatureExt FEDAUTH: id 0x02, length, options (security token, echo), the token.
    feature = bytes([0x02]) + struct.pack("<I", 5 + len(token)) + bytes([0x03])
    feature += struct.pack("<I", len(token)) + token
    assert feature in listener.login
    assert FakeEntraCredential.scopes == ["https://database.windows.net/.default"]


def test_entra_needs_tls(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("azure.identity")
    import azure.identity

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", FakeEntraCredential)
    name = env.database(url="mssql://127.0.0.1:1433/master?encrypt=off", auth="entra")
    with pytest.raises(ConfigurationError, match="needs TLS: write encrypt=yes"):
        dbflow.DatabaseManager(name, config=env.config())
