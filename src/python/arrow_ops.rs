//! The Arrow reads both managers and both transactions share, each written
//! once (see `ops`): arguments read while the GIL is held, the read as a
//! future, and the result handed to pyarrow, Polars or pandas through
//! `dbflow._arrow` when it reaches Python.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};

use super::arguments::statement;
use super::arrow::{convert, ArrowResult, ArrowStream};
use super::errors::IntoPyResult;
use super::ops::{log_done, Op};
use crate::arrow::Batches;
use crate::backend::Statement;
use crate::engine::{Database, Partitioning, Transaction};
use crate::error::{Error, Result};

/// What the caller gets: a pyarrow Table, a Polars or a pandas DataFrame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Table,
    Polars,
    Pandas,
}

impl Shape {
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Shape::Table => "fetch_arrow",
            Shape::Polars => "fetch_polars",
            Shape::Pandas => "fetch_pandas",
        }
    }

    pub(crate) fn in_transaction(self) -> &'static str {
        match self {
            Shape::Table => "transaction.fetch_arrow",
            Shape::Polars => "transaction.fetch_polars",
            Shape::Pandas => "transaction.fetch_pandas",
        }
    }
}

/// The keyword arguments of the Arrow reads, checked.
pub(crate) struct ArrowArgs {
    pub(crate) shape: Shape,
    pub(crate) dtype_backend: String,
    pub(crate) partitioning: Option<Partitioning>,
}

impl ArrowArgs {
    pub(crate) fn new(
        db: &Database,
        shape: Shape,
        dtype_backend: Option<String>,
        partition_on: Option<&Bound<'_, PyAny>>,
        partitions: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let operation = shape.operation();
        let fail = |message: String| db.fail(Error::parameter(message), operation);
        let partitions = partitions
            .map(|p| {
                positive_int(p).ok_or_else(|| {
                    fail(format!(
                        "partitions must be a positive int, not {}",
                        repr(p)
                    ))
                })
            })
            .transpose()
            .py_result()?;
        let partition_on = partition_on
            .map(|c| {
                c.extract::<String>()
                    .ok()
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| {
                        fail(format!(
                            "partition_on must be a column name, not {}",
                            repr(c)
                        ))
                    })
            })
            .transpose()
            .py_result()?;
        let partitioning = match (partition_on, partitions) {
            (Some(column), Some(partitions)) => Some(Partitioning { column, partitions }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(fail(
                    "partition_on= needs partitions= (how many queries to split the read into)"
                        .into(),
                ))
                .py_result()
            }
            (None, Some(_)) => {
                return Err(fail(
                    "partitions= needs partition_on= (the column to split the read on)".into(),
                ))
                .py_result()
            }
        };
        Ok(ArrowArgs {
            shape,
            dtype_backend: checked_dtype_backend(db, operation, dtype_backend)?,
            partitioning,
        })
    }
}

impl ArrowArgs {
    /// A read inside a transaction: never partitioned (one connection).
    pub(crate) fn plain(
        db: &Database,
        shape: Shape,
        dtype_backend: Option<String>,
    ) -> PyResult<Self> {
        Ok(ArrowArgs {
            shape,
            dtype_backend: checked_dtype_backend(db, shape.in_transaction(), dtype_backend)?,
            partitioning: None,
        })
    }
}

/// `dtype_backend=` as `pandas.read_sql` takes it, checked before the query.
fn checked_dtype_backend(
    db: &Database,
    operation: &'static str,
    value: Option<String>,
) -> PyResult<String> {
    let value = value.unwrap_or_else(|| "numpy_nullable".into());
    if matches!(value.as_str(), "numpy_nullable" | "pyarrow") {
        return Ok(value);
    }
    Err(db.fail(
        Error::parameter(format!(
            "dtype_backend='{value}' is not one of 'numpy_nullable', 'pyarrow'"
        )),
        operation,
    ))
    .py_result()
}

/// Column names made unique for a frame library that requires it (`id`,
/// `id_2`): the same arrays under a new schema, nothing copied.
fn unique_names(batches: Batches) -> Result<Batches> {
    let fields = batches.schema.fields();
    let mut taken: std::collections::HashSet<String> =
        fields.iter().map(|f| f.name().clone()).collect();
    if taken.len() == fields.len() {
        return Ok(batches);
    }
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let renamed: Vec<arrow_schema::Field> = fields
        .iter()
        .map(|f| {
            let n = seen.entry(f.name().clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                return f.as_ref().clone();
            }
            let mut k = *n;
            let mut name = format!("{}_{k}", f.name());
            while taken.contains(&name) {
                k += 1;
                name = format!("{}_{k}", f.name());
            }
            taken.insert(name.clone());
            f.as_ref().clone().with_name(name)
        })
        .collect();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new_with_metadata(
        renamed,
        batches.schema.metadata().clone(),
    ));
    let renamed = batches
        .batches
        .into_iter()
        .map(|b| arrow_array::RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::query(format!("cannot rename the columns: {e}")))?;
    Ok(Batches {
        schema,
        batches: renamed,
    })
}

fn repr(value: &Bound<'_, PyAny>) -> String {
    value.repr().map_or_else(|_| "?".into(), |r| r.to_string())
}

/// A Python int ≥ 1 (not a bool, not a float).
fn positive_int(value: &Bound<'_, PyAny>) -> Option<usize> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return None;
    }
    value.extract::<usize>().ok().filter(|n| *n >= 1)
}

/// `batch_rows=`, checked.
pub(crate) fn batch_rows(db: &Database, value: usize, operation: &'static str) -> PyResult<usize> {
    if value >= 1 {
        return Ok(value);
    }
    Err(db.fail(
        Error::parameter(format!("batch_rows must be a positive int, not {value}")),
        operation,
    ))
    .py_result()
}

/// A whole result, becoming the caller's shape when it reaches Python.
pub(crate) struct Fetched {
    batches: Batches,
    shape: Shape,
    dtype_backend: String,
    database: Arc<Database>,
    operation: &'static str,
    started: Instant,
}

impl<'py> IntoPyObject<'py> for Fetched {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        log_done(
            self.database.name(),
            self.operation,
            self.started,
            self.batches.rows(),
        );
        let batches = match self.shape {
            Shape::Polars => unique_names(self.batches).map_err(super::errors::to_pyerr)?,
            _ => self.batches,
        };
        let result = Bound::new(py, ArrowResult::new(batches))?;
        match self.shape {
            Shape::Table => convert(py, "to_table", (result, self.operation)),
            Shape::Polars => convert(py, "to_polars", (result,)),
            Shape::Pandas => convert(py, "to_pandas", (result, self.dtype_backend)),
        }
    }
}

/// Rows per batch of a whole result: large, so the columns are few and
/// long (the caller concatenates nothing it did not ask for).
const FETCH_BATCH_ROWS: usize = crate::arrow::DEFAULT_BATCH_ROWS;

/// `fetch_arrow`, `fetch_polars`, `fetch_pandas` on a manager.
pub(crate) fn fetch(
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    args: ArrowArgs,
) -> PyResult<Op<impl Future<Output = Result<Fetched>> + Send + 'static>> {
    let operation = args.shape.operation();
    let stmt = statement(db, sql, params, operation).py_result()?;
    let db = db.clone();
    Ok(Op::new(async move {
        let started = Instant::now();
        let batches = match &args.partitioning {
            Some(by) => {
                db.query_arrow_partitioned(&stmt, by, FETCH_BATCH_ROWS, operation)
                    .await?
            }
            None => db.query_arrow(&stmt, FETCH_BATCH_ROWS, operation).await?,
        };
        Ok(Fetched {
            batches,
            shape: args.shape,
            dtype_backend: args.dtype_backend,
            database: db,
            operation,
            started,
        })
    }))
}

/// The same reads inside a transaction (on its connection).
pub(crate) async fn fetch_in(
    tx: &mut Transaction,
    db: Arc<Database>,
    stmt: &Statement,
    args: ArrowArgs,
) -> Result<Fetched> {
    let started = Instant::now();
    let operation = args.shape.in_transaction();
    let batches = tx.query_arrow(stmt, FETCH_BATCH_ROWS, operation).await?;
    Ok(Fetched {
        batches,
        shape: args.shape,
        dtype_backend: args.dtype_backend,
        database: db,
        operation,
        started,
    })
}

/// `iter_arrow` on a manager: the read runs on the runtime while the
/// caller consumes the stream.
pub(crate) fn iter(
    py: Python<'_>,
    db: &Arc<Database>,
    sql: &str,
    params: Option<&Bound<'_, PyAny>>,
    batch_rows_arg: usize,
) -> PyResult<ArrowStream> {
    let every = batch_rows(db, batch_rows_arg, "iter_arrow")?;
    let stmt = statement(db, sql, params, "iter_arrow").py_result()?;
    let _caller = super::logging::caller_span(py).entered();
    let receiver = db.stream_arrow(stmt, every).py_result()?;
    Ok(ArrowStream::new(receiver))
}
