//! Connection options from a PostgreSQL connection string, and what to say
//! when connecting fails.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::ConnectOptions;

use crate::config::DatabaseConfig;
use crate::error::{Error, Result};

/// Connection options dbflow accepts in a PostgreSQL URL, beside user,
/// password, host, port and database.
const KNOWN_OPTIONS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "host",
    "options",
    "statement_cache_capacity",
    "client_encoding",
    // Several hosts: which one to use (`backend::targets`).
    "target_session_attrs",
    "load_balance_hosts",
];

pub(super) fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions> {
    let spec = &config.spec;
    let key = &config.source_key;
    let unknown: Vec<&str> = spec
        .options
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !KNOWN_OPTIONS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::config(format!(
            "{key}: unknown option(s) {}; PostgreSQL URLs accept {}",
            unknown.join(", "),
            KNOWN_OPTIONS.join(", ")
        )));
    }
    let mut opts = PgConnectOptions::new_without_pgpass()
        .application_name(spec.option("application_name").unwrap_or("dbflow"))
        .statement_cache_capacity(256)
        // Floats arrive in binary, so the digits setting is never needed, and
        // PgBouncer refuses it as a startup parameter.
        .extra_float_digits(None)
        .disable_statement_logging();
    match (spec.option("host"), &spec.host) {
        (Some(dir), _) if dir.starts_with('/') => opts = opts.socket(dir),
        (Some(host), _) => opts = opts.host(host),
        (None, Some(host)) => opts = opts.host(host),
        (None, None) => opts = opts.host("localhost"),
    }
    if let Some(port) = spec.port {
        opts = opts.port(port);
    }
    if let Some(user) = &spec.user {
        opts = opts.username(user);
    }
    if let Some(password) = &spec.password {
        opts = opts.password(password);
    }
    if let Some(db) = &spec.database {
        opts = opts.database(db);
    }
    if let Some(mode) = spec.option("sslmode") {
        let mode: PgSslMode = mode.parse().map_err(|_| {
            Error::config(format!(
                "{key}: sslmode='{mode}' is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ))
        })?;
        opts = opts.ssl_mode(mode);
    }
    if let Some(path) = spec.option("sslrootcert") {
        opts = opts.ssl_root_cert(path);
    }
    if let Some(path) = spec.option("sslcert") {
        opts = opts.ssl_client_cert(path);
    }
    if let Some(path) = spec.option("sslkey") {
        opts = opts.ssl_client_key(path);
    }
    if !config.prepared_statements {
        // PgBouncer refuses startup parameters it does not track; the
        // statement deadline is set per transaction instead.
        if spec.option("options").is_some() {
            return Err(Error::config(format!(
                "{key}: the 'options' startup parameter is refused by PgBouncer's transaction \
                 pooling (PREPARED_STATEMENTS=false); set those parameters on the server or role"
            )));
        }
        return Ok(opts);
    }
    let mut settings = spec
        .option("options")
        .map(parse_pg_options)
        .unwrap_or_default();
    if let Some(deadline) = config.query_timeout {
        // Enforced by the server: it stops the statement and reports 57014.
        settings.push((
            "statement_timeout".to_owned(),
            format!("{}ms", deadline.as_millis().max(1)),
        ));
    }
    if !settings.is_empty() {
        opts = opts.options(settings);
    }
    Ok(opts)
}

/// `-c name=value -c other=value` (libpq's `options`) → pairs.
fn parse_pg_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut parts = options.split_whitespace();
    while let Some(p) = parts.next() {
        let setting = if p == "-c" {
            parts.next()
        } else {
            p.strip_prefix("-c")
        };
        if let Some((k, v)) = setting.and_then(|s| s.split_once('=')) {
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

/// Say what to do about the common ways a connection attempt fails.
pub(super) fn explain_connect_error(e: Error, config: &DatabaseConfig) -> Error {
    let target = config.spec.redacted();
    let advice = match e.sqlstate.as_deref() {
        Some("28P01") | Some("28000") => {
            format!(
                "authentication failed; check the user and password in {}",
                config.login_source()
            )
        }
        Some("3D000") => {
            "the database does not exist; create it or fix the database name".to_owned()
        }
        _ if e.message.contains("Connection refused") => {
            "connection refused; is the server running and listening on that host and port?"
                .to_owned()
        }
        _ if e.message.contains("failed to lookup address")
            || e.message.contains("Name or service not known") =>
        {
            "the host name does not resolve (DNS); check the host".to_owned()
        }
        _ if e.message.to_ascii_lowercase().contains("tls")
            || e.message.contains("certificate") =>
        {
            "TLS negotiation failed; check sslmode and the server's certificate".to_owned()
        }
        _ => String::new(),
    };
    e.connect_failed(&target, &advice, config.spec.password.as_deref())
}
