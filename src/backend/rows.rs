//! Where a statement's decoded rows go. Each backend has one row loop that
//! fills a [`RowBuffer`]; the buffer keeps the rows, hands full batches to
//! a function (the bindings turn them into Python objects while the next
//! batch decodes, so the whole result never exists twice), or sends them
//! down a bounded channel (`iter_query`).

use tokio::sync::mpsc;

use crate::arrow::{ArrowTo, Batches};
use crate::error::Result;
use crate::value::{Rows, Value};

/// A function taking full batches of rows, in order.
pub type BatchFn<'a> = &'a mut (dyn FnMut(Rows) -> Result<()> + Send);

pub enum Destination<'a> {
    /// Keep every row; all of them are returned at the end.
    Collect,
    /// Hand over each `every` rows; the rest are returned at the end.
    Flush { every: usize, to: BatchFn<'a> },
    /// Send each `every` rows (and the rest) down a bounded channel.
    Channel {
        every: usize,
        to: &'a mpsc::Sender<Result<Rows>>,
    },
    /// Build Arrow columns instead of rows, in batches of `every`.
    Arrow { every: usize, to: ArrowTo<'a> },
    /// Keep every result set of a batch, each as its own [`Rows`].
    Sets,
}

impl Destination<'_> {
    /// A shorter-lived copy, so an operation that may run the row loop
    /// inside a closure can lend it out and keep the original.
    pub fn reborrow(&mut self) -> Destination<'_> {
        match self {
            Destination::Collect => Destination::Collect,
            Destination::Sets => Destination::Sets,
            Destination::Flush { every, to } => Destination::Flush {
                every: *every,
                to: &mut **to,
            },
            Destination::Channel { every, to } => Destination::Channel { every: *every, to },
            Destination::Arrow { every, to } => Destination::Arrow {
                every: *every,
                to: match to {
                    ArrowTo::Keep => ArrowTo::Keep,
                    ArrowTo::Channel(c) => ArrowTo::Channel(c),
                },
            },
        }
    }
}

/// What a row loop produced.
pub struct Read {
    /// The rows not handed over (every row, for [`Destination::Collect`]);
    /// `rows_affected` counts all rows read.
    pub rows: Rows,
    /// False when a channel's consumer went away mid-result: unread rows
    /// are still on the wire.
    pub complete: bool,
    /// The batches kept by [`Destination::Arrow`] (`None` otherwise).
    pub arrow: Option<Batches>,
    /// How many result sets (with columns) the statement produced. Only
    /// the first reaches a destination other than [`Destination::Sets`];
    /// the seam turns more into an error once the wire is drained.
    pub result_sets: usize,
    /// Every result set, for [`Destination::Sets`].
    pub sets: Vec<Rows>,
}

impl Read {
    /// One result: `rows` (with columns) or a statement without any.
    pub fn rows(rows: Rows) -> Self {
        Read {
            result_sets: usize::from(!rows.columns.is_empty()),
            rows,
            complete: true,
            arrow: None,
            sets: Vec::new(),
        }
    }

    /// What an Arrow row loop produced; `read` rows in all.
    pub fn arrow(batches: Batches, complete: bool, read: u64, result_sets: usize) -> Self {
        Read {
            rows: Rows {
                rows_affected: read,
                ..Rows::default()
            },
            complete,
            arrow: Some(batches),
            result_sets,
            sets: Vec::new(),
        }
    }

    /// A consumer went away mid-result: unread rows are on the wire.
    pub fn abandoned() -> Self {
        Read {
            complete: false,
            ..Read::rows(Rows::default())
        }
    }
}

pub struct RowBuffer<'a> {
    destination: Destination<'a>,
    rows: Rows,
    read: u64,
    complete: bool,
    /// Result sets begun so far.
    result_sets: usize,
    /// The finished result sets, for [`Destination::Sets`].
    sets: Vec<Rows>,
    /// A later result set's row, read and dropped (the first result set
    /// is the answer; the seam reports that there were more).
    scratch: Vec<Value>,
}

impl<'a> RowBuffer<'a> {
    pub fn new(destination: Destination<'a>) -> Self {
        RowBuffer {
            destination,
            rows: Rows::default(),
            read: 0,
            complete: true,
            result_sets: 0,
            sets: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A result set's columns, before its first row; called once per result
    /// set of a batch.
    pub fn start(&mut self, columns: Vec<String>) {
        if columns.is_empty() {
            // A statement without a result (PostgreSQL describes one).
            return;
        }
        self.result_sets += 1;
        if self.result_sets > 1 {
            if !matches!(self.destination, Destination::Sets) {
                return;
            }
            let done = std::mem::take(&mut self.rows);
            self.sets.push(Rows {
                rows_affected: done.row_count() as u64,
                ..done
            });
        }
        let width = columns.len().max(1);
        self.rows.columns = columns;
        if let Some(every) = self.batch_rows() {
            self.rows.values.reserve(width * every);
        }
    }

    /// Rows of a result set after the first are dropped.
    fn dropping(&self) -> bool {
        self.result_sets > 1 && !matches!(self.destination, Destination::Sets)
    }

    fn batch_rows(&self) -> Option<usize> {
        match self.destination {
            // An Arrow destination is built by the backends' own loops.
            Destination::Collect | Destination::Sets | Destination::Arrow { .. } => None,
            Destination::Flush { every, .. } | Destination::Channel { every, .. } => {
                Some(every.max(1))
            }
        }
    }

    /// Where the current row's values go, in column order.
    pub fn values(&mut self) -> &mut Vec<Value> {
        if self.dropping() {
            return &mut self.scratch;
        }
        &mut self.rows.values
    }

    /// After each row: hands over a full batch. `Ok(false)`: stop reading,
    /// the consumer went away.
    pub async fn row_done(&mut self) -> Result<bool> {
        if self.dropping() {
            self.scratch.clear();
            return Ok(true);
        }
        self.read += 1;
        let Some(every) = self.batch_rows() else {
            return Ok(true);
        };
        if self.rows.row_count() < every {
            return Ok(true);
        }
        let full = self.take();
        match &mut self.destination {
            Destination::Collect | Destination::Sets | Destination::Arrow { .. } => {}
            Destination::Flush { to, .. } => to(full)?,
            Destination::Channel { to, .. } => {
                if to.send(Ok(full)).await.is_err() {
                    self.complete = false;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn take(&mut self) -> Rows {
        let width = self.rows.columns.len().max(1);
        let capacity = self.batch_rows().unwrap_or(0) * width;
        let columns = self.rows.columns.clone();
        std::mem::replace(
            &mut self.rows,
            Rows {
                columns,
                values: Vec::with_capacity(capacity),
                rows_affected: 0,
            },
        )
    }

    /// The end of the result: a channel gets the last batch, even an empty
    /// one (it still tells the consumer the columns).
    pub async fn finish(mut self) -> Read {
        if !self.complete {
            return Read::abandoned();
        }
        if let Destination::Sets = self.destination {
            if self.result_sets > 0 {
                let last = std::mem::take(&mut self.rows);
                self.sets.push(Rows {
                    rows_affected: last.row_count() as u64,
                    ..last
                });
            }
            return Read {
                result_sets: self.result_sets,
                sets: self.sets,
                ..Read::rows(Rows::default())
            };
        }
        let mut rows = if let Destination::Channel { to, .. } = self.destination {
            let last = std::mem::take(&mut self.rows);
            let _ = to.send(Ok(last)).await;
            Rows::default()
        } else {
            std::mem::take(&mut self.rows)
        };
        rows.rows_affected = self.read;
        Read {
            result_sets: self.result_sets,
            ..Read::rows(rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    fn fill(buffer: &mut RowBuffer<'_>, n: i64) -> bool {
        block_on(async {
            for i in 0..n {
                buffer.values().push(Value::Int(i));
                if !buffer.row_done().await.unwrap() {
                    return false;
                }
            }
            true
        })
    }

    #[test]
    fn collect_keeps_every_row() {
        let mut buffer = RowBuffer::new(Destination::Collect);
        buffer.start(vec!["n".into()]);
        assert!(fill(&mut buffer, 5));
        let read = block_on(buffer.finish());
        assert_eq!(read.rows.row_count(), 5);
        assert_eq!(read.rows.rows_affected, 5);
    }

    #[test]
    fn flush_hands_over_full_batches_in_order() {
        let mut seen: Vec<Vec<Value>> = Vec::new();
        let mut to = |rows: Rows| -> Result<()> {
            seen.push(rows.values);
            Ok(())
        };
        let mut buffer = RowBuffer::new(Destination::Flush {
            every: 2,
            to: &mut to,
        });
        buffer.start(vec!["n".into()]);
        assert!(fill(&mut buffer, 5));
        let read = block_on(buffer.finish());
        assert_eq!(read.rows.values, vec![Value::Int(4)]);
        assert_eq!(read.rows.rows_affected, 5);
        assert_eq!(
            seen,
            vec![
                vec![Value::Int(0), Value::Int(1)],
                vec![Value::Int(2), Value::Int(3)]
            ]
        );
    }

    #[test]
    fn later_result_sets_are_counted_not_kept() {
        let mut buffer = RowBuffer::new(Destination::Collect);
        buffer.start(vec!["n".into()]);
        assert!(fill(&mut buffer, 2));
        buffer.start(vec!["m".into()]);
        assert!(fill(&mut buffer, 3));
        let read = block_on(buffer.finish());
        assert_eq!(read.result_sets, 2);
        assert_eq!(read.rows.values, vec![Value::Int(0), Value::Int(1)]);
        assert_eq!(read.rows.rows_affected, 2);
    }

    #[test]
    fn sets_keeps_every_result_set_in_order() {
        let mut buffer = RowBuffer::new(Destination::Sets);
        buffer.start(vec!["n".into()]);
        assert!(fill(&mut buffer, 2));
        buffer.start(vec!["m".into(), "k".into()]);
        buffer.start(vec!["o".into()]);
        assert!(fill(&mut buffer, 1));
        let read = block_on(buffer.finish());
        assert_eq!(read.result_sets, 3);
        let shapes: Vec<_> = read
            .sets
            .iter()
            .map(|r| (r.columns.len(), r.row_count()))
            .collect();
        assert_eq!(shapes, [(1, 2), (2, 0), (1, 1)]);
    }

    #[test]
    fn a_departed_channel_consumer_stops_the_read() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut buffer = RowBuffer::new(Destination::Channel { every: 2, to: &tx });
        buffer.start(vec!["n".into()]);
        assert!(!fill(&mut buffer, 5));
        assert!(!block_on(buffer.finish()).complete);
    }
}
