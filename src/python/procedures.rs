//! `call_procedure` and `execute_query_sets`: arguments read once, results
//! turned into Python once (`dbflow.ProcedureResult`, lists of result
//! sets), for both managers and both transaction classes.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyMapping, PyType};

use super::arguments::statement;
use super::convert::{rows_to_py, to_value};
use super::errors::IntoPyResult;
use super::ops::{log_done, Op};
use crate::backend::Statement;
use crate::engine::{Database, WithMessages};
use crate::error::{Error, Result};
use crate::procedure::{Call, Called};
use crate::value::Rows;

static RESULT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A `dbflow.ProcedureResult`.
pub(crate) fn result_to_py<'py>(
    py: Python<'py>,
    called: Called,
    messages: Vec<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let class = RESULT.import(py, "dbflow._procedures", "ProcedureResult")?;
    let output = PyDict::new(py);
    for (name, value) in &called.output {
        output.set_item(name, super::convert::to_py(py, value)?)?;
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("result_sets", sets_to_py(py, called.result_sets)?)?;
    kwargs.set_item("output", output)?;
    kwargs.set_item("return_value", called.return_value)?;
    kwargs.set_item("rowcounts", called.rowcounts)?;
    kwargs.set_item("messages", messages)?;
    class.call((), Some(&kwargs))
}

fn sets_to_py(py: Python<'_>, sets: Vec<Rows>) -> PyResult<Bound<'_, PyList>> {
    let lists = sets
        .into_iter()
        .map(|rows| rows_to_py(py, rows))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, lists)
}

/// A mapping's items in its order (`None`: none).
fn items<'py>(
    what: &str,
    mapping: Option<&Bound<'py, PyAny>>,
) -> Result<Vec<(String, Bound<'py, PyAny>)>> {
    let Some(mapping) = mapping.filter(|m| !m.is_none()) else {
        return Ok(Vec::new());
    };
    let mapping = mapping.cast::<PyMapping>().map_err(|_| {
        Error::parameter(format!(
            "{what} must be a dict of parameter names to values, not {}",
            mapping
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let mut out = Vec::new();
    for item in mapping
        .items()
        .map_err(|e| Error::parameter(e.to_string()))?
        .iter()
    {
        let (key, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item
            .extract()
            .map_err(|e: PyErr| Error::parameter(e.to_string()))?;
        let key: String = key
            .extract()
            .map_err(|_| Error::parameter(format!("{what} keys must be parameter names (str)")))?;
        out.push((key, value));
    }
    Ok(out)
}

/// The call, checked, with its values read from Python.
pub(crate) fn call_of(
    db: &Database,
    name: &str,
    params: Option<&Bound<'_, PyAny>>,
    output: Option<&Bound<'_, PyAny>>,
    operation: &'static str,
) -> PyResult<Call> {
    let read = || -> Result<Call> {
        let mut inputs = Vec::new();
        for (key, value) in items("params", params)? {
            let v = to_value(&key, &value)?;
            inputs.push((key, v));
        }
        let mut outputs = Vec::new();
        for (key, sql_type) in items("output", output)? {
            let sql_type: String = sql_type.extract().map_err(|_| {
                Error::parameter(format!(
                    "output[{key:?}] must be the parameter's SQL type as text, e.g. \"int\""
                ))
            })?;
            outputs.push((key, sql_type));
        }
        Call::new(name, inputs, outputs)
    };
    read()
        .map_err(|e| {
            db.metrics().record_error(e.kind);
            db.fail(e, operation)
        })
        .py_result()
}

/// A call's result on its way to Python (logged when it gets there).
pub(crate) struct PyCalled {
    pub(crate) result: WithMessages<Called>,
    pub(crate) database: Arc<Database>,
    pub(crate) operation: &'static str,
    pub(crate) started: Instant,
}

impl<'py> IntoPyObject<'py> for PyCalled {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let rows = self
            .result
            .value
            .result_sets
            .iter()
            .map(Rows::row_count)
            .sum();
        log_done(self.database.name(), self.operation, self.started, rows);
        result_to_py(py, self.result.value, self.result.messages)
    }
}

/// Result sets on their way to Python.
pub(crate) struct PySets {
    pub(crate) sets: WithMessages<Vec<Rows>>,
    pub(crate) database: Arc<Database>,
    pub(crate) operation: &'static str,
    pub(crate) started: Instant,
}

impl<'py> IntoPyObject<'py> for PySets {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let rows = self.sets.value.iter().map(Rows::row_count).sum();
        log_done(self.database.name(), self.operation, self.started, rows);
        sets_to_py(py, self.sets.value)
    }
}

/// `call_procedure` of a manager.
pub(crate) fn call_procedure(
    db: &Arc<Database>,
    name: &str,
    params: Option<&Bound<'_, PyAny>>,
    output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Op<impl Future<Output = Result<PyCalled>> + Send + 'static>> {
    let operation = "call_procedure";
    let call = call_of(db, name, params, output, operation)?;
    let db = db.clone();
    Ok(Op::new(async move {
        let started = Instant::now();
        let result = db.call_procedure(&call).await?;
        Ok(PyCalled {
            result,
            database: db,
            operation,
            started,
        })
    }))
}

/// `execute_query_sets` of a manager.
pub(crate) fn query_sets(
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
) -> PyResult<Op<impl Future<Output = Result<PySets>> + Send + 'static>> {
    let operation = "execute_query_sets";
    let stmt: Statement = statement(db, sql, params, operation).py_result()?;
    let db = db.clone();
    Ok(Op::new(async move {
        let started = Instant::now();
        let sets = db.query_sets(&stmt).await?;
        Ok(PySets {
            sets,
            database: db,
            operation,
            started,
        })
    }))
}
