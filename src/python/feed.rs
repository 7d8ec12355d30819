//! Rows from Python for `execute_many` and `bulk_insert`, converted a chunk
//! at a time while the operation sends the chunks already made: the
//! server parses and stores rows while the next ones are read from Python
//! (measured: `benchmarks/README.md`). Any iterable works, a generator too,
//! and a sync call holds at most [`SYNC_CAPACITY`] chunks unsent.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyString};
use tokio::sync::mpsc::error::TrySendError;

use super::convert::{self, param_keys, params_keyed};
use super::errors::to_pyerr;
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::feed::{Chunk, FeedSender, Part, RowFeed};
use crate::sql::ParsedSql;
use crate::value::Value;

/// Rows converted per chunk: large enough that a chunk's hand-over is
/// noise, small enough that the server starts on the first rows early.
const CHUNK_ROWS: usize = 512;

/// Chunks a sync call lets wait unsent before it waits itself.
const SYNC_CAPACITY: usize = 4;

/// Chunks an async call may queue: it converts on the event loop's thread
/// and must not block it, so it never waits for room (the rows are in
/// memory already, as Python objects).
const ASYNC_CAPACITY: usize = 1 << 20;

enum Shape<'a, 'py> {
    /// `execute_many`: each item maps the statement's parameter names.
    Params {
        sql: &'a ParsedSql,
        keys: Vec<Bound<'py, PyString>>,
    },
    /// `bulk_insert`: dicts (keys from the first row, or `columns`), or
    /// tuples and lists in `columns` order.
    Bulk {
        columns: Option<Vec<String>>,
        keys: Option<Vec<Bound<'py, PyAny>>>,
    },
}

/// The Python rows of one call, converted on demand.
pub(crate) struct RowSource<'a, 'py> {
    db: &'a Database,
    operation: &'static str,
    rows: Bound<'py, PyIterator>,
    shape: Shape<'a, 'py>,
    index: usize,
    ended: bool,
    /// The exception the caller's own iterable raised (a generator that
    /// failed): the call raises it unchanged once the operation undid its
    /// work, as the caller's own loop would have.
    raised: Raised,
}

/// Where the caller's exception waits for the operation to end, with the
/// message of the error that stood in for it in the feed.
pub(crate) type Raised = Arc<Mutex<Option<(PyErr, String)>>>;

/// `e` for Python: the caller's own exception when `e` is the error that
/// stood in for it (the operation ended because the rows raised), else
/// dbflow's error (the server refused an earlier row first, say).
pub(crate) fn reraise(raised: &Raised, e: Error) -> PyErr {
    let mut slot = raised.lock().unwrap_or_else(|p| p.into_inner());
    match slot.take() {
        Some((exception, stand_in)) if stand_in == e.message => exception,
        _ => to_pyerr(e),
    }
}

impl<'a, 'py> RowSource<'a, 'py> {
    /// Parameter sets for `sql` (`execute_many`).
    pub(crate) fn params(
        db: &'a Database,
        sql: &'a ParsedSql,
        seq: &Bound<'py, PyAny>,
        operation: &'static str,
    ) -> Result<Self> {
        let rows = seq.try_iter().map_err(|_| {
            db.fail(
                Error::parameter("seq_of_params must be a sequence of dicts"),
                operation,
            )
        })?;
        let keys = param_keys(seq.py(), sql);
        Ok(RowSource::new(
            db,
            operation,
            rows,
            Shape::Params { sql, keys },
        ))
    }

    /// Rows for `bulk_insert`.
    pub(crate) fn bulk(
        db: &'a Database,
        rows: &Bound<'py, PyAny>,
        columns: Option<Vec<String>>,
    ) -> Result<Self> {
        let operation = "bulk_insert";
        let iter = rows.try_iter().map_err(|_| {
            db.fail(
                Error::parameter("rows must be a sequence of dicts or tuples"),
                operation,
            )
        })?;
        let keys = columns.as_ref().map(|c| {
            c.iter()
                .map(|n| PyString::new(rows.py(), n).into_any())
                .collect()
        });
        Ok(RowSource::new(
            db,
            operation,
            iter,
            Shape::Bulk { columns, keys },
        ))
    }

    fn new(
        db: &'a Database,
        operation: &'static str,
        rows: Bound<'py, PyIterator>,
        shape: Shape<'a, 'py>,
    ) -> Self {
        RowSource {
            db,
            operation,
            rows,
            shape,
            index: 0,
            ended: false,
            raised: Raised::default(),
        }
    }

    /// The slot for the caller's exception ([`reraise`]).
    pub(crate) fn raised(&self) -> Raised {
        self.raised.clone()
    }

    /// The column names the rows carry, once the first dict was seen (or
    /// as given); `None` for tuples without `columns`.
    pub(crate) fn columns(&self) -> Option<Vec<String>> {
        match &self.shape {
            Shape::Bulk { columns, .. } => columns.clone(),
            Shape::Params { .. } => None,
        }
    }

    /// Up to `n` more rows; `None` once the rows ended (or failed: the
    /// failure is the last chunk).
    pub(crate) fn next_chunk(&mut self, n: usize) -> Option<Chunk> {
        if self.ended {
            return None;
        }
        let mut chunk = Vec::with_capacity(n);
        while chunk.len() < n {
            let Some(item) = self.rows.next() else {
                self.ended = true;
                break;
            };
            let row = match item {
                Ok(row) => row,
                Err(e) => {
                    self.ended = true;
                    let why = format!("the rows raised an exception at row {}", self.index);
                    *self.raised.lock().unwrap_or_else(|p| p.into_inner()) = Some((e, why.clone()));
                    return Some(Err(self.db.fail(Error::parameter(why), self.operation)));
                }
            };
            match self.convert(&row) {
                Ok(values) => chunk.push(values),
                Err(e) => {
                    self.ended = true;
                    return Some(Err(self.db.fail(e, self.operation)));
                }
            }
            self.index += 1;
        }
        (!chunk.is_empty()).then_some(Ok(chunk))
    }

    /// Every remaining row (a transaction's `execute_many`: nothing is sent
    /// before all rows are known good, so a bad row leaves the open
    /// transaction as it was).
    pub(crate) fn collect(mut self) -> PyResult<Vec<Vec<Value>>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk(CHUNK_ROWS) {
            all.extend(chunk.map_err(|e| reraise(&self.raised, e))?);
        }
        Ok(all)
    }

    fn convert(&mut self, row: &Bound<'py, PyAny>) -> Result<Vec<Value>> {
        let index = self.index;
        match &mut self.shape {
            Shape::Params { sql, keys } => {
                params_keyed(sql, Some(keys), Some(row)).map_err(|mut e| {
                    e.message = format!("row {index}: {}", e.message);
                    e
                })
            }
            Shape::Bulk { columns, keys } => {
                bulk_row(row, index, columns, keys).map_err(|mut e| {
                    if !e.message.starts_with("row ") {
                        e.message = format!("row {index}: {}", e.message);
                    }
                    e
                })
            }
        }
    }
}

/// One `bulk_insert` row: a dict by its keys (the first dict's keys name
/// the columns when none were given), a tuple or list by position.
fn bulk_row<'py>(
    row: &Bound<'py, PyAny>,
    index: usize,
    columns: &mut Option<Vec<String>>,
    keys: &mut Option<Vec<Bound<'py, PyAny>>>,
) -> Result<Vec<Value>> {
    if let Ok(dict) = row.cast::<PyDict>() {
        let keys = keys.get_or_insert_with(|| {
            let found: Vec<Bound<'py, PyAny>> = dict.keys().iter().collect();
            *columns = Some(found.iter().map(|k| k.to_string()).collect());
            found
        });
        let names = columns.as_deref().unwrap_or_default();
        let mut values = Vec::with_capacity(keys.len());
        for (key, name) in keys.iter().zip(names) {
            let item = dict
                .get_item(key)
                .map_err(|e| Error::parameter(e.to_string()))?;
            let Some(item) = item else {
                return Err(Error::parameter(format!(
                    "row {index} has no value for column '{name}'"
                )));
            };
            values.push(convert::to_value(name, &item)?);
        }
        return Ok(values);
    }
    let items = row
        .try_iter()
        .map_err(|_| Error::parameter(format!("row {index} is neither a dict nor a tuple")))?;
    let mut values = Vec::with_capacity(columns.as_ref().map_or(8, Vec::len));
    for (i, item) in items.enumerate() {
        let item = item.map_err(|e| Error::parameter(e.to_string()))?;
        let name = match columns.as_ref().and_then(|c| c.get(i)) {
            Some(name) => std::borrow::Cow::Borrowed(name.as_str()),
            None => std::borrow::Cow::Owned(format!("#{i}")),
        };
        values.push(convert::to_value(&name, &item)?);
    }
    Ok(values)
}

/// A sync call's rows: the first chunk is converted before anything starts
/// (a bad first row, or none at all, touches no connection; dicts name the
/// columns), then `start` builds the operation on the feed and the rest is
/// converted while it runs. `None`: there were no rows.
pub(crate) fn run_fed<T: Send, F>(
    py: Python<'_>,
    mut source: RowSource<'_, '_>,
    start: impl FnOnce(RowFeed, Option<Vec<String>>) -> F,
) -> PyResult<Option<T>>
where
    F: Future<Output = Result<T>> + Send,
{
    super::otel::refresh(py);
    let raised = source.raised();
    let Some(first) = source.next_chunk(CHUNK_ROWS) else {
        return Ok(None);
    };
    let first = first.map_err(|e| reraise(&raised, e))?;
    let (tx, feed) = RowFeed::channel(SYNC_CAPACITY);
    // An empty channel has room for one chunk.
    let _ = tx.try_send(Ok(Part::Rows(first)));
    let operation = start(feed, source.columns());
    crate::runtime::catch_panic(|| feed_while_running(py, &mut source, tx, operation))
        .map(Some)
        .map_err(|e| reraise(&raised, e))
}

/// An async call's rows: like [`run_fed`], but the operation is spawned
/// on the runtime by `start` (returning its awaitable) and every row is
/// converted and queued without waiting (see [`ASYNC_CAPACITY`]).
/// `start` gets the slot of the caller's exception to raise it from the
/// awaitable ([`reraise`]).
pub(crate) fn start_fed<'py>(
    mut source: RowSource<'_, 'py>,
    start: impl FnOnce(RowFeed, Option<Vec<String>>, Raised) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let raised = source.raised();
    let Some(first) = source.next_chunk(CHUNK_ROWS) else {
        return Ok(None);
    };
    let first = first.map_err(|e| reraise(&raised, e))?;
    let (tx, feed) = RowFeed::channel(ASYNC_CAPACITY);
    let _ = tx.try_send(Ok(Part::Rows(first)));
    let awaitable = start(feed, source.columns(), raised)?;
    while let Some(chunk) = source.next_chunk(CHUNK_ROWS) {
        if tx.try_send(chunk.map(Part::Rows)).is_err() {
            break; // the operation ended early (failed): stop converting
        }
    }
    Ok(Some(awaitable))
}

/// Converts the rest of `source` chunk by chunk, handing each
/// to `operation` (which reads them from the feed `feed` sends to) and
/// polling it between chunks with the GIL released; then waits for it.
/// An operation that ends early (the server refused the first rows) stops
/// the conversion.
fn feed_while_running<T: Send>(
    py: Python<'_>,
    source: &mut RowSource<'_, '_>,
    feed: FeedSender,
    operation: impl Future<Output = Result<T>> + Send,
) -> Result<T> {
    let rt = crate::runtime::runtime()?;
    let mut operation = std::pin::pin!(operation);
    // Started at once: the checkout and the statement's start overlap the
    // conversion of the second chunk.
    if let Poll::Ready(result) = super::otel::detach(py, || {
        crate::runtime::poll_once(&rt, &mut operation.as_mut())
    }) {
        return result;
    }
    let mut closed = false;
    while !closed {
        let Some(chunk) = source.next_chunk(CHUNK_ROWS) else {
            break;
        };
        let mut pending = Some(chunk.map(Part::Rows));
        while let Some(chunk) = pending.take() {
            match feed.try_send(chunk) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) => {
                    pending = Some(chunk);
                    // Wait (GIL released) for room, or for the end.
                    let ended = super::otel::detach(py, || {
                        crate::runtime::block_on(&rt, async {
                            tokio::select! {
                                result = operation.as_mut() => Some(result),
                                _ = feed.reserve() => None,
                            }
                        })
                    });
                    if let Some(result) = ended {
                        return result;
                    }
                }
                // The operation ended and dropped its feed: it failed.
                Err(TrySendError::Closed(_)) => closed = true,
            }
        }
        if let Poll::Ready(result) = super::otel::detach(py, || {
            crate::runtime::poll_once(&rt, &mut operation.as_mut())
        }) {
            return result;
        }
    }
    drop(feed); // the end of the rows
    super::otel::detach(py, || crate::runtime::block_on(&rt, operation))
}
