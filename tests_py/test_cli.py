"""The dbflow command, run as users run it (a subprocess), against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def dbflow_cli(
    *args: str, env_dir: Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbflow", *args, "--env", "test", "--envs-dir", str(env_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=dict(os.environ),
    )


@pytest.fixture
def setup(env, tmp_path: Path, pg_url: str):  # type: ignore[no-untyped-def]
    import dbflow

    admin = env.manager(env.database(pool_size=1, max_overflow=0))
    name = f"dbflow_cli_{os.getpid()}"
    admin.execute_query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.execute_query(f"CREATE DATABASE {name}")
    from backends import with_database

    env.database("clidb", url=with_database(pg_url, name), auto_migrate="off")
    root = tmp_path / "migrations"
    yield env.root, root
    dbflow.dispose_all()
    admin.execute_query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def test_new_migrate_info_validate_undo_repair(setup) -> None:  # type: ignore[no-untyped-def]
    env_dir, root = setup
    opts = ["--migrations-dir", str(root)]
    made = dbflow_cli("new", "clidb", "Create people", *opts, env_dir=env_dir)
    assert made.returncode == 0, made.stderr
    first = root / "clidb" / "V001__Create_people.sql"
    assert first.exists()
    first.write_text("CREATE TABLE people (id int);\n")
    assert dbflow_cli("new", "clidb", "Add phone!", *opts, env_dir=env_dir).returncode == 0
    second = root / "clidb" / "V002__Add_phone.sql"
    second.write_text("ALTER TABLE people ADD phone text;\n")
    (root / "clidb" / "U002__Add_phone.sql").write_text("ALTER TABLE people DROP COLUMN phone;\n")

    info = dbflow_cli("info", "clidb", *opts, env_dir=env_dir)
    assert info.returncode == 0, info.stderr
    assert "V001" in info.stdout and "pending" in info.stdout and "Create people" in info.stdout

    migrate = dbflow_cli("migrate", "clidb", *opts, env_dir=env_dir)
    assert migrate.returncode == 0, migrate.stderr
    assert "V001, V002" in migrate.stdout
    assert "V001__Create_people.sql" in migrate.stderr  # progress, file by file

    status = json.loads(dbflow_cli("info", "clidb", "--json", *opts, env_dir=env_dir).stdout)
    assert status["current_version"] == "V002"

    assert dbflow_cli("validate", "clidb", *opts, env_dir=env_dir).returncode == 0
    second.write_text("ALTER TABLE people ADD phone varchar(20);\n")
    tampered = dbflow_cli("validate", "clidb", *opts, env_dir=env_dir)
    assert tampered.returncode == 1
    assert "V002__Add_phone.sql" in tampered.stderr
    assert dbflow_cli("repair", "clidb", *opts, env_dir=env_dir).returncode == 0
    assert dbflow_cli("validate", "clidb", *opts, env_dir=env_dir).returncode == 0

    undo = dbflow_cli("undo", "clidb", "--target", "V1", *opts, env_dir=env_dir)
    assert undo.returncode == 0, undo.stderr
    assert "V002" in undo.stdout


def test_exit_codes_for_configuration_and_unreachable(tmp_path: Path) -> None:
    (tmp_path / ".env.test").write_text(
        "TEST_GLOBAL_DOWNDB_CONNECTION_STRING=postgresql://u:p@127.0.0.1:1/x\n"
    )
    missing = dbflow_cli("info", "nosuchdb", env_dir=tmp_path)
    assert missing.returncode == 2
    assert "TEST_GLOBAL_NOSUCHDB_CONNECTION_STRING" in missing.stderr
    (tmp_path / "migrations" / "downdb").mkdir(parents=True)
    down = dbflow_cli(
        "info", "downdb", "--migrations-dir", str(tmp_path / "migrations"), env_dir=tmp_path
    )
    assert down.returncode == 3, down.stderr
    assert "refused" in down.stderr


def test_health_pool_and_config_check(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = env.database("okdb")
    env.set("DOWNDB_CONNECTION_STRING", "postgresql://u:Hidden-Pw1@127.0.0.1:1/x")
    env.set("BADDB_CONNECTION_STRING", "postgresql://u@h/x?sslmode=sometimes")
    health = dbflow_cli("health", good, "downdb", env_dir=env.root)
    assert health.returncode == 1
    assert "overall: degraded" in health.stdout
    assert "okdb: healthy" in health.stdout and "downdb: unhealthy" in health.stdout
    report = json.loads(dbflow_cli("health", good, "--json", env_dir=env.root).stdout)
    assert report["overall_status"] == "healthy"

    pool = dbflow_cli("pool", good, env_dir=env.root)
    assert pool.returncode == 0, pool.stderr
    assert "pool_size=5" in pool.stdout and "opened=1" in pool.stdout

    check = dbflow_cli("config", "check", env_dir=env.root)
    assert check.returncode == 1
    assert "okdb: ok" in check.stdout
    assert "downdb: failed" in check.stdout and "refused the connection" in check.stdout
    assert "baddb: misconfigured" in check.stdout and "sslmode" in check.stdout
    assert "Hidden-Pw1" not in check.stdout + check.stderr
