//! The migrator on the fake backend, through a `Database` as the bindings
//! open it: plan, apply, history, the lock, baseline, undo, repair,
//! callbacks, dry run and failures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Migrator;
use crate::backend::fake::testing::{database, migrating, run, settle, sql, Dir};
use crate::backend::fake::Server;
use crate::error::ErrorKind;
use crate::value::Value;

const V1: (&str, &str) = (
    "V1__create_items.sql",
    "CREATE TABLE items (id integer PRIMARY KEY, name text);\n\
     INSERT INTO items VALUES (1, 'one');\n",
);
const V2: (&str, &str) = ("V2__add_log.sql", "CREATE TABLE log (id integer);\n");
const U1: (&str, &str) = ("U1__drop_items.sql", "DROP TABLE items;\n");
const U2: (&str, &str) = ("U2__drop_log.sql", "DROP TABLE log;\n");

fn history(server: &Server) -> Vec<Vec<Value>> {
    server.rows("schema_version").unwrap_or_default()
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(s) => s,
        _ => "",
    }
}

#[test]
fn status_plans_without_writing_anything() {
    run(async {
        let dir = Dir::new("status", &[V1, V2]);
        let (db, server) = migrating("migrate-status", &dir, &[]);
        let migrator = Migrator::new(&db, None, "get_migration_status").unwrap();
        assert!(migrator.has_migrations());
        assert_eq!(migrator.directory(), Some(dir.path()));
        let status = migrator.status().await.unwrap();
        let pending: Vec<&str> = status.pending.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(pending, vec!["V1", "V2"]);
        assert_eq!(status.current_version, None);
        assert_eq!(status.total, 2);
        assert!(!server.has_table("schema_version"));
        migrator.validate(false).await.unwrap();
    });
}

#[test]
fn migrate_applies_in_order_records_history_and_runs_each_file_once() {
    run(async {
        let dir = Dir::new(
            "apply",
            &[
                V1,
                V2,
                (
                    "R__marker.sql",
                    "CREATE TABLE IF NOT EXISTS marker (n integer);\n",
                ),
            ],
        );
        let (db, server) = migrating("migrate-apply", &dir, &[]);
        // The migrator takes any connection source: here the Arc the bindings hold.
        let db = Arc::new(db);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let report = migrator.migrate(None, false, false).await.unwrap();
        assert_eq!(report.applied, vec!["V1", "V2"]);
        assert_eq!(report.repeatable, vec!["R__marker.sql"]);
        assert_eq!(report.current_version.as_deref(), Some("V2"));
        assert_eq!(server.rows("items").unwrap().len(), 1);
        assert!(server.has_table("log") && server.has_table("marker"));
        let rows = history(&server);
        let scripts: Vec<&str> = rows.iter().map(|r| text(&r[4])).collect();
        assert_eq!(
            scripts,
            vec!["V1__create_items.sql", "V2__add_log.sql", "R__marker.sql"]
        );
        let ranks: Vec<&Value> = rows.iter().map(|r| &r[0]).collect();
        assert_eq!(ranks, vec![&Value::Int(1), &Value::Int(2), &Value::Int(3)]);
        assert!(rows.iter().all(|r| r[9] == Value::Bool(true)));
        assert!(rows.iter().all(|r| text(&r[6]) == "tester"));
        // Nothing is due a second time.
        let again = migrator.migrate(None, false, false).await.unwrap();
        assert!(again.applied.is_empty() && again.repeatable.is_empty());
        assert_eq!(history(&server).len(), 3);
        let status = migrator.status().await.unwrap();
        assert!(status.pending.is_empty());
        assert_eq!(status.repeatable[0].state, "applied");
        assert_eq!(status.applied.len(), 3);
        // An edited repeatable file is due again.
        dir.write(
            "R__marker.sql",
            "CREATE TABLE IF NOT EXISTS marker (n integer);\n-- edited\n",
        );
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let report = migrator.migrate(None, false, false).await.unwrap();
        assert_eq!(report.repeatable, vec!["R__marker.sql"]);
    });
}

#[test]
fn a_target_stops_the_run_and_older_files_are_refused_out_of_order() {
    run(async {
        let dir = Dir::new("target", &[V1, V2]);
        let (db, _server) = migrating("migrate-target", &dir, &[]);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let report = migrator.migrate(Some("1"), false, false).await.unwrap();
        assert_eq!(report.applied, vec!["V1"]);
        let e = migrator.migrate(Some("x"), false, false).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Migration);
        migrator.migrate(None, false, false).await.unwrap();
        let e = migrator.migrate(Some("1"), false, false).await.unwrap_err();
        assert!(
            e.message.contains("below the current version"),
            "{}",
            e.message
        );
        dir.write("V1_5__late.sql", "CREATE TABLE late (id integer);\n");
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let e = migrator.migrate(None, false, false).await.unwrap_err();
        assert!(e.message.contains("out of order"), "{}", e.message);
        let report = migrator.migrate(None, true, false).await.unwrap();
        assert_eq!(report.applied, vec!["V1_5"]);
    });
}

#[test]
fn a_dry_run_plans_everything_and_writes_nothing() {
    run(async {
        let dir = Dir::new("dry", &[V1, V2]);
        let (db, server) = migrating("migrate-dry", &dir, &[]);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let report = migrator.migrate(None, false, true).await.unwrap();
        assert_eq!(report.applied, vec!["V1", "V2"]);
        let parts = report.dry_run.unwrap();
        let sent: Vec<&str> = parts.iter().map(|p| p.sql.as_str()).collect();
        assert_eq!(
            sent,
            vec![
                "CREATE TABLE items (id integer PRIMARY KEY, name text)",
                "INSERT INTO items VALUES (1, 'one')",
                "CREATE TABLE log (id integer)"
            ]
        );
        assert_eq!((parts[1].line, parts[1].kind), (2, "versioned"));
        assert!(!server.has_table("schema_version") && !server.has_table("items"));
        assert_eq!(server.executed("CREATE TABLE"), 0);
        assert_eq!(server.executed("fake_lock"), 0);
    });
}

#[test]
fn an_edited_file_is_a_checksum_mismatch_until_repair_accepts_it() {
    run(async {
        let dir = Dir::new("checksum", &[V1, V2]);
        let (db, server) = migrating("migrate-checksum", &dir, &[]);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        migrator.migrate(None, false, false).await.unwrap();
        dir.write(V1.0, &format!("{}-- edited afterwards\n", V1.1));
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let e = migrator.migrate(None, false, false).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ChecksumMismatch);
        assert!(e.message.contains("V1__create_items.sql"), "{}", e.message);
        assert_eq!(e.operation, Some("run_migrations"));
        let e = migrator.validate(false).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ChecksumMismatch);
        assert_eq!(migrator.repair().await.unwrap(), (0, 1));
        migrator.migrate(None, false, false).await.unwrap();
        // A file removed after it was applied is missing, not pending.
        dir.remove(V2.0);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let e = migrator.validate(false).await.unwrap_err();
        assert!(e.message.contains("file is missing"), "{}", e.message);
        assert_eq!(history(&server).len(), 2);
    });
}

#[test]
fn a_failing_migration_is_undone_whole_and_named_with_its_line() {
    run(async {
        let dir = Dir::new(
            "failing",
            &[
                V1,
                (
                    "V2__broken.sql",
                    "CREATE TABLE partial (id integer);\nINSERT INTO nope VALUES (1);\n",
                ),
            ],
        );
        let (db, server) = migrating("migrate-failing", &dir, &[]);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let e = migrator.migrate(None, false, false).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Migration);
        assert!(
            e.message.contains("V2__broken.sql line 2") && e.message.contains("nope"),
            "{}",
            e.message
        );
        assert_eq!(e.sqlstate.as_deref(), Some("42P01"));
        // V1 stays applied; V2's table and history row never were.
        assert!(server.has_table("items") && !server.has_table("partial"));
        assert_eq!(history(&server).len(), 1);
        // The lock was released: a later run can take it.
        dir.write("V2__broken.sql", "CREATE TABLE partial (id integer);\n");
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        assert_eq!(
            migrator.migrate(None, false, false).await.unwrap().applied,
            vec!["V2"]
        );
    });
}

#[test]
fn a_failed_non_transactional_migration_blocks_until_repair() {
    run(async {
        let nontx = (
            "V2__outside.sql",
            "-- dbflow:no-transaction\nCREATE TABLE half (id integer);\nINSERT INTO nope VALUES (1);\n",
        );
        let dir = Dir::new("repair", &[V1, nontx]);
        let (db, server) = migrating("migrate-repair", &dir, &[]);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        migrator.migrate(None, false, false).await.unwrap_err();
        // Outside a transaction what ran stays, and the failure is recorded.
        assert!(server.has_table("half"));
        let rows = history(&server);
        assert_eq!(rows[1][9], Value::Bool(false));
        let e = migrator.migrate(None, false, false).await.unwrap_err();
        assert!(e.message.contains("failed earlier"), "{}", e.message);
        assert_eq!(migrator.repair().await.unwrap(), (1, 0));
        assert_eq!(history(&server).len(), 1);
        dir.write(
            nontx.0,
            "-- dbflow:no-transaction\nCREATE TABLE IF NOT EXISTS half (id integer);\n",
        );
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        migrator.migrate(None, false, false).await.unwrap();
        assert_eq!(history(&server).len(), 2);
    });
}

#[test]
fn callbacks_run_around_the_run_each_migration_and_an_error() {
    run(async {
        let dir = Dir::new(
            "callbacks",
            &[
                V1,
                V2,
                (
                    "beforeMigrate.sql",
                    "CREATE TABLE IF NOT EXISTS events (name text);\nINSERT INTO events VALUES ('before');\n",
                ),
                ("afterEachMigrate.sql", "INSERT INTO events VALUES ('each');\n"),
                ("afterMigrate.sql", "INSERT INTO events VALUES ('after');\n"),
                ("afterMigrateError.sql", "INSERT INTO events VALUES ('error');\n"),
            ],
        );
        let (db, server) = migrating("migrate-callbacks", &dir, &[]);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        migrator.migrate(None, false, false).await.unwrap();
        let events = |server: &Server| -> Vec<String> {
            server
                .rows("events")
                .unwrap()
                .iter()
                .map(|r| text(&r[0]).to_owned())
                .collect()
        };
        assert_eq!(events(&server), vec!["before", "each", "each", "after"]);
        dir.write("V3__broken.sql", "INSERT INTO nope VALUES (1);\n");
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        migrator.migrate(None, false, false).await.unwrap_err();
        assert_eq!(
            events(&server)[4..],
            ["before".to_owned(), "error".to_owned()]
        );
    });
}

#[test]
fn the_session_lock_blocks_a_second_session_until_released() {
    run(async {
        let (db, _server) = database("migrate-lock", &[]);
        let pool = db.shared().pool.clone();
        let mut first = pool.get().await.unwrap();
        let mut second = pool.get().await.unwrap();
        first.query(&sql("SELECT fake_lock('m')")).await.unwrap();
        let taken = Arc::new(AtomicBool::new(false));
        let waiter = {
            let taken = taken.clone();
            tokio::spawn(async move {
                second.query(&sql("SELECT fake_lock('m')")).await.unwrap();
                taken.store(true, Ordering::SeqCst);
                second
            })
        };
        assert!(!settle(|| taken.load(Ordering::SeqCst)).await);
        first.query(&sql("SELECT fake_unlock('m')")).await.unwrap();
        let mut second = waiter.await.unwrap();
        assert!(taken.load(Ordering::SeqCst));
        // A session that ends releases its locks.
        drop(second.query(&sql("SELECT fake_lock('n')")).await.unwrap());
        second.broken = true;
        drop(second);
        first.query(&sql("SELECT fake_lock('n')")).await.unwrap();
    });
}

#[test]
fn concurrent_runs_apply_each_file_exactly_once() {
    run(async {
        // V1 waits inside the lock, so without it the other run would read
        // the history meanwhile and apply V1 again.
        let slow = (
            "V1__slow.sql",
            "SELECT sleep(100);\nINSERT INTO runs VALUES (1);\n",
        );
        let dir = Dir::new(
            "concurrent",
            &[
                ("V0_1__runs.sql", "CREATE TABLE runs (n integer);\n"),
                slow,
                V2,
            ],
        );
        let (one, server) = migrating("migrate-concurrent", &dir, &[]);
        let (two, _) = migrating("migrate-concurrent", &dir, &[]);
        let a = Migrator::new(&one, None, "run_migrations").unwrap();
        let b = Migrator::new(&two, None, "run_migrations").unwrap();
        let (ra, rb) = tokio::join!(a.migrate(None, false, false), b.migrate(None, false, false));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let mut applied = [ra.applied.len(), rb.applied.len()];
        applied.sort();
        assert_eq!(applied, [0, 3]);
        assert_eq!(ra.current_version, rb.current_version);
        assert_eq!(server.rows("runs").unwrap().len(), 1);
        assert_eq!(history(&server).len(), 3);
        assert_eq!(server.executed("fake_lock"), 2);
    });
}

#[test]
fn baseline_marks_versions_as_applied_once() {
    run(async {
        let dir = Dir::new("baseline", &[V1, V2]);
        let (db, server) = migrating("migrate-baseline", &dir, &[]);
        let migrator = Migrator::new(&db, None, "baseline_migrations").unwrap();
        let row = migrator.baseline("1", "legacy schema").await.unwrap();
        assert_eq!((row.kind.as_str(), row.installed_rank), ("BASELINE", 1));
        let e = migrator.baseline("1", "again").await.unwrap_err();
        assert!(e.message.contains("cannot baseline"), "{}", e.message);
        let e = migrator.baseline("x", "bad").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Migration);
        let status = migrator.status().await.unwrap();
        assert_eq!(status.baseline.as_deref(), Some("V1"));
        let report = migrator.migrate(None, false, false).await.unwrap();
        assert_eq!(report.applied, vec!["V2"]);
        assert!(!server.has_table("items"));
    });
}

#[test]
fn baseline_on_migrate_adopts_a_schema_that_already_has_tables() {
    run(async {
        let dir = Dir::new("baseline-on-migrate", &[V1, V2]);
        let settings = [
            ("APP_BASELINE_ON_MIGRATE", "true"),
            ("APP_BASELINE_VERSION", "1"),
        ];
        let (db, server) = migrating("migrate-baseline-on", &dir, &settings);
        db.query(&sql("CREATE TABLE legacy (id integer)"))
            .await
            .unwrap();
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let dry = migrator.migrate(None, false, true).await.unwrap();
        assert_eq!(dry.baselined.as_deref(), Some("V1"));
        assert!(!server.has_table("schema_version"));
        let report = migrator.migrate(None, false, false).await.unwrap();
        assert_eq!(report.baselined.as_deref(), Some("V1"));
        assert_eq!(report.applied, vec!["V2"]);
        let kinds: Vec<String> = history(&server)
            .iter()
            .map(|r| text(&r[3]).to_owned())
            .collect();
        assert_eq!(kinds, vec!["BASELINE", "SQL"]);
    });
}

#[test]
fn rollback_undoes_newest_first_and_needs_every_undo_file() {
    run(async {
        let dir = Dir::new("undo", &[V1, V2, U2]);
        let (db, server) = migrating("migrate-undo", &dir, &[]);
        let migrator = Migrator::new(&db, None, "rollback_migrations").unwrap();
        // Nothing applied yet: nothing to undo.
        assert!(migrator.rollback("0").await.unwrap().is_empty());
        migrator.migrate(None, false, false).await.unwrap();
        let e = migrator.rollback("0").await.unwrap_err();
        assert!(e.message.contains("no undo file for U1__"), "{}", e.message);
        assert!(server.has_table("log") && server.has_table("items"));
        assert_eq!(migrator.rollback("1").await.unwrap(), vec!["V2"]);
        assert!(!server.has_table("log"));
        assert_eq!(history(&server).len(), 1);
        dir.write(U1.0, U1.1);
        dir.write(U2.0, U2.1);
        let migrator = Migrator::new(&db, None, "rollback_migrations").unwrap();
        migrator.migrate(None, false, false).await.unwrap();
        assert_eq!(migrator.rollback("0").await.unwrap(), vec!["V2", "V1"]);
        assert!(!server.has_table("items") && history(&server).is_empty());
        assert!(migrator.rollback("x").await.is_err());
    });
}

#[test]
fn a_missing_directory_is_an_error_for_an_explicit_call_only() {
    run(async {
        let (db, _server) = database(
            "migrate-missing",
            &[("APP_MIGRATIONS_DIR", "/nonexistent-dbflow-migrations")],
        );
        let e = Migrator::new(&db, None, "run_migrations")
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration);
        assert!(
            e.message.contains("/nonexistent-dbflow-migrations"),
            "{}",
            e.message
        );
        let quiet = Migrator::if_present(&db, None).unwrap();
        assert!(!quiet.has_migrations());
        let report = quiet.migrate(None, false, false).await.unwrap();
        assert_eq!(report.current_version, None);
    });
}

#[test]
fn placeholders_are_replaced_and_a_missing_one_stops_the_run_before_it_starts() {
    run(async {
        let dir = Dir::new(
            "placeholders",
            &[
                V1,
                (
                    "V2__owner.sql",
                    "INSERT INTO items VALUES (2, '${owner}');\nINSERT INTO items VALUES (3, '${flyway:table}');\n",
                ),
            ],
        );
        let (db, server) = migrating("migrate-placeholders", &dir, &[]);
        let migrator = Migrator::new(&db, None, "run_migrations").unwrap();
        let e = migrator.migrate(None, false, false).await.unwrap_err();
        assert!(e.message.contains("${owner}"), "{}", e.message);
        assert!(!server.has_table("schema_version") && !server.has_table("items"));
        let given = [("OWNER".to_owned(), "ops".to_owned())]
            .into_iter()
            .collect();
        let migrator = Migrator::new(&db, None, "run_migrations")
            .unwrap()
            .with_placeholders(given);
        migrator.migrate(None, false, false).await.unwrap();
        let names: Vec<String> = server
            .rows("items")
            .unwrap()
            .iter()
            .map(|r| text(&r[1]).to_owned())
            .collect();
        assert_eq!(names, vec!["one", "ops", "schema_version"]);
    });
}
