//! Query results as Arrow record batches, built while the rows are read:
//! each backend decodes a cell straight from the wire into its column's
//! Arrow builder (no [`crate::value::Value`] in between), and
//! [`ArrowBuffer`] cuts the columns into batches, keeping them or sending
//! each down a bounded channel (`iter_arrow`). The type mapping lives with
//! each backend (`postgres/arrow.rs`, `mssql/arrow.rs`); what is shared —
//! batching, the canonical UUID field, epoch arithmetic — is here.

pub mod load;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// Rows per record batch unless the caller says otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;

/// A whole result: its schema (also when it has no rows) and its batches.
#[derive(Debug, Clone)]
pub struct Batches {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Batches {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Where full batches go.
pub enum ArrowTo<'a> {
    /// Keep them; they are returned at the end.
    Keep,
    /// Send each down a bounded channel; a result with no rows sends one
    /// empty batch, so the consumer learns the schema.
    Channel(&'a mpsc::Sender<Result<RecordBatch>>),
}

/// One column being built: its cells are appended by the backend's row
/// loop, its array taken at each batch boundary.
pub trait ArrowColumn: Send {
    fn finish(&mut self) -> ArrayRef;
}

pub struct ArrowBuffer<'a, C> {
    schema: SchemaRef,
    columns: Vec<C>,
    every: usize,
    to: ArrowTo<'a>,
    rows: usize,
    kept: Vec<RecordBatch>,
    sent: bool,
    complete: bool,
}

impl<'a, C: ArrowColumn> ArrowBuffer<'a, C> {
    pub fn new(schema: SchemaRef, columns: Vec<C>, every: usize, to: ArrowTo<'a>) -> Self {
        ArrowBuffer {
            schema,
            columns,
            every: every.max(1),
            to,
            rows: 0,
            kept: Vec::new(),
            sent: false,
            complete: true,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The columns, for the current row's cells (in order).
    pub fn columns(&mut self) -> &mut [C] {
        &mut self.columns
    }

    /// After each row: a full batch is handed over. `Ok(false)`: stop
    /// reading, the consumer went away.
    pub async fn row_done(&mut self) -> Result<bool> {
        self.rows += 1;
        if self.rows < self.every {
            return Ok(true);
        }
        self.hand_over().await
    }

    async fn hand_over(&mut self) -> Result<bool> {
        let batch = self.cut()?;
        match &self.to {
            ArrowTo::Keep => self.kept.push(batch),
            ArrowTo::Channel(to) => {
                self.sent = true;
                if to.send(Ok(batch)).await.is_err() {
                    self.complete = false;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn cut(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| {
                // Builders grow by doubling: give back what the batch did
                // not use (a whole result is the sum of its batches).
                let mut array = c.finish();
                array.shrink_to_fit();
                array
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| Error::query(format!("cannot assemble an Arrow batch: {e}")))
    }

    /// The rest of the rows as a last batch. `complete` is false when a
    /// channel's consumer went away mid-result.
    pub async fn finish(mut self) -> Result<(Batches, bool)> {
        if self.complete && (self.rows > 0 || (!self.sent && self.kept.is_empty())) {
            self.hand_over().await?;
        }
        let batches = Batches {
            schema: self.schema,
            batches: self.kept,
        };
        Ok((batches, self.complete))
    }
}

/// The field of a column; the canonical UUID extension type is a 16-byte
/// fixed-size binary with this metadata.
pub fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

pub fn uuid_field(name: &str) -> Field {
    Field::new(name, DataType::FixedSizeBinary(16), true).with_metadata(HashMap::from([
        ("ARROW:extension:name".to_owned(), "arrow.uuid".to_owned()),
        ("ARROW:extension:metadata".to_owned(), String::new()),
    ]))
}

pub fn is_uuid(field: &Field) -> bool {
    field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|n| n == "arrow.uuid")
}

pub fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// Days from 0001-01-01 (SQL Server's day zero) to 1970-01-01.
pub const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's day zero).
pub const DAYS_1970_TO_2000: i64 = 10_957;

/// A column type without a mapping: the column, its type, and what to do.
pub fn unmapped(column: &str, type_name: &str) -> Error {
    Error::query(format!(
        "column \"{column}\" has type {type_name}, which has no Arrow mapping; cast it in the \
         query (to text, say) to read it as Arrow"
    ))
}

/// A value its column's Arrow type cannot hold.
pub fn unrepresentable(column: &str, what: &str) -> Error {
    Error::query(format!("column \"{column}\": {what}"))
}

/// `i128` decimal digits scaled from `from` to `to` fractional digits;
/// `None` when digits would be lost or it overflows.
pub fn rescale(value: i128, from: i32, to: i32) -> Option<i128> {
    if from == to {
        return Some(value);
    }
    if to > from {
        10i128
            .checked_pow((to - from) as u32)
            .and_then(|f| value.checked_mul(f))
    } else {
        let f = 10i128.checked_pow((from - to) as u32)?;
        (value % f == 0).then(|| value / f)
    }
}

/// Whether `value` fits `precision` digits.
pub fn fits(value: i128, precision: u8) -> bool {
    precision >= 39 || value.unsigned_abs() < 10u128.pow(precision as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array};

    struct Ints(arrow_array::builder::Int64Builder);
    impl ArrowColumn for Ints {
        fn finish(&mut self) -> ArrayRef {
            Arc::new(self.0.finish())
        }
    }

    fn ints_schema() -> SchemaRef {
        schema(vec![field("n", DataType::Int64)])
    }

    #[tokio::test]
    async fn batches_are_cut_every_n_rows_and_the_rest_kept() {
        let columns = vec![Ints(Default::default())];
        let mut buffer = ArrowBuffer::new(ints_schema(), columns, 4, ArrowTo::Keep);
        for i in 0..10 {
            buffer.columns()[0].0.append_value(i);
            assert!(buffer.row_done().await.unwrap());
        }
        let (batches, complete) = buffer.finish().await.unwrap();
        assert!(complete);
        let sizes: Vec<usize> = batches.batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let last = batches.batches[2].column(0);
        let last = last.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(last.values(), &[8, 9]);
    }

    #[tokio::test]
    async fn an_empty_result_still_carries_its_schema() {
        let (tx, mut rx) = mpsc::channel(2);
        let buffer = ArrowBuffer::new(
            ints_schema(),
            vec![Ints(Default::default())],
            4,
            ArrowTo::Channel(&tx),
        );
        buffer.finish().await.unwrap();
        let batch = rx.recv().await.unwrap().unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.schema().field(0).name(), "n");
    }

    #[tokio::test]
    async fn an_exact_multiple_sends_no_empty_tail() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut buffer = ArrowBuffer::new(
            ints_schema(),
            vec![Ints(Default::default())],
            2,
            ArrowTo::Channel(&tx),
        );
        for i in 0..4 {
            buffer.columns()[0].0.append_value(i);
            buffer.row_done().await.unwrap();
        }
        buffer.finish().await.unwrap();
        drop(tx);
        let mut sizes = Vec::new();
        while let Some(b) = rx.recv().await {
            sizes.push(b.unwrap().num_rows());
        }
        assert_eq!(sizes, [2, 2]);
    }

    #[test]
    fn rescaling_never_loses_digits() {
        assert_eq!(rescale(1250, 2, 4), Some(125_000));
        assert_eq!(rescale(125_000, 4, 2), Some(1250));
        assert_eq!(rescale(125_001, 4, 2), None);
        assert_eq!(rescale(i128::MAX, 0, 1), None);
        assert!(fits(99_999, 5));
        assert!(!fits(100_000, 5));
    }
}
