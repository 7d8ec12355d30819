//! `AsyncDatabaseManager`: every member of `DatabaseManager`, the ones that
//! do I/O as awaitables on asyncio (the operations both share are in `ops`;
//! `execute_many`, `bulk_insert` and `iter_query` are fed or streamed here,
//! with `AsyncRowIterator`; transactions are in `aio_transaction`). The work
//! runs on dbflow's shared runtime (per process, so forks stay safe)
//! through pyo3-async-runtimes; cancelling the awaiting task drops the Rust
//! future, and a connection dropped mid-operation is discarded.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3_async_runtimes::generic::{ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;

use super::aio_transaction::AsyncTransaction;
use super::arguments::statement;
use super::arrow::ArrowStream;
use super::arrow_feed;
use super::arrow_ops::{self, ArrowArgs, Shape};
use super::config::PyConfigManager;
use super::convert::rows_in_shape;
use super::errors::{to_pyerr, IntoPyResult};
use super::feed::{reraise, start_fed, RowSource};
use super::ops::{self, Core, Retry};
use super::procedures;
use crate::error::{Error, Result};
use crate::value::Rows;

/// dbflow's runtime as a pyo3-async-runtimes runtime.
pub struct DbflowRuntime;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

fn handle() -> tokio::runtime::Handle {
    // Every awaitable is created after `runtime()` succeeded in `awaitable`;
    // the current runtime's handle is what tasks are spawned on.
    match crate::runtime::get() {
        Some(rt) => rt.handle().clone(),
        None => crate::runtime::runtime()
            .map(|rt| rt.handle().clone())
            .expect("runtime checked before use"),
    }
}

impl Runtime for DbflowRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        handle().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        handle().spawn_blocking(f)
    }
}

impl ContextExt for DbflowRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// An awaitable running `fut` on the shared runtime.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    awaitable_raising(py, fut, to_pyerr)
}

/// [`awaitable`] with the error made Python's by `raise` (the caller's own
/// exception from its rows, for `execute_many` and `bulk_insert`).
fn awaitable_raising<'py, F, T>(
    py: Python<'py>,
    fut: F,
    raise: impl FnOnce(Error) -> PyErr + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    crate::runtime::runtime().py_result()?;
    // Events of this work are logged in the awaiting coroutine's context
    // (its Prefect run), though they happen on runtime threads.
    let fut = tracing::Instrument::instrument(
        crate::runtime::catch_panic_async(fut),
        super::logging::caller_span(py),
    );
    pyo3_async_runtimes::generic::future_into_py::<DbflowRuntime, _, T>(py, async move {
        fut.await.map_err(raise)
    })
}

/// An awaitable that is already done (for `__aenter__` / `__aexit__`).
fn ready<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let future = py
        .import("asyncio")?
        .call_method0("get_running_loop")?
        .call_method0("create_future")?;
    future.call_method1("set_result", (value,))?;
    Ok(future)
}

#[pyclass(
    module = "dbflow._native",
    name = "AsyncDatabaseManager",
    subclass,
    frozen
)]
pub struct PyAsyncDatabaseManager {
    core: Core,
}

/// Every member of `DatabaseManager`; the ones that do I/O return
/// awaitables (see `ops` for the operations both run).
#[pymethods]
impl PyAsyncDatabaseManager {
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
        Ok(PyAsyncDatabaseManager { core })
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

    #[pyo3(signature = (sql, params=None, *, as_tuples=false))]
    fn execute_query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        as_tuples: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::query(&self.core.db, sql, params, as_tuples)?)
    }

    #[pyo3(signature = (sql, params=None, timeout=None))]
    fn execute_query_with_timeout<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = ops::query_with_timeout(&self.core.db, sql, params, timeout)?;
        ops::spawn(py, op)
    }

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
        ops::spawn(
            py,
            ops::query_with_retry(&self.core.db, sql, params, retry)?,
        )
    }

    #[pyo3(signature = (sql, params=None, retry_on_failure=true))]
    fn execute_query_safe<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        retry_on_failure: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = ops::query_safe(&self.core.db, sql, params, retry_on_failure)?;
        ops::spawn(py, op)
    }

    #[pyo3(signature = (sql, params=None))]
    fn execute_query_with_timing<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::query_with_timing(&self.core.db, sql, params))
    }

    fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::health_check(&self.core.db))
    }

    /// Query and pool counters and latency percentiles for this database (no I/O).
    fn get_metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.core.get_metrics(py)
    }

    fn execute_many<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        seq_of_params: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let db = &self.core.db;
        let parsed = crate::sql::parse(sql, db.dialect());
        let source = RowSource::params(db, &parsed, seq_of_params, "execute_many").py_result()?;
        let started = start_fed(source, |feed, _, raised| {
            let (db, parsed) = (db.clone(), parsed.clone());
            let fut = async move { db.execute_many(&parsed, feed).await };
            awaitable_raising(py, fut, move |e| reraise(&raised, e))
        })?;
        started.map_or_else(|| awaitable(py, async { Ok(0u64) }), Ok)
    }

    /// A stored procedure in one round trip: every result set, OUTPUT
    /// parameters (`output={"total": "int"}`; a name also in `params` is
    /// INPUT OUTPUT), the return code, rowcounts and the server's messages,
    /// as a `ProcedureResult` (awaitable).
    #[pyo3(signature = (name, params=None, *, output=None))]
    fn call_procedure<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        params: Option<&Bound<'py, PyAny>>,
        output: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(
            py,
            procedures::call_procedure(&self.core.db, name, params, output)?,
        )
    }

    /// Every result set of a batch or `EXEC` (SQL Server), or of a script
    /// of several statements without parameters (PostgreSQL, in one
    /// transaction), in order: a list of lists of dicts (awaitable).
    #[pyo3(signature = (sql, params=None))]
    fn execute_query_sets<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, procedures::query_sets(&self.core.db, sql, params)?)
    }

    fn execute_transaction<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::execute_transaction(&self.core.db, queries)?)
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
        ops::spawn(py, arrow_ops::fetch(db, sql, params, args)?)
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
        ops::spawn(py, arrow_ops::fetch(db, sql, params, args)?)
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
        ops::spawn(py, arrow_ops::fetch(db, sql, params, args)?)
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

    /// An async iterator of dicts, streamed in batches with bounded memory.
    #[pyo3(signature = (sql, params=None, batch_size=1000, *, as_tuples=false))]
    fn iter_query(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        batch_size: usize,
        as_tuples: bool,
    ) -> PyResult<AsyncRowIterator> {
        let db = &self.core.db;
        let stmt = statement(db, sql, params, "iter_query").py_result()?;
        let _caller = super::logging::caller_span(py).entered();
        let receiver = db.stream(stmt, batch_size).py_result()?;
        let buffer = py
            .import("collections")?
            .getattr("deque")?
            .call0()?
            .unbind();
        Ok(AsyncRowIterator {
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            buffer,
            as_tuples,
        })
    }

    #[pyo3(signature = (table, rows, columns=None))]
    fn bulk_insert<'py>(
        &self,
        py: Python<'py>,
        table: String,
        rows: &Bound<'py, PyAny>,
        columns: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let db = &self.core.db;
        if let Some(data) = arrow_feed::input(rows)
            .map_err(|e| db.fail(e, "bulk_insert"))
            .py_result()?
        {
            arrow_feed::refuse_columns(db, &columns)?;
            return arrow_feed::load_async(py, db, &table, data);
        }
        let source = RowSource::bulk(&self.core.db, rows, columns).py_result()?;
        let started = start_fed(source, |feed, columns, raised| {
            let db = self.core.db.clone();
            let fut = async move { db.bulk_insert(&table, columns, feed).await };
            awaitable_raising(py, fut, move |e| reraise(&raised, e))
        })?;
        started.map_or_else(|| awaitable(py, async { Ok(0u64) }), Ok)
    }

    /// `async with db.transaction() as tx:` — commit on success, rollback on error.
    fn transaction(&self) -> AsyncTransaction {
        AsyncTransaction::new(self.core.db.clone())
    }

    fn ping<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::ping(&self.core.db))
    }

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
        ops::spawn(py, op)
    }

    #[pyo3(signature = (version=None, description=crate::migrate::baseline::DEFAULT_DESCRIPTION))]
    #[pyo3(text_signature = "(self, version=None, description='<< Flyway Baseline >>')")]
    fn baseline_migrations<'py>(
        &self,
        py: Python<'py>,
        version: Option<&Bound<'py, PyAny>>,
        description: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = ops::baseline_migrations(&self.core.db, version, description)?;
        ops::spawn(py, op)
    }

    fn get_migration_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::get_migration_status(&self.core.db))
    }

    #[pyo3(signature = (*, out_of_order=false))]
    fn validate_migrations<'py>(
        &self,
        py: Python<'py>,
        out_of_order: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::validate_migrations(&self.core.db, out_of_order))
    }

    fn rollback_migrations<'py>(
        &self,
        py: Python<'py>,
        target: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::rollback_migrations(&self.core.db, target)?)
    }

    fn repair_migrations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ops::spawn(py, ops::repair_migrations(&self.core.db))
    }

    #[getter]
    fn migrations_dir(&self) -> Option<std::path::PathBuf> {
        self.core.migrations_dir()
    }

    /// The pool now, as `DatabaseManager.get_pool_status` reports it (no I/O).
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

    /// `async with AsyncDatabaseManager("rpa_db") as db:` — the manager itself.
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        ready(py, slf.into_any())
    }

    #[pyo3(signature = (*_exc))]
    /// Leaving the block releases the pool (`close()`); exceptions propagate.
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.core.close();
        ready(
            py,
            pyo3::types::PyBool::new(py, false).to_owned().into_any(),
        )
    }

    fn __repr__(&self) -> String {
        self.core.repr("AsyncDatabaseManager")
    }
}

/// `async for row in db.iter_query(...)`: batches are awaited from the
/// stream; rows of a batch are handed out from a deque without awaiting.
#[pyclass(module = "dbflow._native", name = "AsyncRowIterator", frozen)]
pub struct AsyncRowIterator {
    receiver: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Result<Rows>>>>,
    buffer: Py<PyAny>,
    as_tuples: bool,
}

/// The next batch (as tuples?): its first row is the awaited value, the
/// rest go to the buffer. An exhausted stream ends the iteration.
struct NextBatch(Option<Rows>, Py<PyAny>, bool);

impl<'py> IntoPyObject<'py> for NextBatch {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let Some(rows) = self.0 else {
            return Err(pyo3::exceptions::PyStopAsyncIteration::new_err(()));
        };
        let list = rows_in_shape(py, rows, self.2)?;
        let buffer = self.1.bind(py);
        buffer.call_method1("extend", (list,))?;
        match buffer.call_method0("popleft") {
            Ok(first) => Ok(first),
            Err(_) => Err(pyo3::exceptions::PyStopAsyncIteration::new_err(())),
        }
    }
}

#[pymethods]
impl AsyncRowIterator {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let buffer = self.buffer.bind(py);
        if buffer.len()? > 0 {
            return ready(py, buffer.call_method0("popleft")?);
        }
        let receiver = self.receiver.clone();
        let buffer = self.buffer.clone_ref(py);
        let as_tuples = self.as_tuples;
        awaitable(py, async move {
            // Skip empty batches (a statement without rows sends one).
            loop {
                match receiver.lock().await.recv().await {
                    None => return Ok(NextBatch(None, buffer, as_tuples)),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(rows)) if rows.row_count() == 0 => continue,
                    Some(Ok(rows)) => return Ok(NextBatch(Some(rows), buffer, as_tuples)),
                }
            }
        })
    }

    /// Stop early; the connection is released.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let receiver = self.receiver.clone();
        awaitable(py, async move {
            receiver.lock().await.close();
            ops::nothing(Ok(()))
        })
    }
}
