//! Health, metrics and multi-database reports as dictionaries (the keys
//! the design dbflow replaced used, so dashboards keep working).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::config::PyConfigManager;
use super::errors::{to_pyerr, IntoPyResult};
use crate::config::ConfigManager;
use crate::engine::{Database, Health, MigrationHealth};
use crate::metrics::Histogram;
use crate::runtime::runtime;

pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

pub fn health_dict<'py>(
    py: Python<'py>,
    db: &Database,
    h: &Health,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("database_name", db.name())?;
    d.set_item("database_type", db.config().database_type.as_str())?;
    d.set_item("status", h.status)?;
    d.set_item("connection", h.connection)?;
    d.set_item("query_test", h.query_test)?;
    match &h.migrations {
        MigrationHealth::NotChecked => d.set_item("migration_status", py.None())?,
        MigrationHealth::ReadOnly => d.set_item("migration_status", "read_only")?,
        MigrationHealth::Unavailable(e) => {
            let m = PyDict::new(py);
            m.set_item("error", e)?;
            d.set_item("migration_status", m)?;
        }
        MigrationHealth::Status {
            current_version,
            pending,
        } => {
            let m = PyDict::new(py);
            m.set_item("current_version", current_version.as_deref())?;
            m.set_item("pending_migrations", pending)?;
            d.set_item("migration_status", m)?;
        }
    }
    d.set_item("response_time_ms", round_ms(h.response_time))?;
    d.set_item("error", h.error.as_deref())?;
    d.set_item("timestamp", now_iso())?;
    Ok(d)
}

fn latency<'py>(py: Python<'py>, h: &Histogram) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("count", h.count())?;
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        d.set_item(name, h.quantile_ms(q))?;
    }
    Ok(d)
}

pub fn metrics_dict<'py>(py: Python<'py>, db: &Database) -> PyResult<Bound<'py, PyDict>> {
    use std::sync::atomic::Ordering::Relaxed;
    let m = db.metrics();
    let status = db.pool_status();
    let d = PyDict::new(py);
    d.set_item("database_name", db.name())?;
    d.set_item("queries", m.queries.load(Relaxed))?;
    d.set_item("rows_returned", m.rows.load(Relaxed))?;
    let errors = PyDict::new(py);
    let mut total = 0;
    for (kind, n) in m.errors() {
        errors.set_item(kind, n)?;
        total += n;
    }
    d.set_item("errors", errors)?;
    d.set_item("errors_total", total)?;
    d.set_item("retries", m.retries.load(Relaxed))?;
    d.set_item("timeouts", m.timeouts.load(Relaxed))?;
    d.set_item("connections_opened", status.opened)?;
    d.set_item("connections_closed", status.closed)?;
    d.set_item("query_latency_ms", latency(py, &m.query_latency)?)?;
    d.set_item("pool_acquire_ms", latency(py, &m.acquire_latency)?)?;
    d.set_item("timestamp", now_iso())?;
    Ok(d)
}

/// Overall status over several databases: all healthy → healthy; none
/// configured → not_configured; every one unhealthy or unconfigured →
/// unhealthy; anything else → degraded. Unconfigured never counts as healthy.
pub fn overall(statuses: &[&str]) -> &'static str {
    if statuses.is_empty() || statuses.iter().all(|s| *s == "not_configured") {
        "not_configured"
    } else if statuses.iter().all(|s| *s == "healthy") {
        "healthy"
    } else if statuses
        .iter()
        .all(|s| *s == "unhealthy" || *s == "not_configured")
    {
        "unhealthy"
    } else {
        "degraded"
    }
}

/// The overall status of several databases' statuses (see `overall`).
#[pyfunction]
pub fn overall_status(statuses: Vec<String>) -> &'static str {
    overall(&statuses.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Check several databases concurrently (`migrations_dir`: the root holding
/// each database's migrations directory, as managers take it).
#[pyfunction]
#[pyo3(signature = (database_names, *, environment=None, flow_name=None, config=None, migrations_dir=None))]
pub fn health_check_all<'py>(
    py: Python<'py>,
    database_names: Vec<String>,
    environment: Option<&str>,
    flow_name: Option<&str>,
    config: Option<PyRef<'_, PyConfigManager>>,
    migrations_dir: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let manager = match config {
        Some(c) => c.inner.clone(),
        None => ConfigManager::new(environment, flow_name, None).py_result()?,
    };
    let mut opened: Vec<(String, Result<Database, String>)> =
        Vec::with_capacity(database_names.len());
    for name in &database_names {
        let db = manager
            .database_config(name)
            .and_then(|c| Database::open(c, migrations_dir.clone()))
            .map_err(|e| e.to_string());
        opened.push((name.clone(), db));
    }
    let healths: Vec<Option<Health>> = super::otel::detach(py, || {
        runtime().map(|rt| {
            rt.block_on(futures_util::future::join_all(opened.iter().map(
                |(_, db)| async move {
                    match db {
                        Ok(db) => Some(db.health().await),
                        Err(_) => None,
                    }
                },
            )))
        })
    })
    .map_err(to_pyerr)?;
    let databases = PyDict::new(py);
    let mut statuses = Vec::with_capacity(opened.len());
    let mut healthy = 0;
    for ((name, db), health) in opened.iter().zip(&healths) {
        match (db, health) {
            (Ok(db), Some(h)) => {
                statuses.push(h.status);
                healthy += usize::from(h.status == "healthy");
                databases.set_item(name, health_dict(py, db, h)?)?;
                db.release();
            }
            _ => {
                statuses.push("not_configured");
                let d = PyDict::new(py);
                d.set_item("database_name", name)?;
                d.set_item("status", "not_configured")?;
                d.set_item("error", db.as_ref().err())?;
                d.set_item("timestamp", now_iso())?;
                databases.set_item(name, d)?;
            }
        }
    }
    let report = PyDict::new(py);
    report.set_item("flow_name", manager.flow_name())?;
    report.set_item("environment", manager.environment())?;
    report.set_item("overall_status", overall(&statuses))?;
    report.set_item("healthy_count", healthy)?;
    report.set_item("total_databases", database_names.len())?;
    report.set_item("databases", databases)?;
    report.set_item("timestamp", now_iso())?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::overall;

    #[test]
    fn overall_status_rules() {
        assert_eq!(overall(&["healthy", "healthy"]), "healthy");
        assert_eq!(overall(&["healthy", "degraded"]), "degraded");
        assert_eq!(overall(&["healthy", "unhealthy"]), "degraded");
        assert_eq!(overall(&["unhealthy", "unhealthy"]), "unhealthy");
        assert_eq!(overall(&["healthy", "not_configured"]), "degraded");
        assert_eq!(overall(&["unhealthy", "not_configured"]), "unhealthy");
        assert_eq!(overall(&["not_configured"]), "not_configured");
    }
}
