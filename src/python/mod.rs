//! The `dbflow._native` extension module: registration only.

mod aio;
mod arguments;
mod config;
mod convert;
mod errors;
mod feed;
mod health;
mod logging;
mod manager;
mod ops;
mod reports;
mod rows;
mod transaction;

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

/// Number of open pools in this process.
#[pyfunction]
fn _open_pools() -> usize {
    crate::pool::registry::open_pools()
}

/// `:name` → `$n` as dbflow sends it (for debugging and tests).
#[pyfunction]
#[pyo3(signature = (sql, dialect="postgresql"))]
fn rewrite_sql(sql: &str, dialect: &str) -> PyResult<(String, Vec<String>)> {
    let d = match dialect {
        "postgresql" => crate::sql::Dialect::Postgres,
        "sqlserver" => crate::sql::Dialect::SqlServer,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "dialect must be 'postgresql' or 'sqlserver', not {other:?}"
            )))
        }
    };
    let parsed = crate::sql::parse(sql, d);
    Ok((parsed.render(d), parsed.names))
}

/// Validate `params` for `sql` exactly as a manager would before sending
/// (missing names, unsupported value types); raises `ParameterError`.
#[pyfunction]
#[pyo3(signature = (sql, params=None, *, database_name=None, operation="execute_query", dialect="postgresql", row=None))]
fn check_params(
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    database_name: Option<&str>,
    operation: &str,
    dialect: &str,
    row: Option<usize>,
) -> PyResult<Vec<String>> {
    let d = if dialect == "sqlserver" {
        crate::sql::Dialect::SqlServer
    } else {
        crate::sql::Dialect::Postgres
    };
    let parsed = crate::sql::parse(sql, d);
    let operation: &'static str = match operation {
        "execute_many" => "execute_many",
        "execute_transaction" => "execute_transaction",
        "transaction.execute_query" => "transaction.execute_query",
        "transaction.execute_many" => "transaction.execute_many",
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
    m.add_class::<aio::AsyncTransaction>()?;
    m.add_class::<aio::AsyncRowIterator>()?;
    m.add_class::<config::PyConfigManager>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(dispose_all, m)?)?;
    m.add_function(wrap_pyfunction!(_open_pools, m)?)?;
    m.add_function(wrap_pyfunction!(rewrite_sql, m)?)?;
    m.add_function(wrap_pyfunction!(check_params, m)?)?;
    m.add_function(wrap_pyfunction!(health::health_check_all, m)?)?;
    m.add_function(wrap_pyfunction!(health::overall_status, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
