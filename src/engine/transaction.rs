//! An explicit transaction on one pooled connection.

use std::sync::Arc;
use std::time::Instant;

use super::{commit_failed, observe};
use arrow_array::RecordBatch;

use crate::arrow::Batches;
use crate::backend::Statement;
use crate::config::DatabaseConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::feed::RowFeed;
use crate::pool::PooledConnection;
use crate::sql::ParsedSql;
use crate::telemetry::{self, count_rows, About, Count, Subject};
use crate::value::Rows;

/// An open transaction. Dropping it without commit discards its connection,
/// so the server rolls back; nothing half-done returns to the pool.
pub struct Transaction {
    pub(super) conn: Option<PooledConnection>,
    pub(super) savepoints: u32,
    pub(super) config: Arc<DatabaseConfig>,
    /// Open from BEGIN until the transaction ends; its statements' spans
    /// are its children.
    pub(super) span: tracing::Span,
}

impl Transaction {
    pub(super) fn fail(&self, e: Error, operation: &'static str) -> Error {
        e.context(&self.config.name, operation)
            .redact(self.config.spec.password.as_deref())
    }

    /// The transaction ended (or failed to): its span says how, and closes.
    fn end<T>(&mut self, result: &Result<T>) {
        let counted = result.as_ref().map(|_| Count::Nothing);
        telemetry::finish(&self.span, &counted, &self.config);
        self.span = tracing::Span::none();
    }

    pub(super) fn conn(&mut self, operation: &'static str) -> Result<&mut PooledConnection> {
        let database = self.config.name.clone();
        self.conn.as_mut().ok_or_else(|| {
            Error::new(
                ErrorKind::Transaction,
                "the transaction is already finished; start a new one",
            )
            .context(&database, operation)
        })
    }

    pub fn is_active(&self) -> bool {
        self.conn.is_some()
    }

    /// One statement on the transaction's connection: its span (a child of
    /// the transaction's), its metrics and its errors' context.
    async fn statement<T>(
        &mut self,
        operation: &'static str,
        subject: Subject<'_>,
        count: impl FnOnce(&T) -> Count,
        rows: impl Fn(&T) -> u64,
        work: impl AsyncFnOnce(&mut PooledConnection) -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let span = self.span.clone();
        let config = self.config.clone();
        let conn = self.conn(operation)?;
        let about = About::new(&config, operation, subject).parent(&span);
        let r = telemetry::run(about, count, work(conn)).await;
        let r = observe(conn.metrics(), started, r, rows);
        r.map_err(|e| self.fail(e, operation))
    }

    pub async fn query(&mut self, statement: &Statement) -> Result<Rows> {
        let subject = Subject::Sql(&statement.sql, &statement.values);
        let rows = |rows: &Rows| rows.row_count() as u64;
        self.statement(
            "transaction.execute_query",
            subject,
            count_rows,
            rows,
            async |conn| conn.query(statement).await,
        )
        .await
    }

    pub async fn query_arrow(
        &mut self,
        statement: &Statement,
        every: usize,
        operation: &'static str,
    ) -> Result<Batches> {
        let subject = Subject::Sql(&statement.sql, &statement.values);
        let count = |b: &Batches| Count::Returned(b.rows() as u64);
        let rows = |b: &Batches| b.rows() as u64;
        self.statement(operation, subject, count, rows, async |conn| {
            conn.query_arrow(statement, every).await
        })
        .await
    }

    /// The statement's Arrow batches into `sink` while the caller reads
    /// them; the transaction's connection is busy until the result ends.
    pub async fn stream_arrow(
        &mut self,
        statement: &Statement,
        every: usize,
        sink: &tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    ) -> Result<()> {
        let conn = self.conn("transaction.iter_arrow")?;
        let r = conn.stream_arrow(statement, every, sink).await;
        r.map_err(|e| self.fail(e, "transaction.iter_arrow"))
    }

    pub async fn execute_many(&mut self, sql: &ParsedSql, mut feed: RowFeed) -> Result<u64> {
        let subject = Subject::Sql(sql, &[]);
        let count = |&(affected, size): &(u64, u64)| Count::Batch { size, affected };
        let work = async |conn: &mut PooledConnection| {
            let affected = conn.execute_many(sql, &mut feed).await?;
            Ok((affected, feed.taken()))
        };
        let r = self.statement("transaction.execute_many", subject, count, |_| 0, work);
        r.await.map(|(affected, _)| affected)
    }

    pub async fn commit(&mut self) -> Result<()> {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Transaction,
                    "the transaction is already finished",
                )
            })
            .map_err(|e| self.fail(e, "transaction.commit"))?;
        let r = tracing::Instrument::instrument(conn.commit(), self.span.clone()).await;
        self.end(&r);
        r.map_err(|e| self.fail(commit_failed(e), "transaction.commit"))
    }

    pub async fn rollback(&mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let r = tracing::Instrument::instrument(conn.rollback(), self.span.clone()).await;
        if r.is_err() {
            conn.broken = true;
        }
        self.end(&r);
        r.map_err(|e| self.fail(e, "transaction.rollback"))
    }

    /// A nested unit of work: `SAVEPOINT`, then release on success or roll
    /// back to it on failure.
    pub async fn savepoint(&mut self) -> Result<String> {
        self.savepoints += 1;
        let name = format!("dbflow_sp_{}", self.savepoints);
        let conn = self.conn("transaction.savepoint")?;
        let r = conn.savepoint(&name).await;
        r.map_err(|e| self.fail(e, "transaction.savepoint"))?;
        Ok(name)
    }

    pub async fn release_savepoint(&mut self, name: &str) -> Result<()> {
        let conn = self.conn("transaction.savepoint")?;
        let r = conn.release_savepoint(name).await;
        r.map_err(|e| self.fail(e, "transaction.savepoint"))
    }

    pub async fn rollback_to_savepoint(&mut self, name: &str) -> Result<()> {
        let conn = self.conn("transaction.savepoint")?;
        let r = conn.rollback_to_savepoint(name).await;
        r.map_err(|e| self.fail(e, "transaction.savepoint"))
    }
}
