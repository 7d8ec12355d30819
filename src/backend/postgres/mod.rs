//! PostgreSQL through sqlx, by component: connection options
//! (`options`), parameter typing and binding (`bind`), binary COPY
//! (`copy`), many parameter sets (`many`), the SQL dialect (`dialect`),
//! sqlx's errors in dbflow's words (`error`), and binary values (`decode`,
//! `encode`, `oid`). This file holds the connection and its contract.

mod arrow;
mod bind;
mod call;
mod copy;
mod copy_arrow;
pub mod decode;
mod dialect;
pub mod encode;
mod error;
mod many;
pub mod oid;
mod options;
#[cfg(unix)]
mod socket;

use futures_util::TryStreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{Column, ConnectOptions, Connection as _, Row, Statement as _, ValueRef};

use self::bind::{read, reader_of, Reader};
use self::dialect::begin_with_timeout;
pub use self::dialect::{quote_ident, quote_qualified, KIND, LEXICON};
use self::options::{connect_options, explain_connect_error};
use super::rows::{Destination, Read, RowBuffer};
use super::{with_backstop, Backend, Control, Statement};
use crate::arrow::ArrowBuffer;
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use crate::feed::RowFeed;
use crate::sql::ParsedSql;
use crate::value::{Rows, Value};

pub struct PgConn {
    conn: PgConnection,
    /// Set for PgBouncer's transaction pooling (`PREPARED_STATEMENTS=false`).
    pooled: Option<TxPooling>,
    /// Ending a transaction of our own failed: the session's state is
    /// unknown, so the seam discards the connection.
    pub poisoned: bool,
    /// The caller's transaction is open.
    in_transaction: bool,
}

/// Behind PgBouncer in transaction-pooling mode, consecutive transactions of
/// one client may run on different server sessions. So every statement runs
/// inside a transaction (the caller's, or a short one of its own), and the
/// named statements sqlx prepared are closed before that transaction ends:
/// none outlives it, and no session state is relied upon.
struct TxPooling {
    /// The caller opened a transaction (`begin`), so statements need no
    /// transaction of their own.
    in_transaction: bool,
    /// The configured statement deadline, set with `SET LOCAL` per
    /// transaction (PgBouncer refuses it as a startup parameter).
    timeout_ms: Option<u128>,
}

/// What a server says when a statement must run outside a transaction
/// block (VACUUM, CREATE DATABASE, ... CONCURRENTLY).
const NOT_IN_TRANSACTION_BLOCK: &str = "25001";

impl PgConn {
    /// The statement that opens a transaction on this connection.
    fn begin_sql(&self) -> String {
        let timeout = self.pooled.as_ref().and_then(|p| p.timeout_ms);
        begin_with_timeout(timeout)
    }

    /// Run `work` so that its prepared statements cannot outlive a
    /// transaction: as is, unless in transaction-pooling mode outside the
    /// caller's transaction, where it gets one of its own (`timeout_ms`
    /// overrides the configured deadline). `finished(&t) == false` means the
    /// work left the protocol mid-result; the connection is discarded by the
    /// seam, so nothing more is sent.
    async fn pinned<T>(
        &mut self,
        timeout_ms: Option<u128>,
        finished: fn(&T) -> bool,
        work: impl for<'c> AsyncFnOnce(&'c mut Self) -> Result<T>,
    ) -> Result<T> {
        let Some(pooled) = &self.pooled else {
            return work(self).await;
        };
        if pooled.in_transaction {
            return work(self).await;
        }
        let begin = begin_with_timeout(timeout_ms.or(pooled.timeout_ms));
        self.simple(&begin).await?;
        let result = work(self).await;
        match &result {
            Err(e) if e.kind == crate::error::ErrorKind::Connection => return result,
            Ok(value) if !finished(value) => return result,
            _ => {}
        }
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = match self.conn.clear_cached_statements().await {
            Ok(()) => self.simple(end).await,
            Err(e) => Err(Error::from(e)),
        };
        if ended.is_err() {
            self.poisoned = true;
        }
        match (result, ended) {
            (result, Ok(())) => result,
            (Err(original), Err(_)) => Err(original),
            (Ok(_), Err(mut e)) => {
                // The statement ran; whether its transaction committed is
                // unknown when the connection failed at COMMIT.
                e.maybe_executed = e.kind == crate::error::ErrorKind::Connection;
                Err(e)
            }
        }
    }

    fn must_leave_transaction(&self, e: &Error, statement: &Statement) -> bool {
        self.pooled.as_ref().is_some_and(|p| !p.in_transaction)
            && e.sqlstate.as_deref() == Some(NOT_IN_TRANSACTION_BLOCK)
            && statement.values.is_empty()
    }

    /// The row loop: decode each row's values into the buffer.
    async fn read(&mut self, statement: &Statement, destination: Destination<'_>) -> Result<Read> {
        let (stmt, args) = self.bind(&statement.sql, &statement.values).await?;
        // A commented statement runs unnamed: its text is not the cached
        // statement's (`PgConn::with_comment`).
        let query = stmt
            .query_with(args)
            .persistent(statement.sql.comment.is_none());
        if let Destination::Arrow { every, to } = destination {
            // The schema is known before the statement runs: an unmapped
            // column type fails here, with nothing executed.
            let (schema, columns) = arrow::plan(stmt.columns())?;
            let mut buffer = ArrowBuffer::new(schema, columns, every, to);
            let mut read = 0u64;
            let mut stream = query.fetch(&mut self.conn);
            while let Some(row) = stream.try_next().await? {
                if !row.is_binary() {
                    return Err(Error::query("the server sent a result in text form"));
                }
                for (i, column) in buffer.columns().iter_mut().enumerate() {
                    column.append(row.raw_cell(i))?;
                }
                read += 1;
                if !buffer.row_done().await? {
                    break;
                }
            }
            let (batches, complete) = buffer.finish().await?;
            return Ok(Read::arrow(batches, complete, read, 1));
        }
        let columns = stmt.columns();
        let readers: Vec<Reader> = columns.iter().map(|c| reader_of(c.type_info())).collect();
        let mut buffer = RowBuffer::new(destination);
        buffer.start(columns.iter().map(|c| c.name().to_owned()).collect());
        if readers.is_empty() {
            let done = query.execute(&mut self.conn).await?;
            let mut read = buffer.finish().await;
            read.rows.rows_affected = done.rows_affected();
            return Ok(read);
        }
        let mut stream = query.fetch(&mut self.conn);
        while let Some(row) = stream.try_next().await? {
            let values = buffer.values();
            if values.capacity() == values.len() {
                values.reserve(readers.len() * 64);
            }
            for (i, reader) in readers.iter().enumerate() {
                let raw = row.try_get_raw(i)?;
                values.push(if raw.is_null() {
                    Value::Null
                } else {
                    read(
                        *reader,
                        raw.as_bytes().map_err(|e| Error::query(e.to_string()))?,
                    )?
                });
            }
            if !buffer.row_done().await? {
                break;
            }
        }
        Ok(buffer.finish().await)
    }

    /// One statement with a server-enforced deadline; the session's own
    /// `statement_timeout` is restored afterwards, whatever happened.
    pub async fn query_with_timeout(
        &mut self,
        statement: &Statement,
        deadline: std::time::Duration,
    ) -> Result<Rows> {
        let ms = deadline.as_millis().max(1);
        let mut rows = match &self.pooled {
            None => {
                self.simple(&format!("SET statement_timeout = {ms}"))
                    .await?;
                let result = self.query(statement, Destination::Collect).await;
                let reset = self.simple("RESET statement_timeout").await;
                let read = result?;
                reset?;
                read.rows
            }
            Some(p) if p.in_transaction => {
                let usual = p.timeout_ms.unwrap_or(0);
                self.simple(&format!("SET LOCAL statement_timeout = {ms}"))
                    .await?;
                let result = self
                    .read(statement, Destination::Collect)
                    .await
                    .map(|r| r.rows);
                // After a failure the transaction is aborted and ends with a
                // ROLLBACK, which discards the SET LOCAL anyway.
                if result.is_ok() {
                    self.simple(&format!("SET LOCAL statement_timeout = {usual}"))
                        .await?;
                }
                result?
            }
            Some(_) => {
                self.pinned(
                    Some(ms),
                    |_| true,
                    async |c| c.read(statement, Destination::Collect).await,
                )
                .await?
                .rows
            }
        };
        rows.rows_affected = rows.rows_affected.max(rows.row_count() as u64);
        Ok(rows)
    }

    /// One statement; its rows go to `destination` as they are decoded.
    pub(super) async fn query_one(
        &mut self,
        statement: &Statement,
        mut destination: Destination<'_>,
    ) -> Result<Read> {
        let outcome = self
            .pinned(
                None,
                |read: &Read| read.complete,
                async |c| c.read(statement, destination.reborrow()).await,
            )
            .await;
        match outcome {
            Err(e) if self.must_leave_transaction(&e, statement) => {
                // Only possible in a transaction of our own, which rolled back:
                // nothing ran. Without parameters the simple protocol needs no
                // prepared statement and no transaction.
                self.simple(&statement.sql.render_with(|_| String::new()))
                    .await?;
                Ok(Read::rows(Rows::default()))
            }
            Err(mut e)
                if e.sqlstate.as_deref() == Some("42601")
                    && e.message.contains("multiple commands") =>
            {
                e.message.push_str(
                    "; execute_query runs one statement: read every result set of several \
                     with execute_query_sets()",
                );
                Err(e)
            }
            other => other,
        }
    }

    async fn simple(&mut self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }
}

impl Backend for PgConn {
    async fn connect(config: &DatabaseConfig) -> Result<Self> {
        // A blocking caller waits on the socket itself (`crate::wait`).
        #[cfg(unix)]
        PgConnection::set_socket_hook(socket::own_socket);
        let opts = connect_options(config)?;
        let conn = opts
            .connect()
            .await
            .map_err(|e| explain_connect_error(Error::from(e), config))?;
        let pooled = (!config.prepared_statements).then(|| TxPooling {
            in_transaction: false,
            timeout_ms: config.query_timeout.map(|d| d.as_millis().max(1)),
        });
        let mut conn = PgConn {
            conn,
            pooled,
            poisoned: false,
            in_transaction: false,
        };
        // Notices of the login (none are expected) are not an operation's.
        let _ = conn.conn.take_notices();
        Ok(conn)
    }

    fn validate(config: &DatabaseConfig) -> Result<()> {
        let verified = matches!(
            config.spec.option("sslmode"),
            Some("require" | "verify-ca" | "verify-full")
        );
        let how = "write sslmode=verify-full (or require)";
        crate::config::credentials::require_tls(config, verified, how)?;
        connect_options(config).map(|_| ())
    }

    /// One statement; its rows go to `destination` as they are decoded
    /// (every result set: a script's statements, see `call`).
    async fn query(&mut self, statement: &Statement, destination: Destination<'_>) -> Result<Read> {
        if let Destination::Sets = destination {
            return self.query_sets(statement).await;
        }
        self.query_one(statement, destination).await
    }

    /// The server enforces the deadline (`statement_timeout`) and the
    /// connection stays usable; a backstop covers a server that stops
    /// answering altogether.
    async fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: std::time::Duration,
    ) -> Result<Read> {
        let backstop = deadline + std::time::Duration::from_millis(150);
        with_backstop(backstop, self.query_with_timeout(statement, deadline))
            .await
            .map(Read::rows)
    }

    /// `COPY table (columns) FROM STDIN` in PostgreSQL's binary format: one
    /// statement, so all rows or none. Each chunk of the feed is encoded and
    /// sent as it arrives, so the server parses it while the next is made.
    async fn bulk_insert(
        &mut self,
        table: &str,
        columns: &[String],
        feed: &mut RowFeed,
    ) -> Result<u64> {
        self.pinned(
            None,
            |_| true,
            async |c| c.bulk_insert_here(table, columns, feed).await,
        )
        .await
    }

    /// Many parameter sets: a single-row INSERT goes as multi-row VALUES
    /// statements (one round trip each, values still bound); anything else
    /// is pipelined, a statement returning rows set by set.
    async fn execute_many(&mut self, sql: &ParsedSql, feed: &mut RowFeed) -> Result<u64> {
        self.pinned(
            None,
            |_| true,
            async |c| c.execute_many_here(sql, feed).await,
        )
        .await
    }

    async fn script(&mut self, sql: &str) -> Result<()> {
        self.simple(sql).await
    }

    async fn ping(&mut self) -> Result<()> {
        self.conn.ping().await?;
        Ok(())
    }

    async fn close(self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.conn.close()).await;
    }

    /// Standard SQL transaction control (BEGIN carries the deadline in
    /// PgBouncer mode).
    fn control_sql(&self, op: Control<'_>) -> Option<String> {
        Some(match op {
            Control::Begin => self.begin_sql(),
            Control::Commit => "COMMIT".to_owned(),
            Control::Rollback => "ROLLBACK".to_owned(),
            Control::Savepoint(name) => format!("SAVEPOINT {name}"),
            Control::RollbackTo(name) => format!("ROLLBACK TO SAVEPOINT {name}"),
            Control::Release(name) => format!("RELEASE SAVEPOINT {name}"),
        })
    }

    /// Before COMMIT/ROLLBACK in transaction-pooling mode: close every
    /// statement prepared in this transaction (one round trip).
    async fn before_transaction_end(&mut self) -> Result<()> {
        if self.pooled.is_some() {
            self.conn.clear_cached_statements().await?;
        }
        Ok(())
    }

    /// The seam reports the caller's transactions, so statements inside one
    /// do not open their own.
    fn set_in_transaction(&mut self, open: bool) {
        self.in_transaction = open;
        if let Some(p) = &mut self.pooled {
            p.in_transaction = open;
        }
    }

    async fn call(&mut self, call: &crate::procedure::Call) -> Result<crate::procedure::Called> {
        self.call_here(call).await
    }

    fn take_messages(&mut self) -> (Vec<super::messages::ServerMessage>, u64) {
        let (notices, dropped) = self.conn.take_notices();
        let messages = notices
            .into_iter()
            .map(|n| super::messages::ServerMessage {
                warning: matches!(n.severity(), sqlx::postgres::PgSeverity::Warning),
                text: n.message().to_owned(),
            })
            .collect();
        (messages, dropped)
    }

    fn transaction_pooling(&self) -> bool {
        self.pooled.is_some()
    }

    /// A statement returning no rows but `table`'s columns.
    fn no_rows_of(&self, table: &str) -> Result<String> {
        Ok(format!("SELECT * FROM {} LIMIT 0", quote_qualified(table)?))
    }

    fn raw_fd(&self) -> Option<i32> {
        self.conn.raw_fd()
    }

    fn bytes_written(&self) -> Option<u64> {
        self.conn.bytes_written()
    }

    fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// "cached plan must not change result type": a statement prepared
    /// before a DDL change, refused before it ran.
    fn stale_plan(&self, e: &Error) -> bool {
        e.sqlstate.as_deref() == Some("0A000") && e.message.contains("cached plan")
    }

    async fn forget_statements(&mut self) -> Result<()> {
        self.conn.clear_cached_statements().await?;
        Ok(())
    }
}
