//! The contract every backend's connection fulfils. The seam
//! ([`super::Connection`]) calls it through an enum of the registered
//! backends, so each call is a `match`, not a virtual call; the compiler
//! holds every backend to the whole contract.

use std::future::Future;
use std::time::Duration;

use super::messages::ServerMessage;
use super::rows::{Destination, Read};
use super::{Control, Statement};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use crate::feed::RowFeed;
use crate::procedure::{Call, Called};
use crate::sql::ParsedSql;

pub trait Backend: Sized + Send + 'static {
    /// Open one connection (the seam bounds it by `CONNECT_TIMEOUT`).
    fn connect(config: &DatabaseConfig) -> impl Future<Output = Result<Self>> + Send;

    /// Check what the driver reads from the settings (URL options, TLS)
    /// without I/O, so a mistake surfaces when the manager is created.
    fn validate(config: &DatabaseConfig) -> Result<()>;

    /// Said once when a pool is created, where the configuration deserves
    /// a word (TLS that does not verify the server).
    fn announce(_config: &DatabaseConfig) {}

    /// One statement (or batch); its rows go to `destination` as they are
    /// decoded. Every result set is reported to the row buffer
    /// ([`super::rows::RowBuffer::start`]); [`Destination::Sets`] keeps
    /// them all.
    fn query(
        &mut self,
        statement: &Statement,
        destination: Destination<'_>,
    ) -> impl Future<Output = Result<Read>> + Send;

    /// One statement that must stop at `deadline`: enforced by the server
    /// where it can (the connection stays usable), else by discarding the
    /// connection; either way with a backstop for a server gone silent.
    fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: Duration,
    ) -> impl Future<Output = Result<Read>> + Send;

    /// The server's bulk path into `table` (`columns` in row order); all
    /// rows or none.
    fn bulk_insert(
        &mut self,
        table: &str,
        columns: &[String],
        feed: &mut RowFeed,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// One statement for many parameter sets, all or none; rows affected.
    fn execute_many(
        &mut self,
        sql: &ParsedSql,
        feed: &mut RowFeed,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Parameterless SQL text as written (a migration chunk, a control
    /// statement), rows discarded.
    fn script(&mut self, sql: &str) -> impl Future<Output = Result<()>> + Send;

    /// A stored procedure, in one round trip: every result set, OUTPUT
    /// parameters, the return code and rowcounts. A failure after the
    /// server answered carries what it sent in `Error::partial`.
    fn call(&mut self, call: &Call) -> impl Future<Output = Result<Called>> + Send;

    /// The server's messages since they were last taken, and how many
    /// more the driver counted but did not keep.
    fn take_messages(&mut self) -> (Vec<ServerMessage>, u64) {
        (Vec::new(), 0)
    }

    /// One round trip.
    fn ping(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Close politely (bounded; the server logs a clean disconnect).
    fn close(self) -> impl Future<Output = ()> + Send;

    /// The SQL of a transaction-control step (`None`: nothing to send).
    fn control_sql(&self, op: Control<'_>) -> Option<String>;

    /// Work before COMMIT or ROLLBACK is sent (a transaction pooler's
    /// prepared statements closed).
    fn before_transaction_end(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// The seam reports the caller's transactions, so statements inside
    /// one do not open their own.
    fn set_in_transaction(&mut self, _open: bool) {}

    /// Behind a transaction pooler: session state (session locks,
    /// statements outside a transaction) does not survive between
    /// transactions.
    fn transaction_pooling(&self) -> bool {
        false
    }

    /// A statement returning no rows but `table`'s columns.
    fn no_rows_of(&self, table: &str) -> Result<String>;

    /// The socket's descriptor under any TLS, for the liveness check.
    fn raw_fd(&self) -> Option<i32>;

    /// Bytes the kernel accepted for sending on the socket (`None`: not
    /// counted), for [`super::sent`].
    fn bytes_written(&self) -> Option<u64>;

    /// The driver found its wire out of step: discard the connection.
    fn poisoned(&self) -> bool {
        false
    }

    /// A statement prepared before a DDL change that the server refused
    /// before running it; outside a transaction it may be prepared afresh.
    fn stale_plan(&self, _e: &Error) -> bool {
        false
    }

    /// Drop the statements prepared on this connection.
    fn forget_statements(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}
