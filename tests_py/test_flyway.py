"""Flyway's everyday features on both backends: repeatable files, baseline
(by hand and on migrate, from many processes), placeholders, SQL callbacks,
dry runs, and a Flyway project's folder applied unchanged."""

from __future__ import annotations

import pytest
from backends import Backend
from projects import Project
from test_cli import dbflow_cli

import dbflow


def history(db: dbflow.DatabaseManager) -> list[dict[str, object]]:
    return db.execute_query(
        "SELECT version, type, script, checksum, success FROM schema_version "
        "ORDER BY installed_rank"
    )


def table_exists(db: dbflow.DatabaseManager, name: str) -> bool:
    if db.database_type == "postgresql":
        sql = "SELECT to_regclass(:n) IS NOT NULL AS e"
    else:
        sql = "SELECT CAST(CASE WHEN OBJECT_ID(:n) IS NULL THEN 0 ELSE 1 END AS bit) AS e"
    return bool(db.execute_query(sql, {"n": name})[0]["e"])


def replace_object(backend: Backend, kind: str, name: str, definition: str) -> str:
    """A repeatable file's usual body: PostgreSQL `CREATE OR REPLACE`;
    Microsoft SQL Server `CREATE OR ALTER`; Babelfish 4.2 has neither for
    views and procedures, so drop and create, batch by batch."""
    if backend.name == "postgresql":
        return f"CREATE OR REPLACE {kind} {name} {definition};\n"
    if backend.product == "babelfish":
        return f"DROP {kind} IF EXISTS {name}\nGO\nCREATE {kind} {name} {definition}\nGO\n"
    return f"CREATE OR ALTER {kind} {name} {definition}\nGO\n"


def view_sql(backend: Backend, body: str) -> str:
    return replace_object(backend, "VIEW", "people_view", f"AS {body}")


def test_repeatable_files_run_after_versions_and_again_when_edited(
    project: Project, backend: Backend
) -> None:
    project.write(
        {
            "V1__People.sql": backend.ddl("CREATE TABLE people (id {int}, name {text});\n"),
            "V2__Ada.sql": "INSERT INTO people (id, name) VALUES (1, 'Ada');\n",
            "R__People_view.sql": view_sql(backend, "SELECT id FROM people"),
        }
    )
    with project.manager() as db:
        status = db.get_migration_status()
        assert status["repeatable_migrations"] == [
            {"script": "R__People_view.sql", "description": "People view", "state": "pending"}
        ]
        report = db.run_migrations()
        assert report["applied"] == ["V1", "V2"]
        assert report["repeatable"] == ["R__People_view.sql"]
        assert db.execute_query("SELECT * FROM people_view") == [{"id": 1}]
        rows = history(db)
        assert [(r["version"], r["script"]) for r in rows][-1] == (None, "R__People_view.sql")
        assert db.run_migrations() == {"applied": [], "current_version": "V2"}

    # Edited: not a checksum error, simply due again.
    (project.dir / "R__People_view.sql").write_text(
        view_sql(backend, "SELECT id, name FROM people")
    )
    with project.manager() as db:
        db.validate_migrations()
        assert db.get_migration_status()["repeatable_migrations"][0]["state"] == "outdated"
        assert db.run_migrations()["repeatable"] == ["R__People_view.sql"]
        assert db.execute_query("SELECT * FROM people_view") == [{"id": 1, "name": "Ada"}]
        assert db.get_migration_status()["repeatable_migrations"][0]["state"] == "applied"
        assert [r["script"] for r in history(db)].count("R__People_view.sql") == 2


@pytest.mark.backends("sqlserver")
def test_a_repeatable_procedure_on_sql_server(project: Project, backend: Backend) -> None:
    project.write(
        {
            "V1__Orders.sql": "CREATE TABLE orders (id int, total decimal(10, 2))\nGO\n",
            "R__Order_total.sql": replace_object(
                backend,
                "PROCEDURE",
                "order_total",
                "@id int AS\nBEGIN\n  SELECT total FROM orders WHERE id = @id\nEND",
            ),
        }
    )
    with project.manager() as db:
        assert db.run_migrations()["repeatable"] == ["R__Order_total.sql"]
        db.execute_query("INSERT INTO orders VALUES (7, 12.50)")
        assert [float(r["total"]) for r in db.execute_query("EXEC order_total @id = 7")] == [12.5]
    (project.dir / "R__Order_total.sql").write_text(
        replace_object(
            backend,
            "PROCEDURE",
            "order_total",
            "@id int AS\nBEGIN\n  SELECT total * 2 AS total FROM orders WHERE id = @id\nEND",
        )
    )
    with project.manager() as db:
        assert db.run_migrations()["repeatable"] == ["R__Order_total.sql"]
        assert [float(r["total"]) for r in db.execute_query("EXEC order_total @id = 7")] == [25.0]


def test_baseline_skips_the_versions_below_it(project: Project, backend: Backend) -> None:
    with project.manager() as db:
        db.execute_query(backend.ddl("CREATE TABLE legacy (id {int})"))
    project.write(
        {
            # Already true of the database: must never run again.
            "V1__Legacy.sql": backend.ddl("CREATE TABLE legacy (id {int});\n"),
            "V2__Legacy_index.sql": "CREATE INDEX legacy_id ON legacy (id);\n",
            "V3__New.sql": "INSERT INTO legacy (id) VALUES (3);\n",
        }
    )
    with project.manager() as db:
        assert db.baseline_migrations("2") == {
            "baseline_version": "V2",
            "description": "<< Flyway Baseline >>",
        }
        status = db.get_migration_status()
        assert (status["current_version"], status["baseline_version"]) == ("V2", "V2")
        assert status["pending_migrations"] == ["V3"]
        assert db.run_migrations() == {"applied": ["V3"], "current_version": "V3"}
        assert [(r["version"], r["type"]) for r in history(db)] == [
            ("2", "BASELINE"),
            ("3", "SQL"),
        ]
        db.validate_migrations()
        with pytest.raises(dbflow.MigrationError, match="already has 2 row"):
            db.baseline_migrations("5")


def test_baseline_from_the_command_line(project: Project, backend: Backend) -> None:
    project.write({"V1__One.sql": backend.ddl("CREATE TABLE one_t (id {int});\n")})
    opts = ["--migrations-dir", str(project.root)]
    done = dbflow_cli("baseline", project.name, "--version", "1", *opts, env_dir=project.env.root)
    assert done.returncode == 0, done.stderr
    assert "baselined at V1" in done.stdout
    again = dbflow_cli("baseline", project.name, *opts, env_dir=project.env.root)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "already has 1 row" in again.stderr


def test_baseline_on_migrate_from_many_processes_writes_one_baseline_row(
    project: Project,
    env,  # type: ignore[no-untyped-def]
    backend: Backend,
) -> None:
    with project.manager() as db:
        db.execute_query(backend.ddl("CREATE TABLE existing (id {int})"))
    env.set("APPDB_BASELINE_ON_MIGRATE", "true")
    env.set("APPDB_BASELINE_VERSION", "1")
    project.write(
        {
            "V1__Existing.sql": backend.ddl("CREATE TABLE existing (id {int});\n"),
            "V2__Row.sql": "INSERT INTO existing (id) VALUES (2);\n",
        }
    )
    reports = project.migrate_in_processes(4)
    assert {r["current_version"] for r in reports} == {"V2"}
    assert [r.get("baselined") for r in reports].count("V1") == 1
    with project.manager() as db:
        assert [(r["version"], r["type"]) for r in history(db)] == [
            ("1", "BASELINE"),
            ("2", "SQL"),
        ]
        assert db.execute_query("SELECT id FROM existing") == [{"id": 2}]


def test_an_empty_schema_is_not_baselined(project: Project, env) -> None:  # type: ignore[no-untyped-def]
    env.set("APPDB_BASELINE_ON_MIGRATE", "true")
    project.write({"V1__First.sql": "CREATE TABLE first_t (id int);\n"})
    with project.manager() as db:
        report = db.run_migrations()
        assert report == {"applied": ["V1"], "current_version": "V1"}


def test_placeholders_from_settings_and_the_call(project: Project, env, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    env.set("APPDB_PLACEHOLDER_TABLE_NAME", "people")
    env.set("APPDB_PLACEHOLDER_GREETING", "hello")
    project.write(
        {
            "V1__Table.sql": (
                f"CREATE TABLE ${{table_name}} (id {backend.types['int']}, "
                f"note {backend.types['text']});\n"
            ),
            "V2__Row.sql": (
                "INSERT INTO ${TABLE_NAME} (id, note) "
                "VALUES (1, '${Greeting} from ${flyway:table}');\n"
            ),
        }
    )
    with project.manager() as db:
        report = db.run_migrations(placeholders={"greeting": "hi"})
        assert report["applied"] == ["V1", "V2"]
        assert db.execute_query("SELECT note FROM people") == [{"note": "hi from schema_version"}]
        # The checksum is of the file as written: other values change nothing.
        env.set("APPDB_PLACEHOLDER_TABLE_NAME", "elsewhere")
    with project.manager() as db:
        db.validate_migrations()


def test_a_missing_placeholder_fails_before_anything_runs(project: Project) -> None:
    project.write(
        {
            "V1__Fine.sql": "CREATE TABLE fine (id int);\n",
            "V2__Missing.sql": "-- a comment\nINSERT INTO fine VALUES (${owner_id});\n",
        }
    )
    with project.manager() as db:
        with pytest.raises(dbflow.MigrationError) as info:
            db.run_migrations()
        message = str(info.value)
        assert "V2__Missing.sql line 2: placeholder ${owner_id} has no value" in message
        assert "TEST_GLOBAL_APPDB_PLACEHOLDER_OWNER_ID" in message
        assert not table_exists(db, "fine")
        assert not table_exists(db, "schema_version")


def test_replacement_off_leaves_dollar_braces_alone(project: Project, env) -> None:  # type: ignore[no-untyped-def]
    env.set("APPDB_PLACEHOLDER_REPLACEMENT", "false")
    project.write(
        {
            "V1__Literal.sql": "CREATE TABLE lit (t varchar(20));\n",
            "V2__Row.sql": "INSERT INTO lit VALUES ('${not_mine}');\n",
        }
    )
    with project.manager() as db:
        db.run_migrations()
        assert db.execute_query("SELECT t FROM lit") == [{"t": "${not_mine}"}]


def callback_log(backend: Backend) -> str:
    if backend.name == "sqlserver":
        return (
            "IF OBJECT_ID(N'cb_log') IS NULL "
            "CREATE TABLE cb_log (n int IDENTITY, event varchar(40))\n"
        )
    return "CREATE TABLE IF NOT EXISTS cb_log (n serial, event varchar(40));\n"


def log_event(event: str) -> str:
    return f"INSERT INTO cb_log (event) VALUES ('{event}');\n"


def test_callbacks_run_at_flyways_points(project: Project, backend: Backend) -> None:
    project.write(
        {
            "beforeMigrate.sql": callback_log(backend)
            + ("GO\n" if backend.name == "sqlserver" else "")
            + log_event("beforeMigrate"),
            "beforeEachMigrate.sql": log_event("beforeEach ${flyway:filename}"),
            "afterEachMigrate.sql": log_event("afterEach"),
            "afterMigrate__done.sql": log_event("afterMigrate"),
            "afterMigrateError.sql": log_event("error"),
            "V1__One.sql": "CREATE TABLE one_t (id int);\n",
            "V2__Two.sql": "INSERT INTO one_t VALUES (2);\n",
        }
    )
    with project.manager() as db:
        assert db.run_migrations()["applied"] == ["V1", "V2"]
        events = [r["event"] for r in db.execute_query("SELECT event FROM cb_log ORDER BY n")]
        assert events == [
            "beforeMigrate",
            "beforeEach beforeEachMigrate.sql",
            "afterEach",
            "beforeEach beforeEachMigrate.sql",
            "afterEach",
            "afterMigrate",
        ]
        # Callbacks are not migrations: the history has the versions only.
        assert [r["version"] for r in history(db)] == ["1", "2"]


def test_a_failing_callback_fails_the_run_with_its_name(project: Project, backend: Backend) -> None:
    project.write(
        {
            "beforeMigrate.sql": callback_log(backend),
            "afterEachMigrate.sql": "INSERT INTO no_such_table VALUES (1);\n",
            "afterMigrateError.sql": log_event("error"),
            "V1__One.sql": "CREATE TABLE one_t (id int);\n",
        }
    )
    with project.manager() as db:
        with pytest.raises(dbflow.MigrationError) as info:
            db.run_migrations()
        assert "afterEachMigrate.sql line 1" in str(info.value)
        # afterEachMigrate runs in the migration's transaction: V1 is undone.
        assert not table_exists(db, "one_t")
        assert history(db) == []
        assert [r["event"] for r in db.execute_query("SELECT event FROM cb_log")] == ["error"]


def test_dry_run_shows_the_sql_and_changes_nothing(project: Project, env, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    env.set("APPDB_PLACEHOLDER_TABLE_NAME", "dry_t")
    project.write(
        {
            "beforeMigrate.sql": "SELECT 1;\n",
            "V1__Table.sql": "CREATE TABLE ${table_name} (id int);\n",
            "V2__Row.sql": (
                "INSERT INTO ${table_name} VALUES (1);\nINSERT INTO ${table_name} VALUES (2);\n"
            ),
            "R__View.sql": view_sql(backend, "SELECT id FROM dry_t"),
        }
    )
    with project.manager() as db:
        report = db.run_migrations(dry_run=True)
        assert report["dry_run"] is True
        assert report["applied"] == ["V1", "V2"] and report["repeatable"] == ["R__View.sql"]
        parts = [(p["kind"], p["script"], p["version"], p["line"]) for p in report["statements"]]
        if backend.name == "postgresql":
            assert parts == [
                ("callback", "beforeMigrate.sql", None, 1),
                ("versioned", "V1__Table.sql", "V1", 1),
                ("versioned", "V2__Row.sql", "V2", 1),
                ("versioned", "V2__Row.sql", "V2", 2),
                ("repeatable", "R__View.sql", None, 1),
            ]
        sqls = [p["sql"] for p in report["statements"]]
        assert any("CREATE TABLE dry_t (id int)" in s for s in sqls)
        assert not any("${" in s for s in sqls)
        assert not table_exists(db, "schema_version") and not table_exists(db, "dry_t")
    printed = dbflow_cli(
        "migrate", "appdb", "--dry-run", "--migrations-dir", str(project.root), env_dir=env.root
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("dry run: nothing was changed")
    assert "-- versioned: V1__Table.sql line 1 (V1)" in printed.stdout
    assert "CREATE TABLE dry_t (id int)" in printed.stdout
    with project.manager() as db:
        assert not table_exists(db, "schema_version")


def test_a_flyway_projects_folder_applies_unchanged(
    project: Project, env, backend: Backend
) -> None:  # type: ignore[no-untyped-def]
    """Flyway's own getting-started project, grown the way teams grow it:
    versioned files, a repeatable view, a placeholder, an afterMigrate
    callback that records the run."""
    go = "GO\n" if backend.name == "sqlserver" else ""
    env.set("APPDB_PLACEHOLDER_OWNER", "flyway")
    project.write(
        {
            "V1__Create_person_table.sql": backend.ddl(
                "CREATE TABLE PERSON (\n    ID {int} NOT NULL,\n"
                "    NAME varchar(100) NOT NULL\n);\n"
            )
            + go,
            "V2__Add_people.sql": (
                "INSERT INTO PERSON (ID, NAME) VALUES (1, 'Axel');\n"
                "INSERT INTO PERSON (ID, NAME) VALUES (2, 'Mr. Foo');\n"
                "INSERT INTO PERSON (ID, NAME) VALUES (3, 'Ms. Bar');\n"
            )
            + go,
            "V3__Add_owner.sql": (
                "ALTER TABLE PERSON ADD OWNED_BY varchar(40) DEFAULT '${owner}' NOT NULL;\n" + go
            ),
            "R__Person_names.sql": replace_object(
                backend, "VIEW", "PERSON_NAMES", "AS SELECT NAME, OWNED_BY FROM PERSON"
            ),
            "afterMigrate.sql": (
                callback_log(backend) + go + log_event("migrated by ${flyway:user}") + go
            ),
        }
    )
    with project.manager() as db:
        report = db.run_migrations()
        assert (report["applied"], report["repeatable"]) == (
            ["V1", "V2", "V3"],
            ["R__Person_names.sql"],
        )
        names = db.execute_query("SELECT NAME, OWNED_BY FROM PERSON_NAMES ORDER BY NAME")
        assert [tuple(r.values()) for r in names] == [
            ("Axel", "flyway"),
            ("Mr. Foo", "flyway"),
            ("Ms. Bar", "flyway"),
        ]
        assert len(db.execute_query("SELECT event FROM cb_log")) == 1
        again = db.run_migrations()
        assert again == {"applied": [], "current_version": "V3"}
        # afterMigrate runs on every migrate, as in Flyway.
        assert len(db.execute_query("SELECT event FROM cb_log")) == 2


def test_undo_and_repair_callbacks(project: Project, backend: Backend) -> None:
    project.write(
        {
            "beforeMigrate.sql": callback_log(backend),
            "V1__One.sql": "CREATE TABLE one_t (id int);\n",
            "V2__Two.sql": "INSERT INTO one_t VALUES (2);\n",
            "U2__Two.sql": "DELETE FROM one_t;\n",
            "beforeUndo.sql": log_event("beforeUndo"),
            "beforeEachUndo.sql": log_event("beforeEachUndo"),
            "afterEachUndo.sql": log_event("afterEachUndo"),
            "afterUndo.sql": log_event("afterUndo"),
            "beforeRepair.sql": log_event("beforeRepair"),
            "afterRepair.sql": log_event("afterRepair"),
        }
    )
    with project.manager() as db:
        db.run_migrations()
        assert db.rollback_migrations("V1") == ["V2"]
        db.repair_migrations()
        events = [r["event"] for r in db.execute_query("SELECT event FROM cb_log ORDER BY n")]
        assert events == [
            "beforeUndo",
            "beforeEachUndo",
            "afterEachUndo",
            "afterUndo",
            "beforeRepair",
            "afterRepair",
        ]


def test_async_manager_dry_run_and_baseline(project: Project, backend: Backend) -> None:
    import asyncio

    project.write({"V1__One.sql": "CREATE TABLE one_t (id int);\n", "V2__Two.sql": "SELECT 1;\n"})

    async def main() -> tuple[dict[str, object], dict[str, object]]:
        async with dbflow.AsyncDatabaseManager(
            project.name, config=project.env.config(), migrations_dir=project.root
        ) as db:
            planned = await db.run_migrations(dry_run=True)
            based = await db.baseline_migrations(1)
            return planned, based

    planned, based = asyncio.run(main())
    assert planned["applied"] == ["V1", "V2"] and planned["dry_run"] is True
    assert based["baseline_version"] == "V1"
    with project.manager() as db:
        assert db.run_migrations() == {"applied": ["V2"], "current_version": "V2"}
