//! The seam between dbflow and a database driver. Everything above it —
//! pools, transactions, retries, health, metrics, migrations, bindings — is
//! written once against [`Connection`]; each backend module supplies the
//! same operations.

pub mod mssql;
pub mod postgres;
pub mod rows;

use std::future::Future;
use std::time::{Duration, Instant};

use crate::config::{DatabaseConfig, DatabaseType};
use crate::error::{Error, ErrorKind, Result};
use crate::sql::{Dialect, ParsedSql};
use crate::value::{Rows, Value};
use rows::{BatchFn, Destination};

/// One statement ready to run: parsed SQL and its values in parameter order.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: ParsedSql,
    pub values: Vec<Value>,
}

enum Driver {
    Postgres(postgres::PgConn),
    // Boxed: a tiberius client is large, and connections live in pool slots.
    SqlServer(Box<mssql::MsConn>),
}

/// A live connection of any backend plus what the pool needs to know.
pub struct Connection {
    driver: Driver,
    /// When this connection last finished a round trip successfully.
    pub last_used: Instant,
    /// Set when an error left the connection in an unknown state; the pool
    /// discards it instead of handing it out again.
    pub broken: bool,
    pub in_transaction: bool,
    /// Set while an operation is on the wire; still set when its future was
    /// dropped before finishing, so the pool discards the connection.
    pub in_flight: bool,
    /// The pool's permit for one server session, held until the connection
    /// is gone (closed, or dropped), so a replacement never overlaps it.
    pub session: Option<tokio::sync::OwnedSemaphorePermit>,
}

#[derive(Clone, Copy)]
enum Control<'a> {
    Begin,
    Commit,
    Rollback,
    Savepoint(&'a str),
    RollbackTo(&'a str),
    Release(&'a str),
}

/// Call the same operation on whichever driver this connection holds,
/// keeping the bookkeeping honest.
macro_rules! on_driver {
    ($self:expr, $c:ident => $call:expr) => {{
        $self.in_flight = true;
        let result = match &mut $self.driver {
            Driver::Postgres($c) => $call,
            Driver::SqlServer($c) => $call,
        };
        if matches!(&$self.driver, Driver::Postgres(c) if c.poisoned) {
            $self.broken = true;
        }
        $self.note(result)
    }};
}

impl Connection {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let connecting = async {
            Ok::<_, Error>(match config.database_type {
                DatabaseType::Postgres => {
                    Driver::Postgres(postgres::PgConn::connect(config).await?)
                }
                DatabaseType::SqlServer => {
                    Driver::SqlServer(Box::new(mssql::MsConn::connect(config).await?))
                }
            })
        };
        let driver = tokio::time::timeout(config.connect_timeout, connecting)
            .await
            .map_err(|_| {
                Error::connection(format!(
                    "no answer from {} within {:?} (connect timeout); check the host, port and firewall",
                    config.spec.redacted(),
                    config.connect_timeout
                ))
            })??;
        Ok(Connection {
            driver,
            last_used: Instant::now(),
            broken: false,
            in_transaction: false,
            in_flight: false,
            session: None,
        })
    }

    /// Check the driver-level settings (URL options, TLS) without I/O, so a
    /// misconfiguration surfaces when the manager is created.
    pub fn validate(config: &DatabaseConfig) -> Result<()> {
        match config.database_type {
            DatabaseType::Postgres => postgres::connect_options(config).map(|_| ()),
            DatabaseType::SqlServer => mssql::client_config(config).map(|_| ()),
        }
    }

    /// Said once per pool, when it is created: how this configuration
    /// connects, where that deserves a word (TLS left unverified).
    pub fn announce(config: &DatabaseConfig) {
        if config.database_type == DatabaseType::SqlServer {
            mssql::announce(config);
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.driver {
            Driver::Postgres(_) => Dialect::Postgres,
            Driver::SqlServer(_) => Dialect::SqlServer,
        }
    }

    /// A connection-level failure, or a client-side deadline that fired with
    /// the request on the wire, leaves the connection unusable.
    fn note<T>(&mut self, result: Result<T>) -> Result<T> {
        self.in_flight = false;
        match &result {
            Ok(_) => self.last_used = Instant::now(),
            Err(e) if e.kind == ErrorKind::Connection => self.broken = true,
            Err(e) if e.kind == ErrorKind::Timeout && e.maybe_executed => self.broken = true,
            Err(_) => {}
        }
        result
    }

    pub async fn query(&mut self, statement: &Statement) -> Result<Rows> {
        on_driver!(self, c => c.query(statement, Destination::Collect).await).map(|r| r.rows)
    }

    /// One statement whose rows are handed to `to` in batches of `every` as
    /// they are decoded; returns the rest (`rows_affected` counts all).
    pub async fn query_in_batches(
        &mut self,
        statement: &Statement,
        every: usize,
        to: BatchFn<'_>,
    ) -> Result<Rows> {
        let mut taker_failed = false;
        let mut guarded = |rows: Rows| {
            let r = to(rows);
            taker_failed |= r.is_err();
            r
        };
        let destination = Destination::Flush {
            every,
            to: &mut guarded,
        };
        let result = on_driver!(self, c => c.query(statement, destination).await);
        if taker_failed {
            // The read stopped mid-result: unread rows are on the wire.
            self.broken = true;
        }
        result.map(|r| r.rows)
    }

    /// One statement the server must stop at `deadline`. PostgreSQL enforces
    /// it itself (`statement_timeout`, the connection stays usable); SQL
    /// Server's connection is discarded. A client-side backstop covers a
    /// server that stops answering altogether.
    pub async fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: Duration,
    ) -> Result<Rows> {
        let backstop = deadline + Duration::from_millis(150);
        self.in_flight = true;
        let result = match &mut self.driver {
            Driver::Postgres(c) => {
                with_backstop(backstop, c.query_with_timeout(statement, deadline)).await
            }
            Driver::SqlServer(c) => {
                with_backstop(deadline, async {
                    c.query(statement, Destination::Collect)
                        .await
                        .map(|r| r.rows)
                })
                .await
            }
        };
        self.note(result)
    }

    /// Stream the statement's rows in batches into `sink` (bounded), so a
    /// result of any size is read with bounded memory. A consumer that stops
    /// early leaves unread rows on the wire: the connection is discarded.
    pub async fn stream(
        &mut self,
        statement: &Statement,
        batch_size: usize,
        sink: &tokio::sync::mpsc::Sender<Result<Rows>>,
    ) -> Result<()> {
        let destination = || Destination::Channel {
            every: batch_size,
            to: sink,
        };
        let read = on_driver!(self, c => c.query(statement, destination()).await)?;
        if !read.complete {
            self.broken = true;
        }
        Ok(())
    }

    /// Load many rows into a table the fastest way the server offers
    /// (PostgreSQL binary COPY, SQL Server bulk load); all or nothing.
    pub async fn bulk_insert(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
    ) -> Result<u64> {
        on_driver!(self, c => c.bulk_insert(table, columns, rows).await)
    }

    /// The columns of a table, in order (for `bulk_insert` of tuples).
    pub async fn table_columns(&mut self, table: &str) -> Result<Vec<String>> {
        let text = match self.dialect() {
            Dialect::Postgres => format!(
                "SELECT * FROM {} LIMIT 0",
                postgres::quote_qualified(table)?
            ),
            Dialect::SqlServer => {
                if !table
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
                {
                    return Err(Error::parameter(format!(
                        "'{table}' is not a plain table name"
                    )));
                }
                format!("SELECT TOP 0 * FROM {table}")
            }
        };
        let statement = Statement {
            sql: crate::sql::parse(&text, self.dialect()),
            values: Vec::new(),
        };
        Ok(self.query(&statement).await?.columns)
    }

    /// The same statement for many parameter sets; returns rows affected.
    pub async fn execute_many(&mut self, sql: &ParsedSql, rows: &[Vec<Value>]) -> Result<u64> {
        on_driver!(self, c => c.execute_many(sql, rows).await)
    }

    /// Run parameterless SQL text as written (a migration statement or a
    /// T-SQL batch), discarding any rows.
    pub async fn script(&mut self, sql: &str) -> Result<()> {
        self.in_flight = true;
        let r = match &mut self.driver {
            Driver::Postgres(c) => c.simple(sql).await,
            Driver::SqlServer(c) => c.batch(sql).await,
        };
        self.note(r)
    }

    /// The transaction-control statement for this connection's dialect:
    /// T-SQL on SQL Server (`SAVE TRANSACTION`, not the protocol's savepoint
    /// request), standard SQL on PostgreSQL. `None`: nothing to send.
    fn control_sql(&self, op: Control<'_>) -> Option<String> {
        let pg = match &self.driver {
            Driver::Postgres(c) if matches!(op, Control::Begin) => return Some(c.begin_sql()),
            Driver::Postgres(_) => true,
            Driver::SqlServer(_) => false,
        };
        Some(match op {
            Control::Begin => "BEGIN TRANSACTION".to_owned(),
            Control::Commit if pg => "COMMIT".to_owned(),
            Control::Commit => "COMMIT TRANSACTION".to_owned(),
            Control::Rollback if pg => "ROLLBACK".to_owned(),
            // Some errors already ended the transaction on the server.
            Control::Rollback => "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION".to_owned(),
            Control::Savepoint(name) if pg => format!("SAVEPOINT {name}"),
            Control::Savepoint(name) => format!("SAVE TRANSACTION {name}"),
            Control::RollbackTo(name) if pg => format!("ROLLBACK TO SAVEPOINT {name}"),
            Control::RollbackTo(name) => format!("ROLLBACK TRANSACTION {name}"),
            Control::Release(name) if pg => format!("RELEASE SAVEPOINT {name}"),
            // T-SQL savepoints end with the transaction; nothing to release.
            Control::Release(_) => return None,
        })
    }

    async fn control(&mut self, op: Control<'_>) -> Result<()> {
        match self.control_sql(op) {
            Some(sql) => self.script(&sql).await,
            None => Ok(()),
        }
    }

    pub async fn begin(&mut self) -> Result<()> {
        let r = self.control(Control::Begin).await;
        if r.is_ok() {
            self.set_in_transaction(true);
        }
        r
    }

    pub async fn commit(&mut self) -> Result<()> {
        let r = self.end_transaction(Control::Commit).await;
        self.set_in_transaction(false);
        r
    }

    pub async fn rollback(&mut self) -> Result<()> {
        let r = self.end_transaction(Control::Rollback).await;
        self.set_in_transaction(false);
        r
    }

    async fn end_transaction(&mut self, op: Control<'_>) -> Result<()> {
        if let Driver::Postgres(c) = &mut self.driver {
            self.in_flight = true;
            let closed = c.before_transaction_end().await;
            if let Err(e) = self.note(closed) {
                // Still inside the transaction, in an unknown state.
                self.broken = true;
                return Err(e);
            }
        }
        self.control(op).await
    }

    fn set_in_transaction(&mut self, open: bool) {
        self.in_transaction = open;
        if let Driver::Postgres(c) = &mut self.driver {
            c.set_in_transaction(open);
        }
    }

    /// PostgreSQL behind PgBouncer's transaction pooling: session state
    /// (session advisory locks, statements outside a transaction) does not
    /// survive from one transaction to the next.
    pub fn transaction_pooling(&self) -> bool {
        matches!(&self.driver, Driver::Postgres(c) if c.transaction_pooling())
    }

    pub async fn savepoint(&mut self, name: &str) -> Result<()> {
        self.control(Control::Savepoint(name)).await
    }

    pub async fn rollback_to_savepoint(&mut self, name: &str) -> Result<()> {
        self.control(Control::RollbackTo(name)).await
    }

    pub async fn release_savepoint(&mut self, name: &str) -> Result<()> {
        self.control(Control::Release(name)).await
    }

    /// A cheap liveness check: one round trip.
    pub async fn ping(&mut self) -> Result<()> {
        on_driver!(self, c => c.ping().await)
    }

    /// Close politely (the server logs a clean disconnect); the session
    /// permit is released once the close is done.
    pub async fn close(self) {
        let _session = self.session;
        match self.driver {
            Driver::Postgres(c) => c.close().await,
            Driver::SqlServer(c) => (*c).close().await,
        }
    }
}

/// Give up on `fut` at `deadline`: a `Timeout` error that marks the
/// connection broken (the request may still be running on the server).
async fn with_backstop<T>(deadline: Duration, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(r) => r,
        Err(_) => {
            let mut e = Error::new(
                ErrorKind::Timeout,
                format!(
                    "no answer within the deadline of {:.3} s; the connection was discarded",
                    deadline.as_secs_f64()
                ),
            );
            e.maybe_executed = true;
            Err(e)
        }
    }
}
