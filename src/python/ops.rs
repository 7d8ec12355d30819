//! The operations both managers share, each written once. An operation
//! reads its Python arguments while the GIL is held into plain Rust values
//! (a parse or parameter error is raised right there), and becomes an
//! [`Op`]: a future on `Arc<Database>` whose output is a value that turns
//! into Python through its one `IntoPyObject` conversion. `DatabaseManager`
//! runs it with [`block`] (GIL released, blocking on the shared runtime),
//! `AsyncDatabaseManager` with [`spawn`] (an asyncio awaitable); the
//! pymethods of both are one-line calls into this module. The specially
//! optimized sync paths (`execute_query` converting while decoding,
//! `iter_query`, `execute_many` and `bulk_insert` fed from Python) stay in
//! `manager`, `aio` and `feed`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::IntoPyObjectExt;

use super::arguments::{deadline_arg, open_database, statement, statements};
use super::config::PyConfigManager;
use super::convert::{rows_in_shape, rows_to_py};
use super::errors::{to_pyerr, IntoPyResult};
use super::health::{health_dict, metrics_dict};
use super::reports::{baseline_dict, migration_status_dict, pool_status_dict, report_dict};
use crate::config::ConfigManager;
use crate::engine::{Database, Health};
use crate::error::{Error, Result};
use crate::migrate::Migrator;
use crate::value::Rows;

/// Run a future on the shared runtime, on this thread: with the GIL held
/// while its answers come within tens of microseconds, released for any
/// wait it sleeps through ([`drive`]).
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = Result<T>> + Send,
) -> Result<T> {
    super::otel::keeping_spans(py, || {
        crate::runtime::catch_panic(|| drive(py, std::pin::pin!(fut)))
    })
}

/// Drive `fut` on this thread, letting go of the GIL only to sleep.
///
/// Releasing it for a wait of 20 µs hands it to any other Python thread
/// that wants it (a flow's thread pool doing Python work); taking it back
/// then waits for that thread's switch interval, 5 ms. So the future is
/// first polled with the GIL held, checking for each answer the way a
/// waiting caller does before sleeping ([`crate::runtime::poll_quickly`]:
/// only where this thread's answers come that quickly and its checks
/// catch them), and the GIL is released at the first wait that sleeps.
/// Where taking it back has been costing this thread milliseconds
/// ([`GIL_TAKE_BACK`]), an answer expected within half that cost is slept
/// for holding the GIL (a SQL Server round trip, 50–400 µs), as the same
/// time of Python code would hold it.
///
/// Unless another thread's call is in progress: seen from here, with the
/// GIL held, it waits with the GIL released and wants it back when its
/// answer comes, which this thread, holding it through its check and the
/// Python code after, would make wait for the switch interval (eight
/// threads of lookups, quiet: 40 µs a lookup and a p99 of 2.3 ms holding
/// it, against 32 and 0.8 letting go). So then the GIL is let go of at once.
pub(crate) fn drive<T: Send, F: Future<Output = Result<T>> + Send + ?Sized>(
    py: Python<'_>,
    mut fut: std::pin::Pin<&mut F>,
) -> Result<T> {
    let rt = crate::runtime::runtime()?;
    let in_progress = InProgress::enter();
    let got = if in_progress.alone {
        crate::runtime::poll_quickly(&rt, fut.as_mut(), gil_hold(py))
    } else {
        crate::runtime::Quickly::Waits(None)
    };
    match got {
        crate::runtime::Quickly::Done(out) => out,
        waits => {
            let mut answered = None;
            let out = py.detach(|| {
                let out = crate::runtime::finish(&rt, fut, waits);
                answered = Some(Instant::now());
                out
            });
            if let Some(answered) = answered {
                GIL_TAKE_BACK.with(|t| t.set((t.get() * 15 + answered.elapsed()) / 16));
            }
            out
        }
    }
}

thread_local! {
    /// How long this thread's recent calls waited to take the GIL back
    /// after their answer came (a slow moving average; microseconds when
    /// no other thread wants it, the switch interval when one does; slow,
    /// so that a thread preempted now and then on a busy machine, with
    /// the GIL free, does not count as one that waits for it).
    static GIL_TAKE_BACK: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

/// How long a call may sleep for its answer holding the GIL: letting go
/// costs this thread taking it back, not worth it for an answer that
/// comes sooner. Half the recent cost once that is 2 ms or more (below,
/// nothing is slept for holding it), at most 2 ms (well under the
/// 5 ms other threads wait for it anyway before Python makes the holder
/// let go). Each call made while the cost is high lowers the estimate a
/// little, so a thread whose neighbours went quiet lets go again and
/// learns so.
fn gil_hold(py: Python<'_>) -> std::time::Duration {
    GIL_TAKE_BACK.with(|t| {
        let (hold, cost) = hold_decision(t.get(), || other_python_threads(py));
        t.set(cost);
        hold
    })
}

/// [`gil_hold`]'s rule, for a take-back cost of `cost`: how long to hold
/// the GIL, and the cost estimate after this call.
fn hold_decision(
    cost: std::time::Duration,
    other_threads: impl FnOnce() -> bool,
) -> (std::time::Duration, std::time::Duration) {
    const HOLD_FROM: std::time::Duration = std::time::Duration::from_millis(2);
    const HOLD_AT_MOST: std::time::Duration = std::time::Duration::from_millis(2);
    // Without another Python thread the cost was not the GIL's (the
    // thread was preempted on a busy machine): holding gains nothing.
    if cost < HOLD_FROM || !other_threads() {
        return (std::time::Duration::ZERO, cost);
    }
    ((cost / 2).min(HOLD_AT_MOST), cost - cost / 512)
}

/// Whether this interpreter has a thread besides the caller's.
fn other_python_threads(_py: Python<'_>) -> bool {
    // SAFETY: the GIL is held (`_py`), so the interpreter's list of thread
    // states does not change while it is read.
    unsafe {
        let first = pyo3::ffi::PyInterpreterState_ThreadHead(pyo3::ffi::PyInterpreterState_Get());
        !first.is_null() && !pyo3::ffi::PyThreadState_Next(first).is_null()
    }
}

/// Sync calls in [`drive`] now, on every thread.
static IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

/// One call counted in [`IN_PROGRESS`] while alive.
struct InProgress {
    /// No other call was in progress when this one began.
    alone: bool,
}

impl InProgress {
    fn enter() -> InProgress {
        InProgress {
            alone: IN_PROGRESS.fetch_add(1, Ordering::AcqRel) == 0,
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        IN_PROGRESS.fetch_sub(1, Ordering::AcqRel);
    }
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

/// One operation with its arguments read: the work, a future whose output
/// becomes Python by its `IntoPyObject`.
pub(crate) struct Op<F>(F);

impl<F> Op<F> {
    pub(crate) fn new(work: F) -> Self {
        Op(work)
    }
}

/// The sync way: release the GIL and block on the shared runtime.
pub(crate) fn block<'py, T, F>(py: Python<'py>, op: Op<F>) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T>> + Send,
    T: IntoPyObject<'py> + Send,
{
    wait(py, op.0).py_result()?.into_bound_py_any(py)
}

/// The async way: an asyncio awaitable of the result.
pub(crate) fn spawn<'py, T, F>(py: Python<'py>, op: Op<F>) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    super::aio::awaitable(py, op.0)
}

/// What both manager classes hold, and their members that do no I/O.
pub(crate) struct Core {
    pub(crate) db: Arc<Database>,
    config: ConfigManager,
}

impl Core {
    pub(crate) fn open(
        database_name: &str,
        environment: Option<&str>,
        flow_name: Option<&str>,
        config: Option<PyRef<'_, PyConfigManager>>,
        migrations_dir: Option<std::path::PathBuf>,
        password_provider: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (db, config) = open_database(
            database_name,
            environment,
            flow_name,
            config,
            migrations_dir,
            password_provider,
        )?;
        Ok(Core { db, config })
    }

    pub(crate) fn database_name(&self) -> &str {
        self.db.name()
    }

    pub(crate) fn migration_artifact(&self) -> bool {
        self.db.config().migration_artifact
    }

    pub(crate) fn database_type(&self) -> &'static str {
        self.db.config().database_type.as_str()
    }

    pub(crate) fn environment(&self) -> &str {
        self.config.environment()
    }

    pub(crate) fn flow_name(&self) -> Option<&str> {
        self.config.flow_name()
    }

    pub(crate) fn connection_string(&self) -> String {
        self.db.config().spec.redacted()
    }

    pub(crate) fn migrations_dir(&self) -> Option<std::path::PathBuf> {
        crate::migrate::resolve_directory(self.db.config(), self.db.migrations_root()).ok()
    }

    pub(crate) fn get_metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metrics_dict(py, &self.db)
    }

    pub(crate) fn get_pool_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        pool_status_dict(py, &self.db)
    }

    /// `close()`, and leaving `with` / `async with`.
    pub(crate) fn close(&self) {
        self.db.release();
    }

    pub(crate) fn dispose(&self) {
        self.db.dispose();
    }

    pub(crate) fn repr(&self, class: &str) -> String {
        format!(
            "{class}('{}', type={}, environment={}, target={})",
            self.db.name(),
            self.database_type(),
            self.environment(),
            self.connection_string()
        )
    }
}

/// Rows that become `list[dict]` (or `list[tuple]`).
pub(crate) struct PyRows {
    pub(crate) rows: Rows,
    pub(crate) as_tuples: bool,
}

impl From<Rows> for PyRows {
    fn from(rows: Rows) -> Self {
        PyRows {
            rows,
            as_tuples: false,
        }
    }
}

impl<'py> IntoPyObject<'py> for PyRows {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        rows_in_shape(py, self.rows, self.as_tuples)
    }
}

/// A value turned into Python by its function (for results that need no
/// type of their own) when it reaches Python.
pub(crate) struct Converted<T>(
    T,
    for<'py> fn(Python<'py>, T) -> PyResult<Bound<'py, PyAny>>,
);

impl<'py, T> IntoPyObject<'py> for Converted<T> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        (self.1)(py, self.0)
    }
}

/// `None` in Python (a bare `()` would become an empty tuple).
pub(crate) fn nothing(result: Result<()>) -> Result<Converted<()>> {
    result.map(|()| Converted((), |py, ()| Ok(py.None().into_bound(py))))
}

/// A result with what its debug event reports. The event is logged when
/// the result reaches Python, where the GIL is held anyway: logging from the
/// work itself would take the GIL on a runtime thread (async) or again
/// while it is released (sync), once per operation.
pub(crate) struct Logged<T> {
    value: T,
    database: Arc<Database>,
    operation: &'static str,
    started: Instant,
    rows: usize,
}

impl<'py, T: IntoPyObject<'py>> IntoPyObject<'py> for Logged<T> {
    type Target = T::Target;
    type Output = T::Output;
    type Error = T::Error;

    fn into_pyobject(self, py: Python<'py>) -> std::result::Result<Self::Output, Self::Error> {
        log_done(
            self.database.name(),
            self.operation,
            self.started,
            self.rows,
        );
        self.value.into_pyobject(py)
    }
}

fn done(
    db: Arc<Database>,
    operation: &'static str,
    started: Instant,
    rows: Result<Rows>,
) -> Result<Logged<PyRows>> {
    rows.map(|rows| Logged {
        rows: rows.row_count(),
        value: PyRows::from(rows),
        database: db,
        operation,
        started,
    })
}

/// `execute_query` as an awaitable (the sync one converts while decoding).
pub(crate) fn query(
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    as_tuples: bool,
) -> PyResult<Op<impl Future<Output = Result<Logged<PyRows>>> + Send + 'static>> {
    let stmt = statement(db, sql, params, "execute_query").py_result()?;
    let db = db.clone();
    Ok(Op(async move {
        let started = Instant::now();
        let rows = db.query(&stmt).await;
        let mut rows = done(db, "execute_query", started, rows)?;
        rows.value.as_tuples = as_tuples;
        Ok(rows)
    }))
}

pub(crate) fn query_with_timeout(
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    timeout: Option<f64>,
) -> PyResult<Op<impl Future<Output = Result<Logged<PyRows>>> + Send + 'static>> {
    let operation = "execute_query_with_timeout";
    let deadline = deadline_arg(db, timeout)?;
    let stmt = statement(db, sql, params, operation).py_result()?;
    let db = db.clone();
    Ok(Op(async move {
        let started = Instant::now();
        let rows = db.query_with_timeout(&stmt, deadline).await;
        done(db, operation, started, rows)
    }))
}

/// The keyword arguments of `execute_query_with_retry`.
#[derive(Default)]
pub(crate) struct Retry {
    pub(crate) attempts: Option<u32>,
    pub(crate) min_delay: Option<f64>,
    pub(crate) max_delay: Option<f64>,
    pub(crate) idempotent: bool,
}

impl Retry {
    /// The database's policy with the given overrides, validated.
    fn policy(&self, db: &Database) -> PyResult<crate::retry::RetryPolicy> {
        let mut policy = db.config().retry.clone();
        if let Some(a) = self.attempts {
            policy.attempts = a.max(1);
        }
        for (value, slot) in [
            (self.min_delay, &mut policy.min_delay),
            (self.max_delay, &mut policy.max_delay),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(to_pyerr(db.fail(
                        Error::parameter("delays must be non-negative seconds"),
                        "execute_query_with_retry",
                    )));
                }
                *slot = std::time::Duration::from_secs_f64(v);
            }
        }
        Ok(policy)
    }
}

/// Transient failures retried with backoff (see `Database::query_with_retry`).
pub(crate) fn query_with_retry(
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    retry: Retry,
) -> PyResult<Op<impl Future<Output = Result<Logged<PyRows>>> + Send + 'static>> {
    let operation = "execute_query_with_retry";
    let policy = retry.policy(db)?;
    let stmt = statement(db, sql, params, operation).py_result()?;
    let db = db.clone();
    Ok(Op(async move {
        let started = Instant::now();
        let rows = db
            .query_with_retry(&stmt, Some(policy), retry.idempotent)
            .await;
        done(db, operation, started, rows)
    }))
}

/// `execute_query_with_retry` (default policy) when `retry_on_failure`,
/// else `execute_query`.
pub(crate) fn query_safe(
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    retry_on_failure: bool,
) -> PyResult<Op<impl Future<Output = Result<Logged<PyRows>>> + Send + 'static>> {
    let operation = if retry_on_failure {
        "execute_query_with_retry"
    } else {
        "execute_query"
    };
    let stmt = statement(db, sql, params, operation).py_result()?;
    let db = db.clone();
    Ok(Op(async move {
        let started = Instant::now();
        let rows = if retry_on_failure {
            db.query_with_retry(&stmt, None, false).await
        } else {
            db.query(&stmt).await
        };
        done(db, operation, started, rows)
    }))
}

/// The outcome of `execute_query_with_timing`, timed from the call until
/// its rows are Python objects.
pub(crate) struct Timed {
    db: Arc<Database>,
    rows: Result<Rows>,
    started: Instant,
}

impl<'py> IntoPyObject<'py> for Timed {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        if let Ok(r) = &self.rows {
            let operation = "execute_query_with_timing";
            log_done(self.db.name(), operation, self.started, r.row_count());
        }
        let result = self.rows.map_err(to_pyerr).and_then(|r| rows_to_py(py, r));
        let elapsed = (self.started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
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
}

/// Results with timing; every failure (a bad parameter too) is reported
/// in the dict, never raised.
pub(crate) fn query_with_timing(
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
) -> Op<impl Future<Output = Result<Timed>> + Send + 'static> {
    let started = Instant::now();
    let stmt = statement(db, sql, params, "execute_query");
    let db = db.clone();
    Op(async move {
        let rows = match stmt {
            Ok(stmt) => db.query(&stmt).await,
            Err(e) => Err(e),
        };
        Ok(Timed { db, rows, started })
    })
}

/// Each statement's rows, as a list of lists.
type TransactionRows = Logged<Converted<Vec<Rows>>>;

pub(crate) fn execute_transaction(
    db: &Arc<Database>,
    queries: &Bound<'_, PyAny>,
) -> PyResult<Op<impl Future<Output = Result<TransactionRows>> + Send + 'static>> {
    let stmts = statements(db, queries).py_result()?;
    let db = db.clone();
    Ok(Op(async move {
        let started = Instant::now();
        let results = db.execute_transaction(&stmts).await?;
        let rows = results.iter().map(Rows::row_count).sum();
        let value = Converted(results, |py, results: Vec<Rows>| {
            let lists = results
                .into_iter()
                .map(|r| rows_to_py(py, r))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyList::new(py, lists)?.into_any())
        });
        Ok(Logged {
            value,
            database: db,
            operation: "execute_transaction",
            started,
            rows,
        })
    }))
}

/// The health of a database, and the database (the dict names it).
type HealthReport = Converted<(Arc<Database>, Health)>;

pub(crate) fn health_check(
    db: &Arc<Database>,
) -> Op<impl Future<Output = Result<HealthReport>> + Send + 'static> {
    let db = db.clone();
    Op(async move {
        let health = db.health().await;
        Ok(Converted((db, health), |py, (db, health)| {
            Ok(health_dict(py, &db, &health)?.into_any())
        }))
    })
}

pub(crate) fn ping(
    db: &Arc<Database>,
) -> Op<impl Future<Output = Result<Converted<()>>> + Send + 'static> {
    let db = db.clone();
    Op(async move { nothing(db.ping().await) })
}

/// A migration target or version as text (`1`, `"V1"`, `1.5`).
fn version_text(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    value.map(|v| v.str().map(|s| s.to_string())).transpose()
}

pub(crate) fn run_migrations(
    db: &Arc<Database>,
    target: Option<&Bound<'_, PyAny>>,
    out_of_order: bool,
    placeholders: Option<BTreeMap<String, String>>,
    dry_run: bool,
) -> PyResult<Op<impl Future<Output = Result<Converted<crate::migrate::Report>>> + Send + 'static>>
{
    let target = version_text(target)?;
    let db = db.clone();
    Ok(Op(async move {
        let migrator = Migrator::new(&db, db.migrations_root(), "run_migrations")?
            .with_placeholders(placeholders.unwrap_or_default());
        let report = migrator
            .migrate(target.as_deref(), out_of_order, dry_run)
            .await?;
        Ok(Converted(report, |py, r| {
            Ok(report_dict(py, &r)?.into_any())
        }))
    }))
}

pub(crate) fn baseline_migrations(
    db: &Arc<Database>,
    version: Option<&Bound<'_, PyAny>>,
    description: &str,
) -> PyResult<
    Op<impl Future<Output = Result<Converted<crate::migrate::history::Applied>>> + Send + 'static>,
> {
    let version = version_text(version)?.unwrap_or_else(|| "1".to_owned());
    let description = description.to_owned();
    let db = db.clone();
    Ok(Op(async move {
        let migrator = Migrator::new(&db, db.migrations_root(), "baseline_migrations")?;
        let row = migrator.baseline(&version, &description).await?;
        Ok(Converted(
            row,
            |py, r| Ok(baseline_dict(py, &r)?.into_any()),
        ))
    }))
}

pub(crate) fn get_migration_status(
    db: &Arc<Database>,
) -> Op<impl Future<Output = Result<Converted<crate::migrate::Status>>> + Send + 'static> {
    let db = db.clone();
    Op(async move {
        let migrator = Migrator::new(&db, db.migrations_root(), "get_migration_status")?;
        let status = migrator.status().await?;
        Ok(Converted(status, |py, s| {
            Ok(migration_status_dict(py, &s)?.into_any())
        }))
    })
}

pub(crate) fn validate_migrations(
    db: &Arc<Database>,
    out_of_order: bool,
) -> Op<impl Future<Output = Result<Converted<()>>> + Send + 'static> {
    let db = db.clone();
    Op(async move {
        let migrator = Migrator::new(&db, db.migrations_root(), "validate_migrations")?;
        nothing(migrator.validate(out_of_order).await)
    })
}

pub(crate) fn rollback_migrations(
    db: &Arc<Database>,
    target: &Bound<'_, PyAny>,
) -> PyResult<Op<impl Future<Output = Result<Vec<String>>> + Send + 'static>> {
    let target = target.str()?.to_string();
    let db = db.clone();
    Ok(Op(async move {
        let migrator = Migrator::new(&db, db.migrations_root(), "rollback_migrations")?;
        migrator.rollback(&target).await
    }))
}

pub(crate) fn repair_migrations(
    db: &Arc<Database>,
) -> Op<impl Future<Output = Result<Converted<(usize, usize)>>> + Send + 'static> {
    let db = db.clone();
    Op(async move {
        let migrator = Migrator::new(&db, db.migrations_root(), "repair_migrations")?;
        let repaired = migrator.repair().await?;
        Ok(Converted(repaired, |py, (removed, realigned)| {
            let d = PyDict::new(py);
            d.set_item("removed_failed", removed)?;
            d.set_item("realigned", realigned)?;
            Ok(d.into_any())
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::hold_decision;
    use std::time::Duration;

    #[test]
    fn the_gil_is_held_only_where_taking_it_back_cost_milliseconds_and_another_thread_wants_it() {
        let ms = Duration::from_millis;
        // A cheap take-back: let go, and the threads are not even looked at.
        let looked = std::cell::Cell::new(false);
        let cheap = hold_decision(Duration::from_micros(1999), || {
            looked.set(true);
            true
        });
        assert_eq!(cheap, (Duration::ZERO, Duration::from_micros(1999)));
        assert!(
            !looked.get(),
            "the thread list was read for a cheap take-back"
        );
        // Costly, but no other Python thread: a preemption, not the GIL.
        assert_eq!(hold_decision(ms(8), || false), (Duration::ZERO, ms(8)));
        // Costly with another thread: half the cost, at most 2 ms.
        let (hold, after) = hold_decision(ms(3), || true);
        assert_eq!(hold, Duration::from_micros(1500));
        assert!(after < ms(3), "the estimate did not decay: {after:?}");
        assert_eq!(hold_decision(ms(40), || true).0, ms(2));
        // Neighbours gone quiet: the decay alone ends the holding, in a few
        // hundred calls (ln 2 × 512 ≈ 355 from 4 ms).
        let mut cost = ms(4);
        let mut calls = 0;
        while hold_decision(cost, || true).0 > Duration::ZERO {
            cost = hold_decision(cost, || true).1;
            calls += 1;
            assert!(calls < 1000, "still holding after {calls} calls");
        }
        assert!(
            (300..400).contains(&calls),
            "stopped holding after {calls} calls"
        );
    }
}
