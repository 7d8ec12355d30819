//! The one process-wide tokio runtime that runs all database I/O.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("dbflow-io")
            .build()
            .expect("the dbflow I/O runtime could not start (out of threads?)")
    })
}

/// The runtime if it was started (for cleanup paths that must not start it).
pub fn get() -> Option<&'static Runtime> {
    RUNTIME.get()
}
