//! The one process-wide tokio runtime that runs all database I/O.
//!
//! A forked child inherits the parent's runtime without its threads, so the
//! runtime is per process: a child builds its own on first use. The
//! inherited one is leaked, never dropped (dropping would wait for threads
//! that do not exist in the child).

use std::sync::Mutex;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// The id of this process (changes in a forked child).
pub fn pid() -> u32 {
    std::process::id()
}

/// The shared runtime, started on first use in this process. Failing to
/// start it (no threads left) is an error for the caller, never a panic.
pub fn runtime() -> Result<&'static Runtime> {
    let pid = pid();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = *slot {
        if owner == pid {
            return Ok(rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dbflow-io")
        .build()
        .map_err(|e| Error::connection(format!("the dbflow I/O runtime could not start: {e}")))?;
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

/// The runtime if it was started in this process (for cleanup paths that
/// must not start one).
pub fn get() -> Option<&'static Runtime> {
    let slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    slot.and_then(|(owner, rt)| (owner == pid()).then_some(rt))
}
