//! What a `DatabaseManager` does, in plain Rust: run statements on the shared
//! pool with autocommit or transaction semantics, with errors that name the
//! database and operation. The Python bindings are a thin layer over this.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Statement;
use crate::config::{AutoMigrate, DatabaseConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::feed::RowFeed;
use crate::migrate::Migrator;
use crate::pool::registry::{self, SharedPool};
use crate::pool::{PoolStatus, PooledConnection};
use crate::retry::{self, RetryPolicy};
use crate::sql::{Dialect, ParsedSql};
use crate::telemetry::{self, count_rows, Count, Subject};
use crate::value::Rows;

mod arrow;
mod health;
mod procedure;
mod transaction;

pub use self::arrow::{BatchStream, Partitioning};
pub use self::health::{Health, MigrationHealth};
pub use self::procedure::WithMessages;
pub use self::transaction::Transaction;

/// A user of one database's shared pool.
pub struct Database {
    config: Arc<DatabaseConfig>,
    /// Replaced by a fresh pool when used in a forked child process.
    shared: std::sync::RwLock<Arc<SharedPool>>,
    released: AtomicBool,
    /// Root of `<database_name>/` migration directories given to this manager.
    migrations_root: Option<PathBuf>,
}

impl Database {
    /// Attach to the process-wide pool for this configuration (no I/O).
    pub fn open(config: DatabaseConfig, migrations_root: Option<PathBuf>) -> Result<Self> {
        let name = config.name.clone();
        crate::backend::Connection::validate(&config)
            .map_err(|e| e.context(&name, "DatabaseManager()"))?;
        let config = Arc::new(config);
        let shared = registry::attach(config.clone()).map_err(|e| e.context(&name, "open"))?;
        Ok(Database {
            config,
            shared: std::sync::RwLock::new(shared),
            released: AtomicBool::new(false),
            migrations_root,
        })
    }

    pub fn migrations_root(&self) -> Option<&std::path::Path> {
        self.migrations_root.as_deref()
    }

    /// A connection for a user operation. The first one of a pool runs the
    /// configured start-up migration step (`<DB>_AUTO_MIGRATE`).
    async fn connection(&self, operation: &'static str) -> Result<PooledConnection> {
        let mode = self.config().auto_migrate;
        if mode != AutoMigrate::Off {
            self.pool()
                .pool
                .startup
                .get_or_try_init(|| self.startup_migrations(mode))
                .await
                .map_err(|e| self.fail(e, operation))?;
        }
        self.checkout(operation).await
    }

    async fn startup_migrations(&self, mode: AutoMigrate) -> Result<()> {
        let migrator = Migrator::if_present(self, self.migrations_root.as_deref())?;
        if !migrator.has_migrations() {
            return Ok(());
        }
        match mode {
            AutoMigrate::Apply => {
                let report = migrator.migrate(None, false, false).await?;
                if !report.applied.is_empty() {
                    tracing::info!(database = %self.name(), applied = %report.applied.join(", "), "applied migrations at start-up");
                }
            }
            _ => match migrator.status().await {
                Ok(status) if !status.pending.is_empty() => {
                    let pending: Vec<&str> = status.pending.iter().map(|p| p.0.as_str()).collect();
                    tracing::warn!(
                        database = %self.name(),
                        pending = %pending.join(", "),
                        "pending migrations; run run_migrations() or `dbflow migrate`"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(database = %self.name(), "could not check migrations: {e}")
                }
            },
        }
        Ok(())
    }

    /// This process's pool: a manager inherited across `fork` attaches to a
    /// fresh one instead of sharing its parent's connections.
    fn pool(&self) -> Arc<SharedPool> {
        let current = self
            .shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !current.pool.inherited() {
            return current;
        }
        let mut slot = self.shared.write().unwrap_or_else(|p| p.into_inner());
        if slot.pool.inherited() {
            match registry::attach(self.config.clone()) {
                Ok(fresh) => *slot = fresh,
                Err(e) => tracing::warn!("cannot open a fresh pool after fork: {e}"),
            }
        }
        slot.clone()
    }

    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    pub fn name(&self) -> &str {
        &self.config().name
    }

    pub fn dialect(&self) -> Dialect {
        self.config().database_type.dialect()
    }

    /// Contextualize and scrub an error on its way out.
    pub fn fail(&self, e: Error, operation: &'static str) -> Error {
        e.context(self.name(), operation)
            .redact(self.config().spec.password.as_deref())
    }

    /// A connection for dbflow's own work (migrations, health): no
    /// auto-migration hook.
    pub(crate) async fn checkout(&self, operation: &'static str) -> Result<PooledConnection> {
        if self.released.load(Ordering::Acquire) {
            return Err(self.fail(
                Error::connection("this manager was disposed; create a new DatabaseManager"),
                operation,
            ));
        }
        let waiting = Instant::now();
        let conn = self.pool().pool.get().await;
        telemetry::pool_waited(waiting);
        conn.map_err(|e| self.fail(e, operation))
    }

    /// A request that found its connection closed before it was sent
    /// (`Error::not_sent`: the server reset the session just before) runs
    /// once more on the fresh connection this gives; one that may have
    /// reached the server never does.
    async fn replace_unsent(
        &self,
        operation: &'static str,
        dead: PooledConnection,
    ) -> Result<PooledConnection> {
        tracing::info!(
            database = %self.name(),
            "the server had closed the connection before the request was sent; sending it on a fresh one"
        );
        drop(dead);
        self.connection(operation).await
    }

    /// Count an operation's outcome in the pool's metrics.
    pub(crate) fn observe<T>(
        &self,
        started: Instant,
        result: Result<T>,
        rows: impl Fn(&T) -> u64,
    ) -> Result<T> {
        observe(&self.metrics(), started, result, rows)
    }

    /// One statement in autocommit mode.
    pub async fn query(&self, statement: &Statement) -> Result<Rows> {
        self.query_as(statement, "execute_query").await
    }

    /// One statement in autocommit mode whose rows are handed to `to` in
    /// batches of `every` as they are decoded; returns the rest.
    pub async fn query_in_batches(
        &self,
        statement: &Statement,
        every: usize,
        to: crate::backend::rows::BatchFn<'_>,
    ) -> Result<Rows> {
        let operation = "execute_query";
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection(operation).await?;
            match conn.query_in_batches(statement, every, &mut *to).await {
                Err(e) if e.not_sent => {
                    let mut conn = self.replace_unsent(operation, conn).await?;
                    conn.query_in_batches(statement, every, to).await
                }
                done => done,
            }
        };
        let result = self
            .traced(operation, statement, 1, count_rows, work)
            .await
            .map_err(|e| self.fail(e, operation));
        self.observe(started, result, |r| r.rows_affected)
    }

    async fn query_as(&self, statement: &Statement, operation: &'static str) -> Result<Rows> {
        self.query_attempt(statement, operation, 1).await
    }

    /// `attempt`: which try of `execute_query_with_retry` this is.
    async fn query_attempt(
        &self,
        statement: &Statement,
        operation: &'static str,
        attempt: u32,
    ) -> Result<Rows> {
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection(operation).await?;
            match conn.query(statement).await {
                Err(e) if e.not_sent => {
                    let mut conn = self.replace_unsent(operation, conn).await?;
                    conn.query(statement).await
                }
                done => done,
            }
        };
        let result = self
            .traced(operation, statement, attempt, count_rows, work)
            .await
            .map_err(|e| self.fail(e, operation));
        self.observe(started, result, |r| r.row_count() as u64)
    }

    /// `work` on `statement` inside its operation span (see [`telemetry`]).
    pub(crate) async fn traced<T>(
        &self,
        operation: &'static str,
        statement: &Statement,
        attempt: u32,
        count: impl FnOnce(&T) -> Count,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let subject = Subject::Sql(&statement.sql, &statement.values);
        let about = telemetry::About::new(self.config(), operation, subject).attempt(attempt);
        telemetry::run(about, count, work).await
    }

    /// One statement the server stops at the deadline (`None`: the
    /// database's `DATABASE_TIMEOUT`), raising `QueryTimeoutError`.
    pub async fn query_with_timeout(
        &self,
        statement: &Statement,
        timeout: Option<Duration>,
    ) -> Result<Rows> {
        let operation = "execute_query_with_timeout";
        let deadline = timeout.unwrap_or(self.config().database_timeout);
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection(operation).await?;
            conn.query_with_deadline(statement, deadline).await
        };
        let result = self
            .traced(operation, statement, 1, count_rows, work)
            .await
            .map_err(|mut e| {
                if e.kind == ErrorKind::Timeout {
                    e.message = format!(
                        "the statement ran past its deadline of {:.3} s and was stopped ({})",
                        deadline.as_secs_f64(),
                        e.message
                    );
                }
                self.fail(e, operation)
            });
        self.observe(started, result, |r| r.row_count() as u64)
    }

    /// One statement, retried on transient failures with exponential
    /// backoff. A statement that may already have run is re-run only when
    /// `idempotent`.
    pub async fn query_with_retry(
        &self,
        statement: &Statement,
        policy: Option<RetryPolicy>,
        idempotent: bool,
    ) -> Result<Rows> {
        let policy = policy.unwrap_or_else(|| self.config().retry.clone());
        let mut attempt = 1;
        loop {
            let operation = "execute_query_with_retry";
            match self.query_attempt(statement, operation, attempt).await {
                Ok(rows) => return Ok(rows),
                Err(e) if attempt < policy.attempts && retry::is_transient(&e, idempotent) => {
                    attempt += 1;
                    let delay = policy.delay(attempt, retry::jitter());
                    self.metrics().retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        database = %self.name(),
                        attempt,
                        of = policy.attempts,
                        delay_ms = delay.as_millis() as u64,
                        error = %e.message,
                        "retrying after a transient failure"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(mut e) => {
                    if attempt > 1 {
                        e.message = format!("{} (after {attempt} attempts)", e.message);
                    }
                    return Err(e);
                }
            }
        }
    }

    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.pool().pool.metrics.clone()
    }

    /// Stream a statement's rows in batches from a producer task that owns
    /// a pooled connection; the bounded channel keeps memory bounded.
    pub fn stream(
        self: &Arc<Self>,
        statement: Statement,
        batch_size: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Rows>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let db = self.clone();
        // The span covers the whole iteration: the producer's life. It is a
        // child of the caller's span (the bindings put the calling Python
        // context there, for the logs and the span's parent).
        let subject = Subject::Sql(&statement.sql, &statement.values);
        let span = telemetry::span(&telemetry::About::new(self.config(), "iter_query", subject));
        let producer = async move {
            // A panic would end the task and close the channel, which the
            // reader would take for the end of the rows: it is an error.
            let work = crate::runtime::catch_panic_async(async {
                let mut conn = db.connection("iter_query").await?;
                conn.stream(&statement, batch_size.max(1), &tx).await
            });
            let outcome = tracing::Instrument::instrument(work, span.clone()).await;
            let counted = outcome.as_ref().map(|_| Count::Nothing);
            telemetry::finish(&span, &counted, db.config());
            // Ended before the channel closes: done when the reader sees the end.
            drop(span);
            if let Err(e) = outcome {
                let _ = tx.send(Err(db.fail(e, "iter_query"))).await;
            }
        };
        crate::runtime::runtime()?.spawn(tracing::Instrument::instrument(
            producer,
            tracing::Span::current(),
        ));
        Ok(rx)
    }

    /// Load the feed's rows into `table` with the server's bulk path; all or
    /// nothing. `columns`: the rows' column order (`None`: all of the
    /// table's columns).
    pub async fn bulk_insert(
        &self,
        table: &str,
        columns: Option<Vec<String>>,
        mut feed: RowFeed,
    ) -> Result<u64> {
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection("bulk_insert").await?;
            let columns = match columns {
                Some(c) => c,
                None => conn.table_columns(table).await?,
            };
            conn.bulk_insert(table, &columns, &mut feed).await
        };
        let about = telemetry::About::new(self.config(), "bulk_insert", Subject::Table(table));
        let result = telemetry::run(about, count_loaded, work)
            .await
            .map_err(|e| self.fail(e, "bulk_insert"));
        self.observe(started, result, |_| 0)
    }

    /// Load the feed's rows, whose columns are named `columns` (Arrow data:
    /// matched to the table's by name), into `table`. A column the table
    /// lacks is refused before anything is sent; a table column the data
    /// lacks takes its default.
    pub async fn bulk_insert_named(
        &self,
        table: &str,
        columns: Vec<String>,
        mut feed: RowFeed,
    ) -> Result<u64> {
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection("bulk_insert").await?;
            let have = conn.table_columns(table).await?;
            let missing: Vec<&str> = columns
                .iter()
                .filter(|c| !have.iter().any(|h| h.eq_ignore_ascii_case(c)))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(Error::parameter(format!(
                    "{table} has no column {} (its columns: {}); rename or drop it in the data",
                    missing.join(", "),
                    have.join(", ")
                )));
            }
            conn.bulk_insert(table, &columns, &mut feed).await
        };
        let about = telemetry::About::new(self.config(), "bulk_insert", Subject::Table(table));
        let result = telemetry::run(about, count_loaded, work)
            .await
            .map_err(|e| self.fail(e, "bulk_insert"));
        self.observe(started, result, |_| 0)
    }

    /// Many parameter sets for one statement, all in one transaction.
    pub async fn execute_many(&self, sql: &ParsedSql, feed: RowFeed) -> Result<u64> {
        let started = Instant::now();
        let about = telemetry::About::new(self.config(), "execute_many", Subject::Sql(sql, &[]));
        let result = telemetry::run(
            about,
            |&(affected, size)| Count::Batch { size, affected },
            self.execute_many_inner(sql, feed),
        )
        .await
        .map(|(affected, _)| affected);
        self.observe(started, result, |_| 0)
    }

    /// Rows affected, and how many parameter sets were sent.
    async fn execute_many_inner(&self, sql: &ParsedSql, mut feed: RowFeed) -> Result<(u64, u64)> {
        let mut conn = self.connection("execute_many").await?;
        conn.begin()
            .await
            .map_err(|e| self.fail(e, "execute_many"))?;
        match conn.execute_many(sql, &mut feed).await {
            Ok(n) => {
                conn.commit()
                    .await
                    .map_err(|e| self.fail(commit_failed(e), "execute_many"))?;
                Ok((n, feed.taken()))
            }
            Err(e) => {
                rollback_quietly(&mut conn).await;
                Err(self.fail(e, "execute_many"))
            }
        }
    }

    /// All statements or none.
    pub async fn execute_transaction(&self, statements: &[Statement]) -> Result<Vec<Rows>> {
        let mut tx = self.begin("execute_transaction").await?;
        let mut results = Vec::with_capacity(statements.len());
        for (index, statement) in statements.iter().enumerate() {
            match tx.query(statement).await {
                Ok(rows) => results.push(rows),
                Err(mut e) => {
                    tx.rollback().await.ok();
                    e.message = format!(
                        "statement {} of {}: {}",
                        index + 1,
                        statements.len(),
                        e.message
                    );
                    return Err(self.fail(e, "execute_transaction"));
                }
            }
        }
        tx.commit()
            .await
            .map_err(|e| self.fail(e, "execute_transaction"))?;
        Ok(results)
    }

    /// Start an explicit transaction on a dedicated connection. Its span
    /// (a parent for its statements') lasts until it ends.
    pub async fn begin(&self, operation: &'static str) -> Result<Transaction> {
        let span = telemetry::span(&telemetry::About::new(
            self.config(),
            "transaction",
            Subject::None,
        ));
        let begin = async {
            let mut conn = self.connection(operation).await?;
            match conn.begin().await {
                Err(e) if e.not_sent => {
                    let mut conn = self.replace_unsent(operation, conn).await?;
                    conn.begin().await.map(|()| conn)
                }
                begun => begun.map(|()| conn),
            }
        };
        let conn = tracing::Instrument::instrument(begin, span.clone())
            .await
            .inspect_err(|e| telemetry::failed(&span, e, self.config()))
            .map_err(|e| self.fail(e, operation))?;
        Ok(Transaction {
            conn: Some(conn),
            savepoints: 0,
            config: self.config.clone(),
            span,
        })
    }

    /// Take one connection from the pool and check it with a round trip.
    pub async fn ping(&self) -> Result<()> {
        let work = async {
            let mut conn = self.connection("ping").await?;
            conn.ping().await
        };
        let about = telemetry::About::new(self.config(), "ping", Subject::None);
        telemetry::run(about, |_| Count::Nothing, work)
            .await
            .map_err(|e| self.fail(e, "ping"))
    }

    pub fn pool_status(&self) -> PoolStatus {
        self.pool().pool.status()
    }

    pub fn shared(&self) -> Arc<SharedPool> {
        self.pool()
    }

    /// Stop using the pool (idempotent). The pool closes after the grace
    /// period if nobody else uses it.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            registry::release(&self.shared.read().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Release and close the pool's connections now.
    pub fn dispose(&self) {
        self.release();
        registry::dispose(&self.shared.read().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The migrator's view of a database: connections for its own work, the
/// settings, and errors that name the database.
impl crate::migrate::Connections for Database {
    fn config(&self) -> &DatabaseConfig {
        Database::config(self)
    }

    fn fail(&self, e: Error, operation: &'static str) -> Error {
        Database::fail(self, e, operation)
    }

    fn checkout<'s>(
        &'s self,
        operation: &'static str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<PooledConnection>> + Send + 's>>
    {
        Box::pin(Database::checkout(self, operation))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.release();
    }
}

/// A bulk load's rows, as its span says them.
fn count_loaded(rows: &u64) -> Count {
    Count::Batch {
        size: *rows,
        affected: *rows,
    }
}

/// Count an operation's outcome in `metrics` (one home for databases and
/// transactions).
pub(crate) fn observe<T>(
    metrics: &crate::metrics::Metrics,
    started: Instant,
    result: Result<T>,
    rows: impl Fn(&T) -> u64,
) -> Result<T> {
    match &result {
        Ok(value) => metrics.record_query(started.elapsed(), rows(value)),
        Err(e) => metrics.record_error(e.kind),
    }
    result
}

/// The server refused the COMMIT: nothing was saved. A connection lost at
/// COMMIT says itself whether COMMIT had left (`backend::sent`).
pub(crate) fn commit_failed(mut e: Error) -> Error {
    if e.kind != ErrorKind::Connection {
        e.kind = ErrorKind::Transaction;
        e.message = format!("COMMIT failed, nothing was saved: {}", e.message);
    }
    e
}

pub(crate) async fn rollback_quietly(conn: &mut PooledConnection) {
    if conn.rollback().await.is_err() {
        conn.broken = true;
    }
}

#[cfg(test)]
mod tests;
