//! Python ⇄ [`Value`] at the binding edge. Rows become dicts in one pass
//! under the GIL, with each column name made into a Python string once per
//! result set.

use chrono::{Datelike, NaiveDateTime, Timelike};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDate, PyDateTime, PyDelta, PyDict, PyFloat, PyInt, PyList,
    PyMemoryView, PyString, PyTime, PyTuple, PyType, PyTzInfo,
};

use crate::error::{Error, Result};
use crate::sql::ParsedSql;
use crate::value::{Rows, Value};

/// Results this large are built with the cyclic GC paused ([`GcPause`]);
/// smaller ones cannot trigger enough collections to matter.
const GC_PAUSE_ROWS: usize = 256;

static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UUID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TIMEZONE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DECIMAL.import(py, "decimal", "Decimal")
}

fn uuid_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID.import(py, "uuid", "UUID")
}

fn utc(py: Python<'_>) -> PyResult<Bound<'_, PyTzInfo>> {
    let utc = UTC.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("datetime")?
            .getattr("timezone")?
            .getattr("utc")?
            .unbind())
    })?;
    Ok(utc.bind(py).cast::<PyTzInfo>()?.clone())
}

fn fixed_offset(py: Python<'_>, seconds: i32) -> PyResult<Bound<'_, PyTzInfo>> {
    if seconds == 0 {
        return utc(py);
    }
    let tz = TIMEZONE.import(py, "datetime", "timezone")?;
    let delta = PyDelta::new(py, 0, seconds, 0, true)?;
    Ok(tz.call1((delta,))?.cast_into::<PyTzInfo>()?)
}

fn unsupported(name: &str, obj: &Bound<'_, PyAny>) -> Error {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Error::parameter(format!(
        "parameter :{name}: values of type {ty} cannot be sent; use None, bool, int, float, Decimal, str, \
         bytes, date, time, datetime, timedelta, UUID, dict or list"
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
                    segments: Vec::new(),
                    names: vec![name.clone()],
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

/// Pauses CPython's cyclic garbage collector while a result is built, and
/// restores its previous state however the building ends.
///
/// Every dict (and UUID, and JSON container) made is a tracked allocation;
/// building 100,000 rows would trigger hundreds of collections, some
/// traversing every object made so far (a third of the time of a large
/// fetch, measured with `perf`). The objects made here cannot form cycles.
/// A result built in batches keeps the pause across them ([`ListBuilder`]).
pub struct GcPause {
    was_enabled: bool,
}

impl GcPause {
    fn new(_py: Python<'_>) -> Self {
        // SAFETY: the GIL is held (the token proves it); PyGC_Disable only
        // flips the collector's flag and returns its previous state.
        let was_enabled = unsafe { pyo3::ffi::PyGC_Disable() } != 0;
        GcPause { was_enabled }
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: every pause is created and dropped by a function that
            // holds the GIL at both points (its `Python` token proves it).
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

/// A result set → `list[tuple]`, values in column order: no keys to hash or
/// store (`execute_query(..., as_tuples=True)`, for large reads).
pub fn rows_to_tuples<'py>(py: Python<'py>, rows: Rows) -> PyResult<Bound<'py, PyList>> {
    let _pause = (rows.row_count() >= GC_PAUSE_ROWS).then(|| GcPause::new(py));
    let width = rows.columns.len();
    let count = rows.row_count();
    let mut tuples = Vec::with_capacity(count);
    let mut values = rows.values.into_iter();
    let mut row = Vec::with_capacity(width);
    for _ in 0..count {
        row.clear();
        for column in &rows.columns {
            let value = values.next().unwrap_or(Value::Null);
            row.push(to_py(py, &value).map_err(|e| unrepresentable(py, column, e))?);
        }
        tuples.push(PyTuple::new(py, &row)?);
    }
    PyList::new(py, tuples)
}

/// A server value Python cannot hold (a date past year 9999, say): the
/// same exception type, saying which column and what to do.
fn unrepresentable(py: Python<'_>, column: &str, e: PyErr) -> PyErr {
    let kind = e.get_type(py);
    PyErr::from_type(
        kind,
        format!(
            "column {column}: the server's value cannot be a Python object ({}); \
             cast the column in the SQL, e.g. {column}::text",
            e.value(py)
        ),
    )
}

/// One result list built from batches handed over while the connection
/// decodes the next (taking the GIL per batch).
///
/// The cyclic GC stays paused from the first batch on: re-enabled between
/// batches, each collection would traverse the whole growing result again.
/// Other threads run between batches, so the pause is given up after
/// [`LONGEST_GC_PAUSE`]: a slow stream of a huge result must not keep their
/// cyclic garbage waiting for long.
pub struct ListBuilder {
    /// Made with the first batch: a small result never needs it.
    list: Option<Py<PyList>>,
    as_tuples: bool,
    pause: Option<(GcPause, std::time::Instant)>,
    pause_given_up: bool,
    failure: Option<PyErr>,
}

const LONGEST_GC_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl ListBuilder {
    pub fn new(as_tuples: bool) -> Self {
        ListBuilder {
            list: None,
            as_tuples,
            pause: None,
            pause_given_up: false,
            failure: None,
        }
    }

    /// Convert and append one batch (called without the GIL).
    pub fn push(&mut self, batch: Rows) -> Result<()> {
        Python::attach(|py| {
            if self.pause.is_none() && !self.pause_given_up {
                self.pause = Some((GcPause::new(py), std::time::Instant::now()));
            }
            let list = self
                .list
                .get_or_insert_with(|| PyList::empty(py).unbind())
                .bind(py);
            let appended = extend_in_shape(list, batch, self.as_tuples);
            if self
                .pause
                .as_ref()
                .is_some_and(|(_, since)| since.elapsed() > LONGEST_GC_PAUSE)
            {
                self.pause = None; // dropped under the GIL: the collector resumes
                self.pause_given_up = true;
            }
            appended.map_err(|e| {
                self.failure = Some(e);
                Error::query("converting rows to Python objects failed")
            })
        })
    }

    /// The list, with the rows not handed over in batches appended; a
    /// conversion failure is raised as it was.
    pub fn finish<'py>(
        mut self,
        py: Python<'py>,
        rest: Result<Rows>,
    ) -> PyResult<Bound<'py, PyList>> {
        let outcome = match (self.failure.take(), rest) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(super::errors::to_pyerr(e)),
            // A result smaller than one batch: the common case.
            (None, Ok(rest)) => match self.list.take() {
                None => rows_in_shape(py, rest, self.as_tuples),
                Some(list) => {
                    let list = list.into_bound(py);
                    extend_in_shape(&list, rest, self.as_tuples).map(|()| list)
                }
            },
        };
        drop(self.pause.take()); // under the GIL
        outcome
    }
}

/// Append rows to `list` as dicts, or as tuples when asked for.
pub fn extend_in_shape(list: &Bound<'_, PyList>, rows: Rows, as_tuples: bool) -> PyResult<()> {
    if rows.row_count() == 0 {
        return Ok(());
    }
    let built = rows_in_shape(list.py(), rows, as_tuples)?;
    // list += built: one C call, no per-item work.
    list.as_any()
        .call_method1(intern!(list.py(), "extend"), (built,))?;
    Ok(())
}

/// Rows as dicts, or as tuples when the caller asked for them.
pub fn rows_in_shape<'py>(
    py: Python<'py>,
    rows: Rows,
    as_tuples: bool,
) -> PyResult<Bound<'py, PyList>> {
    if as_tuples {
        rows_to_tuples(py, rows)
    } else {
        rows_to_py(py, rows)
    }
}

/// A result set → `list[dict]`.
/// Consumes the rows: each value's heap memory (strings, JSON trees) is
/// freed as soon as its Python object exists, so the peak is not the two
/// copies side by side.
pub fn rows_to_py<'py>(py: Python<'py>, rows: Rows) -> PyResult<Bound<'py, PyList>> {
    let _pause = (rows.row_count() >= GC_PAUSE_ROWS).then(|| GcPause::new(py));
    let names: Vec<Bound<'py, PyString>> =
        rows.columns.iter().map(|c| PyString::new(py, c)).collect();
    let count = rows.row_count();
    let mut dicts = Vec::with_capacity(count);
    let mut values = rows.values.into_iter();
    // Every row's dict starts as a copy of one with all the keys: sized
    // right at once, and the keys' hashes are not recomputed.
    let template = PyDict::new(py);
    for name in &names {
        template.set_item(name, py.None())?;
    }
    for _ in 0..count {
        let dict = template.copy()?;
        for (name, column) in names.iter().zip(&rows.columns) {
            let value = values.next().unwrap_or(Value::Null);
            let object = to_py(py, &value).map_err(|e| unrepresentable(py, column, e))?;
            dict.set_item(name, object)?;
        }
        dicts.push(dict);
    }
    PyList::new(py, dicts)
}
