//! An explicit transaction on one pooled connection.

use std::time::Instant;

use super::{commit_failed, observe};
use arrow_array::RecordBatch;

use crate::arrow::Batches;
use crate::backend::Statement;
use crate::error::{Error, ErrorKind, Result};
use crate::feed::RowFeed;
use crate::pool::PooledConnection;
use crate::sql::ParsedSql;
use crate::value::Rows;

/// An open transaction. Dropping it without commit discards its connection,
/// so the server rolls back; nothing half-done returns to the pool.
pub struct Transaction {
    pub(super) conn: Option<PooledConnection>,
    pub(super) savepoints: u32,
    pub(super) database: String,
    pub(super) secret: Option<String>,
}

impl Transaction {
    pub(super) fn fail(&self, e: Error, operation: &'static str) -> Error {
        e.context(&self.database, operation)
            .redact(self.secret.as_deref())
    }

    pub(super) fn conn(&mut self, operation: &'static str) -> Result<&mut PooledConnection> {
        let database = self.database.clone();
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

    pub async fn query(&mut self, statement: &Statement) -> Result<Rows> {
        let started = Instant::now();
        let conn = self.conn("transaction.execute_query")?;
        let r = conn.query(statement).await;
        let r = observe(conn.metrics(), started, r, |rows| rows.row_count() as u64);
        r.map_err(|e| self.fail(e, "transaction.execute_query"))
    }

    pub async fn query_arrow(
        &mut self,
        statement: &Statement,
        every: usize,
        operation: &'static str,
    ) -> Result<Batches> {
        let started = Instant::now();
        let conn = self.conn(operation)?;
        let r = conn.query_arrow(statement, every).await;
        let r = observe(conn.metrics(), started, r, |b| b.rows() as u64);
        r.map_err(|e| self.fail(e, operation))
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
        let started = Instant::now();
        let conn = self.conn("transaction.execute_many")?;
        let r = conn.execute_many(sql, &mut feed).await;
        let r = observe(conn.metrics(), started, r, |_| 0);
        r.map_err(|e| self.fail(e, "transaction.execute_many"))
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
        let r = conn.commit().await;
        r.map_err(|e| self.fail(commit_failed(e), "transaction.commit"))
    }

    pub async fn rollback(&mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let r = conn.rollback().await;
        if r.is_err() {
            conn.broken = true;
        }
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
