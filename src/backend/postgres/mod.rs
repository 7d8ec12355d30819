//! PostgreSQL through sqlx: connection options, statement preparation with
//! psycopg2-compatible parameter typing, and binary row decoding.

pub mod decode;
pub mod encode;
pub mod oid;

use futures_util::TryStreamExt;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgSslMode, PgTypeInfo, PgTypeKind,
};
use sqlx::{
    Arguments, Column, ConnectOptions, Connection as _, Either, Executor, Row, SqlSafeStr,
    Statement as _, TypeInfo, ValueRef,
};

use self::encode::{Mismatch, Target};
use super::rows::{Destination, Read, RowBuffer};
use super::{with_backstop, Control, DialectSql, Statement};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use crate::feed::{RowFeed, ValuesBatches};
use crate::sql::{Dialect, ParsedSql};
use crate::value::{Rows, Value};

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
];

pub fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions> {
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

pub struct PgConn {
    conn: PgConnection,
    /// Set for PgBouncer's transaction pooling (`PREPARED_STATEMENTS=false`).
    pooled: Option<TxPooling>,
    /// Ending a transaction of our own failed: the session's state is
    /// unknown, so the seam discards the connection.
    pub poisoned: bool,
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

fn target_of(info: &PgTypeInfo) -> Target {
    let oid = info.oid().map(|o| o.0).unwrap_or(0);
    match info.kind() {
        PgTypeKind::Enum(_) => Target::Enum,
        PgTypeKind::Domain(base) => target_of(base),
        PgTypeKind::Array(element) => Target::Array {
            element_oid: element.oid().map(|o| o.0).unwrap_or(0),
            element: Box::new(target_of(element)),
        },
        _ => match oid::array_element(oid) {
            Some(element) => Target::Array {
                element: Box::new(Target::Builtin(element)),
                element_oid: element,
            },
            None if is_mapped(oid) => Target::Builtin(oid),
            None => Target::Other,
        },
    }
}

fn is_mapped(o: u32) -> bool {
    use oid::*;
    matches!(
        o,
        BOOL | BYTEA
            | CHAR
            | NAME
            | INT8
            | INT2
            | INT4
            | TEXT
            | JSON
            | XML
            | FLOAT4
            | FLOAT8
            | UNKNOWN
            | BPCHAR
            | VARCHAR
            | DATE
            | TIME
            | TIMESTAMP
            | TIMESTAMPTZ
            | INTERVAL
            | TIMETZ
            | NUMERIC
            | UUID
            | JSONB
    )
}

/// How to read one result column.
#[derive(Clone, Copy)]
enum Reader {
    Builtin(u32),
    Text,
    Array,
    Fallback,
}

fn reader_of(info: &PgTypeInfo) -> Reader {
    match info.kind() {
        PgTypeKind::Enum(_) => Reader::Text,
        PgTypeKind::Domain(base) => reader_of(base),
        PgTypeKind::Array(_) => Reader::Array,
        _ => match info.oid().map(|o| o.0) {
            Some(o) if o != 0 => Reader::Builtin(o),
            _ => Reader::Fallback,
        },
    }
}

fn read(reader: Reader, bytes: &[u8]) -> Result<Value> {
    let r = match reader {
        Reader::Builtin(o) => decode::decode(o, bytes),
        Reader::Array => decode::decode_array(bytes),
        Reader::Text => Ok(decode::fallback(bytes)),
        Reader::Fallback => Ok(decode::fallback(bytes)),
    };
    r.map_err(|e| Error::query(format!("cannot decode a value from the server: {e}")))
}

/// Parameter declarations and casts for one attempt at preparing.
struct Plan {
    declared: Vec<u32>,
    casts: Vec<Option<String>>,
    variant: bool,
}

impl Plan {
    fn sql(&self, parsed: &ParsedSql) -> String {
        let mut sql = parsed.render_with(|i| match &self.casts[i] {
            Some(ty) => format!("CAST(${} AS {ty})", i + 1),
            None => format!("${}", i + 1),
        });
        if self.variant {
            // A distinct text keeps this variant apart in the statement cache,
            // which sqlx keys by SQL text alone.
            let sig: Vec<String> = self.declared.iter().map(u32::to_string).collect();
            sql.push_str(&format!("\n/* dbflow params: {} */", sig.join(",")));
        }
        sql
    }
}

/// A parameter value bound as the server's described type.
struct Bound<'a> {
    value: &'a Value,
    info: PgTypeInfo,
    target: Target,
}

/// Parameter sets per pipelined round trip: the server's answer to each is
/// a few fixed bytes, so a thousand stay far below any socket buffer while
/// the next requests are still being written.
const PIPELINE_SETS: usize = 1000;

/// A prepared statement with its parameters' server types, to bind more
/// values of the same shape without preparing or describing again.
struct Typed {
    stmt: sqlx::postgres::PgStatement,
    params: Vec<(PgTypeInfo, Target)>,
}

impl Typed {
    fn of(stmt: &sqlx::postgres::PgStatement) -> Option<Typed> {
        let Some(Either::Left(params)) = stmt.parameters() else {
            return None;
        };
        Some(Typed {
            stmt: stmt.clone(),
            params: params.iter().map(|p| (p.clone(), target_of(p))).collect(),
        })
    }

    /// The values bound to these types; `None` if any value does not fit
    /// (the caller then binds afresh).
    fn encode(&self, values: &[Value]) -> Option<PgArguments> {
        if values.len() != self.params.len() {
            return None;
        }
        let mut args = PgArguments::default();
        args.reserve(values.len(), values.len() * 8);
        for (value, (info, target)) in values.iter().zip(&self.params) {
            let bound = Bound {
                value,
                info: info.clone(),
                target: target.clone(),
            };
            args.add(bound).ok()?;
        }
        Some(args)
    }
}

#[derive(Debug)]
struct MismatchError(Mismatch);
impl std::fmt::Display for MismatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Mismatch::Retype => f.write_str("type mismatch"),
            Mismatch::Invalid(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for MismatchError {}

impl sqlx::Type<sqlx::Postgres> for Bound<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Bound<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        if matches!(self.value, Value::Null) {
            return Ok(sqlx::encode::IsNull::Yes);
        }
        encode::encode(self.value, &self.target, buf)
            .map_err(|m| -> sqlx::error::BoxDynError { Box::new(MismatchError(m)) })?;
        Ok(sqlx::encode::IsNull::No)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.info.clone())
    }
}

impl PgConn {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let opts = connect_options(config)?;
        let conn = opts
            .connect()
            .await
            .map_err(|e| explain_connect_error(Error::from(e), config))?;
        let pooled = (!config.prepared_statements).then(|| TxPooling {
            in_transaction: false,
            timeout_ms: config.query_timeout.map(|d| d.as_millis().max(1)),
        });
        Ok(PgConn {
            conn,
            pooled,
            poisoned: false,
        })
    }

    /// The statement that opens a transaction on this connection.
    pub fn begin_sql(&self) -> String {
        let timeout = self.pooled.as_ref().and_then(|p| p.timeout_ms);
        begin_with_timeout(timeout)
    }

    pub fn transaction_pooling(&self) -> bool {
        self.pooled.is_some()
    }

    /// The seam reports the caller's transactions, so statements inside one
    /// do not open their own.
    pub fn set_in_transaction(&mut self, open: bool) {
        if let Some(p) = &mut self.pooled {
            p.in_transaction = open;
        }
    }

    /// Before COMMIT/ROLLBACK in transaction-pooling mode: close every
    /// statement prepared in this transaction (one round trip).
    pub async fn before_transaction_end(&mut self) -> Result<()> {
        if self.pooled.is_some() {
            self.conn.clear_cached_statements().await?;
        }
        Ok(())
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

    /// Prepare (cached per connection) and bind: one round trip when warm.
    async fn bind(
        &mut self,
        parsed: &ParsedSql,
        values: &[Value],
    ) -> Result<(sqlx::postgres::PgStatement, PgArguments)> {
        let mut plan = Plan {
            declared: values.iter().map(encode::natural_oid).collect(),
            casts: vec![None; values.len()],
            variant: false,
        };
        for _attempt in 0..4 {
            let types: Vec<PgTypeInfo> = plan
                .declared
                .iter()
                .map(|o| PgTypeInfo::with_oid(sqlx::postgres::types::Oid(*o)))
                .collect();
            let sql = plan.sql(parsed);
            let stmt = self
                .conn
                .prepare_with(sqlx::AssertSqlSafe(sql).into_sql_str(), &types)
                .await?;
            let described: Vec<PgTypeInfo> = match stmt.parameters() {
                Some(Either::Left(p)) => p.to_vec(),
                _ => types.clone(),
            };
            let mut args = PgArguments::default();
            args.reserve(values.len(), values.len() * 8);
            let mut retry = false;
            // Whether this attempt is already a variant: several values may
            // ask for one in the same attempt (a later chunk of many rows).
            let in_variant = plan.variant;
            for (i, (value, info)) in values.iter().zip(described.iter()).enumerate() {
                let target = target_of(info);
                let bound = Bound {
                    value,
                    info: info.clone(),
                    target: target.clone(),
                };
                let Err(err) = args.add(bound) else { continue };
                let mismatch = err.downcast_ref::<MismatchError>().map(|m| m.0.clone());
                let name = &parsed.names[i];
                match mismatch {
                    Some(Mismatch::Invalid(msg)) if in_variant => {
                        return Err(Error::parameter(format!("parameter :{name}: {msg}")))
                    }
                    Some(Mismatch::Retype | Mismatch::Invalid(_)) if !in_variant => {
                        // The type may come from a statement cached for other
                        // value types: prepare a variant of our own, so the
                        // server infers afresh for these values.
                        plan.declared[i] = encode::natural_oid(value);
                        plan.variant = true;
                        retry = true;
                    }
                    Some(Mismatch::Retype) if plan.declared[i] == 0 && plan.casts[i].is_none() => {
                        // The statement constrains the parameter: send the
                        // value as its own type and let the server convert
                        // it, as it converts psycopg2's quoted literal.
                        plan.declared[i] = encode::standalone_oid(value);
                        if !target.is_text_like() {
                            plan.casts[i] = Some(info.name().to_owned());
                        }
                        retry = true;
                    }
                    _ => {
                        return Err(Error::parameter(format!(
                            "parameter :{name}: a Python {} cannot be sent where the server expects {}; \
                             pass a matching value or add a cast in the SQL",
                            value.kind_name(),
                            info.name()
                        )))
                    }
                }
            }
            if !retry {
                return Ok((stmt, args));
            }
        }
        Err(Error::parameter("the statement's parameter types could not be settled; add explicit casts (:name::type)"))
    }

    /// One statement; its rows go to `destination` as they are decoded.
    pub async fn query(
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
                Ok(Read {
                    rows: Rows::default(),
                    complete: true,
                })
            }
            other => other,
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
        let columns = stmt.columns();
        let readers: Vec<Reader> = columns.iter().map(|c| reader_of(c.type_info())).collect();
        let mut buffer = RowBuffer::new(destination);
        buffer.start(columns.iter().map(|c| c.name().to_owned()).collect());
        if readers.is_empty() {
            let done = stmt.query_with(args).execute(&mut self.conn).await?;
            let mut read = buffer.finish().await;
            read.rows.rows_affected = done.rows_affected();
            return Ok(read);
        }
        let mut stream = stmt.query_with(args).fetch(&mut self.conn);
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

    /// `COPY table (columns) FROM STDIN` in PostgreSQL's binary format: one
    /// statement, so all rows or none. Each chunk of the feed is encoded and
    /// sent as it arrives, so the server parses it while the next is made.
    pub async fn bulk_insert(
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

    async fn bulk_insert_here(
        &mut self,
        table: &str,
        columns: &[String],
        feed: &mut RowFeed,
    ) -> Result<u64> {
        let target = quote_qualified(table)?;
        let cols: Vec<String> = columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Result<_>>()?;
        let probe = format!("SELECT {} FROM {target} LIMIT 0", cols.join(", "));
        let stmt = self
            .conn
            .prepare_with(sqlx::AssertSqlSafe(probe).into_sql_str(), &[])
            .await?;
        let targets: Vec<(Target, String)> = stmt
            .columns()
            .iter()
            .map(|c| (target_of(c.type_info()), c.type_info().name().to_owned()))
            .collect();
        let mut copy = self
            .conn
            .copy_in_raw(&format!(
                "COPY {target} ({}) FROM STDIN (FORMAT binary)",
                cols.join(", ")
            ))
            .await?;
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        let mut index = 0;
        loop {
            let chunk = match feed.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let _ = copy.abort("the rows could not be converted").await;
                    return Err(e);
                }
            };
            for row in &chunk {
                if let Err(e) = encode_copy_row(&mut buf, row, &targets, columns, index) {
                    let _ = copy.abort("bad value").await;
                    return Err(e);
                }
                index += 1;
            }
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(1 << 17);
        }
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        copy.send(buf).await?;
        Ok(copy.finish().await?)
    }

    /// Many parameter sets: a single-row INSERT goes as multi-row VALUES
    /// statements (one round trip each, values still bound); anything else
    /// is pipelined, a statement returning rows set by set.
    pub async fn execute_many(&mut self, sql: &ParsedSql, feed: &mut RowFeed) -> Result<u64> {
        self.pinned(
            None,
            |_| true,
            async |c| c.execute_many_here(sql, feed).await,
        )
        .await
    }

    async fn execute_many_here(&mut self, sql: &ParsedSql, feed: &mut RowFeed) -> Result<u64> {
        let mut total = 0;
        // About 2000 bound values per statement: wider statements cost the
        // server more to plan than the round trips they save (10k rows of 7
        // columns: 60 ms in chunks of 1000 rows, 54 ms in chunks of 250; 2
        // columns: equal). PostgreSQL's own limit is 65535 parameters.
        if let Some(mut batches) = ValuesBatches::new(sql, 2048) {
            // The full statement is prepared and typed once; later full
            // statements only encode their values (a value its types
            // refuse goes through `bind`, which settles them again).
            let mut typed: Option<Typed> = None;
            while let Some(batch) = batches.next(feed).await? {
                let cached = typed
                    .as_ref()
                    .filter(|_| batch.full)
                    .and_then(|t| Some((t.stmt.clone(), t.encode(batch.values)?)));
                let (stmt, args) = match cached {
                    Some(ready) => ready,
                    None => {
                        let (stmt, args) = self.bind(batch.sql, batch.values).await?;
                        if batch.full {
                            typed = Typed::of(&stmt);
                        }
                        (stmt, args)
                    }
                };
                total += stmt
                    .query_with(args)
                    .execute(&mut self.conn)
                    .await?
                    .rows_affected();
            }
            return Ok(total);
        }
        // Any other statement (UPDATE, DELETE, an upsert): prepared and typed
        // once, its parameter sets pipelined, up to PIPELINE_SETS per round
        // trip. A set its types refuse is bound afresh (the sets before it
        // go first); a statement that returns rows runs set by set.
        let mut typed: Option<Typed> = None;
        let mut sets: Vec<PgArguments> = Vec::new();
        while let Some(values) = feed.next_row().await? {
            if let Some(args) = typed.as_ref().and_then(|t| t.encode(&values)) {
                sets.push(args);
            } else {
                if let Some(t) = &typed {
                    let ready = std::mem::take(&mut sets);
                    total += self.conn.execute_pipelined(&t.stmt, ready).await?;
                }
                let (stmt, args) = self.bind(sql, &values).await?;
                typed = stmt
                    .columns()
                    .is_empty()
                    .then(|| Typed::of(&stmt))
                    .flatten();
                if typed.is_some() {
                    sets.push(args);
                } else {
                    let done = stmt.query_with(args).execute(&mut self.conn).await?;
                    total += done.rows_affected();
                }
            }
            if sets.len() >= PIPELINE_SETS {
                if let Some(t) = &typed {
                    let ready = std::mem::take(&mut sets);
                    total += self.conn.execute_pipelined(&t.stmt, ready).await?;
                }
            }
        }
        if let Some(t) = &typed {
            total += self.conn.execute_pipelined(&t.stmt, sets).await?;
        }
        Ok(total)
    }

    pub fn sql(&self) -> &'static DialectSql {
        &SQL
    }

    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// The server enforces the deadline (`statement_timeout`) and the
    /// connection stays usable; a backstop covers a server that stops
    /// answering altogether.
    pub async fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: std::time::Duration,
    ) -> Result<Rows> {
        let backstop = deadline + std::time::Duration::from_millis(150);
        with_backstop(backstop, self.query_with_timeout(statement, deadline)).await
    }

    /// A statement returning no rows but `table`'s columns.
    pub fn no_rows_of(&self, table: &str) -> Result<String> {
        Ok(format!("SELECT * FROM {} LIMIT 0", quote_qualified(table)?))
    }

    /// Standard SQL transaction control (BEGIN carries the deadline in
    /// PgBouncer mode).
    pub fn control_sql(&self, op: Control<'_>) -> Option<String> {
        Some(match op {
            Control::Begin => self.begin_sql(),
            Control::Commit => "COMMIT".to_owned(),
            Control::Rollback => "ROLLBACK".to_owned(),
            Control::Savepoint(name) => format!("SAVEPOINT {name}"),
            Control::RollbackTo(name) => format!("ROLLBACK TO SAVEPOINT {name}"),
            Control::Release(name) => format!("RELEASE SAVEPOINT {name}"),
        })
    }

    pub async fn script(&mut self, sql: &str) -> Result<()> {
        self.simple(sql).await
    }

    pub async fn simple(&mut self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    pub fn raw_fd(&self) -> Option<i32> {
        self.conn.raw_fd()
    }

    pub fn bytes_written(&self) -> Option<u64> {
        self.conn.bytes_written()
    }

    /// "cached plan must not change result type": a statement prepared
    /// before a DDL change, refused before it ran.
    pub fn stale_plan(&self, e: &Error) -> bool {
        e.sqlstate.as_deref() == Some("0A000") && e.message.contains("cached plan")
    }

    pub async fn forget_statements(&mut self) -> Result<()> {
        self.conn.clear_cached_statements().await?;
        Ok(())
    }

    pub async fn ping(&mut self) -> Result<()> {
        self.conn.ping().await?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.conn.close()).await;
    }
}

fn begin_with_timeout(timeout_ms: Option<u128>) -> String {
    match timeout_ms {
        Some(ms) => format!("BEGIN; SET LOCAL statement_timeout = {ms}"),
        None => "BEGIN".to_owned(),
    }
}

/// PostgreSQL's SQL for the parts written above the seam.
pub static SQL: DialectSql = DialectSql {
    dialect: Dialect::Postgres,
    quote: |ident| format!("\"{ident}\""),
    default_schema: None,
    table_exists: "SELECT to_regclass(:name) IS NOT NULL AS e",
    history_ddl: |table, _| {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                installed_rank integer NOT NULL PRIMARY KEY,
                version varchar(50),
                description varchar(200) NOT NULL,
                type varchar(20) NOT NULL,
                script varchar(1000) NOT NULL,
                checksum integer,
                installed_by varchar(100) NOT NULL,
                installed_on timestamp NOT NULL DEFAULT now(),
                execution_time integer NOT NULL,
                success boolean NOT NULL)"
        )
    },
    schema_has_tables: |schema| {
        let schema = schema.map_or_else(|| "current_schema()".to_owned(), |s| format!("'{s}'"));
        format!(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = {schema}) AS e"
        )
    },
    lock: "SELECT pg_advisory_lock(hashtextextended(:name, 0))",
    lock_for_transaction: Some("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
    unlock: "SELECT pg_advisory_unlock(hashtextextended(:name, 0))",
};

/// A plain identifier, quoted (`"name"`); anything else is refused rather
/// than spliced into SQL.
pub fn quote_ident(name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    {
        return Err(Error::parameter(format!(
            "'{name}' is not a plain table or column name (letters, digits, '_')"
        )));
    }
    Ok(format!("\"{name}\""))
}

/// `schema.table` or `table`, each part quoted.
pub fn quote_qualified(name: &str) -> Result<String> {
    Ok(name
        .split('.')
        .map(quote_ident)
        .collect::<Result<Vec<_>>>()?
        .join("."))
}

/// Say what to do about the common ways a connection attempt fails.
fn explain_connect_error(mut e: Error, config: &DatabaseConfig) -> Error {
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
    e.kind = crate::error::ErrorKind::Connection;
    e.maybe_executed = false;
    e.message = if advice.is_empty() {
        format!("cannot connect to {target}: {}", e.message)
    } else {
        format!("cannot connect to {target}: {advice} ({})", e.message)
    };
    e.redact(config.spec.password.as_deref())
}

/// One row of binary COPY data: the field count, then each value's length
/// and bytes (-1 for NULL) in its column's binary form.
fn encode_copy_row(
    buf: &mut Vec<u8>,
    row: &[Value],
    targets: &[(Target, String)],
    columns: &[String],
    index: usize,
) -> Result<()> {
    if row.len() != targets.len() {
        return Err(Error::parameter(format!(
            "bulk_insert: row {index} has {} values for {} columns",
            row.len(),
            targets.len()
        )));
    }
    buf.extend_from_slice(&(targets.len() as i16).to_be_bytes());
    for ((value, (target, type_name)), column) in row.iter().zip(targets).zip(columns) {
        if matches!(value, Value::Null) {
            buf.extend_from_slice(&(-1i32).to_be_bytes());
            continue;
        }
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        if let Err(m) = encode::encode(value, target, buf) {
            let why = match m {
                Mismatch::Invalid(msg) => msg,
                Mismatch::Retype => format!(
                    "a Python {} cannot be written to a {type_name} column",
                    value.kind_name()
                ),
            };
            return Err(Error::parameter(format!(
                "bulk_insert: row {index}, column {column}: {why}"
            )));
        }
        let len = (buf.len() - at - 4) as i32;
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}
