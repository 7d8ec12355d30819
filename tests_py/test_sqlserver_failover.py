"""SQL Server's failover partner and MultiSubnetFailover against the real
TDS server (issue #26, item 2).

The partner is the TDS server at DBFLOW_TEST_MSSQL_URL; the "primary" is a
port where nothing listens, or one that accepts and never answers. For
MultiSubnetFailover a name resolves to two addresses in a private mount
namespace (its own /etc/hosts): first one whose packets are swallowed
(netpath's cut path), then one that reaches the server.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netpath
import pytest
from envs import Env

import dbflow

#: What a loaded machine may add to a deadline before the error reaches Python.
SLACK = 6.0


@pytest.fixture
def login(mssql_test_url: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(mssql_test_url)
    return {
        "user": urllib.parse.unquote(parts.username or ""),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": parts.path.lstrip("/"),
        "server": f"{parts.hostname},{parts.port or 1433}",
    }


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel completes the handshake but nobody ever answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ado(login: dict[str, str], server: str, **extra: str) -> str:
    parts = {
        "Server": f"tcp:{server}",
        "Database": login["database"],
        "User Id": login["user"],
        "Password": login["password"],
        "Encrypt": "False",
        **extra,
    }
    return ";".join(f"{k}={v}" for k, v in parts.items())


def configured(env: Env, conn: str, **settings: object) -> str:
    """A database named by an ADO.NET string, written as is (Env.database
    would append a URL option)."""
    name = f"ado{next(_names)}"
    env.set(f"{name.upper()}_CONNECTION_STRING", conn)
    for key, value in {"pool_size": 1, "pool_release_grace": 0, **settings}.items():
        env.set(f"{name.upper()}_{key.upper()}", value)
    return name


_names = itertools.count()


def answers(db: dbflow.DatabaseManager) -> bool:
    return bool(db.execute_query("SELECT 1 AS one")[0]["one"] == 1)


def test_partner_answers_when_the_primary_refuses(
    env: Env, login: dict[str, str], mssql_test_url: str
) -> None:
    dead = closed_port()
    name = configured(env, ado(login, f"127.0.0.1,{dead}", **{"Failover Partner": login["server"]}))
    db = env.manager(name)
    assert answers(db)
    db.dispose()
    # The URL form and JDBC's spelling.
    host, port = login["server"].split(",")
    url = mssql_test_url.replace(f"@{host}:{port}/", f"@127.0.0.1:{dead}/")
    url += f"&failover_partner={host},{port}"
    db = env.manager(env.database(url=url, pool_size=1))
    assert answers(db)
    db.dispose()


def test_partner_answers_when_the_primary_never_does(
    env: Env, login: dict[str, str], silent_port: int, record_property: Any
) -> None:
    conn = ado(login, f"127.0.0.1,{silent_port}", **{"Failover_Partner": login["server"]})
    db = env.manager(configured(env, conn, connect_timeout=2))
    started = time.monotonic()
    assert answers(db)
    took = time.monotonic() - started
    record_property("seconds_to_reach_the_partner", round(took, 3))
    assert 2.0 <= took < 2.0 + SLACK, "one connect timeout for the silent primary, then the partner"
    db.dispose()


def test_neither_answering_names_both(env: Env, login: dict[str, str]) -> None:
    first, second = closed_port(), closed_port()
    conn = ado(login, f"127.0.0.1,{first}", **{"Failover Partner": f"127.0.0.1,{second}"})
    db = env.manager(configured(env, conn, connect_timeout=2))
    with pytest.raises(dbflow.DatabaseConnectionError) as failed:
        db.execute_query("SELECT 1 AS one")
    message = str(failed.value)
    assert "none of the 2 servers gave a session" in message
    assert f"127.0.0.1:{first}" in message and f"127.0.0.1:{second}" in message
    assert login["password"] not in message
    db.dispose()


def test_a_bad_partner_or_combination_is_refused_at_once(env: Env, login: dict[str, str]) -> None:
    conn = ado(login, "127.0.0.1\\one", **{"Failover Partner": "127.0.0.1\\two"})
    with pytest.raises(dbflow.ConfigurationError, match="instance 'two'"):
        env.manager(configured(env, conn))
    conn = ado(login, "127.0.0.1\\one", MultiSubnetFailover="Yes")
    with pytest.raises(
        dbflow.ConfigurationError, match="MultiSubnetFailover needs the server's port"
    ):
        env.manager(configured(env, conn))
    conn = ado(login, login["server"], MultiSubnetFailover="perhaps")
    with pytest.raises(
        dbflow.ConfigurationError, match="multi_subnet_failover='perhaps' must be true or false"
    ):
        env.manager(configured(env, conn))


# ---- MultiSubnetFailover: a name with one dead and one live address ---------

CHILD = textwrap.dedent(
    """
    import json, socket, sys, tempfile, time
    from pathlib import Path
    import dbflow

    name, port, conn, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    order = [a[4][0] for a in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)]
    root = tempfile.mkdtemp()
    Path(root, ".env.test").write_text(
        f"TEST_GLOBAL_AG_CONNECTION_STRING={conn}\\nTEST_GLOBAL_AG_CONNECT_TIMEOUT={timeout}\\n"
        "TEST_GLOBAL_AG_POOL_SIZE=1\\n"
    )
    db = dbflow.DatabaseManager("ag", config=dbflow.ConfigManager("test", envs_dir=root))
    started = time.monotonic()
    try:
        db.execute_query("SELECT 1 AS one")
        outcome = "connected"
    except dbflow.DatabaseError as e:
        outcome = type(e).__name__ + ": " + str(e)
    print(json.dumps({"order": order, "outcome": outcome, "seconds": time.monotonic() - started}))
    """
)


def why_no_namespace() -> str | None:
    if netpath.available() is not None:
        return netpath.available()
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "util-linux's unshare and mount are needed for a private /etc/hosts"
    return None


@pytest.fixture
def listener_name(login: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, int, Path, str]]:
    """An availability group listener's name: two addresses, the first one
    swallowing every packet (its subnet's replica is down)."""
    host, port = login["server"].split(",")
    live = netpath.DeadablePath(int(port), target_host=host)
    dead = netpath.DeadablePath(int(port), target_host=host)
    try:
        dead.cut()
        assert live.port == dead.port
        name = "dbflow-listener.test"
        hosts = tmp_path / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{dead.host} {name}\n{live.host} {name}\n")
        yield name, live.port, hosts, dead.host
    finally:
        dead.close()
        live.close()


def run_in_private_hosts(hosts: Path, *args: str) -> dict[str, Any]:
    script = f'mount --bind {hosts} /etc/hosts && exec {sys.executable} -c "$0" "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, CHILD, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(why_no_namespace() is not None, reason=str(why_no_namespace()))
def test_multi_subnet_failover_takes_the_address_that_answers(
    login: dict[str, str], listener_name: tuple[str, int, Path, str], record_property: Any
) -> None:
    name, port, hosts, dead_address = listener_name
    parallel = run_in_private_hosts(
        hosts, name, str(port), ado(login, f"{name},{port}", MultiSubnetFailover="Yes"), "3"
    )
    assert parallel["order"][0] == dead_address, "the swallowing address must come first"
    assert parallel["outcome"] == "connected", parallel
    record_property("seconds_with_multi_subnet_failover", round(parallel["seconds"], 3))
    assert parallel["seconds"] < 2.0 + SLACK / 2
    # The same name without it: the first address eats the connect timeout.
    serial = run_in_private_hosts(hosts, name, str(port), ado(login, f"{name},{port}"), "3")
    record_property("seconds_without_it", round(serial["seconds"], 3))
    assert serial["outcome"].startswith("DatabaseConnectionError"), serial
    assert "connect timeout" in serial["outcome"]
    assert 3.0 <= serial["seconds"] < 3.0 + SLACK
