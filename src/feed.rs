//! Rows handed to a bulk operation (`execute_many`, `bulk_insert`) in chunks
//! while the caller is still making them: the server works on the rows
//! already sent while the next ones are converted from Python.
//!
//! A chunk is `Err` when the caller could not make it (a value of the wrong
//! type): the operation then stops, undoes what it sent, and reports that
//! error. The end of the feed is the sender being dropped.
//!
//! Arrow data travels as record batches ([`Part::Batch`]): a backend that
//! writes them as they are (PostgreSQL's binary COPY) takes them whole with
//! [`RowFeed::next_part`]; every other reader gets them as rows, made where
//! they are taken.

use arrow_array::RecordBatch;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::sql::{ParsedSql, ValuesTemplate};
use crate::value::Value;

/// One batch of rows, or why the caller could not make it.
pub type Chunk = Result<Vec<Vec<Value>>>;

/// What travels down the feed: rows, or an Arrow record batch whose first
/// row is row `first_row` of the data (for messages).
#[derive(Debug)]
pub enum Part {
    Rows(Vec<Vec<Value>>),
    Batch {
        batch: RecordBatch,
        first_row: usize,
    },
}

impl Part {
    fn rows(&self) -> u64 {
        match self {
            Part::Rows(rows) => rows.len() as u64,
            Part::Batch { batch, .. } => batch.num_rows() as u64,
        }
    }

    fn into_rows(self) -> Result<Vec<Vec<Value>>> {
        match self {
            Part::Rows(rows) => Ok(rows),
            Part::Batch { batch, first_row } => crate::arrow::load::rows(&batch, first_row),
        }
    }
}

/// The receiving end, owned by the operation.
pub struct RowFeed {
    rx: mpsc::Receiver<Result<Part>>,
    /// Rows of the last chunk not yet taken by [`RowFeed::fill`].
    pending: std::vec::IntoIter<Vec<Value>>,
    /// How each column's values were typed where they came from ("an Arrow
    /// int64"), for messages; `None`: Python objects.
    origin: Option<Vec<String>>,
    /// Rows handed to the operation so far (a span's batch size).
    taken: u64,
}

/// The caller's end.
pub type FeedSender = mpsc::Sender<Result<Part>>;

impl RowFeed {
    /// A feed holding at most `capacity` chunks not yet taken.
    pub fn channel(capacity: usize) -> (FeedSender, RowFeed) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            tx,
            RowFeed {
                rx,
                pending: Vec::new().into_iter(),
                origin: None,
                taken: 0,
            },
        )
    }

    /// Rows whose columns were typed as `origin` says (for messages).
    pub fn with_origin(mut self, origin: Vec<String>) -> Self {
        self.origin = Some(origin);
        self
    }

    /// What a value of `column` is, as the caller typed it ("an Arrow
    /// int64", "a Python int").
    pub fn describe(&self, column: usize, value: &Value) -> String {
        match self.origin.as_ref().and_then(|o| o.get(column)) {
            Some(origin) => origin.clone(),
            None => format!("a Python {}", value.kind_name()),
        }
    }

    /// A feed of rows already made (no caller converting alongside).
    pub fn from_rows(rows: Vec<Vec<Value>>) -> RowFeed {
        let (tx, feed) = RowFeed::channel(1);
        if !rows.is_empty() {
            // Capacity 1 and nothing sent yet: cannot be full or closed.
            let _ = tx.try_send(Ok(Part::Rows(rows)));
        }
        feed
    }

    /// Move rows into `rows` until it holds `want` or the feed ends; false
    /// when it ended with nothing to add. A failed chunk is returned as the
    /// error (rows already taken stay where they are).
    pub async fn fill(&mut self, rows: &mut Vec<Vec<Value>>, want: usize) -> Result<bool> {
        let before = rows.len();
        while rows.len() < want {
            if let Some(row) = self.pending.next() {
                rows.push(row);
                continue;
            }
            match self.rx.recv().await {
                Some(part) => self.pending = part?.into_rows()?.into_iter(),
                None => break,
            }
        }
        self.taken += (rows.len() - before) as u64;
        Ok(rows.len() > before)
    }

    /// Rows handed to the operation so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Whatever rows are ready, as soon as any are: the rest of a chunk
    /// `fill` started, or the next chunk whole; `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<Vec<Value>>>> {
        let rest: Vec<Vec<Value>> = self.pending.by_ref().collect();
        let chunk = if !rest.is_empty() {
            Some(rest)
        } else {
            match self.rx.recv().await {
                Some(part) => Some(part?.into_rows()?),
                None => None,
            }
        };
        self.taken += chunk.as_ref().map_or(0, |c| c.len() as u64);
        Ok(chunk)
    }

    /// Like [`RowFeed::next_chunk`], with Arrow batches left whole.
    pub async fn next_part(&mut self) -> Result<Option<Part>> {
        let rest: Vec<Vec<Value>> = self.pending.by_ref().collect();
        let part = if !rest.is_empty() {
            Some(Part::Rows(rest))
        } else {
            self.rx.recv().await.transpose()?
        };
        self.taken += part.as_ref().map_or(0, Part::rows);
        Ok(part)
    }

    /// The next row, `None` at the end.
    pub async fn next_row(&mut self) -> Result<Option<Vec<Value>>> {
        let mut one = Vec::with_capacity(1);
        Ok(self.fill(&mut one, 1).await?.then(|| one.remove(0)))
    }
}

/// A single-row INSERT's rows as multi-row `VALUES` statements of at most
/// `max_values` bound values (and 1000 rows) each, values still bound — for
/// every backend. The full statement is expanded once; only the last,
/// shorter one is made on its own.
pub struct ValuesBatches<'a> {
    template: ValuesTemplate,
    names: &'a [String],
    rows_per_statement: usize,
    full: Option<ParsedSql>,
    last: Option<ParsedSql>,
    part: Vec<Vec<Value>>,
    values: Vec<Value>,
}

/// One statement's worth: its SQL, its values in order, and whether it is
/// the full-size statement (the same SQL every time, for caching).
pub struct Batch<'b> {
    pub sql: &'b ParsedSql,
    pub values: &'b [Value],
    pub full: bool,
}

impl<'a> ValuesBatches<'a> {
    /// `None` when `sql` is not a single-row INSERT with parameters.
    pub fn new(sql: &'a ParsedSql, max_values: usize) -> Option<Self> {
        let per_row = sql.names.len();
        if per_row == 0 {
            return None;
        }
        let rows_per_statement = (max_values / per_row).clamp(1, 1000);
        Some(ValuesBatches {
            template: sql.values_template()?,
            names: &sql.names,
            rows_per_statement,
            full: None,
            last: None,
            part: Vec::with_capacity(rows_per_statement),
            values: Vec::with_capacity(rows_per_statement * per_row),
        })
    }

    /// The next statement's rows from `feed`, `None` at its end.
    pub async fn next(&mut self, feed: &mut RowFeed) -> Result<Option<Batch<'_>>> {
        if !feed.fill(&mut self.part, self.rows_per_statement).await? {
            return Ok(None);
        }
        let rows = self.part.len();
        self.values.clear();
        self.values.extend(self.part.drain(..).flatten());
        let (template, names) = (&self.template, self.names);
        let full = rows == self.rows_per_statement;
        let sql = if full {
            self.full
                .get_or_insert_with(|| template.expand(rows, names))
        } else {
            self.last.insert(template.expand(rows, names))
        };
        Ok(Some(Batch {
            sql,
            values: &self.values,
            full,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn rows(from: i64, n: i64) -> Vec<Vec<Value>> {
        (from..from + n).map(|i| vec![Value::Int(i)]).collect()
    }

    fn ids(rows: &[Vec<Value>]) -> Vec<i64> {
        rows.iter()
            .map(|r| match r[0] {
                Value::Int(i) => i,
                _ => unreachable!("test rows are ints"),
            })
            .collect()
    }

    #[tokio::test]
    async fn fill_regroups_chunks_into_the_size_asked_for() {
        let (tx, mut feed) = RowFeed::channel(4);
        tx.send(Ok(Part::Rows(rows(0, 3)))).await.unwrap();
        tx.send(Ok(Part::Rows(rows(3, 4)))).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while feed.fill(&mut got, 5).await.unwrap() {
            sizes.push(got.len());
            assert_eq!(
                ids(&got)[0] as usize,
                sizes[..sizes.len() - 1].iter().sum::<usize>()
            );
            got.clear();
        }
        assert_eq!(sizes, vec![5, 2]);
    }

    #[tokio::test]
    async fn a_failed_chunk_is_the_error_and_rows_before_it_stay() {
        let (tx, mut feed) = RowFeed::channel(4);
        tx.send(Ok(Part::Rows(rows(0, 2)))).await.unwrap();
        tx.send(Err(Error::parameter("row 2: bad"))).await.unwrap();
        let mut got = Vec::new();
        let err = feed.fill(&mut got, 10).await.unwrap_err();
        assert_eq!(err.message, "row 2: bad");
        assert_eq!(ids(&got), vec![0, 1]);
    }

    #[tokio::test]
    async fn next_chunk_hands_over_what_is_ready() {
        let (tx, mut feed) = RowFeed::channel(4);
        tx.send(Ok(Part::Rows(rows(0, 3)))).await.unwrap();
        tx.send(Ok(Part::Rows(rows(3, 2)))).await.unwrap();
        drop(tx);
        assert_eq!(ids(&[feed.next_row().await.unwrap().unwrap()]), vec![0]);
        assert_eq!(ids(&feed.next_chunk().await.unwrap().unwrap()), vec![1, 2]);
        assert_eq!(ids(&feed.next_chunk().await.unwrap().unwrap()), vec![3, 4]);
        assert!(feed.next_chunk().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn values_batches_make_the_full_statement_once_and_the_last_alone() {
        let sql = crate::sql::parse("INSERT INTO t (a, b) VALUES (:a, :b)", &crate::sql::DOLLARS);
        let rows: Vec<Vec<Value>> = (0..5)
            .map(|i| vec![Value::Int(i), Value::Int(-i)])
            .collect();
        let mut feed = RowFeed::from_rows(rows);
        let mut batches = ValuesBatches::new(&sql, 4).expect("a single-row INSERT");
        let mut seen = Vec::new();
        while let Some(batch) = batches.next(&mut feed).await.unwrap() {
            let text = batch.sql.render(&crate::sql::DOLLARS);
            seen.push((
                batch.full,
                batch.values.len(),
                text.matches("), (").count() + 1,
            ));
        }
        // Two rows (4 values) per statement: full, full, then one row alone.
        assert_eq!(seen, vec![(true, 4, 2), (true, 4, 2), (false, 2, 1)]);
        let select = crate::sql::parse("SELECT :a", &crate::sql::DOLLARS);
        assert!(ValuesBatches::new(&select, 4).is_none());
    }

    #[tokio::test]
    async fn from_rows_and_next_row_end_cleanly() {
        let mut feed = RowFeed::from_rows(rows(7, 2));
        assert_eq!(ids(&[feed.next_row().await.unwrap().unwrap()]), vec![7]);
        assert_eq!(ids(&[feed.next_row().await.unwrap().unwrap()]), vec![8]);
        assert!(feed.next_row().await.unwrap().is_none());
        let mut empty = RowFeed::from_rows(Vec::new());
        assert!(!empty.fill(&mut Vec::new(), 3).await.unwrap());
    }
}
