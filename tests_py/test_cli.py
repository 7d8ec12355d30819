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
def setup(env, tmp_path: Path, pg_url: str, pg_database):  # type: ignore[no-untyped-def]
    from backends import with_database

    env.database("clidb", url=with_database(pg_url, pg_database()), auto_migrate="off")
    root = tmp_path / "migrations"
    yield env.root, root


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
    assert health.returncode == 3, "an unreachable database is exit 3 for every command"
    assert "overall: degraded" in health.stdout
    assert "okdb: healthy" in health.stdout and "downdb: unhealthy" in health.stdout
    # The error is printed once, in the report, not again by the logger.
    output = health.stdout + health.stderr
    assert output.count("[downdb] health_check failed") == 1, output
    report = json.loads(dbflow_cli("health", good, "--json", env_dir=env.root).stdout)
    assert report["overall_status"] == "healthy"

    pool = dbflow_cli("pool", good, env_dir=env.root)
    assert pool.returncode == 0, pool.stderr
    assert "pool_size=5" in pool.stdout and "opened=1" in pool.stdout
    assert pool.stderr == "", "no log chatter before the table"

    check = dbflow_cli("config", "check", env_dir=env.root)
    assert check.returncode == 2, "a misconfigured database is exit 2"
    assert "okdb: ok" in check.stdout
    assert "downdb: unreachable" in check.stdout and "refused the connection" in check.stdout
    assert "baddb: misconfigured" in check.stdout and "sslmode" in check.stdout
    assert "Hidden-Pw1" not in check.stdout + check.stderr
    assert (check.stdout + check.stderr).count("is not one of disable") == 1, check.stdout


@pytest.fixture
def wrong_password(env, pg_url: str):  # type: ignore[no-untyped-def]
    """A database whose password, taken from ${SHOP_PW} in the env file, is wrong."""
    import urllib.parse

    parts = urllib.parse.urlsplit(pg_url)
    netloc = f"{parts.username}:${{SHOP_PW}}@{parts.hostname}:{parts.port}"
    env.set_raw("SHOP_PW", "Not-The-Password-9")
    env.set("SHOP_CONNECTION_STRING", urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    return env


def test_exit_codes_agree_across_commands(wrong_password, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = wrong_password
    (tmp_path / "migrations" / "shop").mkdir(parents=True)
    opts = ["--migrations-dir", str(tmp_path / "migrations")]
    table = {
        ("health", "shop"): 3,
        ("info", "shop"): 3,
        ("migrate", "shop"): 3,
        ("validate", "shop"): 3,
        ("pool", "shop"): 3,
        ("health", "nosuchdb"): 2,
        ("info", "nosuchdb"): 2,
        ("migrate", "nosuchdb"): 2,
        ("pool", "nosuchdb"): 2,
    }
    for (command, database), code in table.items():
        done = dbflow_cli(command, database, *opts, env_dir=env.root)
        assert done.returncode == code, (command, database, done.stdout, done.stderr)
        if database == "shop" and command != "health":
            # A rejected login says where the password came from.
            assert "${SHOP_PW}" in done.stderr, done.stderr
            assert "Not-The-Password-9" not in done.stderr + done.stdout
    check = dbflow_cli("config", "check", env_dir=env.root)
    assert check.returncode == 3, check.stdout + check.stderr


def test_migrate_without_a_migrations_directory_names_every_path(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env.database("shop")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in ("migrate", "info", "validate"):
        done = dbflow_cli(command, "shop", env_dir=env.root, cwd=elsewhere)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert str(elsewhere / "migrations" / "shop") in done.stderr
        assert str(elsewhere / "core" / "migrations" / "shop") in done.stderr
        assert "TEST_GLOBAL_SHOP_MIGRATIONS_DIR" in done.stderr
        assert "nothing to apply" not in done.stdout


def test_migrate_reports_the_version_the_database_is_at(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`DatabaseManager("Shop")` finds `migrations/shop/`; a run with nothing
    to apply still says the version the history records."""
    import dbflow

    name = env.database("Shop")
    root = tmp_path / "migrations"
    (root / "shop").mkdir(parents=True)
    table = f"cli_shop_{os.getpid()}"
    (root / "shop" / "V001__Create.sql").write_text(f"CREATE TABLE {table} (id int);\n")
    (root / "shop" / "V002__Add.sql").write_text(f"ALTER TABLE {table} ADD name text;\n")
    try:
        first = dbflow_cli("migrate", name, env_dir=env.root, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "applied V001, V002; now at V002" in first.stdout
        again = dbflow_cli("migrate", name, env_dir=env.root, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "nothing to apply; already at V002"
    finally:
        with env.manager(name) as db:
            db.execute_query(f"DROP TABLE IF EXISTS {table}")
            db.execute_query("DROP TABLE IF EXISTS schema_version")
        dbflow.dispose_all()


def test_config_check_names_misspelt_keys(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = env.database("okdb")
    env.set("OKDB_QUERY_TIMOUT", "1")
    check = dbflow_cli("config", "check", env_dir=env.root)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "TEST_GLOBAL_OKDB_QUERY_TIMOUT" in check.stdout
    assert f"{good}: ok" in check.stdout

    only_typos = tmp_path / "typos"
    only_typos.mkdir()
    (only_typos / ".env.test").write_text(
        "TSET_GLOBAL_SHOP_CONNECTION_STRING=postgresql://u:p@h/x\n"
        "TEST_GLOBAL_CRM_CONECTION_STRING=postgresql://u:p@h/y\n"
    )
    check = dbflow_cli("config", "check", env_dir=only_typos)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "0 database(s) configured" in check.stdout
    assert "did you mean TEST_GLOBAL_SHOP_CONNECTION_STRING?" in check.stdout
    assert "did you mean TEST_GLOBAL_CRM_CONNECTION_STRING?" in check.stdout
    assert "u:p@" not in check.stdout


def test_new_continues_the_numbering_the_runner_sees(tmp_path: Path) -> None:
    root = tmp_path / "migrations"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "V001__a.sql").write_text("SELECT 1;\n")
    (root / "shop" / "v003__b.SQL").write_text("SELECT 1;\n")
    (root / "shop" / "U003__b.sql").write_text("SELECT 1;\n")
    made = dbflow_cli("new", "Shop", "Next one", "--migrations-dir", str(root), env_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (root / "shop" / "V004__Next_one.sql").exists()
    assert not (root / "Shop").exists()


def test_help_lists_every_command_and_the_exit_codes(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "dbflow", "--help"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0
    for text in ("config check", "dbflow migrate rpa_db", "Exit codes", "3  a database could"):
        assert text in shown.stdout, text


def test_health_says_where_the_schema_is(setup) -> None:  # type: ignore[no-untyped-def]
    env_dir, root = setup
    (root / "clidb").mkdir(parents=True)
    (root / "clidb" / "V001__a.sql").write_text("CREATE TABLE cli_a (id int);\n")
    (root / "clidb" / "V002__b.sql").write_text("CREATE TABLE cli_b (id int);\n")
    migrate = dbflow_cli(
        "migrate", "clidb", "--target", "1", "--migrations-dir", str(root), env_dir=env_dir
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "applied V001; now at V001" in migrate.stdout
    health = dbflow_cli("health", "clidb", "--migrations-dir", str(root), env_dir=env_dir)
    assert "schema at V001, pending: V002" in health.stdout, health.stdout
    dbflow_cli("migrate", "clidb", "--migrations-dir", str(root), env_dir=env_dir)
    health = dbflow_cli("health", "clidb", "--migrations-dir", str(root), env_dir=env_dir)
    assert "schema at V002, up to date" in health.stdout, health.stdout


def test_a_warning_outside_prefect_names_its_level_and_logger(env) -> None:  # type: ignore[no-untyped-def]
    """With no logging configured, a dbflow warning reaches stderr as
    Python's last resort would print it, but with level and logger named."""
    env.database("warned")
    env.set("WARNED_QUERY_TIMOUT", "1")
    script = (
        "import dbflow\n"
        f"cfg = dbflow.ConfigManager('test', envs_dir={str(env.root)!r})\n"
        "dbflow.DatabaseManager('warned', config=cfg).close()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "WARNING dbflow: TEST_GLOBAL_WARNED_QUERY_TIMOUT is not a dbflow setting" in run.stderr


def test_version_is_the_one_in_cargo_toml() -> None:
    """`dbflow --version`, dbflow.__version__ and Cargo.toml's version (the
    one place it is written; the wheel's metadata takes it from there) agree."""
    import re

    import dbflow

    cargo_toml = (Path(__file__).parents[1] / "Cargo.toml").read_text()
    # The first `version =` line is [package]'s (tomllib is 3.11+; dbflow runs on 3.10).
    found = re.search(r'^version = "([^"]+)"$', cargo_toml, re.MULTILINE)
    assert found, "Cargo.toml has no version line"
    version = found.group(1)
    shown = subprocess.run(
        [sys.executable, "-m", "dbflow", "--version"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"dbflow {version}"
    assert dbflow.__version__ == version
