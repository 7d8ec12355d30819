//! The dicts of pool status and migration status, for both managers.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::engine::Database;
use crate::migrate::Status;
use crate::value::Value;

pub(crate) fn pool_status_dict<'py>(
    py: Python<'py>,
    db: &Database,
) -> PyResult<Bound<'py, PyDict>> {
    shared_pool_dict(py, &db.shared())
}

/// `get_pool_status()` of a pool, whichever manager holds it.
pub(crate) fn shared_pool_dict<'py>(
    py: Python<'py>,
    shared: &crate::pool::registry::SharedPool,
) -> PyResult<Bound<'py, PyDict>> {
    let s = shared.pool.status();
    let config = &shared.pool.config;
    let d = PyDict::new(py);
    d.set_item("database_name", config.name.as_str())?;
    d.set_item("database_type", config.database_type.as_str())?;
    d.set_item("pool_size", s.pool_size)?;
    d.set_item("max_overflow", s.max_overflow)?;
    d.set_item("checked_in", s.checked_in)?;
    d.set_item("checked_out", s.checked_out)?;
    d.set_item("overflow", s.overflow)?;
    d.set_item("invalid", s.invalid)?;
    d.set_item("waiting", s.waiting)?;
    let capacity = (s.pool_size + s.max_overflow).max(1) as f64;
    d.set_item(
        "utilization",
        (s.checked_out as f64 / capacity * 1000.0).round() / 1000.0,
    )?;
    d.set_item("connections_opened", s.opened)?;
    d.set_item("connections_closed", s.closed)?;
    d.set_item("users", shared.users())?;
    d.set_item(
        "timestamp",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
    )?;
    Ok(d)
}

fn iso_utc(value: &Value) -> Option<String> {
    match value {
        Value::DateTime(dt) => Some(
            dt.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        ),
        Value::DateTimeTz(dt) => Some(dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)),
        _ => None,
    }
}

pub(crate) fn migration_status_dict<'py>(
    py: Python<'py>,
    status: &Status,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("current_version", status.current_version.as_deref())?;
    d.set_item(
        "pending_migrations",
        status
            .pending
            .iter()
            .map(|p| p.0.as_str())
            .collect::<Vec<_>>(),
    )?;
    let details = PyList::empty(py);
    for (version, description, script) in &status.pending {
        let row = PyDict::new(py);
        row.set_item("version", version)?;
        row.set_item("description", description)?;
        row.set_item("script", script)?;
        details.append(row)?;
    }
    d.set_item("pending_details", details)?;
    let applied = PyList::empty(py);
    for a in &status.applied {
        let row = PyDict::new(py);
        row.set_item("version", &a.version)?;
        row.set_item("description", &a.description)?;
        row.set_item("script", &a.script)?;
        row.set_item("type", &a.kind)?;
        row.set_item("checksum", a.checksum)?;
        row.set_item("installed_by", &a.installed_by)?;
        row.set_item("installed_on", iso_utc(&a.installed_on))?;
        row.set_item("execution_time_ms", a.execution_time_ms)?;
        row.set_item("success", a.success)?;
        row.set_item("state", if a.success { "success" } else { "failed" })?;
        applied.append(row)?;
    }
    d.set_item("applied_migrations", applied)?;
    d.set_item("total_migrations", status.total)?;
    d.set_item(
        "last_migration",
        status.last_migration.as_ref().and_then(iso_utc),
    )?;
    d.set_item(
        "migrations_dir",
        status.directory.as_ref().filter(|p| p.is_dir()),
    )?;
    let repeatable = PyList::empty(py);
    for r in &status.repeatable {
        let row = PyDict::new(py);
        row.set_item("script", &r.script)?;
        row.set_item("description", &r.description)?;
        row.set_item("state", r.state)?;
        repeatable.append(row)?;
    }
    d.set_item("repeatable_migrations", repeatable)?;
    d.set_item("baseline_version", status.baseline.as_deref())?;
    d.set_item(
        "read_only",
        status.total == 0 && status.repeatable.is_empty() && status.applied.is_empty(),
    )?;
    Ok(d)
}

/// What `run_migrations` returns: `applied` and `current_version` (the
/// original design's shape), plus `repeatable` / `baselined` when a run
/// applied repeatable files or baselined, and for a dry run `dry_run: True`
/// with `statements`, each `{kind, script, version, line, sql}`.
pub(crate) fn report_dict<'py>(
    py: Python<'py>,
    report: &crate::migrate::Report,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("applied", &report.applied)?;
    d.set_item("current_version", &report.current_version)?;
    if !report.repeatable.is_empty() || report.dry_run.is_some() {
        d.set_item("repeatable", &report.repeatable)?;
    }
    if report.baselined.is_some() || report.dry_run.is_some() {
        d.set_item("baselined", &report.baselined)?;
    }
    if let Some(parts) = &report.dry_run {
        d.set_item("dry_run", true)?;
        let statements = PyList::empty(py);
        for part in parts {
            let item = PyDict::new(py);
            item.set_item("kind", part.kind)?;
            item.set_item("script", &part.script)?;
            item.set_item("version", &part.version)?;
            item.set_item("line", part.line)?;
            item.set_item("sql", &part.sql)?;
            statements.append(item)?;
        }
        d.set_item("statements", statements)?;
    }
    Ok(d)
}

/// What `baseline_migrations` returns.
pub(crate) fn baseline_dict<'py>(
    py: Python<'py>,
    row: &crate::migrate::history::Applied,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("baseline_version", format!("V{}", row.version))?;
    d.set_item("description", &row.description)?;
    Ok(d)
}
