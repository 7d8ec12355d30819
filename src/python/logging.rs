//! `tracing` events → Python's `logging` under the `dbflow` logger.
//!
//! Events from Python threads are forwarded right away (the thread attaches
//! cheaply); events from runtime threads attach with `try_attach`, which
//! never blocks interpreter shutdown. Fields travel in `extra["dbflow"]`
//! so the Prefect bridge (and users) can read them without parsing.
//!
//! Work that runs on runtime threads on behalf of a Python call (awaitables,
//! the `iter_query` producer) runs inside a [`caller_span`] holding that
//! call's `contextvars` context; its events are logged inside that context,
//! so Prefect's `get_run_logger()` finds the flow or task run that caused
//! them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// Whether the `dbflow` logger takes DEBUG records, as seen when the latest
/// operation began ([`refresh_level`]). Python's level can change at any
/// time; a record made while nobody takes it is not even built (a driver
/// would otherwise format a line per statement for nothing).
static DEBUG_TAKEN: AtomicBool = AtomicBool::new(true);

/// Python's `logging.DEBUG`.
const PY_DEBUG: u8 = 10;

/// Read the `dbflow` logger's level again (once per operation, from the
/// calling thread).
pub(crate) fn refresh_level(py: Python<'_>) {
    let taken = logger(py)
        .and_then(|l| {
            l.call_method1(pyo3::intern!(py, "isEnabledFor"), (PY_DEBUG,))?
                .is_truthy()
        })
        .unwrap_or(true);
    DEBUG_TAKEN.store(taken, Ordering::Relaxed);
}

fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    LOGGER
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("logging")?
                .call_method1("getLogger", ("dbflow",))?
                .unbind())
        })
        .map(|l| l.bind(py))
}

/// The Python level an event is logged at, or None if it never is. dbflow's
/// own events keep their level. A driver's warnings and errors (a server
/// error the caller also receives, TLS chatter on every connection) are
/// kept at DEBUG: dbflow raises or reports what matters itself. Lesser
/// driver chatter stays out.
fn forwarded_level(meta: &Metadata<'_>) -> Option<u8> {
    if meta.target().starts_with("dbflow") {
        Some(python_level(meta.level()))
    } else if *meta.level() <= Level::WARN {
        Some(python_level(&Level::DEBUG))
    } else {
        None
    }
}

pub fn shutting_down() {
    SHUTTING_DOWN.store(true, Ordering::Release);
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs.push((field.name(), value.to_owned()));
        }
    }
}

fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => PY_DEBUG,
        Level::TRACE => 5,
    }
}

/// The `contextvars.Context` of the Python call a span's work belongs to.
/// Shared, so a span made under it can keep it without the GIL.
struct CallerContext(std::sync::Arc<Py<PyAny>>);

/// A span carrying the calling Python context, for work the runtime runs on
/// its own threads. Without Prefect imported no run logger can be reached,
/// so there is nothing to carry (and nothing to pay).
pub fn caller_span(py: Python<'_>) -> tracing::Span {
    super::otel::refresh(py);
    if SHUTTING_DOWN.load(Ordering::Acquire)
        || !(prefect_imported(py) || crate::telemetry::wanted())
    {
        return tracing::Span::none();
    }
    let Ok(context) = py
        .import("contextvars")
        .and_then(|m| m.call_method0("copy_context"))
    else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(target: "dbflow::caller", "caller");
    let mut context = Some(context.unbind());
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = tracing_subscriber::registry::LookupSpan::span(registry, id)?;
        let context = std::sync::Arc::new(context.take()?);
        data.extensions_mut().insert(CallerContext(context));
        Some(())
    });
    span
}

/// The calling Python context a span carries, if it is a caller span.
pub(crate) fn caller_context<S>(
    span: &tracing_subscriber::registry::SpanRef<'_, S>,
) -> Option<std::sync::Arc<Py<PyAny>>>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    span.extensions()
        .get::<CallerContext>()
        .map(|c| c.0.clone())
}

fn prefect_imported(py: Python<'_>) -> bool {
    static MODULES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    MODULES
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("sys")?.getattr("modules")?.unbind())
        })
        .and_then(|modules| modules.bind(py).contains("prefect"))
        .unwrap_or(false)
}

struct PythonLogging;

impl<S> Layer<S> for PythonLogging
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // Spans are always wanted (the tracing bridge reads them). Events are
    // filtered before they are built: never for driver chatter, by the
    // Python logger's level for DEBUG and below.
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        match (meta.is_span(), forwarded_level(meta)) {
            (true, _) => Interest::always(),
            (false, None) => Interest::never(),
            (false, Some(level)) if level <= PY_DEBUG => Interest::sometimes(),
            (false, Some(_)) => Interest::always(),
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        match (meta.is_span(), forwarded_level(meta)) {
            (true, _) => true,
            (false, None) => false,
            (false, Some(level)) => level > PY_DEBUG || DEBUG_TAKEN.load(Ordering::Relaxed),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if SHUTTING_DOWN.load(Ordering::Acquire) {
            return;
        }
        let Some(level) = forwarded_level(event.metadata()) else {
            return;
        };
        Python::try_attach(|py| {
            let caller = ctx.event_scope(event).and_then(|scope| {
                scope.into_iter().find_map(|span| {
                    span.extensions()
                        .get::<CallerContext>()
                        .map(|c| c.0.clone_ref(py))
                })
            });
            let _ = emit(py, level, event, caller);
        });
    }
}

fn emit(py: Python<'_>, level: u8, event: &Event<'_>, caller: Option<Py<PyAny>>) -> PyResult<()> {
    let logger = logger(py)?;
    if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
        return Ok(());
    }
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut message = fields.message;
    let extra_fields = PyDict::new(py);
    for (k, v) in &fields.pairs {
        let _ = write!(message, " {k}={v}");
        extra_fields.set_item(*k, v)?;
    }
    let extra = PyDict::new(py);
    extra.set_item("dbflow", extra_fields)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("extra", extra)?;
    if let Some(context) = caller {
        let log = logger.getattr("log")?;
        let entered = context
            .bind(py)
            .call_method("run", (&log, level, &message), Some(&kwargs));
        // A context can be entered by one thread at a time; should another
        // event hold it, this one is still logged, outside the run.
        if entered.is_ok() {
            return Ok(());
        }
    }
    logger.call_method("log", (level, message), Some(&kwargs))?;
    Ok(())
}

/// Install the bridge once per process (a second import is a no-op).
pub fn install() {
    let subscriber = tracing_subscriber::registry()
        .with(PythonLogging)
        .with(super::otel::OtelBridge);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
