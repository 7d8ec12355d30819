//! `iter_query`'s iterator.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::convert::{self};
use super::errors::{to_pyerr, IntoPyResult};
use crate::error::Result;
use crate::runtime::runtime;
use crate::value::Rows;

/// The iterator `iter_query` returns: dicts, fetched batch by batch with
/// the GIL released while waiting.
#[pyclass(module = "dbflow._native", name = "RowIterator", frozen)]
pub struct RowIterator {
    receiver: Mutex<tokio::sync::mpsc::Receiver<Result<Rows>>>,
    current: Mutex<Option<(Rows, usize)>>,
}

impl RowIterator {
    pub(crate) fn new(receiver: tokio::sync::mpsc::Receiver<Result<Rows>>) -> Self {
        RowIterator {
            receiver: Mutex::new(receiver),
            current: Mutex::new(None),
        }
    }
}

#[pymethods]
impl RowIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((rows, at)) = current.as_mut() {
                if *at < rows.row_count() {
                    let width = rows.columns.len();
                    let d = PyDict::new(py);
                    for (name, value) in rows
                        .columns
                        .iter()
                        .zip(&rows.values[*at * width..(*at + 1) * width])
                    {
                        d.set_item(name, convert::to_py(py, value)?)?;
                    }
                    *at += 1;
                    return Ok(Some(d));
                }
            }
            let receiver = &self.receiver;
            let next = py.detach(|| {
                let mut rx = receiver.lock().unwrap_or_else(|p| p.into_inner());
                runtime().map(|rt| crate::runtime::block_on(&rt, rx.recv()))
            });
            match next.py_result()? {
                None => return Ok(None),
                Some(Err(e)) => return Err(to_pyerr(e)),
                Some(Ok(rows)) => *current = Some((rows, 0)),
            }
        }
    }

    /// Stop early and release the connection now (also on garbage collection).
    fn close(&self) {
        self.receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
