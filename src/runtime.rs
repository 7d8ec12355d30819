//! The one process-wide tokio runtime that runs all database I/O.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The shared runtime, started on first use. Failing to start it (no
/// threads left) is an error for the caller, never a panic.
pub fn runtime() -> Result<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("dbflow-io")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::connection(format!("the dbflow I/O runtime could not start: {e}")))
}

/// The runtime if it was started (for cleanup paths that must not start it).
pub fn get() -> Option<&'static Runtime> {
    RUNTIME.get().and_then(|r| r.as_ref().ok())
}
