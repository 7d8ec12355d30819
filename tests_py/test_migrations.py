"""Migrations against real servers: order, targets, failures, validation,
undo, repair, concurrency. Portable SQL runs on every backend."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from backends import Backend
from projects import Project

import dbflow
from dbflow import ChecksumMismatchError, MigrationError

BASE = {
    "V001__Create_people.sql": (
        "CREATE TABLE people (id int PRIMARY KEY, name varchar(50) NOT NULL);\n"
    ),
    "V002__Add_phone.sql": "ALTER TABLE people ADD phone varchar(20);\n",
    "V003__Seed.sql": "INSERT INTO people (id, name) VALUES (1, 'Ada');\n"
    "INSERT INTO people (id, name) VALUES (2, 'Grace');\n",
    "U003__Seed.sql": "DELETE FROM people;\n",
    "U002__Add_phone.sql": "ALTER TABLE people DROP COLUMN phone;\n",
}


def history(db: dbflow.DatabaseManager) -> list[dict[str, object]]:
    return db.execute_query("SELECT version, success FROM schema_version ORDER BY installed_rank")


def test_status_creates_nothing_then_apply_in_order(project: Project) -> None:
    project.write(BASE)
    db = project.manager()
    status = db.get_migration_status()
    assert status["current_version"] is None
    assert status["pending_migrations"] == ["V001", "V002", "V003"]
    assert status["total_migrations"] == 3
    # Reading status did not create the history table.
    with pytest.raises(dbflow.QueryError):
        db.execute_query("SELECT 1 FROM schema_version")
    report = db.run_migrations()
    assert report == {"applied": ["V001", "V002", "V003"], "current_version": "V003"}
    assert db.execute_query("SELECT name FROM people ORDER BY id") == [
        {"name": "Ada"},
        {"name": "Grace"},
    ]
    status = db.get_migration_status()
    assert status["current_version"] == "V003" and status["pending_migrations"] == []
    applied = status["applied_migrations"]
    assert [a["version"] for a in applied] == ["V001", "V002", "V003"]
    assert all(a["success"] and a["installed_on"] and a["execution_time_ms"] >= 0 for a in applied)
    assert applied[0]["script"] == "V001__Create_people.sql"
    assert applied[0]["description"] == "Create people"
    assert status["last_migration"] is not None
    # A second run has nothing to do.
    assert db.run_migrations() == {"applied": [], "current_version": "V003"}


@pytest.mark.parametrize("target", ["V2", "2", 2, "V002", "2.0"])
def test_target_accepts_any_spelling(project: Project, target: object) -> None:
    project.write(BASE)
    db = project.manager()
    assert db.run_migrations(target)["applied"] == ["V001", "V002"]  # type: ignore[arg-type]
    assert db.get_migration_status()["pending_migrations"] == ["V003"]


def test_failure_halts_names_file_and_line_and_leaves_no_trace(project: Project) -> None:
    project.write(
        {
            "V001__Create_people.sql": BASE["V001__Create_people.sql"],
            "V002__Broken.sql": "-- a comment\nCREATE TABLE pets (id int PRIMARY KEY);\n\n"
            "INSERT INTO pets (id) VALUES (1);\nINSERT INTO no_such_table VALUES (1);\n",
            "V003__Never.sql": "CREATE TABLE never (id int);\n",
        }
    )
    db = project.manager()
    with pytest.raises(MigrationError) as info:
        db.run_migrations()
    message = str(info.value)
    assert "V002__Broken.sql line 5" in message
    assert "no_such_table" in message
    assert info.value.database == "appdb"
    assert [r["version"] for r in history(db)] == ["001"]
    with pytest.raises(dbflow.QueryError):
        db.execute_query("SELECT * FROM pets")  # rolled back with its migration
    assert db.get_migration_status()["pending_migrations"] == ["V002", "V003"]


def test_bad_files_are_errors_naming_them(project: Project) -> None:
    db = project.manager()
    cases = {
        "V1_Missing_separator.sql": "not a migration file name",
        "V1.x__Bad_version.sql": "not a migration file name",
    }
    for name, expected in cases.items():
        project.write({name: "SELECT 1;"})
        with pytest.raises(MigrationError, match=expected) as info:
            db.get_migration_status()
        assert name in str(info.value)
        (project.dir / name).unlink()
    project.write({"V1__a.sql": "SELECT 1;", "V001__b.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="both define version"):
        db.run_migrations()
    (project.dir / "V001__b.sql").unlink()
    project.write({"U7__orphan.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match=r"U7__orphan.sql"):
        db.run_migrations()


def test_checksum_tamper_detected_then_repaired(project: Project) -> None:
    project.write(BASE)
    db = project.manager()
    db.run_migrations()
    (project.dir / "V002__Add_phone.sql").write_text("ALTER TABLE people ADD phone varchar(40);\n")
    with pytest.raises(ChecksumMismatchError, match=r"V002__Add_phone.sql"):
        db.validate_migrations()
    with pytest.raises(ChecksumMismatchError):
        db.run_migrations()
    assert db.repair_migrations() == {"removed_failed": 0, "realigned": 1}
    db.validate_migrations()


def test_crlf_and_bom_do_not_change_the_checksum(project: Project) -> None:
    project.write(BASE)
    db = project.manager()
    db.run_migrations()
    for path in project.dir.glob("V*.sql"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_text().replace("\n", "\r\n").encode())
    db.validate_migrations()
    assert db.run_migrations()["applied"] == []


def test_applied_file_missing_from_disk(project: Project) -> None:
    project.write(BASE)
    db = project.manager()
    db.run_migrations()
    (project.dir / "V003__Seed.sql").unlink()
    (project.dir / "U003__Seed.sql").unlink()
    with pytest.raises(MigrationError, match="V003"):
        db.validate_migrations()


def test_out_of_order_is_an_error_unless_allowed(project: Project) -> None:
    project.write({k: v for k, v in BASE.items() if k.startswith(("V001", "V003"))})
    db = project.manager()
    db.run_migrations()
    project.write({"V002__Add_phone.sql": BASE["V002__Add_phone.sql"]})
    with pytest.raises(MigrationError, match=r"V002__Add_phone.sql.*out of order"):
        db.run_migrations()
    assert db.run_migrations(out_of_order=True)["applied"] == ["V002"]
    db.validate_migrations(out_of_order=True)


def test_rollback_runs_undo_files_newest_first(project: Project) -> None:
    project.write(BASE)
    db = project.manager()
    db.run_migrations()
    assert db.rollback_migrations("V1") == ["V003", "V002"]
    assert [r["version"] for r in history(db)] == ["001"]
    assert db.execute_query("SELECT COUNT(*) AS n FROM people") == [{"n": 0}]
    with pytest.raises(dbflow.QueryError):
        db.execute_query("SELECT phone FROM people")
    assert db.run_migrations()["applied"] == ["V002", "V003"]


def test_rollback_without_undo_file_changes_nothing(project: Project) -> None:
    project.write(BASE)
    db = project.manager()
    db.run_migrations()
    with pytest.raises(MigrationError, match="U001"):
        db.rollback_migrations(0)
    assert [r["version"] for r in history(db)] == ["001", "002", "003"]
    assert db.execute_query("SELECT COUNT(*) AS n FROM people") == [{"n": 2}]


def test_no_directory_is_read_only_for_health_and_an_error_when_asked_to_migrate(
    env, fresh_url: str, tmp_path: Path, backend: Backend
) -> None:  # type: ignore[no-untyped-def]
    name = env.database("readonly_db", url=fresh_url, **backend.settings)
    db = dbflow.DatabaseManager(name, config=env.config(), migrations_dir=tmp_path / "none")
    try:
        assert db.migrations_dir is None
        # Start-up (auto-migrate check) and health treat it as a read-only database.
        assert db.execute_query("SELECT 1 AS x") == [{"x": 1}]
        assert db.health_check()["migration_status"] == "read_only"
        for call in (db.run_migrations, db.get_migration_status, db.validate_migrations):
            with pytest.raises(dbflow.ConfigurationError) as info:
                call()
            message = str(info.value)
            assert str(tmp_path / "none" / "readonly_db") in message, message
            # Said in the terms the caller used: the argument given in code.
            assert "give migrations_dir=" in message, message
            assert "TEST_GLOBAL_READONLY_DB_MIGRATIONS_DIR" in message
        with pytest.raises(dbflow.QueryError):
            db.execute_query("SELECT 1 FROM schema_version")
    finally:
        db.dispose()


def test_directory_found_whatever_the_case_of_the_name(project: Project) -> None:
    project.write({"V1__t.sql": "CREATE TABLE cased (id int);\n"})
    # "AppDB" reads the keys of appdb (TEST_GLOBAL_APPDB_...) and its directory.
    db = dbflow.DatabaseManager("AppDB", config=project.env.config(), migrations_dir=project.root)
    try:
        assert db.migrations_dir == project.dir
        assert db.run_migrations()["current_version"] == "V1"
    finally:
        db.dispose()


def test_an_emptied_directory_still_reports_the_version_applied(project: Project) -> None:
    project.write({"V1__a.sql": "CREATE TABLE kept (id int);\n"})
    with project.manager() as db:
        assert db.run_migrations()["current_version"] == "V1"
    (project.dir / "V1__a.sql").unlink()
    with project.manager() as db:
        assert db.run_migrations() == {"applied": [], "current_version": "V1"}
        assert db.get_migration_status()["current_version"] == "V1"


def test_auto_migrate_apply_runs_before_the_first_query(
    tmp_path: Path,
    env,
    fresh_url: str,
    backend: Backend,  # type: ignore[no-untyped-def]
) -> None:
    root = tmp_path / "m"
    (root / "autodb").mkdir(parents=True)
    for name, text in BASE.items():
        (root / "autodb" / name).write_text(text)
    name = env.database("autodb", url=fresh_url, auto_migrate="apply", **backend.settings)
    db = dbflow.DatabaseManager(name, config=env.config(), migrations_dir=root)
    try:
        assert db.execute_query("SELECT COUNT(*) AS n FROM people") == [{"n": 2}]
    finally:
        db.dispose()


def test_auto_migrate_check_warns_about_pending(
    tmp_path: Path,
    env,
    fresh_url: str,
    backend: Backend,
    caplog,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.WARNING, logger="dbflow")
    root = tmp_path / "m"
    (root / "checkdb").mkdir(parents=True)
    (root / "checkdb" / "V1__x.sql").write_text("CREATE TABLE x (id int);\n")
    name = env.database("checkdb", url=fresh_url, auto_migrate="check", **backend.settings)
    db = dbflow.DatabaseManager(name, config=env.config(), migrations_dir=root)
    try:
        db.execute_query("SELECT 1")
        warnings = [r.getMessage() for r in caplog.records if r.name == "dbflow"]
        assert any("pending migrations" in w and "V1" in w for w in warnings), warnings
        with pytest.raises(dbflow.QueryError):
            db.execute_query("SELECT * FROM x")  # check does not apply
    finally:
        db.dispose()


def test_eight_processes_apply_each_migration_exactly_once(
    project: Project,
    env,  # type: ignore[no-untyped-def]
) -> None:
    project.write(
        {
            "V1__Log.sql": "CREATE TABLE runs (version varchar(10));\n",
            "V2__Two.sql": "INSERT INTO runs VALUES ('V2');\n",
            "V3__Three.sql": "INSERT INTO runs VALUES ('V3');\n",
        }
    )
    reports = project.migrate_in_processes(8)
    assert {r["current_version"] for r in reports} == {"V3"}
    assert sorted(v for r in reports for v in r["applied"]) == ["V1", "V2", "V3"]
    db = project.manager()
    assert db.execute_query("SELECT version FROM runs ORDER BY version") == [
        {"version": "V2"},
        {"version": "V3"},
    ]
    assert [r["version"] for r in history(db)] == ["1", "2", "3"]


def test_two_hundred_migrations(project: Project) -> None:
    files = {"V1__Create.sql": "CREATE TABLE counter (n int);\nINSERT INTO counter VALUES (0);\n"}
    for i in range(2, 201):
        files[f"V{i}__Bump.sql"] = "UPDATE counter SET n = n + 1;\n"
    project.write(files)
    db = project.manager()
    assert len(db.run_migrations()["applied"]) == 200
    assert db.execute_query("SELECT n FROM counter") == [{"n": 199}]
    assert db.get_migration_status()["current_version"] == "V200"


NO_TX_INDEX = "-- dbflow:no-transaction\nCREATE INDEX CONCURRENTLY big_id ON {table} (id);\n"


@pytest.mark.backends("postgresql")
def test_no_transaction_annotation_allows_concurrent_index(project: Project) -> None:
    project.write(
        {
            "V1__Table.sql": "CREATE TABLE big (id int);\n",
            "V2__Index.sql": NO_TX_INDEX.format(table="big"),
        }
    )
    db = project.manager()
    assert db.run_migrations()["applied"] == ["V1", "V2"]


@pytest.mark.backends("postgresql")
def test_failed_non_transactional_migration_blocks_until_repaired(project: Project) -> None:
    project.write(
        {
            "V1__Table.sql": "CREATE TABLE big (id int);\n",
            "V2__Index.sql": NO_TX_INDEX.format(table="nope"),
        }
    )
    db = project.manager()
    with pytest.raises(MigrationError, match=r"V2__Index.sql line 2"):
        db.run_migrations()
    assert history(db) == [{"version": "1", "success": True}, {"version": "2", "success": False}]
    with pytest.raises(MigrationError, match="repair"):
        db.run_migrations()
    assert db.get_migration_status()["applied_migrations"][1]["state"] == "failed"
    (project.dir / "V2__Index.sql").write_text(NO_TX_INDEX.format(table="big"))
    assert db.repair_migrations() == {"removed_failed": 1, "realigned": 0}
    assert db.run_migrations()["applied"] == ["V2"]


@pytest.mark.backends("pgbouncer")
def test_no_transaction_migration_is_refused_through_pgbouncer(project: Project) -> None:
    project.write(
        {
            "V1__Table.sql": "CREATE TABLE big (id int);\n",
            "V2__Index.sql": NO_TX_INDEX.format(table="big"),
        }
    )
    db = project.manager()
    with pytest.raises(
        MigrationError, match=r"V2__Index.sql .*direct connection; nothing was changed"
    ):
        db.run_migrations()
    assert db.get_migration_status()["applied_migrations"] == []
    assert db.execute_query("SELECT to_regclass('big') IS NULL AS absent") == [{"absent": True}]


@pytest.mark.backends("sqlserver")
def test_go_batches_on_sql_server(project: Project) -> None:
    project.write(
        {
            "V1__Views.sql": "CREATE TABLE t (id int)\nGO\nCREATE VIEW v AS SELECT id FROM t\nGO\n"
            "INSERT INTO t VALUES (1)\ngo\n",
            "V2__Broken.sql": "SELECT 1\nGO\nSELECT 1\nSELECT * FROM missing_table\nGO\n",
        }
    )
    db = project.manager()
    with pytest.raises(MigrationError, match=r"V2__Broken.sql line 4"):
        db.run_migrations()
    assert db.execute_query("SELECT id FROM v") == [{"id": 1}]
