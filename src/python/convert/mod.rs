//! Python ⇄ [`Value`] at the binding edge: parameters in (`from_py`),
//! values out (`to_py`), and rows as dicts or tuples in one pass under the
//! GIL, with each column name made into a Python string once per result
//! set (`rows`).

mod from_py;
mod rows;
mod table_value;
mod to_py;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDelta, PyType, PyTzInfo};

pub use from_py::{param_keys, params_for, params_keyed, to_value};
pub use rows::{rows_in_shape, rows_to_py, ListBuilder};
pub use to_py::to_py;

/// Results this large are built with the cyclic GC paused ([`GcPause`]);
/// smaller ones cannot trigger enough collections to matter.
pub(crate) const GC_PAUSE_ROWS: usize = 256;

static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UUID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TIMEZONE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TABLE_VALUE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

pub(crate) fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DECIMAL.import(py, "decimal", "Decimal")
}

pub(crate) fn uuid_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID.import(py, "uuid", "UUID")
}

/// `dbflow.TableValue`, a table-valued parameter.
pub(crate) fn table_value_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    TABLE_VALUE.import(py, "dbflow._procedures", "TableValue")
}

pub(crate) fn utc(py: Python<'_>) -> PyResult<Bound<'_, PyTzInfo>> {
    let utc = UTC.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("datetime")?
            .getattr("timezone")?
            .getattr("utc")?
            .unbind())
    })?;
    Ok(utc.bind(py).cast::<PyTzInfo>()?.clone())
}

pub(crate) fn fixed_offset(py: Python<'_>, seconds: i32) -> PyResult<Bound<'_, PyTzInfo>> {
    if seconds == 0 {
        return utc(py);
    }
    let tz = TIMEZONE.import(py, "datetime", "timezone")?;
    let delta = PyDelta::new(py, 0, seconds, 0, true)?;
    Ok(tz.call1((delta,))?.cast_into::<PyTzInfo>()?)
}
