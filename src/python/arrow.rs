//! Arrow across the boundary, through the Arrow PyCapsule interface: a
//! result leaves as an `arrow_array_stream` capsule (`__arrow_c_stream__`)
//! or a batch as `arrow_schema` + `arrow_array` capsules
//! (`__arrow_c_array__`), so pyarrow, Polars and DuckDB take the buffers
//! Rust built without a copy. `dbflow._arrow` turns them into each
//! library's objects.

use std::ffi::CStr;
use std::sync::{Arc, Mutex};

type BatchReceiver = Arc<AsyncMutex<tokio::sync::mpsc::Receiver<Result<RecordBatch>>>>;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{Array, RecordBatch, RecordBatchIterator, RecordBatchReader, StructArray};
use arrow_schema::{ArrowError, SchemaRef};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use tokio::sync::Mutex as AsyncMutex;

use super::errors::{to_pyerr, IntoPyResult};
use crate::arrow::Batches;
use crate::error::Result;
use crate::runtime::runtime;

const STREAM: &CStr = c"arrow_array_stream";
const SCHEMA: &CStr = c"arrow_schema";
const ARRAY: &CStr = c"arrow_array";

fn ffi_error(e: ArrowError) -> PyErr {
    PyValueError::new_err(format!("cannot export Arrow data: {e}"))
}

/// A reader handed to a consumer as a C stream capsule.
fn stream_capsule<'py>(
    py: Python<'py>,
    reader: Box<dyn RecordBatchReader + Send>,
) -> PyResult<Bound<'py, PyCapsule>> {
    PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(reader), STREAM)
}

/// A `dbflow._arrow` function applied to `arg`.
pub(crate) fn convert<'py>(
    py: Python<'py>,
    function: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import("dbflow._arrow")?.getattr(function)?.call1(args)
}

/// A whole result (`fetch_arrow`), exported as often as asked: the batches'
/// buffers are shared, never copied.
#[pyclass(module = "dbflow._native", name = "ArrowResult", frozen)]
pub struct ArrowResult {
    batches: Batches,
}

impl ArrowResult {
    pub(crate) fn new(batches: Batches) -> Self {
        ArrowResult { batches }
    }
}

#[pymethods]
impl ArrowResult {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // A requested schema is a hint a producer may ignore (the
        // consumer casts); this one sends its own.
        let _ = requested_schema;
        let b = &self.batches;
        let reader =
            RecordBatchIterator::new(b.batches.clone().into_iter().map(Ok), b.schema.clone());
        stream_capsule(py, Box::new(reader))
    }

    /// The schema alone (DuckDB asks for it before the stream).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        schema_capsule(py, &self.batches.schema)
    }

    #[getter]
    fn column_names(&self) -> Vec<String> {
        names(&self.batches.schema)
    }

    #[getter]
    fn num_rows(&self) -> usize {
        self.batches.rows()
    }
}

fn schema_capsule<'py>(py: Python<'py>, schema: &SchemaRef) -> PyResult<Bound<'py, PyCapsule>> {
    let ffi = FFI_ArrowSchema::try_from(schema.as_ref()).map_err(ffi_error)?;
    PyCapsule::new_with_value(py, ffi, SCHEMA)
}

fn names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// One record batch, for `pyarrow.record_batch(...)`.
#[pyclass(module = "dbflow._native", name = "ArrowBatch", frozen)]
pub struct ArrowBatch {
    batch: RecordBatch,
}

#[pymethods]
impl ArrowBatch {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        // The schema as a struct: its children keep their metadata (the
        // UUID extension type).
        let schema = FFI_ArrowSchema::try_from(self.batch.schema().as_ref()).map_err(ffi_error)?;
        let array = FFI_ArrowArray::new(&StructArray::from(self.batch.clone()).to_data());
        Ok((
            PyCapsule::new_with_value(py, schema, SCHEMA)?,
            PyCapsule::new_with_value(py, array, ARRAY)?,
        ))
    }
}

/// The batches of a stream not read yet: the one read ahead, then the
/// channel's, each waited for with the GIL released.
pub(crate) struct Remaining {
    first: Option<RecordBatch>,
    receiver: BatchReceiver,
}

impl Iterator for Remaining {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        receive(&self.receiver).transpose()
    }
}

/// [`Remaining`] for a C stream consumer (errors become Arrow's).
struct ChannelReader {
    schema: SchemaRef,
    batches: Remaining,
}

impl Iterator for ChannelReader {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches
            .next()
            .map(|r| r.map_err(|e| ArrowError::ExternalError(Box::new(e))))
    }
}

impl RecordBatchReader for ChannelReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The next batch (`None` at the end), waiting without holding the GIL
/// when the calling thread holds it.
fn receive(receiver: &BatchReceiver) -> Result<Option<RecordBatch>> {
    let wait = || {
        runtime().and_then(|rt| {
            crate::runtime::block_on(&rt, async { receiver.lock().await.recv().await }).transpose()
        })
    };
    // SAFETY: PyGILState_Check only reads the thread's state.
    if unsafe { pyo3::ffi::PyGILState_Check() } == 1 {
        Python::attach(|py| super::otel::detach(py, wait))
    } else {
        wait()
    }
}

/// `iter_arrow`'s result: `pyarrow.RecordBatch`es as they arrive (`for`,
/// or `async for` from `AsyncDatabaseManager`), or the rest of them as
/// one C stream (`pa.RecordBatchReader.from_stream(it)`, `pl.DataFrame(it)`,
/// DuckDB, `bulk_insert`).
#[pyclass(module = "dbflow._native", name = "ArrowStream", frozen)]
pub struct ArrowStream {
    receiver: BatchReceiver,
    /// Completes when the producer has let go of its connection.
    done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// The first batch, read ahead for the schema.
    peeked: Mutex<Peeked>,
}

#[derive(Default)]
struct Peeked {
    schema: Option<SchemaRef>,
    first: Option<RecordBatch>,
    exported: bool,
}

impl ArrowStream {
    pub(crate) fn new(stream: crate::engine::BatchStream) -> Self {
        ArrowStream {
            receiver: Arc::new(AsyncMutex::new(stream.batches)),
            done: Mutex::new(Some(stream.done)),
            peeked: Mutex::new(Peeked::default()),
        }
    }

    fn peeked(&self) -> std::sync::MutexGuard<'_, Peeked> {
        self.peeked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema, reading the first batch if none was read yet.
    fn schema(&self, py: Python<'_>) -> PyResult<SchemaRef> {
        let mut peeked = self.peeked();
        if let Some(schema) = &peeked.schema {
            return Ok(schema.clone());
        }
        let receiver = &self.receiver;
        let first = super::otel::detach(py, || receive(receiver)).map_err(to_pyerr)?;
        let Some(first) = first else {
            return Err(PyValueError::new_err(
                "iter_arrow: the stream was closed before its first batch",
            ));
        };
        let schema = first.schema();
        peeked.schema = Some(schema.clone());
        peeked.first = Some(first);
        Ok(schema)
    }

    /// The schema and the batches not read yet, taken once (`bulk_insert`
    /// reads them here, keeping dbflow's own errors).
    pub(crate) fn take(&self, py: Python<'_>) -> PyResult<(SchemaRef, Remaining)> {
        let schema = self.schema(py)?;
        let mut peeked = self.peeked();
        if peeked.exported {
            return Err(PyValueError::new_err(
                "iter_arrow: this stream was already handed over once; call iter_arrow again",
            ));
        }
        peeked.exported = true;
        let batches = Remaining {
            first: peeked.first.take(),
            receiver: self.receiver.clone(),
        };
        Ok((schema, batches))
    }

    /// The next batch with rows (a result's only batch may be empty: it
    /// carries the schema), `None` at the end.
    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<RecordBatch>> {
        loop {
            let ahead = {
                let mut peeked = self.peeked();
                if peeked.exported {
                    return Ok(None);
                }
                peeked.first.take()
            };
            let batch = match ahead {
                Some(b) => Some(b),
                None => {
                    let receiver = &self.receiver;
                    super::otel::detach(py, || receive(receiver)).py_result()?
                }
            };
            match batch {
                None => return Ok(None),
                Some(b) => {
                    self.peeked().schema.get_or_insert_with(|| b.schema());
                    if b.num_rows() > 0 {
                        return Ok(Some(b));
                    }
                }
            }
        }
    }
}

#[pymethods]
impl ArrowStream {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.next_batch(py)? {
            None => Ok(None),
            Some(batch) => convert(py, "to_batch", (ArrowBatch { batch },)).map(Some),
        }
    }

    /// The batches not yet read, as one C stream; the iterator is then
    /// used up.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let (schema, batches) = self.take(py)?;
        stream_capsule(py, Box::new(ChannelReader { schema, batches }))
    }

    /// The schema alone, without taking the stream (DuckDB asks for it
    /// first).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema = self.schema(py)?;
        schema_capsule(py, &schema)
    }

    #[getter]
    fn column_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(names(&self.schema(py)?))
    }

    /// Stop early and release the connection now (also on garbage
    /// collection).
    fn close(&self, py: Python<'_>) {
        let receiver = &self.receiver;
        // Returns once the reader has let go of its connection: the
        // channel ends when the producer does.
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        super::otel::detach(py, || {
            let mut rx = receiver.blocking_lock();
            rx.close();
            while rx.blocking_recv().is_some() {}
            if let Some(done) = done {
                let _ = done.blocking_recv();
            }
        });
        let mut peeked = self.peeked();
        peeked.first = None;
        peeked.exported = true;
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (ahead, exported) = {
            let mut peeked = self.peeked();
            (peeked.first.take(), peeked.exported)
        };
        let receiver = self.receiver.clone();
        super::aio::awaitable(py, async move {
            if exported {
                return Ok(AsyncNext(None));
            }
            if let Some(b) = ahead.filter(|b| b.num_rows() > 0) {
                return Ok(AsyncNext(Some(b)));
            }
            // Skip empty batches (a result without rows sends one).
            loop {
                match receiver.lock().await.recv().await {
                    None => return Ok(AsyncNext(None)),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(b)) if b.num_rows() == 0 => continue,
                    Some(Ok(b)) => return Ok(AsyncNext(Some(b))),
                }
            }
        })
    }

    /// Stop early; the connection is released.
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        {
            let mut peeked = self.peeked();
            peeked.first = None;
            peeked.exported = true;
        }
        let receiver = self.receiver.clone();
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        super::aio::awaitable(py, async move {
            let mut rx = receiver.lock().await;
            rx.close();
            while rx.recv().await.is_some() {}
            if let Some(done) = done {
                let _ = done.await;
            }
            super::ops::nothing(Ok(()))
        })
    }
}

/// The next batch of an `async for`, or its end.
struct AsyncNext(Option<RecordBatch>);

impl<'py> IntoPyObject<'py> for AsyncNext {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        match self.0 {
            None => Err(pyo3::exceptions::PyStopAsyncIteration::new_err(())),
            Some(batch) => convert(py, "to_batch", (ArrowBatch { batch },)),
        }
    }
}
