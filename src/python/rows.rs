//! `iter_query`'s iterator.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::convert::rows_in_shape;
use super::errors::{to_pyerr, IntoPyResult};
use crate::error::Result;
use crate::runtime::runtime;
use crate::value::Rows;

/// The iterator `iter_query` returns: dicts (or tuples), fetched batch by
/// batch with the GIL released while waiting; each batch becomes Python
/// objects at once, the way `execute_query` builds its result.
#[pyclass(module = "dbflow._native", name = "RowIterator", frozen)]
pub struct RowIterator {
    receiver: Mutex<tokio::sync::mpsc::Receiver<Result<Rows>>>,
    current: Mutex<Option<(Py<PyList>, usize)>>,
    as_tuples: bool,
}

impl RowIterator {
    pub(crate) fn new(
        receiver: tokio::sync::mpsc::Receiver<Result<Rows>>,
        as_tuples: bool,
    ) -> Self {
        RowIterator {
            receiver: Mutex::new(receiver),
            current: Mutex::new(None),
            as_tuples,
        }
    }
}

#[pymethods]
impl RowIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((batch, at)) = current.as_mut() {
                let batch = batch.bind(py);
                if *at < batch.len() {
                    let row = batch.get_item(*at)?;
                    *at += 1;
                    return Ok(Some(row));
                }
            }
            let receiver = &self.receiver;
            let next = super::otel::detach(py, || {
                let mut rx = receiver.lock().unwrap_or_else(|p| p.into_inner());
                runtime().map(|rt| crate::runtime::block_on(&rt, rx.recv()))
            });
            match next.py_result()? {
                None => return Ok(None),
                Some(Err(e)) => return Err(to_pyerr(e)),
                Some(Ok(rows)) => {
                    let batch = rows_in_shape(py, rows, self.as_tuples)?;
                    *current = Some((batch.unbind(), 0));
                }
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
