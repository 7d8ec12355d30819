//! tiberius's errors in dbflow's words: the kind from the error number,
//! certificate problems and connect failures explained in terms of
//! dbflow's own settings.

use crate::config::DatabaseConfig;
use crate::error::{Error, ErrorKind};

/// Error numbers after which running the statement again is safe:
/// deadlock victim and Azure SQL's transient failures.
const TRANSIENT_NUMBERS: &[u32] = &[
    1205, 4060, 40197, 40501, 40613, 49918, 49919, 49920, 4221, 10928, 10929, 10053, 10054, 10060,
    233, 64,
];

/// SQL Server error numbers that mean "the data broke a constraint":
/// duplicate key (2627, 2601), foreign key / check (547), NULL into a
/// NOT NULL column (515).
const INTEGRITY_NUMBERS: &[u32] = &[2627, 2601, 547, 515];

/// Login failed, database unavailable, server shutting down.
const CONNECTION_NUMBERS: &[u32] = &[18456, 4060, 4064, 18452, 6005, 6006, 40613];

impl From<tiberius::error::Error> for Error {
    fn from(err: tiberius::error::Error) -> Self {
        use tiberius::error::Error as T;
        match err {
            T::Server(token) => {
                let code = token.code();
                let kind = if INTEGRITY_NUMBERS.contains(&code) {
                    ErrorKind::Integrity
                } else if CONNECTION_NUMBERS.contains(&code) {
                    ErrorKind::Connection
                } else {
                    ErrorKind::Query
                };
                let mut e = Error::new(kind, token.message().to_owned());
                e.error_number = i32::try_from(code).ok();
                e.transient = TRANSIENT_NUMBERS.contains(&code);
                e.server_line = Some(token.line());
                e
            }
            // The command timeout's own error; the kernel's ETIMEDOUT (a
            // server that stopped answering, `backend::silence`) shares the
            // kind but carries the OS error, and is a connection failure.
            T::Io {
                kind: std::io::ErrorKind::TimedOut,
                ref message,
            } if !message.contains("(os error") => {
                // The command timeout fired mid-response: the server may still
                // be working; the connection is discarded (see `Connection::note`).
                let mut e = Error::new(
                    ErrorKind::Timeout,
                    "the statement passed its deadline (QUERY_TIMEOUT); its connection was discarded",
                );
                e.maybe_executed = true;
                e
            }
            T::Io { message, kind } => Error::io(format!("I/O error: {message}"), kind),
            T::Tls(message) => Error::connection(format!(
                "TLS handshake failed: {}; if the server uses a self-signed certificate, \
                 give its CA with ca_file=/path/ca.pem, or set TrustServerCertificate=true to \
                 accept it unverified, or encrypt=no (TLS for the login only, as ODBC Driver 17)",
                certificate_problem(&message)
            )),
            T::Routing { host, port } => {
                Error::connection(format!("the server redirected to {host}:{port}"))
            }
            T::Protocol(m) | T::Encoding(m) => {
                let mut e = Error::connection(format!("protocol error: {m}"));
                e.maybe_executed = true;
                e
            }
            T::BulkInput(m) => Error::parameter(m.into_owned()),
            other => Error::query(other.to_string()),
        }
    }
}

/// A rejected certificate in plain words (the TLS library names its causes
/// in its own identifiers, and tiberius appends remedies in its own API's
/// names, `Config::trust_cert_ca` and others, which the caller replaces
/// with dbflow's options).
fn certificate_problem(message: &str) -> String {
    const CAUSES: &[(&str, &str)] = &[
        (
            "CaUsedAsEndEntity",
            "it is self-signed (a CA certificate used by the server itself)",
        ),
        (
            "UnknownIssuer",
            "it is not signed by a CA this machine trusts",
        ),
        (
            "NotValidForName",
            "it does not name this host (see HostNameInCertificate=)",
        ),
        ("Expired", "it has expired"),
        ("NotValidYet", "it is not valid yet"),
        (
            "UnsupportedCertVersion",
            "it uses an outdated X.509 version",
        ),
    ];
    match CAUSES.iter().find(|(id, _)| message.contains(id)) {
        Some((_, words)) => format!("the server's certificate was not accepted: {words}"),
        None => {
            // tiberius: "the server's certificate was rejected during the TLS
            // handshake: {cause}.{hint} To connect anyway you can: (1) ..."
            let problem = message
                .split_once(" To connect anyway")
                .map_or(message, |(problem, _)| problem)
                .trim_end()
                .trim_end_matches('.');
            match problem
                .strip_prefix("the server's certificate was rejected during the TLS handshake: ")
            {
                Some(cause) => format!("the server's certificate was not accepted: {cause}"),
                None => problem.to_owned(),
            }
        }
    }
}

pub(super) fn explain_connect_error(mut e: Error, config: &DatabaseConfig) -> Error {
    let target = config.spec.redacted();
    if e.kind == ErrorKind::Timeout {
        e.message = format!(
            "no answer within {:?} (connect timeout); check the host, port and firewall",
            config.connect_timeout
        );
    }
    let advice = match e.error_number {
        Some(18456) => format!(
            "login failed; check the user and password in {}",
            config.login_source()
        ),
        Some(4060) => "the database does not exist or the login cannot open it".to_owned(),
        _ if e.message.contains("refused") => {
            "connection refused; is SQL Server running and listening on that host and port?"
                .to_owned()
        }
        _ if e.message.contains("lookup") || e.message.contains("resolve") => {
            "the host name does not resolve (DNS); check the host".to_owned()
        }
        _ => String::new(),
    };
    e.connect_failed(&target, &advice, config.spec.password.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_alone_never_counts_as_not_sent() {
        // tiberius reports a read that failed mid-result as a broken pipe.
        let e: Error = tiberius::error::Error::Io {
            kind: std::io::ErrorKind::BrokenPipe,
            message: "Broken pipe".into(),
        }
        .into();
        assert!(!e.not_sent && e.maybe_executed);
    }

    /// tiberius's message for a certificate rustls rejected (as 0.13.0 words it).
    fn tiberius_message(cause: &str) -> String {
        format!(
            "the server's certificate was rejected during the TLS handshake: {cause}. \
             To connect anyway you can: (1) trust a specific CA certificate with \
             `Config::trust_cert_ca(path)`, or an in-memory CA bundle with \
             `Config::trust_cert_ca_bundle(bytes)`; (2) if the OS trust store is unusable, \
             base trust on the bundled Mozilla roots with `Config::trust_webpki_roots()` \
             (requires the `rustls-webpki-roots` feature); (3) skip certificate validation \
             entirely with `Config::trust_cert()` (accepts any certificate and also disables \
             hostname verification — only safe on a trusted network); or (4) build tiberius \
             with the `native-tls` backend, which is more lenient toward legacy certificates. \
             Note: SQL Server always performs a TLS handshake during login even when \
             `Encrypt=false`, so this can occur regardless of the encryption setting."
        )
    }

    fn tls_error(cause: &str) -> String {
        Error::from(tiberius::error::Error::Tls(tiberius_message(cause))).message
    }

    #[test]
    fn a_rejected_certificate_is_described_in_dbflows_words_only() {
        let known = tls_error("UnknownIssuer");
        let unknown = tls_error(
            "certificate expired: verification time 1796526965 (UNIX), \
             but certificate is not valid after 1796500000 (26965 seconds ago)",
        );
        assert!(
            known.contains("it is not signed by a CA this machine trusts"),
            "{known}"
        );
        assert!(
            unknown.contains("not accepted: certificate expired: "),
            "{unknown}"
        );
        for message in [known, unknown] {
            for driver_words in ["Config::", "trust_cert", "native-tls", "To connect anyway"] {
                assert!(!message.contains(driver_words), "{message}");
            }
            assert!(
                message.contains("ca_file=") && message.contains("TrustServerCertificate=true")
            );
        }
    }
}
