//! Arguments both managers take, converted once: statements and their
//! parameters, deadlines, and the constructor's configuration (rows for
//! `execute_many` and `bulk_insert`: `feed`).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::config::PyConfigManager;
use super::convert::params_for;
use super::errors::{to_pyerr, IntoPyResult};
use crate::backend::Statement;
use crate::config::ConfigManager;
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::sql;

pub(crate) fn statement(
    db: &Database,
    sql_text: &str,
    params: Option<&Bound<'_, PyAny>>,
    operation: &'static str,
) -> Result<Statement> {
    let mut sql = sql::parse(sql_text, db.dialect());
    let values = params_for(&sql, params).map_err(|e| {
        db.metrics().record_error(e.kind);
        db.fail(e, operation)
    })?;
    if db.config().query_comments {
        sql.comment = super::otel::sql_comment(db.config());
    }
    Ok(Statement { sql, values })
}

/// `(sql, params)` tuples or bare SQL strings → statements.
pub(crate) fn statements(db: &Database, queries: &Bound<'_, PyAny>) -> Result<Vec<Statement>> {
    let op = "execute_transaction";
    let mut out = Vec::new();
    let iter = queries.try_iter().map_err(|_| {
        db.fail(
            Error::parameter("queries must be a list of (sql, params) tuples"),
            op,
        )
    })?;
    for item in iter {
        let item = item.map_err(|e| db.fail(Error::parameter(e.to_string()), op))?;
        if let Ok(text) = item.extract::<String>() {
            out.push(statement(db, &text, None, op)?);
            continue;
        }
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2 || t.len() == 1)
            .ok_or_else(|| {
                db.fail(
                    Error::parameter("each query must be a (sql, params) tuple or a SQL string"),
                    op,
                )
            })?;
        let text: String = pair.get_item(0).and_then(|s| s.extract()).map_err(|_| {
            db.fail(
                Error::parameter("the first item of each query tuple must be the SQL text"),
                op,
            )
        })?;
        let params = if pair.len() == 2 {
            pair.get_item(1).ok()
        } else {
            None
        };
        out.push(statement(db, &text, params.as_ref(), op)?);
    }
    Ok(out)
}

/// The `timeout=` argument of `execute_query_with_timeout` (both managers).
pub(crate) fn deadline_arg(
    db: &Database,
    timeout: Option<f64>,
) -> PyResult<Option<std::time::Duration>> {
    match timeout {
        Some(t) if t.is_finite() && t > 0.0 => Ok(Some(std::time::Duration::from_secs_f64(t))),
        Some(t) => Err(to_pyerr(db.fail(
            Error::parameter(format!(
                "timeout must be a positive number of seconds, not {t}"
            )),
            "execute_query_with_timeout",
        ))),
        None => Ok(None),
    }
}

/// What both managers' constructors do: resolve the configuration (no I/O)
/// and attach to the shared pool.
pub(crate) fn open_database(
    database_name: &str,
    environment: Option<&str>,
    flow_name: Option<&str>,
    config: Option<PyRef<'_, PyConfigManager>>,
    migrations_dir: Option<std::path::PathBuf>,
    password_provider: Option<Bound<'_, PyAny>>,
) -> PyResult<(Arc<Database>, ConfigManager)> {
    let manager = match config {
        Some(c) => {
            let inner = &c.inner;
            let env_conflict =
                environment.is_some_and(|e| !e.eq_ignore_ascii_case(inner.environment()));
            let flow_conflict = flow_name.is_some_and(|f| Some(f) != inner.flow_name());
            if env_conflict || flow_conflict {
                return Err(to_pyerr(Error::config(format!(
                        "DatabaseManager('{database_name}'): environment/flow_name contradict the given config \
                         (environment={:?}, flow_name={:?}); pass one or the other",
                        inner.environment(),
                        inner.flow_name()
                    ))));
            }
            inner.clone()
        }
        None => ConfigManager::new(environment, flow_name, None).py_result()?,
    };
    super::config::warn_suspect_keys(&manager);
    let mut db_config = manager
        .database_config(database_name)
        .map_err(|mut e| {
            // A misspelt key is the likeliest reason a database is missing.
            let part = format!("_{}_", crate::config::key_part(database_name));
            let near: Vec<String> = manager
                .suspect_keys()
                .iter()
                .filter(|s| s.key.contains(&part))
                .map(ToString::to_string)
                .collect();
            if !near.is_empty() {
                e.message = format!("{}. {}", e.message, near.join("; "));
            }
            e.context(database_name, "DatabaseManager()")
        })
        .py_result()?;
    super::credentials::attach(&mut db_config, password_provider)
        .map_err(|e| e.context(database_name, "DatabaseManager()"))
        .py_result()?;
    let db = Database::open(db_config, migrations_dir).py_result()?;
    Ok((Arc::new(db), manager))
}
