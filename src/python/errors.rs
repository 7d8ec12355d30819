//! The single mapping from the core's [`Error`] to dbflow's Python exception
//! classes (defined in `dbflow/exceptions.py` so they can use multiple
//! inheritance, e.g. `QueryTimeoutError` is also a builtin `TimeoutError`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::error::{Error, ErrorKind};

static EXCEPTIONS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Configuration => "ConfigurationError",
        ErrorKind::Connection => "DatabaseConnectionError",
        ErrorKind::Query => "QueryError",
        ErrorKind::Integrity => "IntegrityError",
        ErrorKind::Parameter => "ParameterError",
        ErrorKind::Timeout => "QueryTimeoutError",
        ErrorKind::PoolTimeout => "PoolTimeoutError",
        ErrorKind::Transaction => "TransactionError",
        ErrorKind::Migration => "MigrationError",
        ErrorKind::ChecksumMismatch => "ChecksumMismatchError",
        ErrorKind::MultipleResultSets => "MultipleResultSetsError",
    }
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let module =
        EXCEPTIONS.get_or_try_init(py, || py.import("dbflow.exceptions").map(Bound::unbind))?;
    let class = module.bind(py).getattr(class_name(e.kind))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("database", e.database.as_deref())?;
    kwargs.set_item("operation", e.operation)?;
    kwargs.set_item("sqlstate", e.sqlstate.as_deref())?;
    kwargs.set_item("error_number", e.error_number)?;
    kwargs.set_item("may_have_run", e.maybe_executed)?;
    kwargs.set_item("messages", e.messages())?;
    if let Some(detail) = &e.detail {
        if e.kind == ErrorKind::MultipleResultSets {
            kwargs.set_item("result_sets", detail.result_sets)?;
        }
        if let Some(partial) = &detail.partial {
            let result =
                super::procedures::result_to_py(py, partial.clone(), detail.messages.clone())?;
            kwargs.set_item("result", result)?;
        }
    }
    let instance = class.call((e.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}

pub fn to_pyerr(e: Error) -> PyErr {
    Python::attach(|py| match build(py, &e) {
        Ok(err) => err,
        // The exceptions module is part of the package; failing to load it
        // means a broken install, which the chained message says.
        Err(load) => pyo3::exceptions::PyRuntimeError::new_err(format!(
            "{e} (and dbflow.exceptions failed to load: {load})"
        )),
    })
}

pub trait IntoPyResult<T> {
    fn py_result(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_result(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}
