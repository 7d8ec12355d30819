//! Result sets → `list[dict]` or `list[tuple]`, built with the cyclic GC
//! paused when large.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::error::{Error, Result};
use crate::python::errors::to_pyerr;
use crate::value::{Rows, Value};

use super::to_py::to_py;
use super::GC_PAUSE_ROWS;

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
            (None, Err(e)) => Err(to_pyerr(e)),
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
