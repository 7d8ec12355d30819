//! The engine on the fake backend: every user operation, the re-send rule,
//! retries, deadlines and error paths, with no server and no Python.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::backend::fake::testing::{database, migrating, run, sql, statement, Dir};
use crate::backend::fake::Fault;
use crate::error::ErrorKind;
use crate::feed::RowFeed;
use crate::retry::RetryPolicy;
use crate::value::Value;

fn ints(rows: &crate::value::Rows) -> Vec<i64> {
    rows.values
        .iter()
        .map(|v| match v {
            Value::Int(i) => *i,
            other => panic!("not an int: {other:?}"),
        })
        .collect()
}

#[test]
fn query_creates_inserts_and_selects() {
    run(async {
        let (db, server) = database("engine-query", &[]);
        db.query(&sql("CREATE TABLE t (id integer PRIMARY KEY, name text)"))
            .await
            .unwrap();
        let inserted = db
            .query(&statement(
                "INSERT INTO t (id, name) VALUES (:id, :name), (2, 'two')",
                vec![Value::Int(1), Value::Text("one".into())],
            ))
            .await
            .unwrap();
        assert_eq!(inserted.rows_affected, 2);
        let rows = db
            .query(&sql(
                "SELECT id, name AS label FROM t WHERE id >= 1 ORDER BY id DESC",
            ))
            .await
            .unwrap();
        assert_eq!(rows.columns, vec!["id", "label"]);
        assert_eq!(
            rows.values,
            vec![
                Value::Int(2),
                Value::Text("two".into()),
                Value::Int(1),
                Value::Text("one".into())
            ]
        );
        assert_eq!(server.rows("t").unwrap().len(), 2);
        let e = db
            .query(&sql("INSERT INTO t (id, name) VALUES (2, 'again')"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Integrity);
        let metrics = db.metrics();
        assert_eq!(metrics.queries.load(Ordering::Relaxed), 3);
        let integrity = metrics
            .errors()
            .into_iter()
            .find(|(k, _)| *k == "integrity");
        assert_eq!(integrity, Some(("integrity", 1)));
    });
}

#[test]
fn query_in_batches_hands_over_full_batches_and_returns_the_rest() {
    run(async {
        let (db, _server) = database("engine-batches", &[]);
        db.query(&sql("CREATE TABLE n (i integer)")).await.unwrap();
        db.query(&sql("INSERT INTO n VALUES (1), (2), (3), (4), (5)"))
            .await
            .unwrap();
        let mut batches = Vec::new();
        let mut take = |rows: crate::value::Rows| {
            batches.push(ints(&rows));
            Ok(())
        };
        let rest = db
            .query_in_batches(&sql("SELECT i FROM n ORDER BY i"), 2, &mut take)
            .await
            .unwrap();
        assert_eq!(batches, vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(ints(&rest), vec![5]);
        assert_eq!(rest.rows_affected, 5);
    });
}

#[test]
fn execute_many_is_all_or_nothing() {
    run(async {
        let (db, server) = database("engine-many", &[]);
        db.query(&sql("CREATE TABLE t (id integer PRIMARY KEY)"))
            .await
            .unwrap();
        let insert = crate::sql::parse("INSERT INTO t (id) VALUES (:id)", db.dialect());
        let rows = (1..=3).map(|i| vec![Value::Int(i)]).collect();
        assert_eq!(
            db.execute_many(&insert, RowFeed::from_rows(rows))
                .await
                .unwrap(),
            3
        );
        // The third set collides: none of the sets before it stays.
        let rows = [10, 11, 1].iter().map(|i| vec![Value::Int(*i)]).collect();
        let e = db
            .execute_many(&insert, RowFeed::from_rows(rows))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Integrity);
        assert_eq!(e.operation, Some("execute_many"));
        assert_eq!(server.rows("t").unwrap().len(), 3);
        // A feed that fails mid-way (a row the caller could not convert).
        let (tx, feed) = RowFeed::channel(4);
        tx.send(Ok(crate::feed::Part::Rows(vec![vec![Value::Int(20)]])))
            .await
            .unwrap();
        tx.send(Err(crate::error::Error::parameter("row 2 is not a dict")))
            .await
            .unwrap();
        drop(tx);
        let e = db.execute_many(&insert, feed).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Parameter);
        assert_eq!(server.rows("t").unwrap().len(), 3);
    });
}

#[test]
fn bulk_insert_takes_the_table_columns_and_loads_all_rows() {
    run(async {
        let (db, server) = database("engine-bulk", &[]);
        db.query(&sql("CREATE TABLE b (id integer, name text)"))
            .await
            .unwrap();
        let rows = (0..100)
            .map(|i| vec![Value::Int(i), Value::Text(format!("n{i}"))])
            .collect();
        db.bulk_insert("b", None, RowFeed::from_rows(rows))
            .await
            .unwrap();
        let stored = server.rows("b").unwrap();
        assert_eq!(stored.len(), 100);
        assert_eq!(stored[42], vec![Value::Int(42), Value::Text("n42".into())]);
        let e = db
            .bulk_insert("missing", None, RowFeed::from_rows(Vec::new()))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Query);
        assert_eq!(e.operation, Some("bulk_insert"));
    });
}

#[test]
fn a_transaction_is_isolated_until_commit_and_savepoints_undo_part_of_it() {
    run(async {
        let (db, server) = database("engine-tx", &[]);
        db.query(&sql("CREATE TABLE t (id integer)")).await.unwrap();
        let mut tx = db.begin("transaction").await.unwrap();
        tx.query(&sql("INSERT INTO t VALUES (1)")).await.unwrap();
        // Another connection does not see the uncommitted row.
        let outside = db.query(&sql("SELECT count(*) FROM t")).await.unwrap();
        assert_eq!(outside.values, vec![Value::Int(0)]);
        let sp = tx.savepoint().await.unwrap();
        tx.query(&sql("INSERT INTO t VALUES (2)")).await.unwrap();
        tx.rollback_to_savepoint(&sp).await.unwrap();
        let sp = tx.savepoint().await.unwrap();
        tx.query(&sql("INSERT INTO t VALUES (3)")).await.unwrap();
        tx.release_savepoint(&sp).await.unwrap();
        let inside = tx
            .query(&sql("SELECT id FROM t ORDER BY id"))
            .await
            .unwrap();
        assert_eq!(ints(&inside), vec![1, 3]);
        tx.commit().await.unwrap();
        assert!(!tx.is_active());
        assert_eq!(
            server.rows("t").unwrap(),
            vec![vec![Value::Int(1)], vec![Value::Int(3)]]
        );
        let e = tx.commit().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transaction);

        let mut tx = db.begin("transaction").await.unwrap();
        tx.query(&sql("DELETE FROM t")).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(server.rows("t").unwrap().len(), 2);
        // A transaction dropped without commit leaves nothing behind.
        let mut tx = db.begin("transaction").await.unwrap();
        tx.query(&sql("DELETE FROM t")).await.unwrap();
        drop(tx);
        assert_eq!(server.rows("t").unwrap().len(), 2);
        // After an error the transaction refuses everything until it ends.
        let mut tx = db.begin("transaction").await.unwrap();
        tx.query(&sql("SELECT * FROM nope")).await.unwrap_err();
        let e = tx.query(&sql("SELECT 1 AS x")).await.unwrap_err();
        assert_eq!(e.sqlstate.as_deref(), Some("25P02"));
        tx.rollback().await.unwrap();
    });
}

#[test]
fn execute_transaction_is_all_or_nothing_and_names_the_statement() {
    run(async {
        let (db, server) = database("engine-exec-tx", &[]);
        db.query(&sql("CREATE TABLE t (id integer)")).await.unwrap();
        let results = db
            .execute_transaction(&[
                sql("INSERT INTO t VALUES (1)"),
                sql("SELECT count(*) FROM t"),
            ])
            .await
            .unwrap();
        assert_eq!(results[1].values, vec![Value::Int(1)]);
        let e = db
            .execute_transaction(&[sql("INSERT INTO t VALUES (2)"), sql("SELECT * FROM nope")])
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Query);
        assert!(e.message.starts_with("statement 2 of 2"), "{}", e.message);
        // The innermost operation is named.
        assert_eq!(e.operation, Some("transaction.execute_query"));
        assert_eq!(server.rows("t").unwrap(), vec![vec![Value::Int(1)]]);
    });
}

#[test]
fn a_request_reset_before_it_was_written_is_sent_once_more() {
    run(async {
        let (db, server) = database("engine-resend", &[]);
        db.query(&sql("CREATE TABLE t (id integer)")).await.unwrap();
        server.arm("INSERT INTO t", Fault::ResetBeforeSend, 1);
        let done = db.query(&sql("INSERT INTO t VALUES (1)")).await.unwrap();
        assert_eq!(done.rows_affected, 1);
        assert_eq!(server.executed("INSERT INTO t"), 1);
        assert_eq!(server.rows("t").unwrap().len(), 1);
        // A server restart between two requests: the idle connection is dead.
        server.kill_sessions();
        let rows = db.query(&sql("SELECT count(*) FROM t")).await.unwrap();
        assert_eq!(rows.values, vec![Value::Int(1)]);
        // So is a transaction's BEGIN.
        server.kill_sessions();
        let mut tx = db.begin("transaction").await.unwrap();
        tx.query(&sql("INSERT INTO t VALUES (2)")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(server.rows("t").unwrap().len(), 2);
        // And a batched read.
        server.kill_sessions();
        let mut take = |_rows: crate::value::Rows| Ok(());
        let rest = db
            .query_in_batches(&sql("SELECT id FROM t"), 10, &mut take)
            .await
            .unwrap();
        assert_eq!(rest.row_count(), 2);
    });
}

#[test]
fn a_request_that_may_have_run_is_an_error_and_runs_at_most_once() {
    run(async {
        let (db, server) = database("engine-maybe", &[]);
        db.query(&sql("CREATE TABLE t (id integer)")).await.unwrap();
        server.arm("INSERT INTO t", Fault::ResetAfterRun, 1);
        let e = db
            .query(&sql("INSERT INTO t VALUES (1)"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connection);
        assert!(e.maybe_executed && !e.not_sent);
        assert!(e.message.contains("may have run"), "{}", e.message);
        assert_eq!(server.executed("INSERT INTO t"), 1);
        assert_eq!(server.rows("t").unwrap().len(), 1);
        // Inside a transaction the loss of the connection loses the transaction.
        let mut tx = db.begin("transaction").await.unwrap();
        server.arm("INSERT INTO t VALUES (2)", Fault::ResetAfterRun, 1);
        let e = tx
            .query(&sql("INSERT INTO t VALUES (2)"))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("the transaction is lost"),
            "{}",
            e.message
        );
        drop(tx);
        assert_eq!(server.rows("t").unwrap().len(), 1);
        assert_eq!(db.pool_status().invalid, 2);
    });
}

#[test]
fn retries_transient_failures_but_not_what_may_have_run() {
    run(async {
        let (db, server) = database("engine-retry", &[]);
        db.query(&sql("CREATE TABLE t (id integer)")).await.unwrap();
        let policy = Some(RetryPolicy {
            attempts: 3,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(2),
        });
        // Refused connections (a fresh pool must connect): retried, and the
        // third attempt gets through.
        db.dispose();
        let (db, _) = database("engine-retry", &[]);
        server.fail_connects(2);
        let started = tokio::time::Instant::now();
        let rows = db
            .query_with_retry(&sql("SELECT count(*) FROM t"), policy.clone(), false)
            .await
            .unwrap();
        assert_eq!(rows.values, vec![Value::Int(0)]);
        assert_eq!(db.metrics().retries.load(Ordering::Relaxed), 2);
        assert!(started.elapsed() >= Duration::from_millis(1500));
        // A statement that may have run is not re-run ...
        server.arm("INSERT INTO t", Fault::ResetAfterRun, 1);
        let e = db
            .query_with_retry(&sql("INSERT INTO t VALUES (1)"), policy.clone(), false)
            .await
            .unwrap_err();
        assert!(e.maybe_executed);
        assert_eq!(server.executed("INSERT INTO t"), 1);
        // ... unless the caller says it is idempotent.
        server.arm("INSERT INTO t", Fault::ResetAfterRun, 1);
        db.query_with_retry(&sql("INSERT INTO t VALUES (1)"), policy.clone(), true)
            .await
            .unwrap();
        assert_eq!(server.executed("INSERT INTO t"), 3);
        // Errors that are not transient fail at once.
        let e = db
            .query_with_retry(&sql("SELECT * FROM nope"), policy, false)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Query);
        assert!(!e.message.contains("attempts"));
    });
}

#[test]
fn a_statement_past_its_deadline_is_stopped_and_its_connection_discarded() {
    run(async {
        let (db, server) = database("engine-deadline", &[]);
        let started = tokio::time::Instant::now();
        let e = db
            .query_with_timeout(&sql("SELECT sleep(60000)"), Some(Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.message.contains("deadline of 2.000 s"), "{}", e.message);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(3));
        assert_eq!(db.pool_status().invalid, 1);
        // A server that never answers is covered the same way.
        server.arm("SELECT 1 AS x", Fault::Hang, 1);
        let e = db
            .query_with_timeout(&sql("SELECT 1 AS x"), Some(Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        let rows = db
            .query_with_timeout(&sql("SELECT sleep(10)"), None)
            .await
            .unwrap();
        assert_eq!(rows.row_count(), 1);
    });
}

#[test]
fn errors_name_the_database_and_operation() {
    run(async {
        let (db, _server) = database("engine-errors", &[]);
        let e = db.query(&sql("SELECT * FROM nope")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Query);
        assert_eq!(e.sqlstate.as_deref(), Some("42P01"));
        assert_eq!(e.database.as_deref(), Some("app"));
        assert_eq!(e.operation, Some("execute_query"));
        assert!(e.to_string().contains("nope"));
        let e = db.query(&sql("SELEKT 1")).await.unwrap_err();
        assert_eq!(e.sqlstate.as_deref(), Some("42601"));
        // A value missing from those bound: refused, nothing runs.
        let e = db
            .query(&statement("SELECT :a AS a, :b AS b", vec![Value::Int(1)]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Parameter);
        // Named parameters are checked before anything is sent.
        let parsed = crate::sql::parse("SELECT :a AS a", db.dialect());
        let given: std::collections::HashMap<String, Value> = Default::default();
        let e = parsed
            .bind_order(|n| given.get(n), || given.keys().cloned().collect())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Parameter);
        assert!(e.message.contains(":a"));
        // A password never shows in an error.
        let e = db
            .query(&sql("SELECT fake_fail('bad s3cret')"))
            .await
            .unwrap_err();
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    });
}

#[test]
fn health_ping_and_dispose() {
    run(async {
        let (db, server) = database("engine-health", &[]);
        let health = db.health().await;
        assert_eq!(health.status, "healthy", "{:?}", health.error);
        assert!(health.connection && health.query_test);
        assert!(matches!(
            health.migrations,
            crate::engine::MigrationHealth::ReadOnly
        ));
        db.ping().await.unwrap();
        db.dispose();
        let (db, _) = database("engine-health", &[]);
        server.fail_connects(1);
        let health = db.health().await;
        assert_eq!(health.status, "unhealthy");
        assert!(health.error.unwrap().contains("connection refused"));
        db.dispose();
        let e = db.ping().await.unwrap_err();
        assert!(e.message.contains("disposed"), "{}", e.message);
    });
}

#[test]
fn stream_hands_over_every_row_in_batches() {
    let (db, _server) = database("engine-stream", &[]);
    let db = std::sync::Arc::new(db);
    let rt = crate::runtime::runtime().unwrap();
    // On a worker of the process runtime, as the bindings run it.
    let handle = rt.spawn(async move {
        db.query(&sql("CREATE TABLE s (i integer)")).await.unwrap();
        db.query(&sql("INSERT INTO s VALUES (1), (2), (3)"))
            .await
            .unwrap();
        let mut rx = db.stream(sql("SELECT i FROM s ORDER BY i"), 2).unwrap();
        let mut seen = Vec::new();
        while let Some(batch) = rx.recv().await {
            seen.extend(ints(&batch.unwrap()));
        }
        assert_eq!(seen, vec![1, 2, 3]);
    });
    rt.block_on(handle).unwrap();
}

#[test]
fn a_transaction_runs_many_parameter_sets_and_a_failed_taker_discards_the_connection() {
    run(async {
        let (db, server) = database("engine-tx-many", &[]);
        db.query(&sql("CREATE TABLE t (id integer)")).await.unwrap();
        let insert = crate::sql::parse("INSERT INTO t VALUES (:id)", db.dialect());
        let mut tx = db.begin("transaction").await.unwrap();
        let rows = (0..4).map(|i| vec![Value::Int(i)]).collect();
        assert_eq!(
            tx.execute_many(&insert, RowFeed::from_rows(rows))
                .await
                .unwrap(),
            4
        );
        assert_eq!(server.rows("t").unwrap().len(), 0);
        tx.commit().await.unwrap();
        assert_eq!(server.rows("t").unwrap().len(), 4);
        let e = tx
            .execute_many(&insert, RowFeed::from_rows(Vec::new()))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transaction);
        // A taker that fails mid-result leaves rows unread: never reused.
        let invalid = db.pool_status().invalid;
        let mut take = |_rows: crate::value::Rows| Err(crate::error::Error::query("taker gave up"));
        let e = db
            .query_in_batches(&sql("SELECT id FROM t"), 1, &mut take)
            .await
            .unwrap_err();
        assert_eq!(e.message, "taker gave up");
        assert_eq!(db.pool_status().invalid, invalid + 1);
    });
}

#[test]
fn a_stream_whose_reader_leaves_early_discards_its_connection() {
    let (db, _server) = database("engine-stream-early", &[]);
    let db = std::sync::Arc::new(db);
    let rt = crate::runtime::runtime().unwrap();
    let probe = db.clone();
    let handle = rt.spawn(async move {
        db.query(&sql("CREATE TABLE s (i integer)")).await.unwrap();
        db.query(&sql("INSERT INTO s VALUES (1), (2), (3), (4), (5), (6)"))
            .await
            .unwrap();
        let mut rx = db.stream(sql("SELECT i FROM s"), 1).unwrap();
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(ints(&first), vec![1]);
        drop(rx);
        // The producer (another worker) notices at its next send and gives
        // the connection up; bounded, for a loaded machine.
        let discarded = async {
            while db.pool_status().invalid != 1 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), discarded)
            .await
            .unwrap();
    });
    rt.block_on(handle).unwrap();
    assert_eq!(probe.pool_status().invalid, 1);
}

#[test]
fn a_stale_plan_is_prepared_afresh_once_outside_a_transaction_only() {
    run(async {
        let (db, server) = database("engine-stale", &[]);
        db.query(&sql("CREATE TABLE t (id integer)")).await.unwrap();
        db.query(&sql("INSERT INTO t VALUES (1)")).await.unwrap();
        server.arm("SELECT id FROM t", Fault::StalePlan, 1);
        let rows = db.query(&sql("SELECT id FROM t")).await.unwrap();
        assert_eq!(ints(&rows), vec![1]);
        assert_eq!(server.executed("SELECT id FROM t"), 2);
        server.arm("SELECT id FROM t", Fault::StalePlan, 1);
        let mut take = |_rows: crate::value::Rows| Ok(());
        let rest = db
            .query_in_batches(&sql("SELECT id FROM t"), 5, &mut take)
            .await
            .unwrap();
        assert_eq!(ints(&rest), vec![1]);
        // Inside a transaction the refusal aborted it: no second try.
        let mut tx = db.begin("transaction").await.unwrap();
        server.arm("SELECT id FROM t", Fault::StalePlan, 1);
        let e = tx.query(&sql("SELECT id FROM t")).await.unwrap_err();
        assert_eq!(e.sqlstate.as_deref(), Some("0A000"));
        tx.rollback().await.unwrap();
        // The columns of a table, for bulk_insert without column names.
        let mut conn = db.shared().pool.get().await.unwrap();
        assert_eq!(conn.table_columns("t").await.unwrap(), vec!["id"]);
    });
}

const V1: (&str, &str) = (
    "V1__create_items.sql",
    "CREATE TABLE items (id integer PRIMARY KEY, name text);\nINSERT INTO items VALUES (1, 'one');\n",
);
const V2: (&str, &str) = ("V2__add_log.sql", "CREATE TABLE log (id integer);\n");

#[test]
fn start_up_migrations_run_once_before_the_first_operation() {
    run(async {
        let dir = Dir::new("startup", &[V1, V2]);
        let (db, server) = migrating("migrate-startup", &dir, &[("APP_AUTO_MIGRATE", "apply")]);
        let rows = db.query(&sql("SELECT count(*) FROM items")).await.unwrap();
        assert_eq!(rows.values, vec![Value::Int(1)]);
        db.query(&sql("SELECT count(*) FROM items")).await.unwrap();
        assert_eq!(server.executed("fake_lock"), 1);
        let health = db.health().await;
        assert!(matches!(
            health.migrations,
            crate::engine::MigrationHealth::Status { ref pending, .. } if pending.is_empty()
        ));
        // "check" only reports what is pending.
        let dir = Dir::new("startup-check", &[V1]);
        let (db, server) = migrating(
            "migrate-startup-check",
            &dir,
            &[("APP_AUTO_MIGRATE", "check")],
        );
        db.ping().await.unwrap();
        assert!(!server.has_table("items"));
        let health = db.health().await;
        assert_eq!(health.status, "degraded");
        assert_eq!(health.error.as_deref(), Some("migrations are pending"));
    });
}
