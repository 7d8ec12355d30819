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
}

impl Destination<'_> {
    /// A shorter-lived copy, so an operation that may run the row loop
    /// inside a closure can lend it out and keep the original.
    pub fn reborrow(&mut self) -> Destination<'_> {
        match self {
            Destination::Collect => Destination::Collect,
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
}

impl Read {
    pub fn rows(rows: Rows) -> Self {
        Read {
            rows,
            complete: true,
            arrow: None,
        }
    }

    /// What an Arrow row loop produced; `read` rows in all.
    pub fn arrow(batches: Batches, complete: bool, read: u64) -> Self {
        Read {
            rows: Rows {
                rows_affected: read,
                ..Rows::default()
            },
            complete,
            arrow: Some(batches),
        }
    }
}

pub struct RowBuffer<'a> {
    destination: Destination<'a>,
    rows: Rows,
    read: u64,
    complete: bool,
}

impl<'a> RowBuffer<'a> {
    pub fn new(destination: Destination<'a>) -> Self {
        RowBuffer {
            destination,
            rows: Rows::default(),
            read: 0,
            complete: true,
        }
    }

    /// The result's columns, before its first row.
    pub fn start(&mut self, columns: Vec<String>) {
        let width = columns.len().max(1);
        self.rows.columns = columns;
        if let Some(every) = self.batch_rows() {
            self.rows.values.reserve(width * every);
        }
    }

    fn batch_rows(&self) -> Option<usize> {
        match self.destination {
            // An Arrow destination is built by the backends' own loops.
            Destination::Collect | Destination::Arrow { .. } => None,
            Destination::Flush { every, .. } | Destination::Channel { every, .. } => {
                Some(every.max(1))
            }
        }
    }

    /// Where the current row's values go, in column order.
    pub fn values(&mut self) -> &mut Vec<Value> {
        &mut self.rows.values
    }

    /// After each row: hands over a full batch. `Ok(false)`: stop reading,
    /// the consumer went away.
    pub async fn row_done(&mut self) -> Result<bool> {
        self.read += 1;
        let Some(every) = self.batch_rows() else {
            return Ok(true);
        };
        if self.rows.row_count() < every {
            return Ok(true);
        }
        let full = self.take();
        match &mut self.destination {
            Destination::Collect | Destination::Arrow { .. } => {}
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
            return Read {
                rows: Rows::default(),
                complete: false,
                arrow: None,
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
        Read::rows(rows)
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
    fn a_departed_channel_consumer_stops_the_read() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut buffer = RowBuffer::new(Destination::Channel { every: 2, to: &tx });
        buffer.start(vec!["n".into()]);
        assert!(!fill(&mut buffer, 5));
        assert!(!block_on(buffer.finish()).complete);
    }
}
