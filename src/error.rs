//! One error type for the whole core. The kind decides the Python exception
//! class at the binding edge (`python/errors.rs`); the message is always
//! written for a person: what failed, where, and what to do.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Configuration,
    Connection,
    Query,
    Integrity,
    Parameter,
    Timeout,
    PoolTimeout,
    Transaction,
    Migration,
    ChecksumMismatch,
    /// A statement read as one result produced several.
    MultipleResultSets,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub database: Option<String>,
    pub operation: Option<&'static str>,
    /// PostgreSQL SQLSTATE (None on SQL Server).
    pub sqlstate: Option<String>,
    /// SQL Server error number (None on PostgreSQL).
    pub error_number: Option<i32>,
    /// The line of the failing statement within the batch, when the server
    /// says (SQL Server).
    pub server_line: Option<u32>,
    /// True when the server may have executed the statement (the request was
    /// sent before the failure): such a call must never be retried blindly.
    pub maybe_executed: bool,
    /// The server refused or undid the statement for a reason that passes
    /// (a deadlock, a serialization failure, a failover, a full server), as
    /// its backend reads the error code: running it again is safe.
    pub transient: bool,
    /// The connection failed before any byte of the request was written
    /// (decided at the seam, `backend::sent`): the statement did not run
    /// and may run once more on another connection.
    pub not_sent: bool,
    /// The seam has judged whether the request left (`backend::sent`):
    /// an outer operation does not judge it again.
    pub settled: bool,
    /// What the server said besides the error (boxed: rarely there, and
    /// errors travel by value).
    pub detail: Option<Box<Detail>>,
}

/// What came with an error from the server.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    /// The server's messages (PRINT, RAISE NOTICE) up to the failure.
    pub messages: Vec<String>,
    /// How many result sets there were ([`ErrorKind::MultipleResultSets`]).
    pub result_sets: usize,
    /// A procedure call that failed: what the server sent all the same
    /// (result sets, OUTPUT values as the procedure left them).
    pub partial: Option<crate::procedure::Called>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            database: None,
            operation: None,
            sqlstate: None,
            error_number: None,
            server_line: None,
            maybe_executed: false,
            transient: false,
            not_sent: false,
            settled: false,
            detail: None,
        }
    }

    /// The server's messages up to the failure.
    pub fn messages(&self) -> &[String] {
        self.detail.as_ref().map_or(&[], |d| &d.messages)
    }

    /// The detail, made when first needed.
    pub fn detail_mut(&mut self) -> &mut Detail {
        self.detail.get_or_insert_with(Default::default)
    }

    /// A statement read as one result produced `count` result sets; the
    /// wire was drained first, so the connection stays usable.
    pub fn multiple_result_sets(count: usize) -> Self {
        let mut e = Self::new(
            ErrorKind::MultipleResultSets,
            format!(
                "the statement produced {count} result sets, and execute_query returns one; \
                 read them all with execute_query_sets(), or call a procedure with \
                 call_procedure()"
            ),
        );
        e.detail_mut().result_sets = count;
        // The statement ran (its first result set may have been read).
        e.maybe_executed = true;
        e
    }

    /// An I/O failure of the connection: the request may have reached the
    /// server, until the seam proves that none of it left this process
    /// (`backend::sent::settle`). The error's name says nothing either way:
    /// tiberius reports a failed read as a broken pipe.
    pub fn io(message: impl Into<String>, _kind: std::io::ErrorKind) -> Self {
        let mut e = Self::connection(message);
        e.maybe_executed = true;
        e
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Configuration, message)
    }

    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Connection, message)
    }

    pub fn parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Parameter, message)
    }

    pub fn query(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Query, message)
    }

    /// Attach the database and operation once, where they are known; the
    /// innermost context wins so a nested call keeps its precise operation.
    pub fn context(mut self, database: &str, operation: &'static str) -> Self {
        if self.database.is_none() {
            self.database = Some(database.to_owned());
        }
        if self.operation.is_none() {
            self.operation = Some(operation);
        }
        self
    }

    /// A connection attempt that failed (so nothing ran), said with what
    /// to do about it (`advice`, when there is any) and the secret removed.
    pub fn connect_failed(mut self, target: &str, advice: &str, secret: Option<&str>) -> Self {
        self.kind = ErrorKind::Connection;
        self.maybe_executed = false;
        self.message = if advice.is_empty() {
            format!("cannot connect to {target}: {}", self.message)
        } else {
            format!("cannot connect to {target}: {advice} ({})", self.message)
        };
        self.redact(secret)
    }

    /// Remove a secret from the message (a last line of defence: messages are
    /// built from redacted parts, but driver text is not under our control).
    pub fn redact(mut self, secret: Option<&str>) -> Self {
        if let Some(secret) = secret.filter(|s| s.len() >= 2) {
            if self.message.contains(secret) {
                self.message = self.message.replace(secret, "***");
            }
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.database, self.operation) {
            (Some(db), Some(op)) => write!(f, "[{db}] {op} failed: {}", self.message)?,
            (Some(db), None) => write!(f, "[{db}] {}", self.message)?,
            (None, Some(op)) => write!(f, "{op} failed: {}", self.message)?,
            (None, None) => f.write_str(&self.message)?,
        }
        if let Some(state) = &self.sqlstate {
            write!(f, " (SQLSTATE {state})")?;
        }
        if let Some(number) = self.error_number {
            write!(f, " (SQL Server error {number})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_database_operation_and_state() {
        let mut e =
            Error::query("relation \"x\" does not exist").context("rpa_db", "execute_query");
        e.sqlstate = Some("42P01".into());
        assert_eq!(
            e.to_string(),
            "[rpa_db] execute_query failed: relation \"x\" does not exist (SQLSTATE 42P01)"
        );
    }

    #[test]
    fn innermost_context_wins() {
        let e = Error::query("x")
            .context("a", "inner")
            .context("b", "outer");
        assert_eq!(e.database.as_deref(), Some("a"));
        assert_eq!(e.operation, Some("inner"));
    }

    #[test]
    fn redact_removes_secret() {
        let e = Error::connection("auth failed for s3cret!").redact(Some("s3cret!"));
        assert!(!e.message.contains("s3cret!"));
        assert!(e.message.contains("***"));
    }
}
