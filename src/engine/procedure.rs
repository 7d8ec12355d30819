//! Stored procedures and every result set of a batch, in autocommit mode
//! and inside a transaction. Each returns the server's messages of the
//! call with its result (they are logged by the seam as they arrive).

use std::time::Instant;

use super::{observe, Database, Transaction};
use crate::backend::Statement;
use crate::error::Result;
use crate::pool::PooledConnection;
use crate::procedure::{Call, Called};
use crate::telemetry::{self, Count, Subject};
use crate::value::Rows;

/// A result and the server's messages that came with it.
pub struct WithMessages<T> {
    pub value: T,
    pub messages: Vec<String>,
}

fn rows_of_sets(sets: &WithMessages<Vec<Rows>>) -> u64 {
    sets.value.iter().map(|r| r.row_count() as u64).sum()
}

fn rows_of_call(called: &WithMessages<Called>) -> u64 {
    called
        .value
        .result_sets
        .iter()
        .map(|r| r.row_count() as u64)
        .sum()
}

// The two autocommit operations are written out: an async closure taking
// the connection would make their futures not `Send` (rustc's inference of
// higher-ranked closures), which the asyncio bindings need.
impl Database {
    /// Every result set of a statement or batch, in order.
    pub async fn query_sets(&self, statement: &Statement) -> Result<WithMessages<Vec<Rows>>> {
        let operation = "execute_query_sets";
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection(operation).await?;
            let sets = match conn.query_sets(statement).await {
                Err(e) if e.not_sent => {
                    conn = self.replace_unsent(operation, conn).await?;
                    conn.query_sets(statement).await
                }
                done => done,
            }?;
            Ok(with_messages(&mut conn, sets))
        };
        let count = |s: &WithMessages<Vec<Rows>>| Count::Returned(rows_of_sets(s));
        let result = self
            .traced(operation, statement, 1, count, work)
            .await
            .map_err(|e| self.fail(e, operation));
        self.observe(started, result, rows_of_sets)
    }

    /// A stored procedure, in one round trip.
    pub async fn call_procedure(&self, call: &Call) -> Result<WithMessages<Called>> {
        let operation = "call_procedure";
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection(operation).await?;
            let called = match conn.call(call).await {
                Err(e) if e.not_sent => {
                    conn = self.replace_unsent(operation, conn).await?;
                    conn.call(call).await
                }
                done => done,
            }?;
            Ok(with_messages(&mut conn, called))
        };
        let subject = Subject::Procedure(&call.written);
        let about = telemetry::About::new(self.config(), operation, subject);
        let result = telemetry::run(about, count_call, work)
            .await
            .map_err(|e| self.fail(e, operation));
        self.observe(started, result, rows_of_call)
    }
}

fn count_call(called: &WithMessages<Called>) -> Count {
    Count::Returned(rows_of_call(called))
}

fn with_messages<T>(conn: &mut PooledConnection, value: T) -> WithMessages<T> {
    WithMessages {
        value,
        messages: conn.take_messages(),
    }
}

impl Transaction {
    pub async fn query_sets(&mut self, statement: &Statement) -> Result<WithMessages<Vec<Rows>>> {
        let operation = "transaction.execute_query_sets";
        let started = Instant::now();
        let span = self.span.clone();
        let config = self.config.clone();
        let conn = self.conn(operation)?;
        let subject = Subject::Sql(&statement.sql, &statement.values);
        let about = telemetry::About::new(&config, operation, subject).parent(&span);
        let count = |s: &WithMessages<Vec<Rows>>| Count::Returned(rows_of_sets(s));
        let work = async {
            let value = conn.query_sets(statement).await?;
            Ok(with_messages(conn, value))
        };
        let r = telemetry::run(about, count, work).await;
        let conn = self.conn(operation)?;
        let r = observe(conn.metrics(), started, r, rows_of_sets);
        r.map_err(|e| self.fail(e, operation))
    }

    pub async fn call_procedure(&mut self, call: &Call) -> Result<WithMessages<Called>> {
        let operation = "transaction.call_procedure";
        let started = Instant::now();
        let span = self.span.clone();
        let config = self.config.clone();
        let conn = self.conn(operation)?;
        let subject = Subject::Procedure(&call.written);
        let about = telemetry::About::new(&config, operation, subject).parent(&span);
        let work = async {
            let value = conn.call(call).await?;
            Ok(with_messages(conn, value))
        };
        let r = telemetry::run(about, count_call, work).await;
        let conn = self.conn(operation)?;
        let r = observe(conn.metrics(), started, r, rows_of_call);
        r.map_err(|e| self.fail(e, operation))
    }
}
