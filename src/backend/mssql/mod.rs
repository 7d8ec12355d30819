//! SQL Server through tiberius: connection setup (TLS, named instances,
//! Azure routing), queries with `@Pn` parameters, T-SQL transactions.
//!
//! A tiberius query future dropped mid-flight leaves the connection
//! desynchronized; dbflow never drops one except through a deadline, and
//! any error that can leave the wire in an unknown state marks the
//! connection broken so the pool discards it.

mod bulk;
pub mod values;

use futures_util::TryStreamExt;
use tiberius::{AuthMethod, Client, EncryptionLevel, QueryItem, SqlBrowser, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::rows::{Destination, Read, RowBuffer};
use super::sent::{Counted, WriteCount};
use super::{with_backstop, Control, DialectSql, Statement};
use crate::config::mssql::{tls_of, Encrypt, Verify};
use crate::config::DatabaseConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::feed::{RowFeed, ValuesBatches};
use crate::sql::{Dialect, ParsedSql};
use crate::value::Rows;

type Stream = Compat<Counted<TcpStream>>;

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
                e.server_line = Some(token.line());
                e
            }
            T::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            } => {
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
    let user = spec.user.as_deref().ok_or_else(|| {
        Error::config(format!(
            "{key}: no user given; SQL Server needs a login (user and password)"
        ))
    })?;
    c.authentication(AuthMethod::sql_server(
        user,
        spec.password.as_deref().unwrap_or(""),
    ));
    let tls = tls_of(spec, key)?;
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

/// Said once when a pool for `config` is created: TLS that does not verify
/// the server, when the connection string chose that.
pub fn announce(config: &DatabaseConfig) {
    let Ok(tls) = tls_of(&config.spec, &config.source_key) else {
        return;
    };
    let database = &config.name;
    match (tls.encrypt, tls.verify) {
        (Encrypt::Preferred | Encrypt::Required, Verify::Not { asked: true }) => tracing::warn!(
            database = %database,
            "TLS without certificate verification (TrustServerCertificate=true): the server is \
             not authenticated; give its CA with ca_file= to verify it"
        ),
        (Encrypt::Preferred | Encrypt::Required, Verify::Not { asked: false }) => tracing::info!(
            database = %database,
            "TLS without certificate verification (FreeTDS's default for this connection \
             string); give the server's CA with ca_file= to verify it"
        ),
        (Encrypt::LoginOnly, _) => tracing::debug!(
            database = %database,
            "TLS for the login only (encrypt=no); later traffic is not encrypted"
        ),
        _ => {}
    }
}

pub struct MsConn {
    client: Client<Stream>,
    /// The TCP socket's descriptor under any TLS, for liveness checks.
    raw_fd: Option<i32>,
    /// Bytes written on that socket, to tell a request that never left.
    written: WriteCount,
}

async fn open(config: &tiberius::Config) -> Result<MsConn> {
    // Asks SQL Browser for a named instance's port; connects directly otherwise.
    let tcp = TcpStream::connect_named(config).await?;
    tcp.set_nodelay(true)
        .map_err(|e| Error::connection(e.to_string()))?;
    #[cfg(unix)]
    let raw_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&tcp));
    #[cfg(not(unix))]
    let raw_fd = None;
    let tcp = Counted::new(tcp);
    let written = tcp.counter();
    let client = Client::connect(config.clone(), tcp.compat_write()).await?;
    Ok(MsConn {
        client,
        raw_fd,
        written,
    })
}

impl MsConn {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let mut tconfig = client_config(config)?;
        let attempt = async {
            match open(&tconfig).await {
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
                    open(&tconfig).await
                }
                other => other,
            }
        };
        attempt.await.map_err(|e| explain_connect_error(e, config))
    }

    /// One statement (batch); the rows of its first result set go to
    /// `destination` as they arrive. The first result set that has columns
    /// is the answer, as with pyodbc's first cursor result; later ones are
    /// drained.
    pub async fn query(
        &mut self,
        statement: &Statement,
        destination: Destination<'_>,
    ) -> Result<Read> {
        let (sql, params) = values::bind(&statement.sql, &statement.values)?;
        let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
        // A statement written with parameters always runs through
        // sp_executesql (its scope, e.g. for #temp tables, must not depend on
        // whether every value happened to be None).
        let mut stream = if statement.sql.names.is_empty() {
            self.client.simple_query(sql).await?
        } else {
            self.client.query(sql, &refs).await?
        };
        let mut buffer = RowBuffer::new(destination);
        let mut width = 0;
        let mut result: Option<usize> = None;
        while let Some(item) = stream.try_next().await? {
            match item {
                QueryItem::Metadata(meta) if result.is_none() => {
                    result = Some(meta.result_index());
                    buffer.start(meta.columns().iter().map(|c| c.name().to_owned()).collect());
                    width = meta.columns().len();
                }
                QueryItem::Row(row) if Some(row.result_index()) == result => {
                    let values = buffer.values();
                    values.reserve(width);
                    for (_, data) in row.cells() {
                        values.push(values::to_value(data)?);
                    }
                    if !buffer.row_done().await? {
                        break;
                    }
                }
                _ => {}
            }
        }
        Ok(buffer.finish().await)
    }

    /// TDS bulk load into `table`, in one transaction: all rows or none.
    pub async fn bulk_insert(
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
                    "bulk_insert: {table} takes {} of the {} columns given (identity and computed \
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
                    match bulk::row(&targets, index, row) {
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
    /// limits); anything else row by row.
    pub async fn execute_many(&mut self, sql: &ParsedSql, feed: &mut RowFeed) -> Result<u64> {
        let mut total = 0;
        if let Some(mut batches) = ValuesBatches::new(sql, 2_099) {
            while let Some(batch) = batches.next(feed).await? {
                let (text, params) = values::bind(batch.sql, batch.values)?;
                let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
                total += self.client.execute(text, &refs).await?.total();
            }
            return Ok(total);
        }
        while let Some(row) = feed.next_row().await? {
            let (text, params) = values::bind(sql, &row)?;
            let refs: Vec<&dyn ToSql> = params.iter().map(|p| p as &dyn ToSql).collect();
            total += self.client.execute(text, &refs).await?.total();
        }
        Ok(total)
    }

    pub fn sql(&self) -> &'static DialectSql {
        &SQL
    }

    /// tiberius reports a desynchronized wire as an error of its own.
    pub fn poisoned(&self) -> bool {
        false
    }

    /// SQL Server has no per-statement deadline the client can set without
    /// a round trip: the command timeout (or this deadline) discards the
    /// connection, which may still be working on the server.
    pub async fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: std::time::Duration,
    ) -> Result<Rows> {
        with_backstop(deadline, async {
            self.query(statement, Destination::Collect)
                .await
                .map(|r| r.rows)
        })
        .await
    }

    /// A statement returning no rows but `table`'s columns.
    pub fn no_rows_of(&self, table: &str) -> Result<String> {
        plain_name(table)?;
        Ok(format!("SELECT TOP 0 * FROM {table}"))
    }

    /// T-SQL transaction control: `SAVE TRANSACTION`, not the protocol's
    /// savepoint request; savepoints end with the transaction.
    pub fn control_sql(&self, op: Control<'_>) -> Option<String> {
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

    pub async fn before_transaction_end(&mut self) -> Result<()> {
        Ok(())
    }

    pub fn set_in_transaction(&mut self, _open: bool) {}

    pub fn transaction_pooling(&self) -> bool {
        false
    }

    pub async fn script(&mut self, sql: &str) -> Result<()> {
        self.batch(sql).await
    }

    /// Run a parameterless T-SQL batch to completion.
    pub async fn batch(&mut self, sql: &str) -> Result<()> {
        self.client.simple_query(sql).await?.into_results().await?;
        Ok(())
    }

    pub fn raw_fd(&self) -> Option<i32> {
        self.raw_fd
    }

    pub fn bytes_written(&self) -> Option<u64> {
        Some(self.written.get())
    }

    /// SQL Server recompiles a stale plan itself.
    pub fn stale_plan(&self, _e: &Error) -> bool {
        false
    }

    pub async fn forget_statements(&mut self) -> Result<()> {
        Ok(())
    }

    pub async fn ping(&mut self) -> Result<()> {
        self.batch("SELECT 1").await
    }

    pub async fn close(self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.client.close()).await;
    }
}

/// A table or column name spliced into T-SQL (identifiers cannot be bound):
/// letters, digits, `_` and `.` only; anything else is refused.
fn plain_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
    {
        return Err(Error::parameter(format!(
            "'{name}' is not a plain table or column name"
        )));
    }
    Ok(())
}

/// T-SQL for the parts written above the seam.
pub static SQL: DialectSql = DialectSql {
    dialect: Dialect::SqlServer,
    quote: |ident| format!("[{ident}]"),
    default_schema: Some("dbo"),
    table_exists:
        "SELECT CAST(CASE WHEN OBJECT_ID(:name, 'U') IS NULL THEN 0 ELSE 1 END AS bit) AS e",
    history_ddl: |table, catalog| {
        format!(
            "IF OBJECT_ID(N'{catalog}', N'U') IS NULL CREATE TABLE {table} (
                installed_rank int NOT NULL PRIMARY KEY,
                version nvarchar(50),
                description nvarchar(200) NOT NULL,
                type nvarchar(20) NOT NULL,
                script nvarchar(1000) NOT NULL,
                checksum int,
                installed_by nvarchar(100) NOT NULL,
                installed_on datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
                execution_time int NOT NULL,
                success bit NOT NULL)"
        )
    },
    schema_has_tables: |schema| {
        let schema = schema.map_or_else(|| "SCHEMA_NAME()".to_owned(), |s| format!("N'{s}'"));
        format!(
            "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM INFORMATION_SCHEMA.TABLES \
             WHERE TABLE_SCHEMA = {schema}) THEN 1 ELSE 0 END AS bit) AS e"
        )
    },
    lock: "DECLARE @r int; EXEC @r = sp_getapplock @Resource = :name, @LockMode = 'Exclusive', \
           @LockOwner = 'Session', @LockTimeout = -1; SELECT @r AS r",
    lock_for_transaction: None,
    unlock: "EXEC sp_releaseapplock @Resource = :name, @LockOwner = 'Session'",
};

fn explain_connect_error(mut e: Error, config: &DatabaseConfig) -> Error {
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
    e.kind = ErrorKind::Connection;
    e.maybe_executed = false;
    e.message = if advice.is_empty() {
        format!("cannot connect to {target}: {}", e.message)
    } else {
        format!("cannot connect to {target}: {advice} ({})", e.message)
    };
    e.redact(config.spec.password.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

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
