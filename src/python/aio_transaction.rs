//! `AsyncTransaction` and `AsyncSavepoint`: the sync `Transaction` and
//! `Savepoint` as awaitables. The transaction lives behind an async mutex,
//! so two tasks sharing one take turns instead of interleaving statements.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use super::aio::awaitable;
use super::arguments::statement;
use super::arrow::ArrowStream;
use super::arrow_ops::{self, ArrowArgs, Shape};
use super::errors::IntoPyResult;
use super::feed::RowSource;
use super::ops::PyRows;
use super::procedures;
use super::tx_slot::{not_open, TxSlot};
use crate::engine::{Database, Transaction};
use crate::error::{Error, ErrorKind, Result};
use crate::feed::RowFeed;

type Shared = TxSlot;

/// Run `work` on the open transaction, or say it is not open.
async fn on_open<T>(
    db: &Database,
    inner: &Shared,
    operation: &'static str,
    work: impl AsyncFnOnce(&mut Transaction) -> Result<T>,
) -> Result<T> {
    let mut guard = inner.claim_async(db, operation).await?;
    match guard.as_mut().filter(|t| t.is_active()) {
        Some(tx) => work(tx).await,
        None => Err(not_open(db, operation)),
    }
}

/// `async with db.transaction() as tx:` — `Transaction` for asyncio: one
/// connection for the block's statements, committed when the block ends,
/// rolled back when it raises (or earlier with `await tx.commit()` /
/// `await tx.rollback()`); `async with tx.savepoint():` nests.
#[pyclass(module = "dbflow._native", name = "AsyncTransaction", frozen)]
pub struct AsyncTransaction {
    db: Arc<Database>,
    inner: Shared,
}

impl AsyncTransaction {
    /// Not begun yet: `__aenter__` begins it.
    pub(crate) fn new(db: Arc<Database>) -> Self {
        AsyncTransaction {
            db,
            inner: TxSlot::default(),
        }
    }
}

impl AsyncTransaction {
    /// An Arrow read on the open transaction, as an awaitable.
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        args: ArrowArgs,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = args.shape.in_transaction();
        let stmt = statement(&self.db, sql, params, operation).py_result()?;
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            on_open(&db, &inner, operation, async |tx| {
                arrow_ops::fetch_in(tx, db.clone(), &stmt, args).await
            })
            .await
        })
    }
}

#[pymethods]
impl AsyncTransaction {
    /// Begin: take a connection from the pool and open the transaction.
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let (db, inner) = (this.db.clone(), this.inner.clone());
        let me: Py<AsyncTransaction> = slf.unbind();
        awaitable(py, async move {
            let mut guard = inner.claim_async(&db, "transaction").await?;
            if guard.as_ref().is_some_and(|t| t.is_active()) {
                return Err(db.fail(
                    Error::new(
                        ErrorKind::Transaction,
                        "this transaction is already open; nest with tx.savepoint()",
                    ),
                    "transaction",
                ));
            }
            *guard = Some(db.begin("transaction").await?);
            Ok(me)
        })
    }

    /// Commit, or roll back when the block raised (the exception propagates).
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        exc_type: Option<&Bound<'py, PyAny>>,
        _exc: Option<&Bound<'py, PyAny>>,
        _tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let failed = exc_type.is_some_and(|t| !t.is_none());
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            inner.stop_stream().await;
            let tx = inner.claim_async(&db, "transaction").await?.take();
            // Already committed or rolled back explicitly inside the block.
            if let Some(mut tx) = tx.filter(|t| t.is_active()) {
                if failed {
                    // The caller's exception propagates unchanged; a failed
                    // rollback only discards the connection.
                    let _ = tx.rollback().await;
                } else {
                    tx.commit().await?;
                }
            }
            Ok(false)
        })
    }

    /// One statement inside the transaction; its rows as dicts.
    #[pyo3(signature = (sql, params=None))]
    fn execute_query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = "transaction.execute_query";
        let stmt = statement(&self.db, sql, params, operation).py_result()?;
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            on_open(&db, &inner, operation, async |tx| {
                tx.query(&stmt).await.map(PyRows::from)
            })
            .await
        })
    }

    /// `call_procedure` inside the transaction (awaitable).
    #[pyo3(signature = (name, params=None, *, output=None))]
    fn call_procedure<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        params: Option<&Bound<'py, PyAny>>,
        output: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = "transaction.call_procedure";
        let call = procedures::call_of(&self.db, name, params, output, operation)?;
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            let started = std::time::Instant::now();
            let result = on_open(&db, &inner, operation, async |tx| {
                tx.call_procedure(&call).await
            })
            .await?;
            Ok(procedures::PyCalled {
                result,
                database: db,
                operation,
                started,
            })
        })
    }

    /// `execute_query_sets` inside the transaction (awaitable).
    #[pyo3(signature = (sql, params=None))]
    fn execute_query_sets<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = "transaction.execute_query_sets";
        let stmt = statement(&self.db, sql, params, operation).py_result()?;
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            let started = std::time::Instant::now();
            let sets = on_open(&db, &inner, operation, async |tx| {
                tx.query_sets(&stmt).await
            })
            .await?;
            Ok(procedures::PySets {
                sets,
                database: db,
                operation,
                started,
            })
        })
    }

    /// One statement for every parameter set, inside the transaction; all
    /// rows are converted before any is sent. Returns the rows affected.
    fn execute_many<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        seq_of_params: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = "transaction.execute_many";
        let parsed = crate::sql::parse(sql, self.db.dialect());
        // All rows converted before any is sent: a bad row leaves the open
        // transaction as it was.
        let rows = RowSource::params(&self.db, &parsed, seq_of_params, operation)
            .py_result()?
            .collect()?;
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            on_open(&db, &inner, operation, async |tx| {
                tx.execute_many(&parsed, RowFeed::from_rows(rows)).await
            })
            .await
        })
    }

    /// Commit now (the `async with` block then has nothing left to do).
    fn commit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            on_open(&db, &inner, "transaction.commit", async |tx| {
                tx.commit().await
            })
            .await?;
            Ok(None::<()>)
        })
    }

    /// Roll back now.
    fn rollback<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            on_open(&db, &inner, "transaction.rollback", async |tx| {
                tx.rollback().await
            })
            .await?;
            Ok(None::<()>)
        })
    }

    /// The statement's result as a `pyarrow.Table`, inside the transaction.
    #[pyo3(signature = (sql, params=None))]
    fn fetch_arrow<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.fetch(
            py,
            sql,
            params,
            ArrowArgs::plain(&self.db, Shape::Table, None)?,
        )
    }

    /// The statement's result as a `polars.DataFrame`, inside the transaction.
    #[pyo3(signature = (sql, params=None))]
    fn fetch_polars<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.fetch(
            py,
            sql,
            params,
            ArrowArgs::plain(&self.db, Shape::Polars, None)?,
        )
    }

    /// The statement's result as a `pandas.DataFrame` (`dtype_backend` as
    /// in `pandas.read_sql`), inside the transaction.
    #[pyo3(signature = (sql, params=None, *, dtype_backend="numpy_nullable".to_owned()))]
    #[pyo3(text_signature = "(self, sql, params=None, *, dtype_backend='numpy_nullable')")]
    fn fetch_pandas<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        dtype_backend: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.fetch(
            py,
            sql,
            params,
            ArrowArgs::plain(&self.db, Shape::Pandas, Some(dtype_backend))?,
        )
    }

    /// The statement's result as `pyarrow.RecordBatch`es read as they are
    /// consumed; the transaction's connection is busy until the stream ends
    /// or is closed.
    #[pyo3(signature = (sql, params=None, *, batch_rows=crate::arrow::DEFAULT_BATCH_ROWS))]
    #[pyo3(text_signature = "(self, sql, params=None, *, batch_rows=65536)")]
    fn iter_arrow(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        batch_rows: usize,
    ) -> PyResult<ArrowStream> {
        let operation = "transaction.iter_arrow";
        let every = arrow_ops::batch_rows(&self.db, batch_rows, operation)?;
        let stmt = statement(&self.db, sql, params, operation).py_result()?;
        let _caller = super::logging::caller_span(py).entered();
        let receiver = self.inner.stream_arrow(&self.db, stmt, every).py_result()?;
        Ok(ArrowStream::new(receiver))
    }

    /// `async with tx.savepoint():` — a nested unit that rolls back alone.
    fn savepoint(&self) -> AsyncSavepoint {
        AsyncSavepoint {
            db: self.db.clone(),
            inner: self.inner.clone(),
            name: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether the transaction is open (begun, not yet committed or rolled
    /// back). A statement running on it right now counts as open.
    #[getter]
    fn active(&self) -> bool {
        self.inner.is_active()
    }
}

/// `async with tx.savepoint():` — a nested unit: rolled back alone when its
/// block raises, kept (released) when it ends.
#[pyclass(module = "dbflow._native", name = "AsyncSavepoint", frozen)]
pub struct AsyncSavepoint {
    db: Arc<Database>,
    inner: Shared,
    name: Arc<Mutex<Option<String>>>,
}

#[pymethods]
impl AsyncSavepoint {
    /// Set the savepoint.
    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let (db, inner, slot) = (this.db.clone(), this.inner.clone(), this.name.clone());
        let me: Py<AsyncSavepoint> = slf.unbind();
        awaitable(py, async move {
            let name = on_open(&db, &inner, "transaction.savepoint", async |tx| {
                tx.savepoint().await
            })
            .await?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
            Ok(me)
        })
    }

    /// Release it, or roll back to it when the block raised.
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        exc_type: Option<&Bound<'py, PyAny>>,
        _exc: Option<&Bound<'py, PyAny>>,
        _tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let failed = exc_type.is_some_and(|t| !t.is_none());
        let name = self.name.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (db, inner) = (self.db.clone(), self.inner.clone());
        awaitable(py, async move {
            if let Some(name) = name {
                on_open(&db, &inner, "transaction.savepoint", async |tx| {
                    if failed {
                        tx.rollback_to_savepoint(&name).await
                    } else {
                        tx.release_savepoint(&name).await
                    }
                })
                .await?;
            }
            Ok(false)
        })
    }
}
