//! An in-memory backend for `cargo test`: the engine, pools, transactions,
//! retries, migrations and error paths run against it without a server or
//! Python. It is compiled only for tests (`#[cfg(test)]` on its line in
//! `backends!`), so no user can name it.
//!
//! **It is also the template of a backend.** Everything a backend needs is
//! here, in the smallest form:
//!
//! - a connection type, [`FakeConn`], implementing
//!   [`Backend`](super::contract::Backend) (connect, query into a
//!   [`Destination`], query with a deadline, bulk insert, execute many,
//!   script, ping, close, transaction-control SQL, `raw_fd` and
//!   `bytes_written` for the pool and [`super::sent`]);
//! - `pub static KIND: KindInfo`: the names `<DB>_TYPE` accepts, `detect`
//!   and `parse` of its connection strings (`fake://host/db`, through the
//!   shared `config::url::parse_url`), and its [`DialectSql`] (lexicon,
//!   script splitting, history DDL, table and schema probes, the lock);
//! - its errors as `error::Error` with a SQLSTATE (a real backend maps its
//!   driver's errors in its own `error.rs`);
//! - one line in the `backends!` list of `backend/mod.rs`:
//!   `#[cfg(test)] Fake: fake::FakeConn,`
//!
//! # The server
//!
//! Connections to the same host (`fake://<host>/<db>`) share one [`Server`]
//! ([`server`]): committed tables, session locks, the sessions open, a log
//! of every request that reached it, and the faults a test arms. Tests use
//! a host of their own, so they never see each other's data.
//!
//! # The SQL it understands (and nothing more)
//!
//! Statements are split at `;`; `--` and `/* */` comments, `'text'` and
//! `"identifiers"` are lexed; unquoted names fold to lower case; `$n` are
//! parameters (`:name` is rendered to `$n` by `sql::parse` as for
//! PostgreSQL). Anything else is a `Query` error with SQLSTATE 42601.
//!
//! - `CREATE TABLE [IF NOT EXISTS] t (col <any type words>, ...)` with
//!   `PRIMARY KEY` on a column or as `PRIMARY KEY (col)` (unique, not
//!   null: `Integrity` 23505/23502); `DROP TABLE [IF EXISTS] t`;
//! - `INSERT INTO t [(cols)] VALUES (...), (...)`; `UPDATE t SET c = e, ...
//!   [WHERE]`; `DELETE FROM t [WHERE]`;
//! - `SELECT items [FROM t [WHERE] [ORDER BY c [ASC|DESC], ...] [LIMIT n]]`
//!   where an item is `*`, `count(*)`, a column, a literal, a parameter or a
//!   function, each with `AS alias`; `WHERE` is `col op value` joined by
//!   `AND` (`= <> != < <= > >= IS [NOT] NULL`);
//! - values: integers, decimals, `'text'`, `NULL`, `TRUE`, `FALSE`, `$n`;
//!   functions: `now()`, `fake_table_exists(name)`, `fake_has_tables([schema])`,
//!   `fake_fail('message')` (a `Query` error);
//! - `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT s`, `ROLLBACK TO [SAVEPOINT] s`,
//!   `RELEASE [SAVEPOINT] s`. A transaction works on its own copy of the
//!   data (others never see its writes before COMMIT, it never sees theirs
//!   after BEGIN); COMMIT replays its writes on the server's data, all or
//!   none (a conflict is a transient 40001). After an error the transaction
//!   is aborted (25P02) until ROLLBACK, and COMMIT then rolls back, as in
//!   PostgreSQL. DDL is transactional.
//! - `SELECT sleep(ms)`: waits on tokio's clock (pausable in tests);
//!   `SELECT fake_lock(name)` / `SELECT fake_unlock(name)`: a session lock
//!   that blocks another session until released or the session ends;
//!   `SELECT fake_session()`: the id of the session that answers.
//!
//! # Faults
//!
//! [`Server::fail_connects`] refuses the next connection attempts;
//! [`Server::arm`] makes the next requests containing a pattern meet a
//! [`Fault`] (reset before sending, reset after running, hang, a stale
//! prepared plan);
//! [`Server::kill_sessions`] resets every open session. Every request adds
//! its length to the connection's `bytes_written` when it is "sent", so
//! the seam's sent/not-sent rule sees what a socket would show.

mod exec;
mod lex;
mod parse;
mod server;
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use self::exec::{Data, Outcome};
use self::parse::Stmt;
pub use self::server::{server, Fault, Server};
use super::rows::{Destination, Read, RowBuffer};
use super::{with_backstop, Backend, Control, DialectSql, KindInfo, Statement};
use crate::config::url::{parse_url, scheme_of};
use crate::config::{DatabaseConfig, StringForm};
use crate::error::{Error, Result};
use crate::feed::RowFeed;
use crate::sql::{Lexicon, ParsedSql};
use crate::value::Value;

pub static KIND: KindInfo = KindInfo {
    name: "fake",
    aliases: &[],
    scheme: "fake",
    example_url: "fake://server/dbname",
    detect: |conn| (scheme_of(conn)? == "fake").then_some(StringForm::Url),
    parse: |conn, _form, key| parse_url(conn, super::Kind(&KIND), key),
    sql: &SQL,
};

/// Plain SQL strings and `"identifiers"`, `$n` placeholders.
pub static LEXICON: Lexicon = Lexicon {
    bracket_identifiers: false,
    dollar_quotes: false,
    escape_strings: false,
    placeholder_prefix: "$",
};

pub static SQL: DialectSql = DialectSql {
    dialect: &LEXICON,
    split_script: |text| crate::sql::split_statements(text, &LEXICON),
    quote: |ident| format!("\"{ident}\""),
    default_schema: None,
    table_exists: "SELECT fake_table_exists(:name) AS e",
    history_ddl: |table, _| {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (installed_rank integer PRIMARY KEY, \
             version text, description text, type text, script text, checksum integer, \
             installed_by text, installed_on timestamp, execution_time integer, success boolean)"
        )
    },
    schema_has_tables: |schema| match schema {
        Some(s) => format!("SELECT fake_has_tables('{s}') AS e"),
        None => "SELECT fake_has_tables() AS e".to_owned(),
    },
    lock: "SELECT fake_lock(:name)",
    lock_for_transaction: None,
    unlock: "SELECT fake_unlock(:name)",
    // The fake has one data set per host, made on first use: there is no
    // database to create or drop, so these send nothing.
    create_database: |_| Vec::new(),
    drop_database: |_| Vec::new(),
    empty_tables: |tables| tables.iter().map(|t| format!("DELETE FROM {t}")).collect(),
    // Deadlines are the client's backstop; the fake reports no SQLSTATE.
    timeout_sqlstate: None,
    session_role: None,
};

/// A transaction's own copy of the data, the writes to replay at COMMIT,
/// and its savepoints (name, copy, writes so far).
struct Tx {
    data: Data,
    log: Vec<(Stmt, Vec<Value>)>,
    savepoints: Vec<(String, Data, usize)>,
    aborted: bool,
}

/// The SQLSTATE of a statement prepared before a DDL change.
const STALE_PLAN: &str = "0A000";

pub struct FakeConn {
    server: Arc<Server>,
    session: u64,
    written: u64,
    /// The connection was reset: every request fails before it is written.
    dead: bool,
    tx: Option<Tx>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.server.close_session(self.session);
    }
}

fn lost(what: &str) -> Error {
    Error::connection(format!(
        "server closed the connection unexpectedly ({what})"
    ))
}

fn state_error(sqlstate: &str, message: &str) -> Error {
    let mut e = Error::new(crate::error::ErrorKind::Transaction, message);
    e.sqlstate = Some(sqlstate.to_owned());
    e
}

impl FakeConn {
    /// One request: `text` as it goes on the wire (for the byte count, the
    /// log and the faults) and the statements it holds.
    async fn request(&mut self, text: &str, stmts: &[Stmt], params: &[Value]) -> Result<Outcome> {
        if self.dead || self.server.killed(self.session) {
            self.dead = true;
            self.tx = None;
            return Err(lost("reset before the request was written"));
        }
        let fault = self.server.fault_for(text);
        if fault == Some(Fault::ResetBeforeSend) {
            self.dead = true;
            self.tx = None;
            return Err(lost("reset before the request was written"));
        }
        let values_len: usize = params.iter().map(|v| v.to_text().len() + 4).sum();
        self.written += (text.len() + values_len) as u64;
        self.server.record(text);
        if fault == Some(Fault::Hang) {
            std::future::pending::<()>().await;
        }
        if fault == Some(Fault::StalePlan) {
            let mut e = Error::query("cached plan must not change result type");
            e.sqlstate = Some(STALE_PLAN.to_owned());
            return self.fail_in_tx(Err(e));
        }
        let mut out = Outcome::default();
        for stmt in stmts {
            out = self.run(stmt, params).await?;
        }
        if fault == Some(Fault::ResetAfterRun) {
            self.dead = true;
            self.tx = None;
            return Err(lost("reset before the answer arrived"));
        }
        Ok(out)
    }

    async fn request_text(&mut self, text: &str, params: &[Value]) -> Result<Outcome> {
        match parse::parse_all(text) {
            Ok(stmts) => self.request(text, &stmts, params).await,
            // Still sent and refused by the server: it counts as written.
            Err(e) => {
                self.request(text, &[], params).await?;
                self.fail_in_tx(Err(e))
            }
        }
    }

    fn fail_in_tx<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            if let Some(tx) = &mut self.tx {
                tx.aborted = true;
            }
        }
        result
    }

    fn text_arg(&self, expr: &parse::Expr, params: &[Value]) -> Result<String> {
        let mut scratch = Data::default();
        let select = Stmt::Select {
            items: vec![parse::Item::Expr(expr.clone(), "v".into())],
            from: None,
            filter: Vec::new(),
            order: Vec::new(),
            limit: None,
        };
        Ok(scratch.run(&select, params)?.rows[0][0].to_text())
    }

    async fn run(&mut self, stmt: &Stmt, params: &[Value]) -> Result<Outcome> {
        if let Some(tx) = &self.tx {
            let ending = matches!(stmt, Stmt::Rollback | Stmt::RollbackTo(_) | Stmt::Commit);
            if tx.aborted && !ending {
                return Err(state_error(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                ));
            }
        }
        let no_tx = || state_error("25P01", "there is no transaction in progress");
        match stmt {
            Stmt::Begin => {
                if self.tx.is_none() {
                    self.tx = Some(Tx {
                        data: self.server.state().data.clone(),
                        log: Vec::new(),
                        savepoints: Vec::new(),
                        aborted: false,
                    });
                }
            }
            Stmt::Commit => {
                if let Some(tx) = self.tx.take() {
                    if !tx.aborted {
                        self.server.commit(&tx.log)?;
                    }
                }
            }
            Stmt::Rollback => self.tx = None,
            Stmt::Savepoint(name) => {
                let tx = self.tx.as_mut().ok_or_else(no_tx)?;
                tx.savepoints
                    .push((name.clone(), tx.data.clone(), tx.log.len()));
            }
            Stmt::RollbackTo(name) | Stmt::Release(name) => {
                let tx = self.tx.as_mut().ok_or_else(no_tx)?;
                let at = tx
                    .savepoints
                    .iter()
                    .rposition(|(n, _, _)| n == name)
                    .ok_or_else(|| {
                        state_error("3B001", &format!("savepoint \"{name}\" does not exist"))
                    })?;
                if matches!(stmt, Stmt::RollbackTo(_)) {
                    tx.savepoints.truncate(at + 1);
                    let (_, data, len) = &tx.savepoints[at];
                    tx.data = data.clone();
                    tx.log.truncate(*len);
                    tx.aborted = false;
                } else {
                    tx.savepoints.truncate(at);
                }
            }
            Stmt::Sleep(ms) => {
                let ms = self.text_arg(ms, params)?.parse::<u64>().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return Ok(Outcome {
                    columns: vec!["sleep".into()],
                    rows: vec![vec![Value::Null]],
                    affected: 0,
                });
            }
            Stmt::Session => {
                return Ok(Outcome {
                    columns: vec!["session".into()],
                    rows: vec![vec![Value::Int(self.session as i64)]],
                    affected: 0,
                });
            }
            Stmt::Lock(name) => {
                let name = self.text_arg(name, params)?;
                self.server.lock(self.session, &name).await;
            }
            Stmt::Unlock(name) => {
                let name = self.text_arg(name, params)?;
                let held = self.server.unlock(self.session, &name);
                return Ok(Outcome {
                    columns: vec!["fake_unlock".into()],
                    rows: vec![vec![Value::Bool(held)]],
                    affected: 0,
                });
            }
            data_stmt => {
                let result = match &mut self.tx {
                    Some(tx) => tx.data.run(data_stmt, params).inspect(|_| {
                        if data_stmt.writes() {
                            tx.log.push((data_stmt.clone(), params.to_vec()));
                        }
                    }),
                    None => self.server.state().data.run(data_stmt, params),
                };
                return self.fail_in_tx(result);
            }
        }
        Ok(Outcome::default())
    }
}

/// Hand an outcome's rows to `destination` as a driver's row loop would.
async fn deliver(out: Outcome, destination: Destination<'_>) -> Result<Read> {
    let mut buffer = RowBuffer::new(destination);
    if out.columns.is_empty() {
        let mut read = buffer.finish().await;
        read.rows.rows_affected = out.affected;
        return Ok(read);
    }
    buffer.start(out.columns);
    for row in out.rows {
        buffer.values().extend(row);
        if !buffer.row_done().await? {
            break;
        }
    }
    Ok(buffer.finish().await)
}

impl Backend for FakeConn {
    async fn connect(config: &DatabaseConfig) -> Result<Self> {
        let host = config.spec.host.as_deref().unwrap_or("localhost");
        let server = server(host);
        let session = server.open_session()?;
        Ok(FakeConn {
            server,
            session,
            written: 0,
            dead: false,
            tx: None,
        })
    }

    fn validate(_config: &DatabaseConfig) -> Result<()> {
        Ok(())
    }

    async fn query(&mut self, statement: &Statement, destination: Destination<'_>) -> Result<Read> {
        let text = statement.sql.render(&LEXICON);
        let out = self.request_text(&text, &statement.values).await?;
        deliver(out, destination).await
    }

    /// The fake has no procedures: a call is refused as a server would
    /// refuse an unknown one (the engine's bookkeeping is what is tested).
    async fn call(&mut self, call: &crate::procedure::Call) -> Result<crate::procedure::Called> {
        Err(Error::query(format!(
            "the procedure {} does not exist",
            call.written
        )))
    }

    /// The client enforces the deadline (as for SQL Server): past it the
    /// seam discards the connection.
    async fn query_with_deadline(
        &mut self,
        statement: &Statement,
        deadline: Duration,
    ) -> Result<Read> {
        with_backstop(deadline, self.query(statement, Destination::Collect)).await
    }

    /// All rows or none: the feed is read whole before anything is sent.
    async fn bulk_insert(
        &mut self,
        table: &str,
        columns: &[String],
        feed: &mut RowFeed,
    ) -> Result<u64> {
        let mut rows = Vec::new();
        while let Some(chunk) = feed.next_chunk().await? {
            rows.extend(chunk);
        }
        let text = format!("COPY {table} ({}) FROM STDIN", columns.join(", "));
        let n = rows.len() as u64;
        let insert = Stmt::Insert {
            table: table.to_owned(),
            columns: Some(columns.to_vec()),
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(parse::Expr::Lit).collect())
                .collect(),
        };
        self.request(&text, &[insert], &[]).await?;
        Ok(n)
    }

    /// One request per parameter set (the engine wraps them in a transaction).
    async fn execute_many(&mut self, sql: &ParsedSql, feed: &mut RowFeed) -> Result<u64> {
        let text = sql.render(&LEXICON);
        let mut affected = 0;
        while let Some(row) = feed.next_row().await? {
            affected += self.request_text(&text, &row).await?.affected;
        }
        Ok(affected)
    }

    async fn script(&mut self, sql: &str) -> Result<()> {
        self.request_text(sql, &[]).await.map(|_| ())
    }

    async fn ping(&mut self) -> Result<()> {
        self.request_text("SELECT 1 AS ping", &[]).await.map(|_| ())
    }

    async fn close(self) {}

    fn control_sql(&self, op: Control<'_>) -> Option<String> {
        Some(match op {
            Control::Begin => "BEGIN".to_owned(),
            Control::Commit => "COMMIT".to_owned(),
            Control::Rollback => "ROLLBACK".to_owned(),
            Control::Savepoint(name) => format!("SAVEPOINT {name}"),
            Control::RollbackTo(name) => format!("ROLLBACK TO SAVEPOINT {name}"),
            Control::Release(name) => format!("RELEASE SAVEPOINT {name}"),
        })
    }

    fn no_rows_of(&self, table: &str) -> Result<String> {
        Ok(format!("SELECT * FROM {table} LIMIT 0"))
    }

    fn raw_fd(&self) -> Option<i32> {
        None
    }

    fn bytes_written(&self) -> Option<u64> {
        Some(self.written)
    }

    fn stale_plan(&self, e: &Error) -> bool {
        e.sqlstate.as_deref() == Some(STALE_PLAN)
    }
}
