//! `DatabaseManager`: convert arguments (`arguments`), release the GIL,
//! block on the shared runtime, convert results (`reports`, `rows`); its
//! transactions are in `transaction`.

use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::arguments::{deadline_arg, open_database, statement, statements};
use super::config::PyConfigManager;
use super::convert::{self, rows_to_py};
use super::errors::{to_pyerr, IntoPyResult};
use super::feed::{run_fed, RowSource};
use super::health::{health_dict, metrics_dict};
use super::reports::{baseline_dict, migration_status_dict, pool_status_dict, report_dict};
use super::rows::RowIterator;
use super::transaction::PyTransaction;
use crate::config::ConfigManager;
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::migrate::Migrator;
use crate::runtime::runtime;
use crate::sql::{self};
use crate::value::Rows;

/// Rows per batch converted while the next batch decodes.
pub(crate) const CONVERT_BATCH_ROWS: usize = 4096;

/// Run a future on the shared runtime with the GIL released.
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    fut: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    py.detach(|| crate::runtime::catch_panic(|| crate::runtime::block_on(&*runtime()?, fut)))
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

    /// `<DB>_MIGRATION_ARTIFACT` (default true): inside a Prefect flow run,
    /// `run_migrations()` publishes a markdown artifact of what it applied.
    #[getter]
    fn migration_artifact(&self) -> bool {
        self.db.config().migration_artifact
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
        let db = &self.db;
        let parsed = sql::parse(sql, db.dialect());
        let source = RowSource::params(db, &parsed, seq_of_params, "execute_many").py_result()?;
        let done = run_fed(py, source, |feed, _| db.execute_many(&parsed, feed))?;
        let n = done.unwrap_or(0);
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
    #[pyo3(signature = (sql, params=None, batch_size=1000, *, as_tuples=false))]
    fn iter_query(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        batch_size: usize,
        as_tuples: bool,
    ) -> PyResult<RowIterator> {
        let stmt = statement(&self.db, sql, params, "iter_query").py_result()?;
        // The producer runs on the runtime; its events belong to this call.
        let _caller = super::logging::caller_span(py).entered();
        let receiver = self.db.stream(stmt, batch_size).py_result()?;
        Ok(RowIterator::new(receiver, as_tuples))
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
        let db = &self.db;
        let source = RowSource::bulk(db, rows, columns).py_result()?;
        let done = run_fed(py, source, |feed, columns| {
            db.bulk_insert(table, columns, feed)
        })?;
        let n = done.unwrap_or(0);
        log_done(db.name(), "bulk_insert", started, n as usize);
        Ok(n)
    }

    /// `with db.transaction() as tx:` — commit on success, rollback on error.
    fn transaction(&self) -> PyTransaction {
        PyTransaction::new(self.db.clone())
    }

    /// Check out a connection and run one round trip (raises on failure).
    fn ping(&self, py: Python<'_>) -> PyResult<()> {
        let db = &self.db;
        wait(py, db.ping()).py_result()
    }

    /// Apply pending migrations in order (up to `target`), then due
    /// repeatable files, under a database-wide lock; `placeholders` beat
    /// the settings; `dry_run` returns what would run and changes nothing.
    #[pyo3(signature = (target=None, *, out_of_order=false, placeholders=None, dry_run=false))]
    fn run_migrations<'py>(
        &self,
        py: Python<'py>,
        target: Option<&Bound<'py, PyAny>>,
        out_of_order: bool,
        placeholders: Option<std::collections::BTreeMap<String, String>>,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let target = target.map(|t| t.str().map(|s| s.to_string())).transpose()?;
        let db = &self.db;
        let migrator = Migrator::new(db, db.migrations_root(), "run_migrations")
            .py_result()?
            .with_placeholders(placeholders.unwrap_or_default());
        let report = wait(
            py,
            migrator.migrate(target.as_deref(), out_of_order, dry_run),
        )
        .py_result()?;
        report_dict(py, &report)
    }

    /// Flyway's baseline: record `version` as applied in an empty history,
    /// so versions up to it never run. Refused when the history has rows.
    #[pyo3(signature = (version=None, description=crate::migrate::baseline::DEFAULT_DESCRIPTION))]
    fn baseline_migrations<'py>(
        &self,
        py: Python<'py>,
        version: Option<&Bound<'py, PyAny>>,
        description: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let version = match version {
            Some(v) => v.str()?.to_string(),
            None => "1".to_owned(),
        };
        let db = &self.db;
        let migrator =
            Migrator::new(db, db.migrations_root(), "baseline_migrations").py_result()?;
        let row = wait(py, migrator.baseline(&version, description)).py_result()?;
        baseline_dict(py, &row)
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
