//! `DatabaseManager`: each member a call into `ops` (run with the GIL
//! released, blocking on the shared runtime), except the specially
//! optimized paths kept here: `execute_query` converting rows while the
//! next batch decodes, `iter_query`, and `execute_many` / `bulk_insert` fed
//! from Python (`feed`). Its transactions are in `transaction`.

use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::arguments::statement;
use super::arrow::ArrowStream;
use super::arrow_feed;
use super::arrow_ops::{self, ArrowArgs, Shape};
use super::config::PyConfigManager;
use super::convert;
use super::errors::IntoPyResult;
use super::feed::{run_fed, RowSource};
use super::ops::{self, log_done, wait, Core, Retry};
use super::procedures;
use super::rows::RowIterator;
use super::transaction::PyTransaction;
use crate::sql::{self};
use crate::value::Rows;

/// Rows per batch converted while the next batch decodes.
pub(crate) const CONVERT_BATCH_ROWS: usize = 4096;

#[pyclass(module = "dbflow._native", name = "DatabaseManager", subclass, frozen)]
pub struct PyDatabaseManager {
    core: Core,
}

#[pymethods]
impl PyDatabaseManager {
    #[new]
    #[pyo3(signature = (database_name, *, environment=None, flow_name=None, config=None, migrations_dir=None, password_provider=None))]
    fn new(
        database_name: &str,
        environment: Option<&str>,
        flow_name: Option<&str>,
        config: Option<PyRef<'_, PyConfigManager>>,
        migrations_dir: Option<std::path::PathBuf>,
        password_provider: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let core = Core::open(
            database_name,
            environment,
            flow_name,
            config,
            migrations_dir,
            password_provider,
        )?;
        Ok(PyDatabaseManager { core })
    }

    #[getter]
    fn database_name(&self) -> &str {
        self.core.database_name()
    }

    /// `<DB>_MIGRATION_ARTIFACT` (default true): inside a Prefect flow run,
    /// `run_migrations()` publishes a markdown artifact of what it applied.
    #[getter]
    fn migration_artifact(&self) -> bool {
        self.core.migration_artifact()
    }

    #[getter]
    fn database_type(&self) -> &'static str {
        self.core.database_type()
    }

    #[getter]
    fn environment(&self) -> &str {
        self.core.environment()
    }

    #[getter]
    fn flow_name(&self) -> Option<&str> {
        self.core.flow_name()
    }

    /// The connection target with the password masked.
    #[getter]
    fn connection_string(&self) -> String {
        self.core.connection_string()
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
        let db = &self.core.db;
        let stmt = statement(db, sql, params, "execute_query").py_result()?;
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = ops::query_with_timeout(&self.core.db, sql, params, timeout)?;
        ops::block(py, op)
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let retry = Retry {
            attempts,
            min_delay,
            max_delay,
            idempotent,
        };
        ops::block(
            py,
            ops::query_with_retry(&self.core.db, sql, params, retry)?,
        )
    }

    /// `execute_query_with_retry` when `retry_on_failure`, else `execute_query`.
    #[pyo3(signature = (sql, params=None, retry_on_failure=true))]
    fn execute_query_safe<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        retry_on_failure: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = ops::query_safe(&self.core.db, sql, params, retry_on_failure)?;
        ops::block(py, op)
    }

    /// The rows with how long the call took: `{"results", "row_count",
    /// "execution_time_ms", "status"}`; a failure is reported in the dict
    /// (`status: "error"`, `error`, `error_type`), not raised.
    #[pyo3(signature = (sql, params=None))]
    fn execute_query_with_timing<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::query_with_timing(&self.core.db, sql, params))
    }

    /// Connection, query and migration checks in the health format; never
    /// raises for a database problem, answers within `HEALTH_TIMEOUT`.
    fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::health_check(&self.core.db))
    }

    /// Query and pool counters and latency percentiles for this database.
    fn get_metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.core.get_metrics(py)
    }

    /// The same statement for every parameter set of `seq_of_params` (any
    /// iterable of dicts, a generator too), in one transaction: all rows or
    /// none. A single-row INSERT is sent as multi-row statements, anything
    /// else pipelined; rows are converted while the server works. Returns
    /// the rows affected; an exception the iterable raises is re-raised.
    fn execute_many(
        &self,
        py: Python<'_>,
        sql: &str,
        seq_of_params: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let started = Instant::now();
        let db = &self.core.db;
        let parsed = sql::parse(sql, db.dialect());
        let source = RowSource::params(db, &parsed, seq_of_params, "execute_many").py_result()?;
        let done = run_fed(py, source, |feed, _| db.execute_many(&parsed, feed))?;
        let n = done.unwrap_or(0);
        log_done(db.name(), "execute_many", started, n as usize);
        Ok(n)
    }

    /// A stored procedure in one round trip: every result set, OUTPUT
    /// parameters (`output={"total": "int"}`; a name also in `params` is
    /// INPUT OUTPUT), the return code, rowcounts and the server's messages,
    /// as a `ProcedureResult`.
    #[pyo3(signature = (name, params=None, *, output=None))]
    fn call_procedure<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        params: Option<&Bound<'py, PyAny>>,
        output: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::block(
            py,
            procedures::call_procedure(&self.core.db, name, params, output)?,
        )
    }

    /// Every result set of a batch or `EXEC` (SQL Server), or of a script
    /// of several statements without parameters (PostgreSQL, in one
    /// transaction), in order: a list of lists of dicts.
    #[pyo3(signature = (sql, params=None))]
    fn execute_query_sets<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, procedures::query_sets(&self.core.db, sql, params)?)
    }

    /// Several statements (`"sql"`, `("sql",)` or `("sql", params)`) in one
    /// transaction, all or none; returns each statement's rows. A failure
    /// names the statement (`statement 2 of 3`) and rolls everything back.
    fn execute_transaction<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::execute_transaction(&self.core.db, queries)?)
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
        let db = &self.core.db;
        let stmt = statement(db, sql, params, "iter_query").py_result()?;
        // The producer runs on the runtime; its events belong to this call.
        let _caller = super::logging::caller_span(py).entered();
        let receiver = db.stream(stmt, batch_size).py_result()?;
        Ok(RowIterator::new(receiver, as_tuples))
    }

    /// The result as a `pyarrow.Table`, built in Rust and handed over
    /// without a copy. `partition_on=` (an integer column) with
    /// `partitions=N` reads N ranges of it concurrently on pooled
    /// connections.
    #[pyo3(signature = (sql, params=None, *, partition_on=None, partitions=None))]
    fn fetch_arrow<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        partition_on: Option<&Bound<'py, PyAny>>,
        partitions: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let db = &self.core.db;
        let args = ArrowArgs::new(db, Shape::Table, None, partition_on, partitions)?;
        ops::block(py, arrow_ops::fetch(db, sql, params, args)?)
    }

    /// The result as a `polars.DataFrame` (through the Arrow C stream; pyarrow
    /// is not needed). Partitioned as `fetch_arrow`.
    #[pyo3(signature = (sql, params=None, *, partition_on=None, partitions=None))]
    fn fetch_polars<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        partition_on: Option<&Bound<'py, PyAny>>,
        partitions: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let db = &self.core.db;
        let args = ArrowArgs::new(db, Shape::Polars, None, partition_on, partitions)?;
        ops::block(py, arrow_ops::fetch(db, sql, params, args)?)
    }

    /// The result as a `pandas.DataFrame`; `dtype_backend` as in
    /// `pandas.read_sql` (`"numpy_nullable"` keeps integers with NULLs
    /// integers and decimals exact; `"pyarrow"` gives `ArrowDtype` columns).
    /// Partitioned as `fetch_arrow`.
    #[pyo3(signature = (sql, params=None, *, dtype_backend="numpy_nullable".to_owned(), partition_on=None, partitions=None))]
    #[pyo3(
        text_signature = "(self, sql, params=None, *, dtype_backend='numpy_nullable', partition_on=None, partitions=None)"
    )]
    fn fetch_pandas<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        dtype_backend: String,
        partition_on: Option<&Bound<'py, PyAny>>,
        partitions: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let db = &self.core.db;
        let args = ArrowArgs::new(
            db,
            Shape::Pandas,
            Some(dtype_backend),
            partition_on,
            partitions,
        )?;
        ops::block(py, arrow_ops::fetch(db, sql, params, args)?)
    }

    /// The result as `pyarrow.RecordBatch`es of at most `batch_rows` rows,
    /// read from the server as they are consumed (bounded memory); the
    /// object also exports the Arrow C stream (`__arrow_c_stream__`).
    #[pyo3(signature = (sql, params=None, *, batch_rows=crate::arrow::DEFAULT_BATCH_ROWS))]
    #[pyo3(text_signature = "(self, sql, params=None, *, batch_rows=65536)")]
    fn iter_arrow(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        batch_rows: usize,
    ) -> PyResult<ArrowStream> {
        arrow_ops::iter(py, &self.core.db, sql, params, batch_rows)
    }

    /// Load rows (dicts, or tuples in `columns` order) into `table` with the
    /// server's bulk path (PostgreSQL binary COPY, SQL Server bulk load).
    /// Arrow data (a pyarrow Table or RecordBatch, a Polars or pandas
    /// DataFrame, `iter_arrow`'s result) loads without Python rows, its
    /// columns matched by name. All rows or none; returns the number loaded.
    #[pyo3(signature = (table, rows, columns=None))]
    fn bulk_insert(
        &self,
        py: Python<'_>,
        table: &str,
        rows: &Bound<'_, PyAny>,
        columns: Option<Vec<String>>,
    ) -> PyResult<u64> {
        let started = Instant::now();
        let db = &self.core.db;
        if let Some(data) = arrow_feed::input(rows)
            .map_err(|e| db.fail(e, "bulk_insert"))
            .py_result()?
        {
            arrow_feed::refuse_columns(db, &columns)?;
            let n = arrow_feed::load_blocking(py, db, table, data)?;
            log_done(db.name(), "bulk_insert", started, n as usize);
            return Ok(n);
        }
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
        PyTransaction::new(self.core.db.clone())
    }

    /// Check out a connection and run one round trip (raises on failure).
    fn ping<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::ping(&self.core.db))
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let db = &self.core.db;
        let op = ops::run_migrations(db, target, out_of_order, placeholders, dry_run)?;
        ops::block(py, op)
    }

    /// Flyway's baseline: record `version` as applied in an empty history,
    /// so versions up to it never run. Refused when the history has rows.
    #[pyo3(signature = (version=None, description=crate::migrate::baseline::DEFAULT_DESCRIPTION))]
    #[pyo3(text_signature = "(self, version=None, description='<< Flyway Baseline >>')")]
    fn baseline_migrations<'py>(
        &self,
        py: Python<'py>,
        version: Option<&Bound<'py, PyAny>>,
        description: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = ops::baseline_migrations(&self.core.db, version, description)?;
        ops::block(py, op)
    }

    /// Current version, pending and applied migrations; creates nothing.
    fn get_migration_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::get_migration_status(&self.core.db))
    }

    /// Raise `MigrationError` / `ChecksumMismatchError` if files and history disagree.
    #[pyo3(signature = (*, out_of_order=false))]
    fn validate_migrations<'py>(
        &self,
        py: Python<'py>,
        out_of_order: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::validate_migrations(&self.core.db, out_of_order))
    }

    /// Undo applied versions above `target`, newest first; returns them.
    fn rollback_migrations<'py>(
        &self,
        py: Python<'py>,
        target: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::rollback_migrations(&self.core.db, target)?)
    }

    /// Remove failed history entries and accept the files' checksums.
    fn repair_migrations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::block(py, ops::repair_migrations(&self.core.db))
    }

    /// This database's migrations directory, or None when it has none.
    #[getter]
    fn migrations_dir(&self) -> Option<std::path::PathBuf> {
        self.core.migrations_dir()
    }

    /// The pool now: `pool_size`, `max_overflow`, `checked_in`,
    /// `checked_out`, `overflow`, `waiting`, `utilization`, connections
    /// opened and closed (SQLAlchemy QueuePool's terms; no I/O).
    fn get_pool_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.core.get_pool_status(py)
    }

    /// Stop using the shared pool; it closes after the grace period when no
    /// other manager uses it.
    fn close(&self) {
        self.core.close();
    }

    /// Close the pool's connections now (in-use ones when returned).
    fn dispose(&self) {
        self.core.dispose();
    }

    /// `with DatabaseManager("rpa_db") as db:` — the manager itself.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Leaving the `with` block releases the pool (`close()`); exceptions
    /// propagate.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.core.close();
        false
    }

    fn __repr__(&self) -> String {
        self.core.repr("DatabaseManager")
    }
}
