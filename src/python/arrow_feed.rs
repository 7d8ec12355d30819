//! `bulk_insert` of Arrow data: any object exporting the Arrow C stream
//! (`__arrow_c_stream__`: a pyarrow Table or RecordBatchReader, a Polars or
//! pandas DataFrame, `iter_arrow`'s result) or a C array
//! (`__arrow_c_array__`: a RecordBatch). Its batches are read without the
//! GIL, turned into rows in Rust and fed to the load while it runs; the
//! load starts on the runtime and takes the feed as it comes, so memory
//! holds a couple of batches whatever the data's size.

use std::sync::Arc;

use arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{RecordBatch, RecordBatchReader, StructArray};
use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use super::arrow::ArrowStream;
use super::errors::IntoPyResult;
use crate::arrow::load;
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::feed::{FeedSender, Part, RowFeed};

type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Arrow data handed to `bulk_insert`, its batches not read yet.
pub(crate) struct ArrowInput {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: Batches,
}

fn imported(e: impl std::fmt::Display) -> Error {
    Error::parameter(format!("cannot read the Arrow data: {e}"))
}

/// `data` as Arrow input, or `None` when it exports no Arrow interface
/// (rows of dicts or tuples).
pub(crate) fn input(data: &Bound<'_, PyAny>) -> Result<Option<ArrowInput>> {
    let py = data.py();
    // dbflow's own stream (database to database): its batches and errors
    // as they are, without the C interface in between.
    if let Ok(stream) = data.cast::<ArrowStream>() {
        let (schema, batches) = stream.get().take(py).map_err(|e| imported(e.value(py)))?;
        return Ok(Some(ArrowInput {
            schema,
            batches: Box::new(batches),
        }));
    }
    if data.hasattr("__arrow_c_stream__").unwrap_or(false) {
        let capsule = data
            .call_method0("__arrow_c_stream__")
            .map_err(|e| imported(e.value(py)))?;
        let capsule = capsule.cast::<PyCapsule>().map_err(imported)?;
        let pointer = capsule
            .pointer_checked(Some(c"arrow_array_stream"))
            .map_err(|e| imported(e.value(py)))?;
        // SAFETY: the capsule holds an ArrowArrayStream (its name says so);
        // from_raw moves it out and leaves a released one behind, which the
        // capsule's destructor then ignores.
        let reader = unsafe {
            RecordBatchStreamReader::from_raw(pointer.cast::<FFI_ArrowArrayStream>().as_ptr())
        }
        .map_err(imported)?;
        return Ok(Some(ArrowInput {
            schema: reader.schema(),
            batches: Box::new(reader.map(|b| b.map_err(imported))),
        }));
    }
    if data.hasattr("__arrow_c_array__").unwrap_or(false) {
        let pair = data
            .call_method0("__arrow_c_array__")
            .map_err(|e| imported(e.value(py)))?;
        let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
            pair.extract().map_err(|e: PyErr| imported(e.value(py)))?;
        let schema = schema
            .pointer_checked(Some(c"arrow_schema"))
            .map_err(|e| imported(e.value(py)))?;
        let array = array
            .pointer_checked(Some(c"arrow_array"))
            .map_err(|e| imported(e.value(py)))?;
        // SAFETY: as above, for the C data interface's two structures.
        let (schema, array) = unsafe {
            (
                FFI_ArrowSchema::from_raw(schema.cast().as_ptr()),
                FFI_ArrowArray::from_raw(array.cast().as_ptr()),
            )
        };
        // SAFETY: the array was exported with this schema.
        let data = unsafe { from_ffi(array, &schema) }.map_err(imported)?;
        let batch = RecordBatch::from(StructArray::from(data));
        return Ok(Some(ArrowInput {
            schema: batch.schema(),
            batches: Box::new(std::iter::once(Ok(batch))),
        }));
    }
    Ok(None)
}

/// Rows per part of the feed: a large batch (a whole table is often one)
/// goes as slices of this many rows (no copy), so the server parses the
/// first while the next is written.
const PART_ROWS: usize = 16_384;

/// Read every batch into the feed as it comes; one that cannot be read
/// ends the feed with its error (the load then undoes itself).
fn pump(batches: Batches, sender: FeedSender) {
    let mut first_row = 0;
    for batch in batches {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                return;
            }
        };
        let mut offset = 0;
        while offset < batch.num_rows() {
            let rows = PART_ROWS.min(batch.num_rows() - offset);
            let part = Part::Batch {
                batch: batch.slice(offset, rows),
                first_row: first_row + offset,
            };
            // A closed feed: the load ended (its error is the answer).
            if sender.blocking_send(Ok(part)).is_err() {
                return;
            }
            offset += rows;
        }
        first_row += batch.num_rows();
    }
}

impl ArrowInput {
    /// Start the load on the runtime; returns it and the pump that feeds it.
    fn start(
        self,
        db: &Arc<Database>,
        table: &str,
    ) -> Result<(tokio::task::JoinHandle<Result<u64>>, impl FnOnce() + Send)> {
        let columns = load::columns(&self.schema).map_err(|e| db.fail(e, "bulk_insert"))?;
        let origin = self
            .schema
            .fields()
            .iter()
            .map(|f| load::origin(f))
            .collect();
        let (sender, feed) = RowFeed::channel(2);
        let feed = feed.with_origin(origin);
        let (db, table) = (db.clone(), table.to_owned());
        let load = crate::runtime::catch_panic_async(async move {
            db.bulk_insert_named(&table, columns, feed).await
        });
        let handle = crate::runtime::runtime()?.spawn(tracing::Instrument::instrument(
            load,
            tracing::Span::current(),
        ));
        let batches = self.batches;
        Ok((handle, move || pump(batches, sender)))
    }
}

fn joined(r: std::result::Result<Result<u64>, tokio::task::JoinError>) -> Result<u64> {
    r.map_err(|e| Error::query(format!("bulk_insert stopped: {e}")))?
}

/// `DatabaseManager.bulk_insert` of Arrow data: fed from this thread with
/// the GIL released.
pub(crate) fn load_blocking(
    py: Python<'_>,
    db: &Arc<Database>,
    table: &str,
    data: ArrowInput,
) -> PyResult<u64> {
    let _caller = super::logging::caller_span(py).entered();
    let (handle, pump) = data.start(db, table).py_result()?;
    super::otel::detach(py, || {
        pump();
        let rt = crate::runtime::runtime()?;
        joined(crate::runtime::block_on(&rt, handle))
    })
    .py_result()
}

/// `AsyncDatabaseManager.bulk_insert` of Arrow data: fed from a thread of
/// its own, awaited by the caller.
pub(crate) fn load_async<'py>(
    py: Python<'py>,
    db: &Arc<Database>,
    table: &str,
    data: ArrowInput,
) -> PyResult<Bound<'py, PyAny>> {
    let _caller = super::logging::caller_span(py).entered();
    let (handle, pump) = data.start(db, table).py_result()?;
    std::thread::Builder::new()
        .name("dbflow-arrow-feed".into())
        .spawn(pump)
        .map_err(|e| Error::query(format!("bulk_insert: cannot start its feed: {e}")))
        .py_result()?;
    super::aio::awaitable(py, async move { joined(handle.await) })
}

/// `columns=` belongs to rows given as tuples.
pub(crate) fn refuse_columns(db: &Database, columns: &Option<Vec<String>>) -> PyResult<()> {
    if columns.is_some() {
        return Err(db.fail(
            Error::parameter(
                "columns= is for rows given as tuples; Arrow data names its own columns",
            ),
            "bulk_insert",
        ))
        .py_result();
    }
    Ok(())
}
