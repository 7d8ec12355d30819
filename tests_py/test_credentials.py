"""Credentials that rotate (issue #26, item 3), on the real PostgreSQL test
server: a role of the test's own whose password is changed with ALTER ROLE
while calls run, `password_provider=` and `<DB>_PASSWORD_COMMAND` giving the
secret of every new connection, their failures, and the built-in token
logins (`<DB>_AUTH=rds-iam` with boto3's own signer on a fixed clock and
fixed credentials; `<DB>_AUTH=entra` with azure-identity's credential class
replaced, the external SDK's only). SQL Server's are in
test_credentials_mssql.py."""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from envs import Env, with_options

import dbflow
from dbflow import ConfigurationError

_names = itertools.count()


class Role:
    """A login role of this test's own (never the shared `dbflow` role)."""

    def __init__(self, admin: dbflow.DatabaseManager, pg_url: str) -> None:
        self.admin = admin
        self.name = f"dbflow_cred_{os.getpid()}_{next(_names)}"
        parts = urllib.parse.urlsplit(pg_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.database = parts.path.lstrip("/")
        self.password = f"first-{self.name}"
        admin.execute_query(f"CREATE ROLE \"{self.name}\" LOGIN PASSWORD '{self.password}'")

    def rotate(self, password: str) -> None:
        # ALTER ROLE takes no parameters; the secrets here are plain tokens.
        assert "'" not in password
        self.admin.execute_query(f"ALTER ROLE \"{self.name}\" PASSWORD '{password}'")
        self.password = password

    def url(self, **options: str) -> str:
        base = f"postgresql://{self.name}@{self.host}:{self.port}/{self.database}"
        return with_options(base, **options) if options else base

    def drop(self) -> None:
        self.admin.execute_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n",
            {"n": self.name},
        )
        self.admin.execute_query(f'DROP ROLE IF EXISTS "{self.name}"')


@pytest.fixture
def superuser(env: Env) -> Iterator[dbflow.DatabaseManager]:
    name = env.database("cred_admin", url=os.environ["DBFLOW_TEST_POSTGRES_ADMIN_URL"])
    manager = env.manager(name)
    yield manager
    manager.dispose()


@pytest.fixture
def role(superuser: dbflow.DatabaseManager, pg_url: str) -> Iterator[Role]:
    r = Role(superuser, pg_url)
    yield r
    dbflow.dispose_all()
    r.drop()


@pytest.fixture
def tls() -> dict[str, str]:
    """Options of a verified TLS connection to the test server."""
    ca = os.environ.get("DBFLOW_TEST_POSTGRES_CA")
    if not ca:
        pytest.skip("the test server has no TLS certificate (scripts/pg-server makes one)")
    return {"sslmode": "verify-full", "sslrootcert": ca}


class Load:
    """Threads calling the database until stopped, keeping every failure and
    the server sessions they ran on."""

    def __init__(
        self,
        db: dbflow.DatabaseManager,
        threads: int = 4,
        sql: str = "SELECT pg_backend_pid() AS pid, pg_sleep(0.02) IS NULL AS slept",
    ) -> None:
        self.db = db
        self.sql = sql
        self.errors: list[BaseException] = []
        self.pids: set[int] = set()
        self.calls = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                row = self.db.execute_query(self.sql)[0]
                with self._lock:
                    self.pids.add(row["pid"])
                    self.calls += 1
            except BaseException as e:
                with self._lock:
                    self.errors.append(e)

    def wait_calls(self, n: int) -> None:
        deadline = time.monotonic() + 20
        start = self.calls
        while self.calls < start + n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.calls >= start + n, f"{self.calls - start} calls in 20 s"

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def rotation_while_running(
    env: Env,
    role: Role,
    rotate: Callable[[str], None],
    calls: Callable[[], list[str]],
    **source: Any,
) -> None:
    """Rotate the role's password under a running load and check that no call
    failed, that a transaction opened before the rotation finished on its
    connection, and that the connections opened after it logged in with the
    new secret."""
    name = env.database(
        url=role.url(), pool_size=2, max_overflow=2, pool_recycle=1, pool_release_grace=0
    )
    provider = source.get("password_provider")
    db = dbflow.DatabaseManager(name, config=env.config(), password_provider=provider)
    load = Load(db)
    try:
        load.wait_calls(20)
        tx = db.transaction()
        tx.__enter__()
        old_pid = tx.execute_query("SELECT pg_backend_pid() AS p")[0]["p"]
        before = set(load.pids) | {old_pid}
        asked_before = len(calls())
        new = f"second-{role.name}"
        rotate(new)
        # Recycling (1 s) replaces every pooled connection with a new login.
        time.sleep(2.5)
        load.wait_calls(20)
        # A session from before the rotation keeps working.
        assert tx.execute_query("SELECT pg_backend_pid() AS p")[0]["p"] == old_pid
        tx.__exit__(None, None, None)
    finally:
        load.stop()
    assert load.errors == [], load.errors[:3]
    after_logins = calls()[asked_before:]
    assert after_logins, "no new connection was opened after the rotation"
    assert set(after_logins) == {new}, "a login after the rotation used another secret"
    sessions = db.execute_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE usename = current_user "
        "AND pid <> ALL(:before)",
        {"before": sorted(before)},
    )
    assert sessions[0]["n"] >= 1, "no session of the role was opened after the rotation"
    assert len(load.pids - before) >= 1
    db.dispose()


def test_password_provider_rotation_while_calls_run(env: Env, role: Role) -> None:
    lock = threading.Lock()
    given: list[str] = []

    def provider() -> str:
        # The secret store's side of a rotation: a reader never sees a
        # secret the server does not accept yet.
        with lock:
            given.append(role.password)
            return role.password

    def rotate(new: str) -> None:
        with lock:
            role.rotate(new)

    rotation_while_running(env, role, rotate, lambda: list(given), password_provider=provider)


def test_password_command_rotation_while_calls_run(env: Env, role: Role, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(role.password + "\n")
    log = tmp_path / "log"
    log.write_text("")
    lock = tmp_path / "lock"
    lock.write_text("")
    script = tmp_path / "print-secret"
    # flock(1) shares flock(2) with the test, which holds it while rotating.
    script.write_text(f'#!/bin/sh\nflock -s "{lock}" sh -c \'cat "{secret}" | tee -a "{log}"\'\n')
    script.chmod(0o700)
    env.set("ROTATING_PASSWORD_COMMAND", str(script))

    def rotate(new: str) -> None:
        with open(lock) as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            role.rotate(new)
            secret.write_text(new + "\n")

    def calls() -> list[str]:
        return log.read_text().splitlines()

    # The setting is the database's own key: name the database to match.
    original = env.database
    env.database = lambda **kw: original("rotating", **kw)  # type: ignore[method-assign]
    rotation_while_running(env, role, rotate, calls)


def failing(env: Env, role: Role, **settings: Any) -> Callable[..., ConfigurationError]:
    def call(provider: Any = None) -> ConfigurationError:
        name = env.database(url=role.url(), pool_release_grace=0, **settings)
        db = dbflow.DatabaseManager(name, config=env.config(), password_provider=provider)
        try:
            with pytest.raises(ConfigurationError) as raised:
                db.execute_query("SELECT 1")
        finally:
            db.dispose()
        message = str(raised.value)
        assert f"[{name}]" in message, message
        assert role.password not in message
        return raised.value

    return call


def test_a_provider_that_raises_or_returns_no_str(env: Env, role: Role) -> None:
    def broken() -> str:
        raise RuntimeError("the vault is sealed")

    e = failing(env, role)(broken)
    assert "password_provider raised RuntimeError (the vault is sealed)" in str(e)
    e = failing(env, role)(lambda: 42)
    assert "returned a int, not a str" in str(e)
    e = failing(env, role)(lambda: "")
    assert "returned an empty str" in str(e)


def test_a_provider_that_hangs_is_a_timeout(env: Env, role: Role) -> None:
    started = time.monotonic()
    e = failing(env, role, credential_timeout=1)(lambda: time.sleep(30) or role.password)
    assert "gave no password within 1s" in str(e), str(e)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("echo {pw}; exit 1", "the command failed (exit status 1)"),
        ("echo {pw}; sleep 30", "gave no password within 1s"),
        ("echo {pw} >&2", "printed nothing"),
    ],
)
def test_a_password_command_that_fails(env: Env, role: Role, command: str, said: str) -> None:
    started = time.monotonic()
    # Each prints the real secret somewhere: never part of the message.
    e = failing(
        env,
        role,
        password_command=command.format(pw=role.password),
        credential_timeout=1,
    )()
    assert said in str(e), str(e)
    assert time.monotonic() - started < 10


def test_two_sources_of_one_password_are_refused(env: Env, role: Role) -> None:
    with_password = role.url().replace(f"{role.name}@", f"{role.name}:pw@")
    name = env.database(url=with_password)
    with pytest.raises(ConfigurationError, match="has a password and password_provider"):
        dbflow.DatabaseManager(name, config=env.config(), password_provider=lambda: "x")
    name = env.database(url=role.url(), password_command="echo x")
    with pytest.raises(ConfigurationError, match="PASSWORD_COMMAND both give"):
        dbflow.DatabaseManager(name, config=env.config(), password_provider=lambda: "x")
    with pytest.raises(ConfigurationError, match="must be a callable"):
        dbflow.DatabaseManager(name, config=env.config(), password_provider="x")  # type: ignore[arg-type]


def test_the_async_manager_takes_a_provider(env: Env, role: Role) -> None:
    import asyncio

    asked: list[int] = []

    def provider() -> str:
        asked.append(threading.get_ident())
        return role.password

    name = env.database(url=role.url(), pool_release_grace=0)

    async def run() -> list[dict[str, Any]]:
        async with dbflow.AsyncDatabaseManager(
            name, config=env.config(), password_provider=provider
        ) as db:
            rows = await db.execute_query("SELECT current_user AS u")
            db.dispose()
            return rows

    loop_thread = threading.get_ident()
    assert asyncio.run(run()) == [{"u": role.name}]
    # Called off the event loop's thread.
    assert asked and loop_thread not in asked


# -- built-in token logins ---------------------------------------------------

FIXED_KEY = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
FIXED_NOW = dt.datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def fixed_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3 with fixed credentials and botocore's signing clock fixed (the
    external library's clock, not dbflow's)."""
    pytest.importorskip("boto3")
    import botocore.auth

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FIXED_KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FIXED_KEY[1])
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FIXED_NOW)


def offline_rds_token(role: Role, region: str) -> str:
    import boto3

    session = boto3.Session(
        aws_access_key_id=FIXED_KEY[0], aws_secret_access_key=FIXED_KEY[1], region_name=region
    )
    return str(
        session.client("rds").generate_db_auth_token(
            DBHostname=role.host, Port=role.port, DBUsername=role.name
        )
    )


def test_rds_iam_token_logs_in_over_tls(
    env: Env, role: Role, tls: dict[str, str], fixed_aws: None
) -> None:
    token = offline_rds_token(role, "eu-west-1")
    assert "X-Amz-Signature=" in token and "X-Amz-Date=20260102T030405Z" in token
    role.rotate(token)
    name = env.database(
        url=role.url(**tls), auth="rds-iam", auth_region="eu-west-1", pool_release_grace=0
    )
    with dbflow.DatabaseManager(name, config=env.config()) as db:
        row = db.execute_query(
            "SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )[0]
        assert row == {"u": role.name, "ssl": True}
        assert token not in repr(db) and token not in db.connection_string
        db.dispose()


def test_rds_iam_needs_tls_and_a_region(env: Env, role: Role, fixed_aws: None) -> None:
    name = env.database(url=role.url(), auth="rds-iam", auth_region="eu-west-1")
    with pytest.raises(ConfigurationError, match=r"needs TLS: write sslmode=verify-full"):
        dbflow.DatabaseManager(name, config=env.config())
    name = env.database(url=role.url(sslmode="require"), auth="rds-iam")
    with pytest.raises(ConfigurationError, match=r"AUTH_REGION"):
        dbflow.DatabaseManager(name, config=env.config())


class FakeEntraCredential:
    """Stands in for azure.identity.DefaultAzureCredential (the SDK's class)."""

    token = "entra-token-value"
    scopes: list[str] = []  # noqa: RUF012

    def get_token(self, *scopes: str) -> Any:
        from azure.core.credentials import AccessToken

        FakeEntraCredential.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def test_entra_token_is_the_password_on_postgresql(
    env: Env, role: Role, tls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.identity")
    import azure.identity

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", FakeEntraCredential)
    FakeEntraCredential.scopes = []
    role.rotate(FakeEntraCredential.token)
    name = env.database(url=role.url(**tls), auth="entra", pool_size=3, pool_release_grace=0)
    with dbflow.DatabaseManager(name, config=env.config()) as db:
        barrier = threading.Barrier(3)

        def session() -> None:
            barrier.wait()
            db.execute_query("SELECT pg_sleep(0.3)")

        threads = [threading.Thread(target=session) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert db.get_pool_status()["pool_size"] == 3
        rows = db.execute_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE usename = :u", {"u": role.name}
        )
        assert rows[0]["n"] == 3
        db.dispose()
    # One token for the three logins: it had an hour left.
    assert FakeEntraCredential.scopes == ["https://ossrdbms-aad.database.windows.net/.default"]
