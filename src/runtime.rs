//! The one process-wide tokio runtime that runs all database I/O.
//!
//! A forked child inherits the parent's runtime without its threads, so the
//! runtime is per process: a child builds its own on first use, and the
//! inherited one is leaked, never dropped (dropping would wait for threads
//! that do not exist in the child). At interpreter exit `shutdown()` stops
//! the worker threads before Python finalizes, so no background task can
//! touch a finalizing interpreter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The id of this process (changes in a forked child).
pub fn pid() -> u32 {
    std::process::id()
}

fn slot() -> std::sync::MutexGuard<'static, Option<(u32, Arc<Runtime>)>> {
    RUNTIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shared runtime, started on first use in this process. Failing to
/// start it (no threads left) is an error for the caller, never a panic.
pub fn runtime() -> Result<Arc<Runtime>> {
    let pid = pid();
    let mut slot = slot();
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
    }
    if let Some((_, inherited)) = slot.take() {
        std::mem::forget(inherited); // the parent's: no threads here
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dbflow-io")
        // Connection set-up futures (TLS, authentication, type resolution)
        // are deep; the 2 MiB default overflows on worker threads.
        .thread_stack_size(8 * 1024 * 1024)
        .build()
        .map_err(|e| Error::connection(format!("the dbflow I/O runtime could not start: {e}")))?;
    let rt = Arc::new(rt);
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}

/// The runtime if it was started in this process (for cleanup paths that
/// must not start one).
pub fn get() -> Option<Arc<Runtime>> {
    slot()
        .as_ref()
        .filter(|(owner, _)| *owner == pid())
        .map(|(_, rt)| rt.clone())
}

/// Stop the runtime's threads (interpreter exit). Work still queued gets
/// `grace` to finish; a later call to `runtime()` starts a fresh one.
pub fn shutdown(grace: Duration) {
    let taken = {
        let mut slot = slot();
        match slot.take() {
            Some((owner, rt)) if owner == pid() => Some(rt),
            Some(other) => {
                std::mem::forget(other);
                None
            }
            None => None,
        }
    };
    if let Some(rt) = taken {
        match Arc::try_unwrap(rt) {
            Ok(rt) => rt.shutdown_timeout(grace),
            // Still in use by another thread: leave it running.
            Err(shared) => std::mem::forget(shared),
        }
    }
}
