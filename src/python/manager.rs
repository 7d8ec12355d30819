//! `DatabaseManager` and its `Transaction`: convert arguments, release the
//! GIL, block on the shared runtime, convert results.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::config::PyConfigManager;
use super::convert::{self, params_for, rows_to_py};
use super::errors::{to_pyerr, IntoPyResult};
use super::health::{health_dict, metrics_dict};
use crate::backend::Statement;
use crate::config::ConfigManager;
use crate::engine::{Database, Transaction};
use crate::error::{Error, ErrorKind, Result};
use crate::migrate::{Migrator, Status};
use crate::runtime::runtime;
use crate::sql::{self, ParsedSql};
use crate::value::{Rows, Value};

/// Run a future on the shared runtime with the GIL released.
/// Rows per batch converted while the next batch decodes.
const CONVERT_BATCH_ROWS: usize = 4096;

fn wait<T: Send>(
    py: Python<'_>,
    fut: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    py.detach(|| runtime()?.block_on(fut))
}

pub(crate) fn log_done(database: &str, operation: &'static str, started: Instant, rows: usize) {
    tracing::debug!(
        database,
        operation,
        duration_ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
        rows,
        "{operation} finished"
    );
}

pub(crate) fn statement(
    db: &Database,
    sql_text: &str,
    params: Option<&Bound<'_, PyAny>>,
    operation: &'static str,
) -> Result<Statement> {
    let sql = sql::parse(sql_text, db.dialect());
    let values = params_for(&sql, params).map_err(|e| {
        db.metrics().record_error(e.kind);
        db.fail(e, operation)
    })?;
    Ok(Statement { sql, values })
}

pub(crate) fn many_values(
    db: &Database,
    sql: &ParsedSql,
    seq: &Bound<'_, PyAny>,
    operation: &'static str,
) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::with_capacity(seq.len().unwrap_or(0));
    let iter = seq.try_iter().map_err(|_| {
        db.fail(
            Error::parameter("seq_of_params must be a sequence of dicts"),
            operation,
        )
    })?;
    for (index, item) in iter.enumerate() {
        let item = item.map_err(|e| db.fail(Error::parameter(e.to_string()), operation))?;
        let values = params_for(sql, Some(&item)).map_err(|mut e| {
            e.message = format!("row {index}: {}", e.message);
            db.fail(e, operation)
        })?;
        out.push(values);
    }
    Ok(out)
}

/// `(sql, params)` tuples or bare SQL strings → statements.
pub(crate) fn statements(db: &Database, queries: &Bound<'_, PyAny>) -> Result<Vec<Statement>> {
    let op = "execute_transaction";
    let mut out = Vec::new();
    let iter = queries.try_iter().map_err(|_| {
        db.fail(
            Error::parameter("queries must be a list of (sql, params) tuples"),
            op,
        )
    })?;
    for item in iter {
        let item = item.map_err(|e| db.fail(Error::parameter(e.to_string()), op))?;
        if let Ok(text) = item.extract::<String>() {
            out.push(statement(db, &text, None, op)?);
            continue;
        }
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2 || t.len() == 1)
            .ok_or_else(|| {
                db.fail(
                    Error::parameter("each query must be a (sql, params) tuple or a SQL string"),
                    op,
                )
            })?;
        let text: String = pair.get_item(0).and_then(|s| s.extract()).map_err(|_| {
            db.fail(
                Error::parameter("the first item of each query tuple must be the SQL text"),
                op,
            )
        })?;
        let params = if pair.len() == 2 {
            pair.get_item(1).ok()
        } else {
            None
        };
        out.push(statement(db, &text, params.as_ref(), op)?);
    }
    Ok(out)
}

/// Column names (when known) and the rows' values in that order.
type BulkRows = (Option<Vec<String>>, Vec<Vec<Value>>);

/// Rows for `bulk_insert`: dicts give (or must match) the column names;
/// tuples and lists are taken in `columns` order.
pub(crate) fn bulk_rows(
    db: &Database,
    rows: &Bound<'_, PyAny>,
    columns: Option<Vec<String>>,
) -> Result<BulkRows> {
    let op = "bulk_insert";
    let mut columns = columns;
    let mut out = Vec::with_capacity(rows.len().unwrap_or(0));
    let iter = rows.try_iter().map_err(|_| {
        db.fail(
            Error::parameter("rows must be a sequence of dicts or tuples"),
            op,
        )
    })?;
    for (index, row) in iter.enumerate() {
        let row = row.map_err(|e| db.fail(Error::parameter(e.to_string()), op))?;
        if let Ok(dict) = row.cast::<PyDict>() {
            let names =
                columns.get_or_insert_with(|| dict.keys().iter().map(|k| k.to_string()).collect());
            let mut values = Vec::with_capacity(names.len());
            for name in names.iter() {
                let item = dict
                    .get_item(name)
                    .map_err(|e| db.fail(Error::parameter(e.to_string()), op))?;
                let Some(item) = item else {
                    return Err(db.fail(
                        Error::parameter(format!("row {index} has no value for column '{name}'")),
                        op,
                    ));
                };
                values.push(convert::to_value(name, &item).map_err(|e| db.fail(e, op))?);
            }
            out.push(values);
        } else {
            let mut values = Vec::new();
            let items = row.try_iter().map_err(|_| {
                db.fail(
                    Error::parameter(format!("row {index} is neither a dict nor a tuple")),
                    op,
                )
            })?;
            for (i, item) in items.enumerate() {
                let item = item.map_err(|e| db.fail(Error::parameter(e.to_string()), op))?;
                let name = columns
                    .as_ref()
                    .and_then(|c| c.get(i))
                    .cloned()
                    .unwrap_or_else(|| format!("#{i}"));
                values.push(convert::to_value(&name, &item).map_err(|e| db.fail(e, op))?);
            }
            out.push(values);
        }
    }
    Ok((columns, out))
}

/// The iterator `iter_query` returns: dicts, fetched batch by batch with
/// the GIL released while waiting.
#[pyclass(module = "dbflow._native", name = "RowIterator", frozen)]
pub struct RowIterator {
    receiver: Mutex<tokio::sync::mpsc::Receiver<Result<Rows>>>,
    current: Mutex<Option<(Rows, usize)>>,
}

#[pymethods]
impl RowIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((rows, at)) = current.as_mut() {
                if *at < rows.row_count() {
                    let width = rows.columns.len();
                    let d = PyDict::new(py);
                    for (name, value) in rows
                        .columns
                        .iter()
                        .zip(&rows.values[*at * width..(*at + 1) * width])
                    {
                        d.set_item(name, convert::to_py(py, value)?)?;
                    }
                    *at += 1;
                    return Ok(Some(d));
                }
            }
            let receiver = &self.receiver;
            let next = py.detach(|| {
                let mut rx = receiver.lock().unwrap_or_else(|p| p.into_inner());
                runtime().map(|rt| rt.block_on(rx.recv()))
            });
            match next.py_result()? {
                None => return Ok(None),
                Some(Err(e)) => return Err(to_pyerr(e)),
                Some(Ok(rows)) => *current = Some((rows, 0)),
            }
        }
    }

    /// Stop early and release the connection now (also on garbage collection).
    fn close(&self) {
        self.receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

pub(crate) fn pool_status_dict<'py>(
    py: Python<'py>,
    db: &Database,
) -> PyResult<Bound<'py, PyDict>> {
    let s = db.pool_status();
    let d = PyDict::new(py);
    d.set_item("database_name", db.name())?;
    d.set_item("database_type", db.config().database_type.as_str())?;
    d.set_item("pool_size", s.pool_size)?;
    d.set_item("max_overflow", s.max_overflow)?;
    d.set_item("checked_in", s.checked_in)?;
    d.set_item("checked_out", s.checked_out)?;
    d.set_item("overflow", s.overflow)?;
    d.set_item("invalid", s.invalid)?;
    d.set_item("waiting", s.waiting)?;
    let capacity = (s.pool_size + s.max_overflow).max(1) as f64;
    d.set_item(
        "utilization",
        (s.checked_out as f64 / capacity * 1000.0).round() / 1000.0,
    )?;
    d.set_item("connections_opened", s.opened)?;
    d.set_item("connections_closed", s.closed)?;
    d.set_item("users", db.shared().users())?;
    d.set_item(
        "timestamp",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
    )?;
    Ok(d)
}

fn iso_utc(value: &Value) -> Option<String> {
    match value {
        Value::DateTime(dt) => Some(
            dt.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        ),
        Value::DateTimeTz(dt) => Some(dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)),
        _ => None,
    }
}

pub(crate) fn migration_status_dict<'py>(
    py: Python<'py>,
    status: &Status,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("current_version", status.current_version.as_deref())?;
    d.set_item(
        "pending_migrations",
        status
            .pending
            .iter()
            .map(|p| p.0.as_str())
            .collect::<Vec<_>>(),
    )?;
    let details = PyList::empty(py);
    for (version, description, script) in &status.pending {
        let row = PyDict::new(py);
        row.set_item("version", version)?;
        row.set_item("description", description)?;
        row.set_item("script", script)?;
        details.append(row)?;
    }
    d.set_item("pending_details", details)?;
    let applied = PyList::empty(py);
    for a in &status.applied {
        let row = PyDict::new(py);
        row.set_item("version", &a.version)?;
        row.set_item("description", &a.description)?;
        row.set_item("script", &a.script)?;
        row.set_item("type", &a.kind)?;
        row.set_item("checksum", a.checksum)?;
        row.set_item("installed_by", &a.installed_by)?;
        row.set_item("installed_on", iso_utc(&a.installed_on))?;
        row.set_item("execution_time_ms", a.execution_time_ms)?;
        row.set_item("success", a.success)?;
        row.set_item("state", if a.success { "success" } else { "failed" })?;
        applied.append(row)?;
    }
    d.set_item("applied_migrations", applied)?;
    d.set_item("total_migrations", status.total)?;
    d.set_item(
        "last_migration",
        status.last_migration.as_ref().and_then(iso_utc),
    )?;
    d.set_item(
        "migrations_dir",
        status.directory.as_ref().filter(|p| p.is_dir()),
    )?;
    d.set_item("read_only", status.total == 0 && status.applied.is_empty())?;
    Ok(d)
}

/// The `timeout=` argument of `execute_query_with_timeout` (both managers).
pub(crate) fn deadline_arg(
    db: &Database,
    timeout: Option<f64>,
) -> PyResult<Option<std::time::Duration>> {
    match timeout {
        Some(t) if t.is_finite() && t > 0.0 => Ok(Some(std::time::Duration::from_secs_f64(t))),
        Some(t) => Err(to_pyerr(db.fail(
            Error::parameter(format!(
                "timeout must be a positive number of seconds, not {t}"
            )),
            "execute_query_with_timeout",
        ))),
        None => Ok(None),
    }
}

/// What both managers' constructors do: resolve the configuration (no I/O)
/// and attach to the shared pool.
pub(crate) fn open_database(
    database_name: &str,
    environment: Option<&str>,
    flow_name: Option<&str>,
    config: Option<PyRef<'_, PyConfigManager>>,
    migrations_dir: Option<std::path::PathBuf>,
) -> PyResult<(Arc<Database>, ConfigManager)> {
    let manager = match config {
        Some(c) => {
            let inner = &c.inner;
            let env_conflict =
                environment.is_some_and(|e| !e.eq_ignore_ascii_case(inner.environment()));
            let flow_conflict = flow_name.is_some_and(|f| Some(f) != inner.flow_name());
            if env_conflict || flow_conflict {
                return Err(to_pyerr(Error::config(format!(
                        "DatabaseManager('{database_name}'): environment/flow_name contradict the given config \
                         (environment={:?}, flow_name={:?}); pass one or the other",
                        inner.environment(),
                        inner.flow_name()
                    ))));
            }
            inner.clone()
        }
        None => ConfigManager::new(environment, flow_name, None).py_result()?,
    };
    super::config::warn_suspect_keys(&manager);
    let db_config = manager
        .database_config(database_name)
        .map_err(|mut e| {
            // A misspelt key is the likeliest reason a database is missing.
            let part = format!("_{}_", crate::config::key_part(database_name));
            let near: Vec<String> = manager
                .suspect_keys(super::config::process_keys())
                .iter()
                .filter(|s| s.key.contains(&part))
                .map(ToString::to_string)
                .collect();
            if !near.is_empty() {
                e.message = format!("{}. {}", e.message, near.join("; "));
            }
            e.context(database_name, "DatabaseManager()")
        })
        .py_result()?;
    let db = Database::open(db_config, migrations_dir).py_result()?;
    Ok((Arc::new(db), manager))
}

#[pyclass(module = "dbflow._native", name = "DatabaseManager", subclass, frozen)]
pub struct PyDatabaseManager {
    db: Arc<Database>,
    config: ConfigManager,
}

#[pymethods]
impl PyDatabaseManager {
    #[new]
    #[pyo3(signature = (database_name, *, environment=None, flow_name=None, config=None, migrations_dir=None))]
    fn new(
        database_name: &str,
        environment: Option<&str>,
        flow_name: Option<&str>,
        config: Option<PyRef<'_, PyConfigManager>>,
        migrations_dir: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let (db, manager) = open_database(
            database_name,
            environment,
            flow_name,
            config,
            migrations_dir,
        )?;
        Ok(PyDatabaseManager {
            db,
            config: manager,
        })
    }

    #[getter]
    fn database_name(&self) -> &str {
        self.db.name()
    }

    #[getter]
    fn database_type(&self) -> &'static str {
        self.db.config().database_type.as_str()
    }

    #[getter]
    fn environment(&self) -> &str {
        self.config.environment()
    }

    #[getter]
    fn flow_name(&self) -> Option<&str> {
        self.config.flow_name()
    }

    /// The connection target with the password masked.
    #[getter]
    fn connection_string(&self) -> String {
        self.db.config().spec.redacted()
    }

    /// Rows as dicts; `as_tuples=True`: tuples in column order (less time
    /// and memory for large reads).
    #[pyo3(signature = (sql, params=None, *, as_tuples=false))]
    fn execute_query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        as_tuples: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let started = Instant::now();
        let stmt = statement(&self.db, sql, params, "execute_query").py_result()?;
        let db = &self.db;
        // Large results become Python objects batch by batch while the
        // connection keeps decoding, so the decoded rows never all exist
        // beside the objects.
        let mut builder = convert::ListBuilder::new(as_tuples);
        let mut to_python = |batch: Rows| builder.push(batch);
        let rest = wait(
            py,
            db.query_in_batches(&stmt, CONVERT_BATCH_ROWS, &mut to_python),
        );
        let rows = builder.finish(py, rest)?;
        log_done(db.name(), "execute_query", started, rows.len());
        Ok(rows)
    }

    /// The server stops the statement at the deadline (`None`: the
    /// database's `DATABASE_TIMEOUT`); raises `QueryTimeoutError`.
    #[pyo3(signature = (sql, params=None, timeout=None))]
    fn execute_query_with_timeout<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let started = Instant::now();
        let deadline = deadline_arg(&self.db, timeout)?;
        let stmt = statement(&self.db, sql, params, "execute_query_with_timeout").py_result()?;
        let db = &self.db;
        let rows = wait(py, db.query_with_timeout(&stmt, deadline)).py_result()?;
        log_done(
            db.name(),
            "execute_query_with_timeout",
            started,
            rows.row_count(),
        );
        rows_to_py(py, rows)
    }

    /// Retry transient failures (connection failures before sending,
    /// serialization failures, deadlocks, admin shutdown, too many
    /// connections, a full pool) with exponential backoff. A statement that
    /// may already have run is retried only with `idempotent=True`.
    #[pyo3(signature = (sql, params=None, *, attempts=None, min_delay=None, max_delay=None, idempotent=false))]
    #[allow(clippy::too_many_arguments)]
    fn execute_query_with_retry<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        attempts: Option<u32>,
        min_delay: Option<f64>,
        max_delay: Option<f64>,
        idempotent: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let started = Instant::now();
        let mut policy = self.db.config().retry.clone();
        if let Some(a) = attempts {
            policy.attempts = a.max(1);
        }
        for (value, slot) in [
            (min_delay, &mut policy.min_delay),
            (max_delay, &mut policy.max_delay),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(to_pyerr(self.db.fail(
                        Error::parameter("delays must be non-negative seconds"),
                        "execute_query_with_retry",
                    )));
                }
                *slot = std::time::Duration::from_secs_f64(v);
            }
        }
        let stmt = statement(&self.db, sql, params, "execute_query_with_retry").py_result()?;
        let db = &self.db;
        let rows = wait(py, db.query_with_retry(&stmt, Some(policy), idempotent)).py_result()?;
        log_done(
            db.name(),
            "execute_query_with_retry",
            started,
            rows.row_count(),
        );
        rows_to_py(py, rows)
    }

    /// `execute_query_with_retry` when `retry_on_failure`, else `execute_query`.
    #[pyo3(signature = (sql, params=None, retry_on_failure=true))]
    fn execute_query_safe<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        retry_on_failure: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        if retry_on_failure {
            self.execute_query_with_retry(py, sql, params, None, None, None, false)
        } else {
            self.execute_query(py, sql, params, false)
        }
    }

    /// Results with timing, as the original design reports them; a failure
    /// is reported in the dict (`status: "error"`), not raised.
    #[pyo3(signature = (sql, params=None))]
    fn execute_query_with_timing<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let started = Instant::now();
        let result = self.execute_query(py, sql, params, false);
        let elapsed = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
        let d = PyDict::new(py);
        match result {
            Ok(rows) => {
                d.set_item("row_count", rows.len())?;
                d.set_item("results", rows)?;
                d.set_item("execution_time_ms", elapsed)?;
                d.set_item("status", "success")?;
            }
            Err(e) => {
                d.set_item("results", PyList::empty(py))?;
                d.set_item("execution_time_ms", elapsed)?;
                d.set_item("row_count", 0)?;
                d.set_item("status", "error")?;
                d.set_item("error", e.value(py).str()?.to_string())?;
                d.set_item("error_type", e.get_type(py).name()?)?;
            }
        }
        Ok(d)
    }

    /// Connection, query and migration checks in the health format; never
    /// raises for a database problem, answers within `HEALTH_TIMEOUT`.
    fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let db = &self.db;
        let health = wait(py, async { Ok(db.health().await) }).py_result()?;
        health_dict(py, db, &health)
    }

    /// Query and pool counters and latency percentiles for this database.
    fn get_metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metrics_dict(py, &self.db)
    }

    fn execute_many(
        &self,
        py: Python<'_>,
        sql: &str,
        seq_of_params: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let started = Instant::now();
        let parsed = sql::parse(sql, self.db.dialect());
        let rows = many_values(&self.db, &parsed, seq_of_params, "execute_many").py_result()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let db = &self.db;
        let n = wait(py, db.execute_many(&parsed, &rows)).py_result()?;
        log_done(db.name(), "execute_many", started, n as usize);
        Ok(n)
    }

    fn execute_transaction<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let started = Instant::now();
        let stmts = statements(&self.db, queries).py_result()?;
        let db = &self.db;
        let results = wait(py, db.execute_transaction(&stmts)).py_result()?;
        log_done(
            db.name(),
            "execute_transaction",
            started,
            results.iter().map(Rows::row_count).sum(),
        );
        let lists = results
            .into_iter()
            .map(|r| rows_to_py(py, r))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, lists)
    }

    /// Rows one by one from a result of any size, with bounded memory:
    /// batches of `batch_size` stream from the server while you iterate.
    /// Leaving the loop early discards the connection it used.
    #[pyo3(signature = (sql, params=None, batch_size=1000))]
    fn iter_query(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        batch_size: usize,
    ) -> PyResult<RowIterator> {
        let stmt = statement(&self.db, sql, params, "iter_query").py_result()?;
        // The producer runs on the runtime; its events belong to this call.
        let _caller = super::logging::caller_span(py).entered();
        let receiver = self.db.stream(stmt, batch_size).py_result()?;
        Ok(RowIterator {
            receiver: Mutex::new(receiver),
            current: Mutex::new(None),
        })
    }

    /// Load rows (dicts, or tuples in `columns` order) into `table` with the
    /// server's bulk path (PostgreSQL binary COPY, SQL Server bulk load).
    /// All rows or none; returns the number loaded.
    #[pyo3(signature = (table, rows, columns=None))]
    fn bulk_insert(
        &self,
        py: Python<'_>,
        table: &str,
        rows: &Bound<'_, PyAny>,
        columns: Option<Vec<String>>,
    ) -> PyResult<u64> {
        let started = Instant::now();
        let (columns, values) = bulk_rows(&self.db, rows, columns).py_result()?;
        if values.is_empty() {
            return Ok(0);
        }
        let db = &self.db;
        let n = wait(py, db.bulk_insert(table, columns, &values)).py_result()?;
        log_done(db.name(), "bulk_insert", started, n as usize);
        Ok(n)
    }

    /// `with db.transaction() as tx:` — commit on success, rollback on error.
    fn transaction(&self) -> PyTransaction {
        PyTransaction {
            db: self.db.clone(),
            inner: Mutex::new(None),
        }
    }

    /// Check out a connection and run one round trip (raises on failure).
    fn ping(&self, py: Python<'_>) -> PyResult<()> {
        let db = &self.db;
        wait(py, db.ping()).py_result()
    }

    /// Apply pending migrations in order (up to `target`), under a
    /// database-wide lock; returns the versions applied and the current one.
    #[pyo3(signature = (target=None, *, out_of_order=false))]
    fn run_migrations<'py>(
        &self,
        py: Python<'py>,
        target: Option<&Bound<'py, PyAny>>,
        out_of_order: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let target = target.map(|t| t.str().map(|s| s.to_string())).transpose()?;
        let db = &self.db;
        let migrator = Migrator::new(db, db.migrations_root(), "run_migrations").py_result()?;
        let report = wait(py, migrator.migrate(target.as_deref(), out_of_order)).py_result()?;
        let d = PyDict::new(py);
        d.set_item("applied", report.applied)?;
        d.set_item("current_version", report.current_version)?;
        Ok(d)
    }

    /// Current version, pending and applied migrations; creates nothing.
    fn get_migration_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let db = &self.db;
        let migrator =
            Migrator::new(db, db.migrations_root(), "get_migration_status").py_result()?;
        let status = wait(py, migrator.status()).py_result()?;
        migration_status_dict(py, &status)
    }

    /// Raise `MigrationError` / `ChecksumMismatchError` if files and history disagree.
    #[pyo3(signature = (*, out_of_order=false))]
    fn validate_migrations(&self, py: Python<'_>, out_of_order: bool) -> PyResult<()> {
        let db = &self.db;
        let migrator =
            Migrator::new(db, db.migrations_root(), "validate_migrations").py_result()?;
        wait(py, migrator.validate(out_of_order)).py_result()
    }

    /// Undo applied versions above `target`, newest first; returns them.
    fn rollback_migrations(
        &self,
        py: Python<'_>,
        target: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<String>> {
        let target = target.str()?.to_string();
        let db = &self.db;
        let migrator =
            Migrator::new(db, db.migrations_root(), "rollback_migrations").py_result()?;
        wait(py, migrator.rollback(&target)).py_result()
    }

    /// Remove failed history entries and accept the files' checksums.
    fn repair_migrations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let db = &self.db;
        let migrator = Migrator::new(db, db.migrations_root(), "repair_migrations").py_result()?;
        let (removed, realigned) = wait(py, migrator.repair()).py_result()?;
        let d = PyDict::new(py);
        d.set_item("removed_failed", removed)?;
        d.set_item("realigned", realigned)?;
        Ok(d)
    }

    /// This database's migrations directory, or None when it has none.
    #[getter]
    fn migrations_dir(&self) -> Option<std::path::PathBuf> {
        crate::migrate::resolve_directory(self.db.config(), self.db.migrations_root()).ok()
    }

    fn get_pool_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        pool_status_dict(py, &self.db)
    }

    /// Stop using the shared pool; it closes after the grace period when no
    /// other manager uses it.
    fn close(&self) {
        self.db.release();
    }

    /// Close the pool's connections now (in-use ones when returned).
    fn dispose(&self) {
        self.db.dispose();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.db.release();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "DatabaseManager('{}', type={}, environment={}, target={})",
            self.db.name(),
            self.db.config().database_type.as_str(),
            self.config.environment(),
            self.db.config().spec.redacted()
        )
    }
}

#[pyclass(module = "dbflow._native", name = "Transaction", frozen)]
pub struct PyTransaction {
    db: Arc<Database>,
    inner: Mutex<Option<Transaction>>,
}

impl PyTransaction {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        operation: &'static str,
        f: impl for<'a> FnOnce(
                &'a mut Transaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>,
            > + Send,
    ) -> PyResult<T> {
        let db = &self.db;
        let inner = &self.inner;
        // The lock is held by this (GIL-free) thread for the whole call, so
        // two Python threads sharing one transaction take turns.
        py.detach(move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut().filter(|t| t.is_active()) {
                Some(tx) => runtime()?.block_on(f(tx)),
                None => Err(db.fail(
                    Error::new(
                        ErrorKind::Transaction,
                        "the transaction is not open; use it inside `with db.transaction() as tx:`",
                    ),
                    operation,
                )),
            }
        })
        .py_result()
    }
}

#[pymethods]
impl PyTransaction {
    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        {
            let this = slf.get();
            let db = &this.db;
            let tx = wait(py, db.begin("transaction")).py_result()?;
            let mut guard = this.inner.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_some_and(|t| t.is_active()) {
                return Err(to_pyerr(db.fail(
                    Error::new(
                        ErrorKind::Transaction,
                        "this transaction is already open; nest with tx.savepoint()",
                    ),
                    "transaction",
                )));
            }
            *guard = Some(tx);
        }
        Ok(slf)
    }

    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let failed = exc_type.is_some_and(|t| !t.is_none());
        let tx = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        // Already committed or rolled back explicitly inside the block.
        let Some(mut tx) = tx.filter(|t| t.is_active()) else {
            return Ok(false);
        };
        if failed {
            // The user's exception propagates unchanged; a failed rollback
            // only means the connection is discarded (the server rolls back).
            let _ = wait(py, tx.rollback());
            return Ok(false);
        }
        wait(py, tx.commit()).py_result()?;
        Ok(false)
    }

    #[pyo3(signature = (sql, params=None))]
    fn execute_query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let started = Instant::now();
        let stmt = statement(&self.db, sql, params, "transaction.execute_query").py_result()?;
        let rows = self.with(py, "transaction.execute_query", |tx| {
            Box::pin(async move { tx.query(&stmt).await })
        })?;
        log_done(
            self.db.name(),
            "transaction.execute_query",
            started,
            rows.row_count(),
        );
        rows_to_py(py, rows)
    }

    fn execute_many(
        &self,
        py: Python<'_>,
        sql: &str,
        seq_of_params: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let parsed = sql::parse(sql, self.db.dialect());
        let rows = many_values(&self.db, &parsed, seq_of_params, "transaction.execute_many")
            .py_result()?;
        self.with(py, "transaction.execute_many", |tx| {
            Box::pin(async move { tx.execute_many(&parsed, &rows).await })
        })
    }

    /// Commit now (the `with` block then has nothing left to do).
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, "transaction.commit", |tx| Box::pin(tx.commit()))
    }

    /// Roll back now.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, "transaction.rollback", |tx| Box::pin(tx.rollback()))
    }

    /// `with tx.savepoint():` — a nested unit that rolls back alone.
    fn savepoint(slf: Py<Self>) -> PySavepoint {
        PySavepoint {
            tx: slf,
            name: Mutex::new(None),
        }
    }

    #[getter]
    fn active(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|t| t.is_active())
    }
}

#[pyclass(module = "dbflow._native", name = "Savepoint", frozen)]
pub struct PySavepoint {
    tx: Py<PyTransaction>,
    name: Mutex<Option<String>>,
}

#[pymethods]
impl PySavepoint {
    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        {
            let this = slf.get();
            let name = this
                .tx
                .get()
                .with(py, "transaction.savepoint", |tx| Box::pin(tx.savepoint()))?;
            *this.name.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
        }
        Ok(slf)
    }

    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let Some(name) = self.name.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(false);
        };
        let failed = exc_type.is_some_and(|t| !t.is_none());
        let tx = self.tx.get();
        if failed {
            tx.with(py, "transaction.savepoint", |t| {
                Box::pin(async move { t.rollback_to_savepoint(&name).await })
            })?;
        } else {
            tx.with(py, "transaction.savepoint", |t| {
                Box::pin(async move { t.release_savepoint(&name).await })
            })?;
        }
        Ok(false)
    }
}
