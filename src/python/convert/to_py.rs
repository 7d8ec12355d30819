//! [`Value`] → Python objects.

use chrono::{Datelike, NaiveDateTime, Timelike};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDate, PyDateTime, PyDelta, PyFloat, PyList, PyString, PyTime, PyTzInfo,
};

use crate::value::Value;

use super::{decimal_type, fixed_offset, uuid_type};

/// One [`Value`] → a Python object.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Decimal(d) => decimal_type(py)?.call1((d.as_str(),))?,
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Date(d) => PyDate::new(py, d.year(), d.month() as u8, d.day() as u8)?.into_any(),
        Value::Time(t) => time(py, t, None)?.into_any(),
        Value::TimeTz(t, off) => time(py, t, Some(&fixed_offset(py, *off)?))?.into_any(),
        Value::DateTime(dt) => datetime(py, dt, None)?.into_any(),
        Value::DateTimeTz(dt) => {
            let tz = fixed_offset(py, dt.offset().local_minus_utc())?;
            datetime(py, &dt.naive_local(), Some(&tz))?.into_any()
        }
        Value::Interval {
            months,
            days,
            micros,
        } => {
            let total_days = *months as i64 * 30 + *days as i64 + micros.div_euclid(86_400_000_000);
            let rem = micros.rem_euclid(86_400_000_000);
            PyDelta::new(
                py,
                i32::try_from(total_days).map_err(|_| {
                    pyo3::exceptions::PyOverflowError::new_err("interval too large")
                })?,
                (rem / 1_000_000) as i32,
                (rem % 1_000_000) as i32,
                true,
            )?
            .into_any()
        }
        Value::Uuid(u) => new_uuid(py, u)?,
        Value::Json(j) => pythonize::pythonize(py, j).map_err(PyErr::from)?,
        Value::JsonText(text) => json_to_py(py, text)?,
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        // Parameters only; never decoded from a result.
        Value::Table(_) => py.None().into_bound(py),
    })
}

/// `uuid.UUID` without running its `__init__` (a Python frame parsing its
/// arguments): a bare instance with its two slots set, as `copy` would.
fn new_uuid<'py>(py: Python<'py>, u: &uuid::Uuid) -> PyResult<Bound<'py, PyAny>> {
    static PARTS: PyOnceLock<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let (new, set, unknown) = PARTS.get_or_try_init(py, || -> PyResult<_> {
        let object = py.import("builtins")?.getattr("object")?;
        let safe = py.import("uuid")?.getattr("SafeUUID")?.getattr("unknown")?;
        Ok((
            object.getattr("__new__")?.unbind(),
            object.getattr("__setattr__")?.unbind(),
            safe.unbind(),
        ))
    })?;
    let class = uuid_type(py)?;
    let obj = new.bind(py).call1((class,))?;
    let set = set.bind(py);
    set.call1((&obj, intern!(py, "int"), u.as_u128()))?;
    set.call1((&obj, intern!(py, "is_safe"), unknown.bind(py)))?;
    Ok(obj)
}

/// JSON text → Python objects in one pass: serde_json's parser drives
/// pythonize's object builder (no intermediate tree).
fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let mut parser = serde_json::Deserializer::from_str(text);
    serde_transcode::transcode(&mut parser, pythonize::Pythonizer::new(py)).map_err(|e| {
        pyo3::exceptions::PyValueError::new_err(format!("invalid JSON from the server: {e}"))
    })
}

fn time<'py>(
    py: Python<'py>,
    t: &chrono::NaiveTime,
    tz: Option<&Bound<'py, PyTzInfo>>,
) -> PyResult<Bound<'py, PyTime>> {
    PyTime::new(
        py,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond() / 1000 % 1_000_000,
        tz,
    )
}

fn datetime<'py>(
    py: Python<'py>,
    dt: &NaiveDateTime,
    tz: Option<&Bound<'py, PyTzInfo>>,
) -> PyResult<Bound<'py, PyDateTime>> {
    PyDateTime::new(
        py,
        dt.year(),
        dt.month() as u8,
        dt.day() as u8,
        dt.hour() as u8,
        dt.minute() as u8,
        dt.second() as u8,
        dt.nanosecond() / 1000 % 1_000_000,
        tz,
    )
}
