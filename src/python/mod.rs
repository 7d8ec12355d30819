//! The `dbflow._native` extension module: registration only.

mod aio;
mod aio_transaction;
mod arguments;
mod arrow;
mod arrow_feed;
mod arrow_ops;
mod config;
mod convert;
mod credentials;
mod errors;
mod feed;
mod health;
mod logging;
mod manager;
mod ops;
mod otel;
mod procedures;
mod reports;
mod rows;
mod transaction;
mod tx_slot;

use pyo3::prelude::*;

/// Close every pool now; called by `atexit` and usable in tests.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    logging::shutting_down();
    py.detach(|| {
        crate::pool::registry::dispose_all();
        // Let connections close politely, then stop the workers before
        // Python finalizes.
        crate::runtime::shutdown(std::time::Duration::from_millis(500));
    });
}

/// Close every pool now, keeping logging on (tests, forked workers).
#[pyfunction]
fn dispose_all(py: Python<'_>) {
    py.detach(crate::pool::registry::dispose_all);
}

/// Every open pool's status (`get_pool_status()`'s keys), for the pool
/// metrics `dbflow._pool_metrics` reports.
#[pyfunction]
fn _pool_statuses(py: Python<'_>) -> PyResult<Vec<Bound<'_, pyo3::types::PyDict>>> {
    crate::pool::registry::open()
        .iter()
        .map(|shared| reports::shared_pool_dict(py, shared))
        .collect()
}

/// Number of open pools in this process.
#[pyfunction]
fn _open_pools() -> usize {
    crate::pool::registry::open_pools()
}

/// The SQL dialect of a database type name (`None`: the first registered,
/// PostgreSQL); an unknown name is a `ValueError` listing the known ones.
fn dialect_named(name: Option<&str>) -> PyResult<crate::sql::Dialect> {
    let kind = match name {
        None => crate::backend::Kind::all().next(),
        Some(name) => crate::backend::Kind::named(name),
    };
    kind.map(crate::backend::Kind::dialect).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "dialect must be {}, not {:?}",
            crate::backend::Kind::names(),
            name.unwrap_or_default()
        ))
    })
}

/// The database types dbflow can talk to (each registered backend's name).
#[pyfunction]
fn database_types() -> Vec<&'static str> {
    crate::backend::Kind::all()
        .map(crate::backend::Kind::as_str)
        .collect()
}

/// Every setting dbflow reads, as the documentation's configuration
/// reference shows it: `key` (the key's tail), `scope` (`database`,
/// `global` or `both`), `default` and `meaning` (Markdown).
#[pyfunction]
fn settings_reference() -> Vec<std::collections::HashMap<&'static str, &'static str>> {
    let keys = &crate::config::keys::SETTINGS;
    keys.iter()
        .chain(crate::config::keys::PATTERNS)
        .map(|s| {
            std::collections::HashMap::from([
                ("key", s.name),
                ("scope", s.scope()),
                ("default", s.default),
                ("meaning", s.meaning),
            ])
        })
        .collect()
}

/// What a database type needs for test-database upkeep (`action`:
/// `create_database` or `drop_database` with one name, `empty_tables` with
/// table names; names must be plain identifiers, checked by the caller), so
/// `dbflow.testing` never spells a database's SQL itself.
#[pyfunction]
fn maintenance_sql(database_type: &str, action: &str, names: Vec<String>) -> PyResult<Vec<String>> {
    let kind = crate::backend::Kind::named(database_type).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "database_type must be {}, not {database_type:?}",
            crate::backend::Kind::names()
        ))
    })?;
    let sql = kind.sql();
    let one = || {
        names.first().map(String::as_str).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!("{action} takes one name"))
        })
    };
    Ok(match action {
        "create_database" => (sql.create_database)(one()?),
        "drop_database" => (sql.drop_database)(one()?),
        "empty_tables" => (sql.empty_tables)(&names),
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "action must be create_database, drop_database or empty_tables, not {other:?}"
            )))
        }
    })
}

/// The SQLSTATE a timed-out statement carries on `database_type`, if any.
#[pyfunction]
fn timeout_sqlstate(database_type: &str) -> Option<&'static str> {
    crate::backend::Kind::named(database_type).and_then(|k| k.sql().timeout_sqlstate)
}

/// `:name` → the server's placeholders as dbflow sends them (for debugging
/// and tests).
#[pyfunction]
#[pyo3(signature = (sql, dialect=None))]
fn rewrite_sql(sql: &str, dialect: Option<&str>) -> PyResult<(String, Vec<String>)> {
    let d = dialect_named(dialect)?;
    let parsed = crate::sql::parse(sql, d);
    Ok((parsed.render(d), parsed.names))
}

/// Validate `params` for `sql` exactly as a manager would before sending
/// (missing names, unsupported value types); raises `ParameterError`.
#[pyfunction]
#[pyo3(signature = (sql, params=None, *, database_name=None, operation="execute_query", dialect=None, row=None))]
fn check_params(
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    database_name: Option<&str>,
    operation: &str,
    dialect: Option<&str>,
    row: Option<usize>,
) -> PyResult<Vec<String>> {
    let parsed = crate::sql::parse(sql, dialect_named(dialect)?);
    let operation: &'static str = match operation {
        "execute_many" => "execute_many",
        "execute_transaction" => "execute_transaction",
        "transaction.execute_query" => "transaction.execute_query",
        "transaction.execute_many" => "transaction.execute_many",
        "fetch_arrow" => "fetch_arrow",
        "fetch_polars" => "fetch_polars",
        "fetch_pandas" => "fetch_pandas",
        "iter_arrow" => "iter_arrow",
        "transaction.fetch_arrow" => "transaction.fetch_arrow",
        "transaction.fetch_polars" => "transaction.fetch_polars",
        "transaction.fetch_pandas" => "transaction.fetch_pandas",
        "transaction.iter_arrow" => "transaction.iter_arrow",
        _ => "execute_query",
    };
    convert::params_for(&parsed, params).map_err(|mut e| {
        if let Some(index) = row {
            e.message = format!("row {index}: {}", e.message);
        }
        errors::to_pyerr(e.context(database_name.unwrap_or("mock"), operation))
    })?;
    Ok(parsed.names)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    m.add_class::<manager::PyDatabaseManager>()?;
    m.add_class::<transaction::PyTransaction>()?;
    m.add_class::<transaction::PySavepoint>()?;
    m.add_class::<rows::RowIterator>()?;
    m.add_class::<aio::PyAsyncDatabaseManager>()?;
    m.add_class::<aio_transaction::AsyncTransaction>()?;
    m.add_class::<aio_transaction::AsyncSavepoint>()?;
    m.add_class::<aio::AsyncRowIterator>()?;
    m.add_class::<arrow::ArrowResult>()?;
    m.add_class::<arrow::ArrowBatch>()?;
    m.add_class::<arrow::ArrowStream>()?;
    m.add_class::<config::PyConfigManager>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(dispose_all, m)?)?;
    m.add_function(wrap_pyfunction!(_open_pools, m)?)?;
    m.add_function(wrap_pyfunction!(_pool_statuses, m)?)?;
    m.add_function(wrap_pyfunction!(rewrite_sql, m)?)?;
    m.add_function(wrap_pyfunction!(database_types, m)?)?;
    m.add_function(wrap_pyfunction!(settings_reference, m)?)?;
    m.add_function(wrap_pyfunction!(maintenance_sql, m)?)?;
    m.add_function(wrap_pyfunction!(timeout_sqlstate, m)?)?;
    m.add_function(wrap_pyfunction!(check_params, m)?)?;
    m.add_function(wrap_pyfunction!(health::health_check_all, m)?)?;
    m.add_function(wrap_pyfunction!(health::overall_status, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
