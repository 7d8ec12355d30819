//! sqlx's errors in dbflow's words: the kind from the SQLSTATE, the
//! server's detail and hint kept, I/O failures left to the seam to judge.

use crate::error::{Error, ErrorKind};

/// PostgreSQL SQLSTATEs after which the server has rolled the statement
/// back, so running it again is safe.
const TRANSIENT_STATES: &[&str] = &[
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53300", // too_many_connections
    "08000", "08003", "08006", "08001", "08004",
];

/// SQLSTATE classes that mean "the data broke a constraint".
fn is_integrity_sqlstate(code: &str) -> bool {
    code.starts_with("23")
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned());
                let kind = match code.as_deref() {
                    Some(c) if is_integrity_sqlstate(c) => ErrorKind::Integrity,
                    Some("57014") => ErrorKind::Timeout,
                    Some("28P01") | Some("28000") | Some("3D000") | Some("57P01")
                    | Some("57P02") | Some("57P03") | Some("53300") => ErrorKind::Connection,
                    _ => ErrorKind::Query,
                };
                let mut message = db.message().to_owned();
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    if let Some(detail) = pg.detail() {
                        message.push_str(". ");
                        message.push_str(detail);
                    }
                    if let Some(hint) = pg.hint() {
                        message.push_str(". Hint: ");
                        message.push_str(hint);
                    }
                }
                let mut e = Error::new(kind, message);
                e.transient = code
                    .as_deref()
                    .is_some_and(|c| TRANSIENT_STATES.contains(&c));
                e.sqlstate = code;
                e
            }
            sqlx::Error::PoolTimedOut => Error::new(ErrorKind::PoolTimeout, err.to_string()),
            sqlx::Error::Configuration(_) => Error::config(err.to_string()),
            sqlx::Error::Io(io) => Error::io(
                format!("error communicating with database: {io}"),
                io.kind(),
            ),
            sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
                let mut e = Error::connection(err.to_string());
                e.maybe_executed = true;
                e
            }
            sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. } => {
                Error::parameter(err.to_string())
            }
            other => Error::query(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_alone_never_counts_as_not_sent() {
        use std::io::{Error as IoError, ErrorKind as Io};
        for kind in [Io::BrokenPipe, Io::ConnectionReset, Io::UnexpectedEof] {
            let e: Error = sqlx::Error::Io(IoError::new(kind, "x")).into();
            assert!(!e.not_sent && e.maybe_executed, "{kind:?}");
            assert_eq!(e.kind, ErrorKind::Connection);
        }
    }
}
