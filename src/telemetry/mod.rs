//! What dbflow tells observers about each operation. The core opens one
//! `tracing` span per database operation (target [`TARGET`]), carrying
//! OpenTelemetry's stable database attributes as fields; the Python
//! bindings bridge those spans to the OpenTelemetry API the flow has
//! configured (`python::otel`). Nothing is built while nobody listens:
//! [`span`] returns a disabled span unless a tracer or meter provider was
//! seen ([`set_wanted`]).
//!
//! Never in a span: a parameter value (unless `<DB>_TRACE_PARAMETERS`),
//! the server's own wording of an error (it may quote values), a password.

pub mod summary;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::config::DatabaseConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::sql::ParsedSql;
use crate::value::Value;

/// The `tracing` target of operation spans.
pub const TARGET: &str = "dbflow::otel";

static WANTED: AtomicBool = AtomicBool::new(false);

/// Whether a tracer or meter provider has been seen (set by the bindings).
pub fn wanted() -> bool {
    WANTED.load(Ordering::Relaxed)
}

pub fn set_wanted(on: bool) {
    WANTED.store(on, Ordering::Relaxed);
}

/// One span's fields; every name is an OpenTelemetry attribute, but
/// `otel.name` (the span's name) and `dbflow.*` (dbflow's own).
macro_rules! op_span {
    ($($parent:expr)?) => {
        tracing::info_span!(
            target: "dbflow::otel",
            $(parent: $parent,)?
            "db",
            "otel.name" = Empty,
            "db.system.name" = Empty,
            "db.namespace" = Empty,
            "db.operation.name" = Empty,
            "db.collection.name" = Empty,
            "db.query.text" = Empty,
            "db.query.summary" = Empty,
            "db.stored_procedure.name" = Empty,
            "db.operation.batch.size" = Empty,
            "db.response.returned_rows" = Empty,
            "db.response.status_code" = Empty,
            "error.type" = Empty,
            "server.address" = Empty,
            "server.port" = Empty,
            "dbflow.database" = Empty,
            "dbflow.operation" = Empty,
            "dbflow.rows_affected" = Empty,
            "dbflow.retry.attempt" = Empty,
            "dbflow.pool.wait_s" = Empty,
            "dbflow.pool.create_s" = Empty,
            "dbflow.migration.version" = Empty,
            "dbflow.migration.script" = Empty,
            "dbflow.health.status" = Empty,
            "dbflow.error.message" = Empty,
            "dbflow.query.parameters" = Empty,
        )
    };
}

/// What an operation runs, for its span.
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    /// A statement (or batch) as written, with its values.
    Sql(&'a ParsedSql, &'a [Value]),
    /// Raw SQL text (a migration file, a script).
    Text(&'a str),
    /// A table a bulk load writes.
    Table(&'a str),
    /// A stored procedure.
    Procedure(&'a str),
    /// A migration file.
    Migration {
        script: &'a str,
        version: Option<&'a str>,
    },
    /// Nothing in particular (a transaction, a health check).
    None,
}

/// One operation of a database, as its span and slow-statement log say it.
#[derive(Clone, Copy)]
pub struct About<'a> {
    config: &'a DatabaseConfig,
    operation: &'static str,
    subject: Subject<'a>,
    /// A transaction's span, for its statements (else the current span).
    parent: Option<&'a Span>,
    /// Which try of `execute_query_with_retry` (1: the first).
    attempt: u32,
}

impl<'a> About<'a> {
    pub fn new(config: &'a DatabaseConfig, operation: &'static str, subject: Subject<'a>) -> Self {
        About {
            config,
            operation,
            subject,
            parent: None,
            attempt: 1,
        }
    }

    pub fn parent(self, parent: &'a Span) -> Self {
        About {
            parent: Some(parent),
            ..self
        }
    }

    pub fn attempt(self, attempt: u32) -> Self {
        About { attempt, ..self }
    }
}

/// The span of one operation, a child of its `parent` or of whatever span
/// is current.
pub fn span(about: &About<'_>) -> Span {
    if !wanted() {
        return Span::none();
    }
    let span = match about.parent {
        Some(parent) => op_span!(parent),
        None => op_span!(),
    };
    if span.is_disabled() {
        return span;
    }
    describe(&span, about.config, about.operation, about.subject);
    if about.attempt > 1 {
        span.record("dbflow.retry.attempt", about.attempt as i64);
    }
    span
}

fn describe(span: &Span, config: &DatabaseConfig, operation: &'static str, subject: Subject<'_>) {
    let kind = config.database_type.as_str();
    let system = match kind {
        "sqlserver" => "microsoft.sql_server",
        other => other,
    };
    span.record("db.system.name", system);
    if let Some(database) = &config.spec.database {
        span.record("db.namespace", database.as_str());
    }
    if let Some(host) = &config.spec.host {
        span.record("server.address", host.as_str());
    }
    if let Some(port) = config.spec.port {
        span.record("server.port", port as i64);
    }
    span.record("dbflow.database", config.name.as_str());
    span.record("dbflow.operation", operation);
    let (summary, text) = match subject {
        Subject::Sql(sql, values) => {
            let text = sql.render_with(|i| format!(":{}", sql.names[i]));
            if config.trace_parameters && !values.is_empty() {
                span.record("dbflow.query.parameters", parameters(sql, values).as_str());
            }
            (summary::summarize(&text), Some(text))
        }
        Subject::Text(text) => (summary::summarize(text), Some(text.to_owned())),
        Subject::Table(table) => (
            summary::Summary {
                operation: Some(bulk_operation(kind).to_owned()),
                collection: Some(table.to_owned()),
                text: Some(format!("{} {table}", bulk_operation(kind))),
                procedure: None,
            },
            None,
        ),
        Subject::Procedure(name) => (
            summary::Summary {
                operation: Some(if kind == "sqlserver" { "EXEC" } else { "CALL" }.to_owned()),
                collection: None,
                text: Some(format!(
                    "{} {name}",
                    if kind == "sqlserver" { "EXEC" } else { "CALL" }
                )),
                procedure: Some(name.to_owned()),
            },
            None,
        ),
        Subject::Migration { script, version } => {
            span.record("dbflow.migration.script", script);
            if let Some(version) = version {
                span.record("dbflow.migration.version", version);
            }
            let summary = summary::Summary {
                text: Some(format!("migrate {script}")),
                ..Default::default()
            };
            (summary, None)
        }
        Subject::None => (summary::Summary::default(), None),
    };
    if let Some(text) = &text {
        span.record("db.query.text", text.as_str());
    }
    if let Some(op) = &summary.operation {
        span.record("db.operation.name", op.as_str());
    }
    if let Some(table) = &summary.collection {
        span.record("db.collection.name", table.as_str());
    }
    if let Some(procedure) = &summary.procedure {
        span.record("db.stored_procedure.name", procedure.as_str());
    }
    // The conventions' name: the summary, else the operation, else the system.
    let name = summary.text.clone().unwrap_or_else(|| operation.to_owned());
    if let Some(text) = &summary.text {
        span.record("db.query.summary", text.as_str());
    }
    span.record("otel.name", name.as_str());
}

fn bulk_operation(kind: &str) -> &'static str {
    if kind == "sqlserver" {
        "BULK INSERT"
    } else {
        "COPY"
    }
}

/// A statement's values as a JSON object of texts, only when the user
/// opted in (the bridge makes each a `db.query.parameter.<name>`).
fn parameters(sql: &ParsedSql, values: &[Value]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = sql
        .names
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let text = match value {
                Value::Null => serde_json::Value::Null,
                other => serde_json::Value::String(other.to_text()),
            };
            (name.clone(), text)
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// A statement's rows as a span says them: returned, or (no columns) affected.
pub fn count_rows(rows: &crate::value::Rows) -> Count {
    if rows.columns.is_empty() {
        Count::Affected(rows.rows_affected)
    } else {
        Count::Returned(rows.rows_affected.max(rows.row_count() as u64))
    }
}

/// How a result reads on the span: rows returned, or rows affected.
#[derive(Clone, Copy)]
pub enum Count {
    Returned(u64),
    Affected(u64),
    /// A batch of this many parameter sets (or rows loaded), rows affected.
    Batch {
        size: u64,
        affected: u64,
    },
    Nothing,
}

/// Run one operation inside its span: the outcome recorded on it, and a
/// statement slower than `<DB>_SLOW_QUERY_SECONDS` logged at WARNING.
pub async fn run<T>(
    about: About<'_>,
    count: impl FnOnce(&T) -> Count,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let span = span(&about);
    let Some(limit) = about.config.slow_query else {
        if span.is_disabled() {
            // Nobody listens: the operation as it is, nothing around it.
            return work.await;
        }
        let result = work.instrument(span.clone()).await;
        finish(&span, &result.as_ref().map(count), about.config);
        return result;
    };
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    let counted = result.as_ref().map(count);
    finish(&span, &counted, about.config);
    let took = started.elapsed();
    if took >= limit {
        slow(&about, took, &counted);
    }
    result
}

/// One WARNING for a slow statement: its text as written (never a value),
/// how long it took and its rows.
fn slow(about: &About<'_>, took: Duration, counted: &std::result::Result<Count, &Error>) {
    let (config, operation) = (about.config, about.operation);
    let statement = match about.subject {
        Subject::Sql(sql, _) => sql.render_with(|i| format!(":{}", sql.names[i])),
        Subject::Text(text) => text.to_owned(),
        Subject::Table(table) => format!("bulk load into {table}"),
        Subject::Procedure(name) => format!("procedure {name}"),
        Subject::Migration { script, .. } => format!("migration {script}"),
        Subject::None => operation.to_owned(),
    };
    let rows = match counted {
        Ok(Count::Returned(n)) => format!("{n} rows returned"),
        Ok(Count::Affected(n)) | Ok(Count::Batch { affected: n, .. }) => {
            format!("{n} rows affected")
        }
        Ok(Count::Nothing) => "no rows".to_owned(),
        Err(e) => format!("failed: {}", error_type(e.kind)),
    };
    tracing::warn!(
        database = %config.name,
        operation,
        duration_ms = format!("{:.1}", took.as_secs_f64() * 1000.0),
        "slow statement ({:.3} s, {rows}, over {} s): {statement}",
        took.as_secs_f64(),
        config.slow_query.map_or(0.0, |d| d.as_secs_f64()),
    );
}

/// Record an operation's outcome on its span.
pub fn finish(span: &Span, counted: &std::result::Result<Count, &Error>, config: &DatabaseConfig) {
    if span.is_disabled() {
        return;
    }
    match counted {
        Ok(count) => match *count {
            Count::Returned(n) => {
                span.record("db.response.returned_rows", n as i64);
            }
            Count::Affected(n) => {
                span.record("dbflow.rows_affected", n as i64);
            }
            Count::Batch { size, affected } => {
                span.record("db.operation.batch.size", size as i64);
                span.record("dbflow.rows_affected", affected as i64);
            }
            Count::Nothing => {}
        },
        Err(e) => failed(span, e, config),
    }
}

/// An error on the span: its code, its type and dbflow's words for it
/// (the server's own with `<DB>_TRACE_PARAMETERS`).
pub fn failed(span: &Span, e: &Error, config: &DatabaseConfig) {
    if let Some(code) = e.sqlstate.as_deref() {
        span.record("db.response.status_code", code);
    } else if let Some(number) = e.error_number {
        span.record("db.response.status_code", number.to_string().as_str());
    }
    span.record("error.type", error_type(e.kind));
    let said = if config.trace_parameters {
        e.message.clone()
    } else {
        describe_error(e)
    };
    span.record("dbflow.error.message", said.as_str());
}

/// The exception class a failure raises (low cardinality, as `error.type`
/// wants it).
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Configuration => "dbflow.ConfigurationError",
        ErrorKind::Connection => "dbflow.DatabaseConnectionError",
        ErrorKind::Query => "dbflow.QueryError",
        ErrorKind::Integrity => "dbflow.IntegrityError",
        ErrorKind::Parameter => "dbflow.ParameterError",
        ErrorKind::Timeout => "dbflow.QueryTimeoutError",
        ErrorKind::PoolTimeout => "dbflow.PoolTimeoutError",
        ErrorKind::Transaction => "dbflow.TransactionError",
        ErrorKind::Migration => "dbflow.MigrationError",
        ErrorKind::ChecksumMismatch => "dbflow.ChecksumMismatchError",
        ErrorKind::MultipleResultSets => "dbflow.MultipleResultSetsError",
    }
}

/// A failure's description for a span. The server's own words may quote
/// the values it refused (`Key (id)=(42) already exists`, `The duplicate
/// key value is (42)`), so errors the server raised are described by their
/// type and code; dbflow's own messages (connections, deadlines, pools)
/// name no value and are kept.
pub fn describe_error(e: &Error) -> String {
    let from_server = e.sqlstate.is_some() || e.error_number.is_some();
    match e.kind {
        ErrorKind::Query | ErrorKind::Integrity | ErrorKind::Parameter | ErrorKind::Transaction
            if from_server =>
        {
            let code = e
                .sqlstate
                .clone()
                .or_else(|| e.error_number.map(|n| n.to_string()))
                .unwrap_or_default();
            format!("the server refused the statement ({code})")
        }
        ErrorKind::Parameter => "a parameter could not be sent".to_owned(),
        _ => e.message.clone(),
    }
}

/// Note on the current operation's span how long the pool made it wait
/// (no clock is read while nobody listens).
pub fn pool_waited(since: Instant) {
    if wanted() {
        Span::current().record("dbflow.pool.wait_s", since.elapsed().as_secs_f64());
    }
}

/// Note on the current operation's span that it opened a connection.
pub fn connection_created(since: Instant) {
    if wanted() {
        Span::current().record("dbflow.pool.create_s", since.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_the_server_are_described_without_its_words() {
        let mut e = Error::new(
            ErrorKind::Integrity,
            "duplicate key value violates unique constraint. Key (id)=(42) already exists.",
        );
        e.sqlstate = Some("23505".into());
        assert_eq!(
            describe_error(&e),
            "the server refused the statement (23505)"
        );
        let mut e = Error::new(ErrorKind::Integrity, "The duplicate key value is (7).");
        e.error_number = Some(2627);
        assert_eq!(
            describe_error(&e),
            "the server refused the statement (2627)"
        );
        let e = Error::connection("cannot connect to postgresql://u:***@h/db: refused");
        assert!(describe_error(&e).contains("cannot connect"));
        assert_eq!(
            error_type(ErrorKind::PoolTimeout),
            "dbflow.PoolTimeoutError"
        );
    }

    #[test]
    fn nothing_is_built_while_nobody_listens() {
        set_wanted(false);
        let config = crate::backend::fake::testing::config("t", &[]);
        let about = About::new(&config, "execute_query", Subject::Text("SELECT 1"));
        let span = super::span(&about);
        assert!(span.is_disabled());
    }
}
