//! The core's operation spans (`crate::telemetry`) → OpenTelemetry's
//! Python API, through `dbflow._telemetry`.
//!
//! A span's attributes are gathered in Rust while the operation runs; the
//! OpenTelemetry span is made when the operation ends (one call into
//! Python), with the start time it had, or earlier when a child needs it as
//! its parent (a transaction's statements). Its parent is the span of the
//! operation around it, else the span current where the call was made: the
//! calling thread's, or, for work on the runtime's threads, the context the
//! call captured (`logging::caller_span`) — a Prefect task's span either way.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::telemetry::{self, TARGET};

/// What observers want, read before each operation: whether the `dbflow`
/// logger takes DEBUG records, and whether a tracer or meter provider is
/// set (checked until one is: a provider, once set, stays set; a dictionary
/// lookup while OpenTelemetry was never imported).
pub(crate) fn refresh(py: Python<'_>) {
    super::logging::refresh_level(py);
    if telemetry::wanted() {
        return;
    }
    if providers_set(py).unwrap_or(false) {
        telemetry::set_wanted(true);
    }
}

fn providers_set(py: Python<'_>) -> PyResult<bool> {
    static MODULES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let modules = MODULES.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("sys")?.getattr("modules")?.unbind())
    })?;
    // A dict lookup that finds nothing raises no exception (a KeyError per
    // call would cost more than the call's own round trip is worth).
    let modules = modules.bind(py).cast::<PyDict>()?;
    let (Some(trace), Some(metrics)) = (
        modules.get_item(pyo3::intern!(py, "opentelemetry.trace"))?,
        modules.get_item(pyo3::intern!(py, "opentelemetry.metrics._internal"))?,
    ) else {
        return Ok(false);
    };
    // The API's globals, None until a provider is set: cheaper than asking
    // for the provider (which reads the environment each time).
    let unset =
        |module: &Bound<'_, PyAny>, name: &str| module.getattr(name).map_or(true, |v| v.is_none());
    if unset(&trace, "_TRACER_PROVIDER") && unset(&metrics, "_METER_PROVIDER") {
        return Ok(false);
    }
    telemetry_module(py)?
        .call_method0("providers_set")?
        .is_truthy()
}

fn telemetry_module(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static MODULE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            Ok(py.import("dbflow._telemetry")?.into_any().unbind())
        })
        .map(|m| m.bind(py))
}

/// The sqlcommenter comment for a statement sent now from this thread
/// (`dbflow._sqlcomment`); `None` when it cannot be made (said at DEBUG:
/// a comment never fails a statement).
pub(crate) fn sql_comment(config: &crate::config::DatabaseConfig) -> Option<String> {
    Python::attach(|py| {
        static MODULE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let application = config.spec.option("application_name").unwrap_or("dbflow");
        let made = MODULE
            .get_or_try_init(py, || {
                Ok::<_, PyErr>(py.import("dbflow._sqlcomment")?.into_any().unbind())
            })
            .and_then(|m| m.bind(py).call_method1("comment", (application,)))
            .and_then(|c| c.extract::<Option<String>>());
        made.unwrap_or_else(|e| {
            tracing::debug!(target: "dbflow::telemetry", "no SQL comment: {e}");
            None
        })
    })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

enum Attr {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// An operation span's state between its start and its end. Shared: a
/// child keeps its parent's, to make it first if it was not yet.
struct Pending {
    start_ns: u64,
    attributes: Mutex<Vec<(&'static str, Attr)>>,
    parent: Parent,
    /// The OpenTelemetry span, once made.
    started: Mutex<Option<Py<PyAny>>>,
}

/// Where a span belongs, decided when it is made.
enum Parent {
    /// The operation around it (a transaction, for its statements).
    Operation(Arc<Pending>),
    /// The Python context of the call it works for.
    Caller(Arc<Py<PyAny>>),
    /// Whatever is current where the span is made in Python.
    Current,
}

struct Shared(Arc<Pending>);

/// A span's name, attributes and error message, as Python takes them.
type Parts<'py> = (String, Bound<'py, PyDict>, Option<String>);

/// The span to be the parent, else the caller's context to find it in.
type ParentAndCaller = (Option<Py<PyAny>>, Option<Py<PyAny>>);

struct Recorder<'a>(&'a mut Vec<(&'static str, Attr)>);

impl Recorder<'_> {
    fn set(&mut self, name: &'static str, value: Attr) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for Recorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Attr::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Attr::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Attr::Int(value.min(i64::MAX as u64) as i64));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Attr::Float(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Attr::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), Attr::Str(format!("{value:?}")));
    }
}

impl Pending {
    fn attributes(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Attr)>> {
        self.attributes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The span's name, its attributes (without the two that say how it
    /// is shown), and the error's words if it failed.
    fn parts<'py>(&self, py: Python<'py>) -> PyResult<Parts<'py>> {
        let d = PyDict::new(py);
        let (mut name, mut message) = (None, None);
        for (k, v) in self.attributes().iter() {
            match (*k, v) {
                ("otel.name", Attr::Str(s)) => name = Some(s.clone()),
                ("dbflow.error.message", Attr::Str(s)) => message = Some(s.clone()),
                (_, Attr::Str(s)) => d.set_item(*k, s)?,
                (_, Attr::Int(i)) => d.set_item(*k, i)?,
                (_, Attr::Float(f)) => d.set_item(*k, f)?,
                (_, Attr::Bool(b)) => d.set_item(*k, b)?,
            }
        }
        Ok((name.unwrap_or_else(|| "db".to_owned()), d, message))
    }

    fn parent_and_caller(&self, py: Python<'_>) -> PyResult<ParentAndCaller> {
        Ok(match &self.parent {
            Parent::Operation(op) => (op.started(py)?, None),
            Parent::Caller(context) => (None, Some(context.clone_ref(py))),
            Parent::Current => (None, None),
        })
    }

    /// The OpenTelemetry span, made now (with its parent) if it was not:
    /// a child needs it as its parent before it ends.
    fn started(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if let Some(made) = &*self.started.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(Some(made.clone_ref(py)));
        }
        let (parent, caller) = self.parent_and_caller(py)?;
        let (name, attributes, _) = self.parts(py)?;
        let made = telemetry_module(py)?
            .call_method1("start", (name, parent, caller, self.start_ns, attributes))?;
        let made = (!made.is_none()).then(|| made.unbind());
        let mut slot = self.started.lock().unwrap_or_else(|p| p.into_inner());
        *slot = made.as_ref().map(|m| m.clone_ref(py));
        Ok(made)
    }

    /// One call into Python. Most spans are made and ended there at once,
    /// their attributes converted and checked once.
    fn end(&self, py: Python<'_>, end_ns: u64) -> PyResult<()> {
        let made = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let (name, attributes, message) = self.parts(py)?;
        let module = telemetry_module(py)?;
        match made {
            Some(span) => {
                module.call_method1("end", (span, self.start_ns, end_ns, attributes, message))?
            }
            None => {
                let (parent, caller) = self.parent_and_caller(py)?;
                let args = (
                    name,
                    parent,
                    caller,
                    self.start_ns,
                    end_ns,
                    attributes,
                    message,
                );
                module.call_method1("emit", args)?
            }
        };
        Ok(())
    }
}

/// A span that ended, and when.
type Ended = (Arc<Pending>, u64);

thread_local! {
    /// Spans that ended on this thread while it was detached in [`detach`],
    /// handed over once it holds the GIL again. None: not detached there.
    static ENDED_WHILE_DETACHED: RefCell<Option<Vec<Ended>>> =
        const { RefCell::new(None) };
}

/// `py.detach(work)`, with the check for a provider first. A span that ends
/// in `work` (a sync call's work runs on the calling thread) is handed to
/// OpenTelemetry after it, from this thread with the GIL held: the span
/// current here is its parent, and the call takes the GIL back once, not
/// once more per span (on a busy interpreter each take can wait for the
/// switch interval).
pub(crate) fn detach<T: Send>(py: Python<'_>, work: impl Ungil + FnOnce() -> T + Send) -> T {
    keeping_spans(py, || py.detach(work))
}

/// Run `work` (which may detach for part of it), handing the spans that end
/// in it over to OpenTelemetry after it, as [`detach`] does.
pub(crate) fn keeping_spans<T>(py: Python<'_>, work: impl FnOnce() -> T) -> T {
    refresh(py);
    // One call site for the work: an untraced call's code stays as it was.
    let keeping = telemetry::wanted().then(Keeping::start);
    let out = work();
    for (pending, end_ns) in keeping.map(Keeping::finish).unwrap_or_default() {
        hand_over(py, &pending, end_ns);
    }
    out
}

/// This thread keeps the spans that end while it is detached; dropped (also
/// when the work unwinds) it keeps what it kept before.
struct Keeping {
    outer: Option<Vec<Ended>>,
}

impl Keeping {
    fn start() -> Self {
        let outer = ENDED_WHILE_DETACHED.with(|e| e.replace(Some(Vec::new())));
        Keeping { outer }
    }

    fn finish(self) -> Vec<Ended> {
        ENDED_WHILE_DETACHED
            .with(|e| e.borrow_mut().take())
            .unwrap_or_default()
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        let outer = self.outer.take();
        ENDED_WHILE_DETACHED.with(|e| e.replace(outer));
    }
}

fn hand_over(py: Python<'_>, pending: &Pending, end_ns: u64) {
    if let Err(e) = pending.end(py, end_ns) {
        // Telemetry never fails an operation; say why it is missing.
        tracing::debug!(target: "dbflow::telemetry", "a span could not be exported: {e}");
    }
}

pub(crate) struct OtelBridge;

impl<S> Layer<S> for OtelBridge
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut parent = Parent::Current;
        for ancestor in span.scope().skip(1) {
            if let Some(op) = ancestor.extensions().get::<Shared>() {
                parent = Parent::Operation(op.0.clone());
                break;
            }
            if let Some(context) = super::logging::caller_context(&ancestor) {
                parent = Parent::Caller(context);
                break;
            }
        }
        let mut attributes = Vec::with_capacity(16);
        attrs.record(&mut Recorder(&mut attributes));
        let pending = Pending {
            start_ns: now_ns(),
            attributes: Mutex::new(attributes),
            parent,
            started: Mutex::new(None),
        };
        span.extensions_mut().insert(Shared(Arc::new(pending)));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(shared) = span.extensions().get::<Shared>() {
                values.record(&mut Recorder(&mut shared.0.attributes()));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(shared) = span.extensions_mut().remove::<Shared>() else {
            return;
        };
        let end_ns = now_ns();
        let pending = shared.0;
        let deferred = ENDED_WHILE_DETACHED.with(|e| match e.borrow_mut().as_mut() {
            Some(ended) => {
                ended.push((pending.clone(), end_ns));
                true
            }
            None => false,
        });
        if deferred {
            return;
        }
        // A runtime thread's span (asyncio calls, producers). None only
        // while the interpreter shuts down: the span is dropped.
        Python::try_attach(|py| hand_over(py, &pending, end_ns));
    }
}
