//! Python values → [`Value`]: parameters and rows to send.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDate, PyDateTime, PyDelta, PyDict, PyFloat, PyInt, PyList,
    PyMemoryView, PyString, PyTime, PyTuple,
};

use crate::error::{Error, Result};
use crate::sql::ParsedSql;
use crate::value::Value;

use super::{decimal_type, table_value_type, uuid_type};

fn unsupported(name: &str, obj: &Bound<'_, PyAny>) -> Error {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Error::parameter(format!(
        "parameter :{name}: values of type {ty} cannot be sent; use None, bool, int, float, Decimal, str, \
         bytes, date, time, datetime, timedelta, UUID, dict, list or TableValue"
    ))
}

fn py_err(name: &str, e: PyErr) -> Error {
    Error::parameter(format!("parameter :{name}: {e}"))
}

/// One Python value → [`Value`]. `name` is used in error messages only.
pub fn to_value(name: &str, obj: &Bound<'_, PyAny>) -> Result<Value> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // The two library classes rows are full of, by exact type before the
    // chain of checks below (subclasses are found at its end).
    let ty = obj.get_type();
    if ty.is(decimal_type(py).map_err(|e| py_err(name, e))?) {
        return Ok(Value::Decimal(
            obj.str().map_err(|e| py_err(name, e))?.to_string(),
        ));
    }
    if ty.is(uuid_type(py).map_err(|e| py_err(name, e))?) {
        return uuid_value(name, obj);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Text(
            s.to_str().map_err(|e| py_err(name, e))?.to_owned(),
        ));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(match obj.extract::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Decimal(obj.str().map_err(|e| py_err(name, e))?.to_string()),
        });
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Bytes(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes = obj.call_method0("tobytes").map_err(|e| py_err(name, e))?;
        return Ok(Value::Bytes(
            bytes
                .cast::<PyBytes>()
                .map_err(|e| py_err(name, e.into()))?
                .as_bytes()
                .to_vec(),
        ));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let json: serde_json::Value = pythonize::depythonize(dict.as_any()).map_err(|e| {
            Error::parameter(format!(
                "parameter :{name}: the dict is not JSON-serializable: {e}"
            ))
        })?;
        return Ok(Value::Json(json));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::with_capacity(obj.len().unwrap_or(0));
        for item in obj.try_iter().map_err(|e| py_err(name, e))? {
            items.push(to_value(name, &item.map_err(|e| py_err(name, e))?)?);
        }
        return Ok(Value::Array(items));
    }
    // datetime is a subclass of date: test it first.
    if let Ok(dt) = obj.cast::<PyDateTime>() {
        return datetime_value(name, dt);
    }
    if obj.is_instance_of::<PyDate>() {
        return Ok(Value::Date(obj.extract().map_err(|e| py_err(name, e))?));
    }
    if obj.is_instance_of::<PyTime>() {
        let tz = obj.getattr("tzinfo").map_err(|e| py_err(name, e))?;
        let t = time_without_tz(obj).map_err(|e| py_err(name, e))?;
        if tz.is_none() {
            return Ok(Value::Time(t));
        }
        let offset = obj.call_method0("utcoffset").map_err(|e| py_err(name, e))?;
        if offset.is_none() {
            return Ok(Value::Time(t));
        }
        let secs: f64 = offset
            .call_method0("total_seconds")
            .and_then(|s| s.extract())
            .map_err(|e| py_err(name, e))?;
        return Ok(Value::TimeTz(t, secs as i32));
    }
    if obj.is_instance_of::<PyDelta>() {
        // Python's own fields (days may be negative, seconds and
        // microseconds never are), as psycopg2 sends them: -1 s is
        // `-1 days +23:59:59`, which moves across DST as Python's does.
        let part = |field: &str| -> Result<i64> {
            obj.getattr(field)
                .and_then(|v| v.extract::<i64>())
                .map_err(|e| py_err(name, e))
        };
        let (days, seconds, micros) = (part("days")?, part("seconds")?, part("microseconds")?);
        return Ok(Value::Interval {
            months: 0,
            days: i32::try_from(days)
                .map_err(|_| Error::parameter(format!("parameter :{name}: timedelta too large")))?,
            micros: seconds * 1_000_000 + micros,
        });
    }
    if obj
        .is_instance(decimal_type(py).map_err(|e| py_err(name, e))?)
        .map_err(|e| py_err(name, e))?
    {
        return Ok(Value::Decimal(
            obj.str().map_err(|e| py_err(name, e))?.to_string(),
        ));
    }
    if obj
        .is_instance(uuid_type(py).map_err(|e| py_err(name, e))?)
        .map_err(|e| py_err(name, e))?
    {
        return uuid_value(name, obj);
    }
    if obj
        .is_instance(table_value_type(py).map_err(|e| py_err(name, e))?)
        .map_err(|e| py_err(name, e))?
    {
        return super::table_value::table_value(name, obj);
    }
    // Enum members and other wrappers: psycopg2 would fail too; say so clearly.
    Err(unsupported(name, obj))
}

/// A `uuid.UUID` by its `int` slot (its `bytes` is a Python property).
fn uuid_value(name: &str, obj: &Bound<'_, PyAny>) -> Result<Value> {
    let int: u128 = obj
        .getattr(intern!(obj.py(), "int"))
        .and_then(|i| i.extract())
        .map_err(|e| py_err(name, e))?;
    Ok(Value::Uuid(uuid::Uuid::from_u128(int)))
}

/// A `datetime` from its fields; an aware one with the offset its own
/// `utcoffset()` gives, so any tzinfo works (`zoneinfo`, `dateutil`,
/// pendulum's), not only fixed offsets. A tzinfo that gives no offset makes
/// a naive value, as Python's own arithmetic treats it.
fn datetime_value(name: &str, dt: &Bound<'_, PyDateTime>) -> Result<Value> {
    use pyo3::types::{PyDateAccess, PyDeltaAccess, PyTimeAccess, PyTzInfoAccess};
    let invalid = || Error::parameter(format!("parameter :{name}: an invalid datetime"));
    let naive =
        chrono::NaiveDate::from_ymd_opt(dt.get_year(), dt.get_month().into(), dt.get_day().into())
            .and_then(|d| {
                d.and_hms_micro_opt(
                    dt.get_hour().into(),
                    dt.get_minute().into(),
                    dt.get_second().into(),
                    dt.get_microsecond(),
                )
            })
            .ok_or_else(invalid)?;
    if dt.get_tzinfo().is_none() {
        return Ok(Value::DateTime(naive));
    }
    let offset = dt
        .call_method0(intern!(dt.py(), "utcoffset"))
        .map_err(|e| py_err(name, e))?;
    if offset.is_none() {
        return Ok(Value::DateTime(naive));
    }
    let delta = offset
        .cast::<PyDelta>()
        .map_err(|e| py_err(name, e.into()))?;
    // Whole seconds: chrono's offsets (and PostgreSQL's, and SQL Server's
    // minutes) carry no fraction; Python allows one but no zone has it.
    let seconds = delta.get_days() * 86_400 + delta.get_seconds();
    let zone = chrono::FixedOffset::east_opt(seconds).ok_or_else(invalid)?;
    let aware = naive
        .and_local_timezone(zone)
        .single()
        .ok_or_else(invalid)?;
    Ok(Value::DateTimeTz(aware))
}

fn time_without_tz(obj: &Bound<'_, PyAny>) -> PyResult<chrono::NaiveTime> {
    let h: u32 = obj.getattr("hour")?.extract()?;
    let m: u32 = obj.getattr("minute")?.extract()?;
    let s: u32 = obj.getattr("second")?.extract()?;
    let us: u32 = obj.getattr("microsecond")?.extract()?;
    chrono::NaiveTime::from_hms_micro_opt(h, m, s, us)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("invalid time"))
}

/// Values for a statement's parameters, in order, from a mapping. Only the
/// names the statement uses are converted; a missing one is a
/// `ParameterError` before anything is sent.
pub fn params_for(sql: &ParsedSql, params: Option<&Bound<'_, PyAny>>) -> Result<Vec<Value>> {
    params_keyed(sql, None, params)
}

/// The statement's parameter names as Python strings, made once for many
/// parameter sets (their hashes are then computed once, not per lookup).
pub fn param_keys<'py>(py: Python<'py>, sql: &ParsedSql) -> Vec<Bound<'py, PyString>> {
    sql.names.iter().map(|n| PyString::new(py, n)).collect()
}

/// [`params_for`] with the names already made ([`param_keys`]).
pub fn params_keyed<'py>(
    sql: &ParsedSql,
    keys: Option<&[Bound<'py, PyString>]>,
    params: Option<&Bound<'py, PyAny>>,
) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(sql.names.len());
    if sql.names.is_empty() {
        let given = params.is_some_and(|p| !p.is_none() && p.len().is_ok_and(|n| n > 0));
        if let Some(name) = sql.pyformat_name().filter(|_| given) {
            return Err(Error::parameter(format!(
                "dbflow writes parameters as :name, not %({name})s (psycopg2's style); \
                 write :{name} in the statement"
            )));
        }
        return Ok(values);
    }
    let Some(params) = params.filter(|p| !p.is_none()) else {
        return Err(Error::parameter(format!(
            "the statement uses :{} but no params were given; pass a dict such as {{\"{}\": ...}}",
            sql.names[0], sql.names[0]
        )));
    };
    let made;
    let keys = match keys {
        Some(keys) => keys,
        None => {
            made = param_keys(params.py(), sql);
            &made[..]
        }
    };
    let dict = params.cast::<PyDict>();
    for (name, key) in sql.names.iter().zip(keys) {
        let item = match dict {
            Ok(d) => d.get_item(key).map_err(|e| py_err(name, e))?,
            Err(_) => match params.get_item(key) {
                Ok(v) => Some(v),
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(params.py()) => None,
                Err(_) => {
                    return Err(Error::parameter(
                        "params must be a mapping of parameter names to values (a dict)"
                            .to_string(),
                    ))
                }
            },
        };
        match item {
            Some(v) => values.push(to_value(name, &v)?),
            None => {
                let lookup = |_: &str| -> Option<&()> { None };
                let given = || -> Vec<String> {
                    params
                        .try_iter()
                        .map(|it| it.filter_map(|k| k.ok().map(|k| k.to_string())).collect())
                        .unwrap_or_default()
                };
                // Reuse the one wording of the missing-key error.
                let single = ParsedSql {
                    names: vec![name.clone()],
                    ..ParsedSql::default()
                };
                return Err(single
                    .bind_order(lookup, given)
                    .err()
                    .unwrap_or_else(|| Error::parameter(format!("missing parameter :{name}"))));
            }
        }
    }
    Ok(values)
}
