//! `tracing` events → Python's `logging` under the `dbflow` logger.
//!
//! Events from Python threads are forwarded right away (the thread attaches
//! cheaply); events from runtime threads attach with `try_attach`, which
//! never blocks interpreter shutdown. Fields travel in `extra["dbflow"]`
//! so the Prefect bridge (and users) can read them without parsing.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

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
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

struct PythonLogging;

impl<S: Subscriber> Layer<S> for PythonLogging {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if SHUTTING_DOWN.load(Ordering::Acquire) {
            return;
        }
        // dbflow's own events, and what the drivers consider worth a warning;
        // driver chatter (server NOTICEs, statement logs) stays out.
        let meta = event.metadata();
        if !meta.target().starts_with("dbflow") && *meta.level() > Level::WARN {
            return;
        }
        let level = python_level(meta.level());
        Python::try_attach(|py| {
            let _ = emit(py, level, event);
        });
    }
}

fn emit(py: Python<'_>, level: u8, event: &Event<'_>) -> PyResult<()> {
    let logger = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("logging")?
            .call_method1("getLogger", ("dbflow",))?
            .unbind())
    })?;
    let logger = logger.bind(py);
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
    logger.call_method("log", (level, message), Some(&kwargs))?;
    Ok(())
}

/// Install the bridge once per process (a second import is a no-op).
pub fn install() {
    let _ =
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(PythonLogging));
}
