//! The seam between dbflow and a database driver. Everything above it —
//! pools, transactions, retries, health, metrics, bindings — is written once
//! against [`Connection`]; each backend module supplies the same operations.

pub mod mssql;
pub mod postgres;

use std::time::Instant;

use crate::config::{DatabaseConfig, DatabaseType};
use crate::error::Result;
use crate::sql::{Dialect, ParsedSql};
use crate::value::{Rows, Value};

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

/// Call the same operation on whichever driver this connection holds.
macro_rules! on_driver {
    ($self:expr, $c:ident => $call:expr) => {
        match &mut $self.driver {
            Driver::Postgres($c) => $call,
            Driver::SqlServer($c) => $call,
        }
    };
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
}

impl Connection {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let driver = match config.database_type {
            DatabaseType::Postgres => Driver::Postgres(postgres::PgConn::connect(config).await?),
            DatabaseType::SqlServer => {
                Driver::SqlServer(Box::new(mssql::MsConn::connect(config).await?))
            }
        };
        Ok(Connection {
            driver,
            last_used: Instant::now(),
            broken: false,
            in_transaction: false,
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.driver {
            Driver::Postgres(_) => Dialect::Postgres,
            Driver::SqlServer(_) => Dialect::SqlServer,
        }
    }

    /// Run `f` and keep the bookkeeping honest: a connection-level failure
    /// marks the connection broken so it is never reused.
    fn note<T>(&mut self, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => self.last_used = Instant::now(),
            Err(e)
                if e.kind == crate::error::ErrorKind::Connection
                    || e.kind == crate::error::ErrorKind::Timeout =>
            {
                self.broken = true
            }
            Err(_) => {}
        }
        result
    }

    pub async fn query(&mut self, statement: &Statement) -> Result<Rows> {
        let r = on_driver!(self, c => c.query(statement).await);
        self.note(r)
    }

    /// The same statement for many parameter sets; returns rows affected.
    pub async fn execute_many(&mut self, sql: &ParsedSql, rows: &[Vec<Value>]) -> Result<u64> {
        let r = on_driver!(self, c => c.execute_many(sql, rows).await);
        self.note(r)
    }

    pub async fn begin(&mut self) -> Result<()> {
        let r = on_driver!(self, c => c.begin().await);
        let r = self.note(r);
        if r.is_ok() {
            self.in_transaction = true;
        }
        r
    }

    pub async fn commit(&mut self) -> Result<()> {
        let r = on_driver!(self, c => c.commit().await);
        self.in_transaction = false;
        self.note(r)
    }

    pub async fn rollback(&mut self) -> Result<()> {
        let r = on_driver!(self, c => c.rollback().await);
        self.in_transaction = false;
        self.note(r)
    }

    pub async fn savepoint(&mut self, name: &str) -> Result<()> {
        let r = on_driver!(self, c => c.savepoint(name).await);
        self.note(r)
    }

    pub async fn rollback_to_savepoint(&mut self, name: &str) -> Result<()> {
        let r = on_driver!(self, c => c.rollback_to_savepoint(name).await);
        self.note(r)
    }

    pub async fn release_savepoint(&mut self, name: &str) -> Result<()> {
        let r = match &mut self.driver {
            Driver::Postgres(c) => c.release_savepoint(name).await,
            // T-SQL savepoints end with the transaction; there is nothing to release.
            Driver::SqlServer(_) => Ok(()),
        };
        self.note(r)
    }

    /// Run parameterless SQL text as written (a migration statement or a
    /// T-SQL batch), discarding any rows.
    pub async fn script(&mut self, sql: &str) -> Result<()> {
        let r = match &mut self.driver {
            Driver::Postgres(c) => c.simple(sql).await,
            Driver::SqlServer(c) => c.batch(sql).await,
        };
        self.note(r)
    }

    /// A cheap liveness check (an empty query: one round trip, no plan).
    pub async fn ping(&mut self) -> Result<()> {
        let r = on_driver!(self, c => c.ping().await);
        self.note(r)
    }

    /// Close politely (the server logs a clean disconnect).
    pub async fn close(self) {
        match self.driver {
            Driver::Postgres(c) => c.close().await,
            Driver::SqlServer(c) => (*c).close().await,
        }
    }
}
