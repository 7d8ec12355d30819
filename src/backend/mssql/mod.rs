//! SQL Server through tiberius, by component: connection strings and TLS
//! rules (`config`), values (`values`), bulk load cells (`bulk`), the SQL
//! dialect (`dialect`) and tiberius's errors in dbflow's words (`error`).
//! This file holds the connection and its contract.
//!
//! A tiberius query future dropped mid-flight leaves the connection
//! desynchronized; dbflow never drops one except through a deadline, and
//! any error that can leave the wire in an unknown state marks the
//! connection broken so the pool discards it.

mod arrow;
mod bulk;
mod call;
pub mod config;
mod dialect;
mod error;
mod rpc;
mod statements;
mod tvp;
pub mod values;

use futures_util::TryStreamExt;
use tiberius::{AuthMethod, Client, EncryptionLevel, QueryItem, SqlBrowser, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use self::config::{tls_of, Encrypt, Verify};
use self::dialect::plain_name;
pub use self::dialect::{KIND, LEXICON};
use self::error::explain_connect_error;
use self::statements::Handles;
use super::messages::ServerMessage;
use super::rows::{Destination, Read, RowBuffer};
use super::sent::{Counted, WriteCount};
use super::{with_backstop, Backend, Control, Kind, Statement};
use crate::arrow::ArrowBuffer;
use crate::config::credentials::{self, Auth};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use crate::feed::{RowFeed, ValuesBatches};
use crate::procedure::{Call, Called};
use crate::sql::ParsedSql;
use crate::value::Value;

/// The connection's socket: dbflow's own where a blocking caller can wait
/// on it (`crate::wait`), the runtime's elsewhere.
#[cfg(unix)]
type Socket = crate::wait::Socket;
#[cfg(not(unix))]
type Socket = TcpStream;
type Stream = Compat<Counted<Socket>>;

/// Parameters in one multi-row INSERT of `execute_many`: T-SQL allows 2100.
const VALUES_PARAMS: usize = 2_099;
/// Babelfish parses and binds a statement's parameters in time that grows
/// faster than their count (measured, 4.2: 7 mixed columns, 25 rows a
/// statement 193 µs a row, 299 rows 377 µs; 2 int columns, 200 rows 40 µs,
/// 1000 rows 98 µs), so it gets smaller statements.
const BABELFISH_VALUES_PARAMS: usize = 300;

/// This backend's kind, for the specs its connection strings parse into.
fn kind() -> Kind {
    Kind(&KIND)
}

pub fn client_config(config: &DatabaseConfig) -> Result<tiberius::Config> {
    let spec = &config.spec;
    let key = &config.source_key;
    let mut c = tiberius::Config::new();
    c.host(spec.host.as_deref().unwrap_or("localhost"));
    if let Some(port) = spec.port {
        c.port(port);
    }
    if let Some(db) = &spec.database {
        c.database(db);
    }
    if let Some(instance) = spec.option("instance") {
        c.instance_name(instance);
    }
    c.application_name(spec.option("application_name").unwrap_or("dbflow"));
    let tls = tls_of(spec, key)?;
    credentials::require_tls(
        config,
        tls.encrypt == Encrypt::Required,
        "write encrypt=yes",
    )?;
    if let Some(token) = config.credentials.access_token() {
        c.authentication(AuthMethod::aad_token(token));
    } else if config.auth == Auth::Entra {
        // Validation, before a token exists: the login is the token's.
    } else {
        let user = spec.user.as_deref().ok_or_else(|| {
            Error::config(format!(
                "{key}: no user given; SQL Server needs a login (user and password)"
            ))
        })?;
        c.authentication(AuthMethod::sql_server(
            user,
            spec.password.as_deref().unwrap_or(""),
        ));
    }
    c.encryption(match tls.encrypt {
        Encrypt::Disabled => EncryptionLevel::NotSupported,
        Encrypt::LoginOnly => EncryptionLevel::Off,
        Encrypt::Preferred => EncryptionLevel::On,
        Encrypt::Required => EncryptionLevel::Required,
    });
    match &tls.verify {
        Verify::SystemRoots => {}
        Verify::CaFile(path) => c.trust_cert_ca(path),
        Verify::Not { .. } => c.trust_cert(),
    }
    if let Some(name) = spec.option("hostname_in_certificate") {
        c.hostname_in_certificate(name);
    }
    // A statement has no deadline unless one is configured (as on PostgreSQL).
    c.command_timeout(config.query_timeout);
    c.handshake_timeout(Some(config.connect_timeout));
    Ok(c)
}

pub struct MsConn {
    client: Client<Stream>,
    /// The TCP socket's descriptor under any TLS, for liveness checks.
    raw_fd: Option<i32>,
    /// Bytes written on that socket, to tell a request that never left.
    written: WriteCount,
    /// Whether the server is Babelfish (asked when first needed: a
    /// table-valued parameter, an `execute_many`).
    babelfish: Option<bool>,
    /// `table_values=` of the connection string.
    tvp: Option<tvp::Encoding>,
    /// Temporary tables made for table-valued parameters so far.
    temp_tables: u64,
    /// Statements prepared on this connection.
    handles: Handles,
}

/// `MultiSubnetFailover=Yes`: connect to every address of the server's
/// name at once and keep the first to answer, as Microsoft's drivers do
/// (an availability group listener names one address per subnet, and only
/// the primary's answers). Refused with a named instance (give its port).
fn parallel_connect(config: &DatabaseConfig) -> Result<bool> {
    let parallel = self::config::flag(&config.spec, "multi_subnet_failover", &config.source_key)?;
    if parallel && config.spec.option("instance").is_some() {
        return Err(Error::config(format!(
            "{}: MultiSubnetFailover needs the server's port, not a named instance; write \
             Server=host,port",
            config.source_key
        )));
    }
    Ok(parallel)
}

async fn connect_tcp(config: &tiberius::Config, parallel: bool) -> Result<TcpStream> {
    if !parallel {
        // Asks SQL Browser for a named instance's port; connects directly otherwise.
        return Ok(TcpStream::connect_named(config).await?);
    }
    let addr = config.get_addr();
    let lookup = |e: std::io::Error| Error::connection(format!("cannot resolve {addr}: {e}"));
    let attempts: Vec<_> = tokio::net::lookup_host(&addr)
        .await
        .map_err(lookup)?
        .map(|a| Box::pin(TcpStream::connect(a)))
        .collect();
    if attempts.is_empty() {
        return Err(Error::connection(format!("{addr} resolves to no address")));
    }
    // The losers are dropped mid-handshake: nothing was sent on them.
    futures_util::future::select_ok(attempts)
        .await
        .map(|(tcp, _)| tcp)
        .map_err(|e| Error::connection(format!("no address of {addr} answered: {e}")))
}

async fn open(config: &tiberius::Config, prepare: bool, parallel: bool) -> Result<MsConn> {
    let tcp = connect_tcp(config, parallel).await?;
    tcp.set_nodelay(true)
        .map_err(|e| Error::connection(e.to_string()))?;
    #[cfg(unix)]
    let (tcp, raw_fd) = {
        let socket = Socket::from_tokio(tcp).map_err(|e| Error::connection(e.to_string()))?;
        let fd = socket.raw_fd();
        (socket, Some(fd))
    };
    #[cfg(not(unix))]
    let raw_fd = None;
    let tcp = Counted::new(tcp);
    let written = tcp.counter();
    let client = Client::connect(config.clone(), tcp.compat_write()).await?;
    Ok(MsConn {
        client,
        raw_fd,
        written,
        babelfish: None,
        tvp: None,
        temp_tables: 0,
        handles: Handles::new(prepare, statements::CAPACITY),
    })
}

impl Backend for MsConn {
    async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let mut tconfig = client_config(config)?;
        // SQL Server re-plans a prepared statement whose tables changed
        // (so does Babelfish, tested): no stale plans to forget.
        let prepare = config.prepared_statements;
        let parallel = parallel_connect(config)?;
        let attempt = async {
            match open(&tconfig, prepare, parallel).await {
                // Azure SQL gateways redirect to the database's own node.
                Err(e) if e.message.starts_with("the server redirected to ") => {
                    let target = e
                        .message
                        .trim_start_matches("the server redirected to ")
                        .to_owned();
                    if let Some((host, port)) = target.rsplit_once(':') {
                        tconfig.host(host);
                        if let Ok(p) = port.parse() {
                            tconfig.port(p);
                        }
                    }
                    open(&tconfig, prepare, parallel).await
                }
                other => other,
            }
        };
        let mut conn = attempt
            .await
            .map_err(|e| explain_connect_error(e, config))?;
        conn.tvp = config::table_values(&config.spec, &config.source_key)?;
        Ok(conn)
    }

    fn validate(config: &DatabaseConfig) -> Result<()> {
        config::table_values(&config.spec, &config.source_key)?;
        parallel_connect(config)?;
        client_config(config).map(|_| ())
    }

    /// TLS that does not verify the server, when the connection string
    /// chose that.
    fn announce(config: &DatabaseConfig) {
        let Ok(tls) = tls_of(&config.spec, &config.source_key) else {
            return;
        };
        let database = &config.name;
        match (tls.encrypt, tls.verify) {
            (Encrypt::Preferred | Encrypt::Required, Verify::Not { asked: true }) => {
                tracing::warn!(
                    database = %database,
                    "TLS without certificate verification (TrustServerCertificate=true): the server is \
                     not authenticated; give its CA with ca_file= to verify it"
                )
            }
            (Encrypt::Preferred | Encrypt::Required, Verify::Not { asked: false }) => {
                tracing::info!(
                    database = %database,
                    "TLS without certificate verification (FreeTDS's default for this connection \
                     string); give the server's CA with ca_file= to verify it"
                )
            }
            (Encrypt::LoginOnly, _) => tracing::debug!(
                database = %database,
                "TLS for the login only (encrypt=no); later traffic is not encrypted"
            ),
            _ => {}
        }
    }

    /// One statement (batch); its result sets go to the row buffer as they
    /// arrive (the buffer keeps the first, or all for
    /// [`Destination::Sets`]). Table-valued parameters go by this
    /// backend's own RPC.
    async fn query(&mut self, statement: &Statement, destination: Destination<'_>) -> Result<Read> {
        if statement
            .values
            .iter()
            .any(|v| matches!(v, Value::Table(_)))
        {
            if matches!(destination, Destination::Arrow { .. }) {
                return Err(Error::parameter(
                    "Arrow reads do not take TableValue parameters; read with \
                     execute_query, or load the rows into a table first",
                ));
            }
            let prepared = self.prepare_rpc(&statement.sql, &statement.values).await?;
            let read = self.run_rpc(prepared, destination).await?;
            return match read.failed {
                Some(e) => Err(e),
                None => Ok(read.read),
            };
        }
        let (sql, params) = values::bind(&statement.sql, &statement.values)?;
        let sql = statement.sql.commented(sql);
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
        self.unprepare_evicted().await?;
        // A statement written with parameters always runs as a parameterized
        // statement (its scope, e.g. for #temp tables, must not depend on
        // whether every value happened to be None): by its handle once
        // prepared, else through sp_executesql. A commented statement is not
        // prepared: a handle runs without text, so the comment would not show.
        let mut preparing = None;
        let plan = match statement.sql.comment {
            None if !statement.sql.names.is_empty() => self.plan(&sql, &refs),
            _ => None,
        };
        let mut stream = if statement.sql.names.is_empty() {
            self.client.simple_query(sql).await?
        } else if let Some(plan) = plan {
            preparing = plan.new_key;
            self.client
                .query_prepared(plan.handle, sql, &plan.declared, &refs)
                .await?
        } else {
            self.client.query(sql, &refs).await?
        };
        if let Destination::Arrow { every, to } = destination {
            let read = read_arrow(&mut stream, every, to).await;
            drop(stream);
            self.keep_prepared(preparing);
            return read;
        }
        let mut buffer = RowBuffer::new(destination);
        let mut width = 0;
        while let Some(item) = stream.try_next().await? {
            match item {
                QueryItem::Metadata(meta) => {
                    buffer.start(meta.columns().iter().map(|c| c.name().to_owned()).collect());
                    width = meta.columns().len();
                }
                QueryItem::Row(row) => {
                    let values = buffer.values();
                    values.reserve(width);
                    for (_, data) in row.cells() {
                        values.push(values::to_value(data)?);
                    }
                    if !buffer.row_done().await? {
                        break;
                    }
                }
            }
        }
        drop(stream);
        self.keep_prepared(preparing);
        Ok(buffer.finish().await)
    }

    /// The procedure as one batch (see `call`), its answer read whole.
    async fn call(&mut self, call: &Call) -> Result<Called> {
        let (sql, values) = call::batch(call);
        let prepared = self.prepare_rpc(&sql, &values).await?;
        let read = self.run_rpc(prepared, Destination::Sets).await?;
        let called = call::called(call, read.read.sets, read.rowcounts);
        match read.failed {
            None => Ok(called),
            Some(mut e) => {
                e.detail_mut().partial = Some(called);
                Err(e)
            }
        }
    }

    fn take_messages(&mut self) -> (Vec<ServerMessage>, u64) {
        let (kept, dropped) = self.client.take_messages();
        let messages = kept
            .into_iter()
            .map(|m| ServerMessage {
                text: m.message,
                warning: false,
            })
            .collect();
        (messages, dropped)
    }

    /// TDS bulk load into `table`, in one transaction: all rows or none.
    async fn bulk_insert(
        &mut self,
        table: &str,
        columns: &[String],
        feed: &mut RowFeed,
    ) -> Result<u64> {
        for name in std::iter::once(table).chain(columns.iter().map(String::as_str)) {
            plain_name(name)?;
        }
        let column_refs: Vec<&str> = columns.iter().map(String::as_str).collect();
        // Bulk load has no statement to roll back: wrap it in a transaction.
        self.batch("BEGIN TRANSACTION").await?;
        let outcome = async {
            let mut request = self.client.bulk_insert_columns(table, &column_refs).await?;
            let targets = request.columns().to_vec();
            if targets.len() != columns.len() {
                return Err(Error::parameter(format!(
                    "{table} takes {} of the {} columns given (identity and computed \
                     columns are filled by the server); leave those out",
                    targets.len(),
                    columns.len()
                )));
            }
            // A row that cannot be made ends the load properly (finalize),
            // not midway: the wire stays in step, and the transaction
            // around it is rolled back.
            let mut failed = None;
            let mut index = 0;
            'feed: loop {
                let chunk = match feed.next_chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                for row in &chunk {
                    match bulk::row(&targets, index, row, feed) {
                        Ok(token) => request.send(token).await?,
                        Err(e) => {
                            failed = Some(e);
                            break 'feed;
                        }
                    }
                    index += 1;
                }
            }
            let loaded = request.finalize().await;
            match failed {
                Some(e) => Err(e),
                None => Ok::<u64, Error>(loaded?.total()),
            }
        }
        .await;
        match outcome {
            Ok(n) => {
                self.batch("COMMIT TRANSACTION").await?;
                Ok(n)
            }
            Err(e) => {
                let _ = self.batch("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION").await;
                Err(e)
            }
        }
    }

    /// Many parameter sets: a single-row INSERT goes as multi-row VALUES
    /// chunks (at most 1000 rows and 2100 parameters per statement, T-SQL's
    /// limits; fewer on Babelfish, [`BABELFISH_VALUES_PARAMS`]); anything
    /// else row by row.
    async fn execute_many(&mut self, sql: &ParsedSql, feed: &mut RowFeed) -> Result<u64> {
        let mut total = 0;
        let params = if self.is_babelfish().await? {
            BABELFISH_VALUES_PARAMS
        } else {
            VALUES_PARAMS
        };
        if let Some(mut batches) = ValuesBatches::new(sql, params) {
            while let Some(batch) = batches.next(feed).await? {
                let (text, params) = values::bind(batch.sql, batch.values)?;
                total += self.execute(text, &params).await?;
            }
            return Ok(total);
        }
        while let Some(row) = feed.next_row().await? {
            let (text, params) = values::bind(sql, &row)?;
            total += self.execute(text, &params).await?;
        }
        Ok(total)
    }

    /// SQL Server has no per-statement deadline the client can set without
    /// a round trip: the command timeout (or this deadline) discards the
    /// connection, which may still be working on the server.
    async fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: std::time::Duration,
    ) -> Result<Read> {
        with_backstop(deadline, self.query(statement, Destination::Collect)).await
    }

    /// A statement returning no rows but `table`'s columns.
    fn no_rows_of(&self, table: &str) -> Result<String> {
        plain_name(table)?;
        Ok(format!("SELECT TOP 0 * FROM {table}"))
    }

    /// T-SQL transaction control: `SAVE TRANSACTION`, not the protocol's
    /// savepoint request; savepoints end with the transaction.
    fn control_sql(&self, op: Control<'_>) -> Option<String> {
        Some(match op {
            Control::Begin => "BEGIN TRANSACTION".to_owned(),
            Control::Commit => "COMMIT TRANSACTION".to_owned(),
            // Some errors (a deadlock, XACT_ABORT) already ended it on the server.
            Control::Rollback => "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION".to_owned(),
            Control::Savepoint(name) => format!("SAVE TRANSACTION {name}"),
            Control::RollbackTo(name) => format!("ROLLBACK TRANSACTION {name}"),
            Control::Release(_) => return None,
        })
    }

    async fn script(&mut self, sql: &str) -> Result<()> {
        self.batch(sql).await
    }

    fn raw_fd(&self) -> Option<i32> {
        self.raw_fd
    }

    fn bytes_written(&self) -> Option<u64> {
        Some(self.written.get())
    }

    async fn ping(&mut self) -> Result<()> {
        self.batch("SELECT 1").await
    }

    async fn close(self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.client.close()).await;
    }
}

/// See [`MsConn::plan`].
struct Plan {
    handle: Option<i32>,
    new_key: Option<String>,
    /// The values' declarations, as sent.
    declared: String,
}

impl MsConn {
    /// Keep the handle a statement was just prepared under (its response
    /// read to the end).
    fn keep_prepared(&mut self, key: Option<String>) {
        if let (Some(key), Some(handle)) = (key, self.client.take_prepared_handle()) {
            tracing::debug!(handle, "statement prepared");
            self.handles.insert(key, handle);
        }
    }

    /// Unprepare the statements the cache let go of and those whose
    /// preparing response was cut short, before the next request.
    async fn unprepare_evicted(&mut self) -> Result<()> {
        for orphan in self.client.take_orphaned_handles() {
            self.handles.evict(orphan);
        }
        match self.handles.unprepare_sql() {
            Some(sql) => {
                tracing::debug!("statements unprepared: {sql}");
                self.batch(&sql).await
            }
            None => Ok(()),
        }
    }

    /// One parameterized statement's rows affected, prepared as `query`
    /// prepares it.
    async fn execute(&mut self, sql: String, params: &[values::Param]) -> Result<u64> {
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
        self.unprepare_evicted().await?;
        let Some(plan) = self.plan(&sql, &refs) else {
            return Ok(self.client.execute(sql, &refs).await?.total());
        };
        let done = self
            .client
            .execute_prepared(plan.handle, sql, &plan.declared, &refs)
            .await?
            .total();
        self.keep_prepared(plan.new_key);
        Ok(done)
    }

    /// How a parameterized statement runs when statements are prepared: by
    /// the handle it was prepared under, or prepared now (`new_key`: where
    /// to keep its handle). `None`: through `sp_executesql`.
    fn plan(&mut self, sql: &str, refs: &[&dyn ToSql]) -> Option<Plan> {
        if !self.handles.enabled() {
            return None;
        }
        let declared = Client::<Stream>::declare_params(refs);
        let key = Handles::key(sql, &declared);
        let handle = self.handles.get(&key);
        Some(Plan {
            handle,
            new_key: handle.is_none().then_some(key),
            declared,
        })
    }

    /// Run a parameterless T-SQL batch to completion.
    pub async fn batch(&mut self, sql: &str) -> Result<()> {
        self.client.simple_query(sql).await?.into_results().await?;
        Ok(())
    }

    /// Whether the server is Babelfish (asked once per connection).
    async fn is_babelfish(&mut self) -> Result<bool> {
        if let Some(known) = self.babelfish {
            return Ok(known);
        }
        let row = self
            .client
            .simple_query("SELECT @@VERSION")
            .await?
            .into_row()
            .await?;
        let version = row.as_ref().and_then(|r| r.get::<&str, _>(0)).unwrap_or("");
        let babelfish = version.contains("Babelfish");
        self.babelfish = Some(babelfish);
        Ok(babelfish)
    }
}

/// The first result set that has columns, as Arrow batches (see
/// [`SqlServerConn::query`]). A column or value without a mapping ends
/// the read with the rest of the stream drained, so the connection stays
/// in step.
async fn read_arrow(
    stream: &mut tiberius::QueryStream<'_>,
    every: usize,
    to: crate::arrow::ArrowTo<'_>,
) -> Result<Read> {
    let mut buffer: Option<ArrowBuffer<'_, arrow::MsArrowColumn>> = None;
    let mut to = Some(to);
    let mut result: Option<usize> = None;
    let mut result_sets = 0;
    let mut read = 0u64;
    let mut failed: Option<Error> = None;
    while let Some(item) = stream.try_next().await? {
        if let QueryItem::Metadata(_) = &item {
            result_sets += 1;
        }
        if failed.is_some() {
            continue;
        }
        match item {
            QueryItem::Metadata(meta) if result.is_none() => {
                result = Some(meta.result_index());
                match arrow::plan(meta.columns()) {
                    Ok((schema, columns)) => {
                        if let Some(to) = to.take() {
                            buffer = Some(ArrowBuffer::new(schema, columns, every, to));
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            QueryItem::Row(row) if Some(row.result_index()) == result => {
                let Some(buffer) = buffer.as_mut() else {
                    continue;
                };
                for (column, (_, data)) in buffer.columns().iter_mut().zip(row.cells()) {
                    if let Err(e) = column.append(data) {
                        failed = Some(e);
                        break;
                    }
                }
                read += 1;
                if failed.is_none() && !buffer.row_done().await? {
                    // The consumer went away: the seam discards the
                    // connection, unread rows and all.
                    let batches = crate::arrow::Batches {
                        schema: buffer.schema(),
                        batches: Vec::new(),
                    };
                    return Ok(Read::arrow(batches, false, read, result_sets));
                }
            }
            _ => {}
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let buffer = match (buffer, to) {
        (Some(b), _) => b,
        // No result set with columns: an empty result without columns.
        (None, Some(to)) => {
            ArrowBuffer::new(crate::arrow::schema(Vec::new()), Vec::new(), every, to)
        }
        (None, None) => return Err(Error::query("a result set was planned but not read")),
    };
    let (batches, complete) = buffer.finish().await?;
    Ok(Read::arrow(batches, complete, read, result_sets))
}
