//! The seam between dbflow and a database driver. Everything above it —
//! pools, transactions, retries, health, metrics, migrations, bindings — is
//! written once against [`Connection`]. A backend is one module that
//! implements [`Backend`] and describes itself in a [`KindInfo`], and one
//! line in [`backends!`]'s list below.

pub mod contract;
#[cfg(test)]
pub mod fake;
pub mod kind;
pub mod liveness;
pub mod messages;
pub mod mssql;
pub mod postgres;
pub mod rows;
pub mod sent;
pub mod silence;
pub mod targets;

use std::future::Future;
use std::time::Duration;

pub use contract::Backend;
pub use kind::{Kind, KindInfo};

use crate::arrow::{ArrowTo, Batches};
use crate::config::DatabaseConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::feed::RowFeed;
use crate::procedure::{Call, Called};
use crate::sql::{Dialect, ParsedSql};
use crate::value::{Rows, Value};
use arrow_array::RecordBatch;
use rows::{BatchFn, Destination, Read};

/// One statement ready to run: parsed SQL and its values in parameter order.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: ParsedSql,
    pub values: Vec<Value>,
}

/// The registered backends: for each, the driver enum's variant and its
/// module's connection type (which implements [`Backend`]) and `KIND`.
/// From this one list come the enum the seam dispatches on, [`KINDS`], and
/// the dispatch itself (`$d` is a literal `$` for the inner macros). An
/// entry may carry attributes (`#[cfg(test)]`), which follow it into the
/// enum, the registry and every dispatch.
macro_rules! backends {
    ($d:tt $($(#[$attr:meta])* $variant:ident: $module:ident::$conn:ident),+ $(,)?) => {
        enum Driver {
            // Boxed: drivers are large, and connections live in pool slots.
            $($(#[$attr])* $variant(Box<$module::$conn>)),+
        }

        /// Every backend configuration can name, in registration order.
        pub static KINDS: &[&KindInfo] = &[$($(#[$attr])* &$module::KIND),+];

        /// Call the same operation on whichever backend a driver holds.
        macro_rules! dispatch {
            ($d driver:expr, $d c:ident => $d call:expr) => {
                match $d driver {
                    $($(#[$attr])* Driver::$variant($d c) => $d call,)+
                }
            };
        }

        /// Call an associated function of `kind`'s backend (`$b` names its
        /// connection type); an unregistered kind is an error.
        macro_rules! for_kind {
            ($d kind:expr, $d b:ident => $d call:expr) => {{
                let kind: Kind = $d kind;
                let mut done = None;
                // `let () = if ...;`: an attribute may sit on a statement,
                // not (on stable Rust) on an `if` expression.
                $(
                    $(#[$attr])*
                    let () = if done.is_none() && kind == Kind(&$module::KIND) {
                        type $d b = $module::$conn;
                        done = Some($d call);
                    };
                )+
                done.ok_or_else(|| {
                    Error::config(format!(
                        "no backend is registered for the database type {kind:?}"
                    ))
                })
            }};
        }

        async fn open(config: &DatabaseConfig) -> Result<Driver> {
            $(
                $(#[$attr])*
                let () = if config.database_type == Kind(&$module::KIND) {
                    let conn = <$module::$conn as Backend>::connect(config).await?;
                    return Ok(Driver::$variant(Box::new(conn)));
                };
            )+
            Err(Error::config(format!(
                "no backend is registered for the database type {:?}",
                config.database_type
            )))
        }
    };
}

backends! {
    $
    Postgres: postgres::PgConn,
    SqlServer: mssql::MsConn,
    // In-memory, for `cargo test` only (see `fake`'s module doc).
    #[cfg(test)]
    Fake: fake::FakeConn,
}

/// A live connection of any backend plus what the pool needs to know.
pub struct Connection {
    driver: Driver,
    kind: Kind,
    /// When this connection last finished a round trip successfully.
    pub last_used: tokio::time::Instant,
    /// Set when an error left the connection in an unknown state; the pool
    /// discards it instead of handing it out again.
    pub broken: bool,
    pub in_transaction: bool,
    /// Set while an operation is on the wire; still set when its future was
    /// dropped before finishing, so the pool discards the connection.
    pub in_flight: bool,
    /// Set while the COMMIT that ends a transaction is on the wire.
    committing: bool,
    /// The pool's permit for one server session, held until the connection
    /// is gone (closed, or dropped), so a replacement never overlaps it.
    pub session: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The database's name, for the server's messages in the log.
    database: std::sync::Arc<str>,
    /// The server's messages of the operation on the wire.
    messages: messages::Messages,
    /// Those of the last operation, for the caller that returns them.
    last_messages: Vec<String>,
    /// `<DB>_SOCKET_TIMEOUT`: the kernel ends the connection when the server
    /// acknowledged nothing for this long ([`silence`]).
    silence_deadline: Option<std::time::Duration>,
    /// `<DB>_POOL_RECYCLE` ±10%, drawn once per connection so a pool's
    /// connections, opened together, are not all replaced together.
    pub lifetime: Option<std::time::Duration>,
    /// `target_session_attrs` asked for writes: a session the server has
    /// since made read-only (a demoted primary) is given up.
    writes_only: bool,
}

/// SQLSTATE 25006: a write in a read-only transaction (PostgreSQL; a
/// standby answers every write with it).
const READ_ONLY_TRANSACTION: &str = "25006";

/// A transaction-control step; each backend spells it in its own SQL.
#[derive(Clone, Copy)]
pub enum Control<'a> {
    Begin,
    Commit,
    Rollback,
    Savepoint(&'a str),
    RollbackTo(&'a str),
    Release(&'a str),
}

/// Call an operation of this connection's backend, keeping the
/// bookkeeping honest: `in_flight` while it runs, and every failure judged
/// by [`Connection::note`].
macro_rules! on_driver {
    ($self:expr, $c:ident => $call:expr) => {{
        $self.in_flight = true;
        let written = $self.bytes_written();
        let result = dispatch!(&mut $self.driver, $c => $call);
        $self.poisoned_check();
        $self.collect_messages();
        $self.note(result, written)
    }};
}

/// Read-only access to the backend (no round trip, no bookkeeping).
macro_rules! driver_ref {
    ($self:expr, $c:ident => $call:expr) => {
        dispatch!(&$self.driver, $c => $call)
    };
}

/// The SQL a backend speaks for the parts written above the seam
/// (statements' placeholders, migration history and locks, scripts), as a
/// table of its own.
pub struct DialectSql {
    /// How its SQL is lexed and its placeholders are written.
    pub dialect: Dialect,
    /// A migration script split into what is sent, each part with the
    /// 1-based line it starts on.
    pub split_script: fn(&str) -> Vec<(usize, String)>,
    /// Quote one identifier.
    pub quote: fn(&str) -> String,
    /// The schema a table without one lives in, as catalog names spell it.
    pub default_schema: Option<&'static str>,
    /// One row, one bool column `e`: does the table `:name` exist?
    pub table_exists: &'static str,
    /// The migration history table, created if missing: (qualified, catalog name).
    pub history_ddl: fn(&str, &str) -> String,
    /// One row, one bool column `e`: does the schema (given, a plain
    /// identifier, or the session's default) hold any table or view?
    pub schema_has_tables: fn(Option<&str>) -> String,
    /// Take the session-wide migration lock `:name` (waits); a row whose
    /// first value is a negative int means refused.
    pub lock: &'static str,
    /// The same lock, held until the transaction ends (when supported).
    pub lock_for_transaction: Option<&'static str>,
    pub unlock: &'static str,
    /// Test-database upkeep for `dbflow.testing` (names are plain
    /// identifiers, checked by the caller): create a database, drop it with
    /// its sessions ended, and empty tables with their identities reset.
    pub create_database: fn(&str) -> Vec<String>,
    pub drop_database: fn(&str) -> Vec<String>,
    pub empty_tables: fn(&[String]) -> Vec<String>,
    /// The SQLSTATE a statement stopped at its deadline carries, if the
    /// server reports one (the mocks in `dbflow.testing` raise the same).
    pub timeout_sqlstate: Option<&'static str>,
    /// One row: is the session read-only, is the server a standby (two
    /// bools), for `target_session_attrs`; `None`: the backend cannot tell.
    pub session_role: Option<&'static str>,
}

impl Connection {
    /// Open a connection to the server the configuration names, or to the
    /// first of several that gives the session it asks for ([`targets`]).
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let checkable = config.database_type.sql().session_role.is_some();
        let plan = targets::Plan::of(&config.spec, &config.source_key, checkable)?;
        let mut conn = if plan.is_direct() {
            Self::connect_to(config).await?
        } else {
            Self::choose(config, &plan).await?
        };
        conn.writes_only = plan.attrs.needs_writes();
        Ok(conn)
    }

    /// libpq's rules: each server in turn, each within the connect timeout;
    /// a server that fails or gives the wrong kind of session is skipped.
    async fn choose(config: &DatabaseConfig, plan: &targets::Plan) -> Result<Self> {
        let mut refusals = targets::Refusals::default();
        for &strict in plan.passes() {
            for endpoint in &plan.endpoints {
                let mut one = config.clone();
                one.spec = config.spec.at(endpoint);
                let mut conn = match Self::connect_to(&one).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        refusals.failed(e);
                        continue;
                    }
                };
                if plan.attrs == targets::SessionAttrs::Any {
                    return Ok(conn);
                }
                match conn.session_role().await {
                    Ok(role) if plan.accepts(role, strict) => return Ok(conn),
                    Ok(role) => {
                        refusals.mismatched(endpoint, role);
                        conn.close().await;
                    }
                    Err(e) => refusals.failed(e),
                }
            }
        }
        Err(refusals.into_error(plan))
    }

    /// Whether the session is read-only and the server a standby.
    async fn session_role(&mut self) -> Result<targets::SessionRole> {
        let text = self
            .sql()
            .session_role
            .ok_or_else(|| Error::config("this database type cannot tell a session's role"))?;
        let rows = self
            .query(&Statement {
                sql: crate::sql::parse(text, self.dialect()),
                values: Vec::new(),
            })
            .await?;
        match rows.values.as_slice() {
            [Value::Bool(read_only), Value::Bool(standby)] => Ok(targets::SessionRole {
                read_only: *read_only,
                standby: *standby,
            }),
            other => Err(Error::query(format!(
                "the session's role came back as {other:?}, not two booleans"
            ))),
        }
    }

    /// One server. Its secret is fetched here, per server and per
    /// connection, when it rotates (an RDS token is signed for one host).
    async fn connect_to(config: &DatabaseConfig) -> Result<Self> {
        let config = &*crate::config::credentials::for_connection(config).await?;
        let driver = tokio::time::timeout(config.connect_timeout, open(config))
            .await
            .map_err(|_| {
                Error::connection(format!(
                    "no answer from {} within {:?} (connect timeout); check the host, port and firewall",
                    config.spec.redacted(),
                    config.connect_timeout
                ))
            })??;
        let mut conn = Connection {
            driver,
            kind: config.database_type,
            last_used: tokio::time::Instant::now(),
            broken: false,
            in_transaction: false,
            in_flight: false,
            committing: false,
            session: None,
            database: config.name.as_str().into(),
            messages: messages::Messages::default(),
            last_messages: Vec::new(),
            silence_deadline: config.socket_timeout,
            lifetime: config
                .pool
                .recycle
                .map(|age| age.mul_f64(0.9 + 0.2 * fastrand::f64())),
            writes_only: false,
        };
        if let (Some(deadline), Some(fd)) = (conn.silence_deadline, conn.raw_fd()) {
            silence::watch(fd, deadline).map_err(|e| {
                Error::connection(format!(
                    "could not set the socket's dead-peer deadline ({}): {e}",
                    config.spec.redacted()
                ))
            })?;
        }
        // The login's own messages ("Changed database context to ...").
        let (login, _) = dispatch!(&mut conn.driver, c => c.take_messages());
        for m in login {
            tracing::debug!(database = %conn.database, "at login: {}", m.text);
        }
        Ok(conn)
    }

    /// The server's messages of the operation that just ended: logged (up
    /// to a cap) and kept for [`Connection::take_messages`].
    fn collect_messages(&mut self) {
        let (taken, dropped) = dispatch!(&mut self.driver, c => c.take_messages());
        if taken.is_empty() && dropped == 0 && self.last_messages.is_empty() {
            return;
        }
        self.messages.add(&self.database, taken, dropped);
        self.last_messages = self.messages.finish(&self.database);
    }

    /// The server's messages of the last operation, in order.
    pub fn take_messages(&mut self) -> Vec<String> {
        std::mem::take(&mut self.last_messages)
    }

    /// Check the driver-level settings (URL options, TLS) without I/O, so a
    /// misconfiguration surfaces when the manager is created.
    pub fn validate(config: &DatabaseConfig) -> Result<()> {
        let checkable = config.database_type.sql().session_role.is_some();
        targets::Plan::of(&config.spec, &config.source_key, checkable)?;
        for_kind!(config.database_type, B => B::validate(config))?
    }

    /// Said once per pool, when it is created: how this configuration
    /// connects, where that deserves a word (TLS left unverified).
    pub fn announce(config: &DatabaseConfig) {
        let _ = for_kind!(config.database_type, B => B::announce(config));
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn dialect(&self) -> Dialect {
        self.kind.dialect()
    }

    /// Whether the server has closed this connection, asked of its socket
    /// without I/O (see [`liveness`]).
    pub fn liveness(&self) -> liveness::Liveness {
        liveness::check(self.raw_fd())
    }

    fn raw_fd(&self) -> Option<i32> {
        driver_ref!(self, c => c.raw_fd())
    }

    pub fn sql(&self) -> &'static DialectSql {
        self.kind.sql()
    }

    /// A driver that found its wire out of step marks the connection broken.
    fn poisoned_check(&mut self) {
        if driver_ref!(self, c => c.poisoned()) {
            self.broken = true;
        }
    }

    /// Bytes the kernel has accepted for sending on this connection's
    /// socket (`None`: not counted).
    fn bytes_written(&self) -> Option<u64> {
        driver_ref!(self, c => c.bytes_written())
    }

    /// A connection-level failure, or a client-side deadline that fired with
    /// the request on the wire, leaves the connection unusable. Whether a
    /// failed request may have reached the server is decided here, once for
    /// every backend, from the bytes written since `written_before`
    /// ([`sent::settle`]).
    fn note<T>(&mut self, mut result: Result<T>, written_before: Option<u64>) -> Result<T> {
        self.in_flight = false;
        if let Err(e) = &mut result {
            if e.messages().is_empty() && !self.last_messages.is_empty() {
                e.detail_mut().messages = self.last_messages.clone();
            }
        }
        match &mut result {
            Ok(_) => self.last_used = tokio::time::Instant::now(),
            Err(e) if e.kind == ErrorKind::Connection => {
                let phase = match (self.committing, self.in_transaction) {
                    (true, _) => sent::Phase::Commit,
                    (false, true) => sent::Phase::InTransaction,
                    (false, false) => sent::Phase::Autocommit,
                };
                sent::settle(e, written_before, self.bytes_written(), phase);
                self.name_the_silence(e);
                self.broken = true;
            }
            Err(e) if e.kind == ErrorKind::Timeout && e.maybe_executed => self.broken = true,
            Err(e) if self.writes_only && e.sqlstate.as_deref() == Some(READ_ONLY_TRANSACTION) => {
                // The server was made a standby (a failover): the pool must
                // reconnect to the new primary. The statement was refused
                // whole, so outside a transaction it may run again there.
                self.broken = true;
                e.transient = !self.in_transaction;
                e.message.push_str(
                    "; the server is read-only now (a failover?), so this connection is \
                     discarded and the next one goes to the read-write server",
                );
            }
            Err(_) => {}
        }
        result
    }

    /// A connection the kernel ended because the server acknowledged
    /// nothing for the whole deadline: say so, rather than the driver's
    /// "timed out" or "broken pipe".
    fn name_the_silence(&self, e: &mut Error) {
        let Some(deadline) = self.silence_deadline else {
            return;
        };
        if silence::stopped_answering(self.raw_fd().and_then(silence::unheard_for), deadline) {
            e.message = format!(
                "the server stopped answering: nothing came back for {}s (socket_timeout), \
                 so the network path or the server is down; {}",
                deadline.as_secs_f64(),
                e.message
            );
        }
    }

    pub async fn query(&mut self, statement: &Statement) -> Result<Rows> {
        let first = on_driver!(self, c => c.query(statement, Destination::Collect).await);
        let read = match first {
            Err(e) if self.stale_plan(&e) => {
                self.forget_statements().await?;
                on_driver!(self, c => c.query(statement, Destination::Collect).await)
            }
            other => other,
        };
        self.one_result_set(read).map(|r| r.rows)
    }

    /// Every result set of a statement or batch, in order.
    pub async fn query_sets(&mut self, statement: &Statement) -> Result<Vec<Rows>> {
        let first = on_driver!(self, c => c.query(statement, Destination::Sets).await);
        match first {
            Err(e) if self.stale_plan(&e) => {
                self.forget_statements().await?;
                on_driver!(self, c => c.query(statement, Destination::Sets).await)
            }
            other => other,
        }
        .map(|r| r.sets)
    }

    /// A stored procedure's call in one round trip.
    pub async fn call(&mut self, call: &Call) -> Result<Called> {
        on_driver!(self, c => c.call(call).await)
    }

    /// A read that expected one result set and found several: an error,
    /// raised once the row loop drained the wire (the connection stays
    /// usable). Its first result set already reached a streaming consumer.
    fn one_result_set(&mut self, read: Result<Read>) -> Result<Read> {
        match read {
            Ok(r) if r.result_sets > 1 => {
                let mut e = Error::multiple_result_sets(r.result_sets);
                e.detail_mut().messages = self.last_messages.clone();
                Err(e)
            }
            other => other,
        }
    }

    /// A statement prepared before a DDL change (a migration altered a view
    /// or table) that the server refuses to run with its old result shape.
    /// Outside a transaction nothing ran and nothing is aborted: the caller
    /// may prepare it afresh, once (asyncpg does the same).
    fn stale_plan(&self, e: &Error) -> bool {
        !self.in_transaction && driver_ref!(self, c => c.stale_plan(e))
    }

    /// Drop the statements prepared on this connection.
    async fn forget_statements(&mut self) -> Result<()> {
        on_driver!(self, c => c.forget_statements().await)
    }

    /// One statement whose rows are handed to `to` in batches of `every` as
    /// they are decoded; returns the rest (`rows_affected` counts all).
    pub async fn query_in_batches(
        &mut self,
        statement: &Statement,
        every: usize,
        to: BatchFn<'_>,
    ) -> Result<Rows> {
        let mut taker_failed = false;
        let mut guarded = |rows: Rows| {
            let r = to(rows);
            taker_failed |= r.is_err();
            r
        };
        let destination = Destination::Flush {
            every,
            to: &mut guarded,
        };
        let mut result = on_driver!(self, c => c.query(statement, destination).await);
        if matches!(&result, Err(e) if self.stale_plan(e)) {
            // Refused before any row was read: nothing was handed over yet.
            self.forget_statements().await?;
            let destination = Destination::Flush {
                every,
                to: &mut guarded,
            };
            result = on_driver!(self, c => c.query(statement, destination).await);
        }
        if taker_failed {
            // The read stopped mid-result: unread rows are on the wire.
            self.broken = true;
        }
        self.one_result_set(result).map(|r| r.rows)
    }

    /// One statement that must stop at `deadline`: where the server can
    /// enforce it (PostgreSQL) the connection stays usable; otherwise a
    /// client-side deadline discards it. Either way a backstop covers a
    /// server that stops answering altogether.
    pub async fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: Duration,
    ) -> Result<Rows> {
        let read = on_driver!(self, c => c.query_with_deadline(statement, deadline).await);
        self.one_result_set(read).map(|r| r.rows)
    }

    /// Stream the statement's rows in batches into `sink` (bounded), so a
    /// result of any size is read with bounded memory. A consumer that stops
    /// early leaves unread rows on the wire: the connection is discarded.
    pub async fn stream(
        &mut self,
        statement: &Statement,
        batch_size: usize,
        sink: &tokio::sync::mpsc::Sender<Result<Rows>>,
    ) -> Result<()> {
        let destination = || Destination::Channel {
            every: batch_size,
            to: sink,
        };
        let read = on_driver!(self, c => c.query(statement, destination()).await);
        let read = self.one_result_set(read)?;
        if !read.complete {
            self.broken = true;
        }
        Ok(())
    }

    /// One statement's result as Arrow batches of `every` rows, kept.
    pub async fn query_arrow(&mut self, statement: &Statement, every: usize) -> Result<Batches> {
        let keep = || Destination::Arrow {
            every,
            to: ArrowTo::Keep,
        };
        let read = match on_driver!(self, c => c.query(statement, keep()).await) {
            Err(e) if self.stale_plan(&e) => {
                self.forget_statements().await?;
                on_driver!(self, c => c.query(statement, keep()).await)
            }
            other => other,
        };
        self.one_result_set(read)?.arrow.ok_or_else(no_arrow)
    }

    /// Stream the statement's result as Arrow batches into `sink`
    /// (bounded); a consumer that stops early leaves unread rows on the
    /// wire: the connection is discarded.
    pub async fn stream_arrow(
        &mut self,
        statement: &Statement,
        every: usize,
        sink: &tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    ) -> Result<()> {
        let destination = Destination::Arrow {
            every,
            to: ArrowTo::Channel(sink),
        };
        let read = on_driver!(self, c => c.query(statement, destination).await);
        let read = self.one_result_set(read)?;
        if !read.complete {
            self.broken = true;
        }
        read.arrow.map(|_| ()).ok_or_else(no_arrow)
    }

    /// Load many rows into a table the fastest way the server offers
    /// (PostgreSQL binary COPY, SQL Server bulk load); all or nothing.
    pub async fn bulk_insert(
        &mut self,
        table: &str,
        columns: &[String],
        feed: &mut RowFeed,
    ) -> Result<u64> {
        on_driver!(self, c => c.bulk_insert(table, columns, feed).await)
    }

    /// The columns of a table, in order (for `bulk_insert` of tuples).
    pub async fn table_columns(&mut self, table: &str) -> Result<Vec<String>> {
        let text = driver_ref!(self, c => c.no_rows_of(table))?;
        let statement = Statement {
            sql: crate::sql::parse(&text, self.dialect()),
            values: Vec::new(),
        };
        Ok(self.query(&statement).await?.columns)
    }

    /// The same statement for many parameter sets; returns rows affected.
    pub async fn execute_many(&mut self, sql: &ParsedSql, feed: &mut RowFeed) -> Result<u64> {
        on_driver!(self, c => c.execute_many(sql, feed).await)
    }

    /// Run parameterless SQL text as written (a migration statement or a
    /// T-SQL batch), discarding any rows.
    pub async fn script(&mut self, sql: &str) -> Result<()> {
        on_driver!(self, c => c.script(sql).await)
    }

    async fn control(&mut self, op: Control<'_>) -> Result<()> {
        match driver_ref!(self, c => c.control_sql(op)) {
            Some(sql) => self.script(&sql).await,
            None => Ok(()),
        }
    }

    pub async fn begin(&mut self) -> Result<()> {
        let r = self.control(Control::Begin).await;
        if r.is_ok() {
            self.set_in_transaction(true);
        }
        r
    }

    pub async fn commit(&mut self) -> Result<()> {
        self.committing = true;
        let r = self.end_transaction(Control::Commit).await;
        self.committing = false;
        self.set_in_transaction(false);
        r
    }

    pub async fn rollback(&mut self) -> Result<()> {
        let r = self.end_transaction(Control::Rollback).await;
        self.set_in_transaction(false);
        r
    }

    async fn end_transaction(&mut self, op: Control<'_>) -> Result<()> {
        if let Err(e) = on_driver!(self, c => c.before_transaction_end().await) {
            // Still inside the transaction, in an unknown state.
            self.broken = true;
            return Err(e);
        }
        self.control(op).await
    }

    fn set_in_transaction(&mut self, open: bool) {
        self.in_transaction = open;
        dispatch!(&mut self.driver, c => c.set_in_transaction(open));
    }

    /// Behind a transaction-pooling proxy (PgBouncer): session state
    /// (session locks, statements outside a transaction) does not survive
    /// from one transaction to the next.
    pub fn transaction_pooling(&self) -> bool {
        driver_ref!(self, c => c.transaction_pooling())
    }

    pub async fn savepoint(&mut self, name: &str) -> Result<()> {
        self.control(Control::Savepoint(name)).await
    }

    pub async fn rollback_to_savepoint(&mut self, name: &str) -> Result<()> {
        self.control(Control::RollbackTo(name)).await
    }

    pub async fn release_savepoint(&mut self, name: &str) -> Result<()> {
        self.control(Control::Release(name)).await
    }

    /// A cheap liveness check: one round trip.
    pub async fn ping(&mut self) -> Result<()> {
        on_driver!(self, c => c.ping().await)
    }

    /// Close politely (the server logs a clean disconnect); the session
    /// permit is released once the close is done.
    pub async fn close(self) {
        let _session = self.session;
        dispatch!(self.driver, c => c.close().await)
    }
}

/// Give up on `fut` at `deadline`: a `Timeout` error that marks the
/// connection broken (the request may still be running on the server).
pub(crate) async fn with_backstop<T>(
    deadline: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(r) => r,
        Err(_) => {
            let mut e = Error::new(
                ErrorKind::Timeout,
                format!(
                    "no answer within the deadline of {:.3} s; the connection was discarded",
                    deadline.as_secs_f64()
                ),
            );
            e.maybe_executed = true;
            Err(e)
        }
    }
}

/// A backend whose row loop does not build Arrow columns (the test fake).
fn no_arrow() -> Error {
    Error::query("this backend does not build Arrow results")
}
