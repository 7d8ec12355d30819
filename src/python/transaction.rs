//! `Transaction` and `Savepoint` of the sync manager.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::arguments::statement;
use super::arrow::ArrowStream;
use super::arrow_ops::{self, ArrowArgs, Shape};
use super::convert::rows_to_py;
use super::errors::{to_pyerr, IntoPyResult};
use super::feed::RowSource;
use super::ops::{drive, log_done, wait};
use super::procedures;
use super::tx_slot::TxSlot;
use crate::engine::{Database, Transaction};
use crate::error::{Error, ErrorKind, Result};
use crate::feed::RowFeed;
use crate::runtime::runtime;
use crate::sql::{self};

/// `with db.transaction() as tx:` — one connection for the block's
/// statements; committed when the block ends, rolled back when it raises
/// (or earlier with `commit()` / `rollback()`); `tx.savepoint()` nests.
#[pyclass(module = "dbflow._native", name = "Transaction", frozen)]
pub struct PyTransaction {
    db: Arc<Database>,
    slot: TxSlot,
}

impl PyTransaction {
    /// Not begun yet: `__enter__` begins it.
    pub(crate) fn new(db: Arc<Database>) -> Self {
        PyTransaction {
            db,
            slot: TxSlot::default(),
        }
    }

    fn with<T: Send>(
        &self,
        py: Python<'_>,
        operation: &'static str,
        f: impl for<'a> FnOnce(
                &'a mut Transaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>,
            > + Send,
    ) -> PyResult<T> {
        let db = &self.db;
        let slot = &self.slot;
        // The lock is held by this thread for the whole call, so two Python
        // threads sharing one transaction take turns; one that must wait
        // for it waits with the GIL released.
        super::otel::keeping_spans(py, move || {
            let mut guard = match slot.try_claim(db, operation)? {
                Some(guard) => guard,
                None => py.detach(|| slot.claim(db, operation))?,
            };
            match guard.as_mut().filter(|t| t.is_active()) {
                Some(tx) => crate::runtime::catch_panic(|| drive(py, f(tx).as_mut())),
                None => Err(db.fail(
                    Error::new(
                        ErrorKind::Transaction,
                        "the transaction is not open; use it inside `with db.transaction() as tx:`",
                    ),
                    operation,
                )),
            }
        })
        .py_result()
    }

    /// An Arrow read on the open transaction.
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        args: ArrowArgs,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = args.shape.in_transaction();
        let stmt = statement(&self.db, sql, params, operation).py_result()?;
        let db = self.db.clone();
        let fetched = self.with(py, operation, move |tx| {
            Box::pin(async move { arrow_ops::fetch_in(tx, db, &stmt, args).await })
        })?;
        fetched.into_pyobject(py)
    }
}

#[pymethods]
impl PyTransaction {
    /// Begin: take a connection from the pool and open the transaction.
    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        {
            let this = slf.get();
            let db = &this.db;
            let tx = wait(py, db.begin("transaction")).py_result()?;
            let mut guard = this.slot.claim(db, "transaction").py_result()?;
            if guard.as_ref().is_some_and(|t| t.is_active()) {
                return Err(to_pyerr(db.fail(
                    Error::new(
                        ErrorKind::Transaction,
                        "this transaction is already open; nest with tx.savepoint()",
                    ),
                    "transaction",
                )));
            }
            *guard = Some(tx);
        }
        Ok(slf)
    }

    /// Commit, or roll back when the block raised (the exception propagates).
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let failed = exc_type.is_some_and(|t| !t.is_none());
        let slot = &self.slot;
        let tx = super::otel::detach(py, || {
            let rt = runtime()?;
            crate::runtime::block_on(&rt, slot.stop_stream());
            slot.claim(&self.db, "transaction").map(|mut g| g.take())
        })
        .py_result()?;
        // Already committed or rolled back explicitly inside the block.
        let Some(mut tx) = tx.filter(|t| t.is_active()) else {
            return Ok(false);
        };
        if failed {
            // The user's exception propagates unchanged; a failed rollback
            // only means the connection is discarded (the server rolls back).
            let _ = wait(py, tx.rollback());
            return Ok(false);
        }
        wait(py, tx.commit()).py_result()?;
        Ok(false)
    }

    /// One statement inside the transaction; its rows as dicts.
    #[pyo3(signature = (sql, params=None))]
    fn execute_query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let started = Instant::now();
        let stmt = statement(&self.db, sql, params, "transaction.execute_query").py_result()?;
        let rows = self.with(py, "transaction.execute_query", |tx| {
            Box::pin(async move { tx.query(&stmt).await })
        })?;
        log_done(
            self.db.name(),
            "transaction.execute_query",
            started,
            rows.row_count(),
        );
        rows_to_py(py, rows)
    }

    /// `call_procedure` inside the transaction.
    #[pyo3(signature = (name, params=None, *, output=None))]
    fn call_procedure<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        params: Option<&Bound<'py, PyAny>>,
        output: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = "transaction.call_procedure";
        let started = Instant::now();
        let call = procedures::call_of(&self.db, name, params, output, operation)?;
        let result = self.with(py, operation, |tx| {
            Box::pin(async move { tx.call_procedure(&call).await })
        })?;
        procedures::PyCalled {
            result,
            database: self.db.clone(),
            operation,
            started,
        }
        .into_pyobject(py)
    }

    /// `execute_query_sets` inside the transaction.
    #[pyo3(signature = (sql, params=None))]
    fn execute_query_sets<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let operation = "transaction.execute_query_sets";
        let started = Instant::now();
        let stmt = statement(&self.db, sql, params, operation).py_result()?;
        let sets = self.with(py, operation, |tx| {
            Box::pin(async move { tx.query_sets(&stmt).await })
        })?;
        Ok(procedures::PySets {
            sets,
            database: self.db.clone(),
            operation,
            started,
        }
        .into_pyobject(py)?
        .into_any())
    }

    /// One statement for every parameter set, inside the transaction; all
    /// rows are converted before any is sent. Returns the rows affected.
    fn execute_many(
        &self,
        py: Python<'_>,
        sql: &str,
        seq_of_params: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let parsed = sql::parse(sql, self.db.dialect());
        // All rows converted before any is sent: a bad row leaves the open
        // transaction as it was.
        let rows = RowSource::params(&self.db, &parsed, seq_of_params, "transaction.execute_many")
            .py_result()?
            .collect()?;
        self.with(py, "transaction.execute_many", |tx| {
            Box::pin(async move { tx.execute_many(&parsed, RowFeed::from_rows(rows)).await })
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
        let receiver = self.slot.stream_arrow(&self.db, stmt, every).py_result()?;
        Ok(ArrowStream::new(receiver))
    }

    /// Commit now (the `with` block then has nothing left to do).
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, "transaction.commit", |tx| Box::pin(tx.commit()))
    }

    /// Roll back now.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, "transaction.rollback", |tx| Box::pin(tx.rollback()))
    }

    /// `with tx.savepoint():` — a nested unit that rolls back alone.
    fn savepoint(slf: Py<Self>) -> PySavepoint {
        PySavepoint {
            tx: slf,
            name: Mutex::new(None),
        }
    }

    #[getter]
    fn active(&self) -> bool {
        self.slot.is_active()
    }
}

/// `with tx.savepoint():` — a nested unit: rolled back alone when its
/// block raises, kept (released) when it ends.
#[pyclass(module = "dbflow._native", name = "Savepoint", frozen)]
pub struct PySavepoint {
    tx: Py<PyTransaction>,
    name: Mutex<Option<String>>,
}

#[pymethods]
impl PySavepoint {
    /// Set the savepoint.
    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        {
            let this = slf.get();
            let name = this
                .tx
                .get()
                .with(py, "transaction.savepoint", |tx| Box::pin(tx.savepoint()))?;
            *this.name.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
        }
        Ok(slf)
    }

    /// Release it, or roll back to it when the block raised.
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let Some(name) = self.name.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(false);
        };
        let failed = exc_type.is_some_and(|t| !t.is_none());
        let tx = self.tx.get();
        if failed {
            tx.with(py, "transaction.savepoint", |t| {
                Box::pin(async move { t.rollback_to_savepoint(&name).await })
            })?;
        } else {
            tx.with(py, "transaction.savepoint", |t| {
                Box::pin(async move { t.release_savepoint(&name).await })
            })?;
        }
        Ok(false)
    }
}
