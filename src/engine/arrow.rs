//! Arrow results on the pool: a whole result, a stream of batches, and
//! partitioned reads (ConnectorX's idea: split a query into ranges of an
//! integer column and read them concurrently on pooled connections).

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use super::Database;
use crate::arrow::Batches;
use crate::backend::Statement;
use crate::error::{Error, Result};
use crate::sql::{ParsedSql, Segment};
use crate::telemetry::{self, Count, Subject};
use crate::value::Value;

/// Batches as the producer reads them, and its end: `done` completes (with
/// an error: its sender is dropped) once the producer has let go of its
/// connection.
pub struct BatchStream {
    pub batches: mpsc::Receiver<Result<RecordBatch>>,
    pub done: oneshot::Receiver<()>,
}

/// How a query is split for a partitioned read.
#[derive(Debug, Clone)]
pub struct Partitioning {
    /// An integer column of the query's result.
    pub column: String,
    pub partitions: usize,
}

impl Database {
    /// One statement's result as Arrow batches of `every` rows. A request
    /// that never left is sent once more on a fresh connection, as for
    /// `execute_query`.
    pub async fn query_arrow(
        &self,
        statement: &Statement,
        every: usize,
        operation: &'static str,
    ) -> Result<Batches> {
        let started = Instant::now();
        let work = async {
            let mut conn = self.connection(operation).await?;
            match conn.query_arrow(statement, every).await {
                Err(e) if e.not_sent => {
                    let mut conn = self.replace_unsent(operation, conn).await?;
                    conn.query_arrow(statement, every).await
                }
                done => done,
            }
        };
        let count = |b: &Batches| Count::Returned(b.rows() as u64);
        let result = self
            .traced(operation, statement, 1, count, work)
            .await
            .map_err(|e| self.fail(e, operation));
        self.observe(started, result, |b| b.rows() as u64)
    }

    /// The statement's Arrow batches down a bounded channel, produced on
    /// the runtime while the caller consumes them (`iter_arrow`); a result
    /// with no rows sends one empty batch carrying the schema.
    pub fn stream_arrow(
        self: &Arc<Self>,
        statement: Statement,
        every: usize,
    ) -> Result<BatchStream> {
        let (tx, rx) = mpsc::channel(2);
        let (finished, done) = oneshot::channel();
        let db = self.clone();
        // The span covers the whole iteration, as `iter_query`'s.
        let subject = Subject::Sql(&statement.sql, &statement.values);
        let span = telemetry::span(&telemetry::About::new(self.config(), "iter_arrow", subject));
        let producer = async move {
            // Dropped last: the reader knows the connection is back.
            let _finished = finished;
            let work = crate::runtime::catch_panic_async(async {
                let mut conn = db.connection("iter_arrow").await?;
                conn.stream_arrow(&statement, every.max(1), &tx).await
            });
            let outcome = tracing::Instrument::instrument(work, span.clone()).await;
            let counted = outcome.as_ref().map(|_| Count::Nothing);
            telemetry::finish(&span, &counted, db.config());
            // Ended before the channel closes: done when the reader sees the end.
            drop(span);
            if let Err(e) = outcome {
                let _ = tx.send(Err(db.fail(e, "iter_arrow"))).await;
            }
        };
        crate::runtime::runtime()?.spawn(tracing::Instrument::instrument(
            producer,
            tracing::Span::current(),
        ));
        Ok(BatchStream { batches: rx, done })
    }

    /// The statement read in `partitions` ranges of an integer column,
    /// concurrently (at most the pool's size at once: each range takes a
    /// pooled connection). Rows come range by range, ascending; NULLs of
    /// the column with the first range.
    pub async fn query_arrow_partitioned(
        &self,
        statement: &Statement,
        by: &Partitioning,
        every: usize,
        operation: &'static str,
    ) -> Result<Batches> {
        if by.partitions <= 1 {
            return self.query_arrow(statement, every, operation).await;
        }
        let quote = self.config().database_type.sql().quote;
        let column = quote(&by.column);
        let bounds = wrap(
            &statement.sql,
            &format!("SELECT MIN({column}), MAX({column}) FROM ("),
            ") dbflow_bounds",
        );
        let bounds = Statement {
            sql: bounds,
            values: statement.values.clone(),
        };
        let rows = self.query(&bounds).await?;
        let (low, high) = match rows.values.as_slice() {
            [Value::Int(lo), Value::Int(hi)] => (*lo, *hi),
            // No rows (or only NULLs): one plain read gives the schema.
            [Value::Null, Value::Null] => {
                return self.query_arrow(statement, every, operation).await
            }
            _ => {
                return Err(self.fail(
                    Error::parameter(format!(
                        "partition_on=\"{}\" must name an integer column of the query's result",
                        by.column
                    )),
                    operation,
                ))
            }
        };
        let reads = ranges(low, high, by.partitions)
            .into_iter()
            .enumerate()
            .map(|(i, (lo, hi))| {
                let nulls = if i == 0 {
                    format!(" OR {column} IS NULL")
                } else {
                    String::new()
                };
                let sql = wrap(
                    &statement.sql,
                    "SELECT * FROM (",
                    &format!(
                        ") dbflow_partition WHERE ({column} >= {lo} AND {column} <= {hi}){nulls}"
                    ),
                );
                let part = Statement {
                    sql,
                    values: statement.values.clone(),
                };
                async move { self.query_arrow(&part, every, operation).await }
            });
        // At most the pool's size at once (more would only queue for a
        // connection, and could time out waiting); results in range order.
        let limit = (self.config().pool.size + self.config().pool.max_overflow).max(1);
        let parts: Vec<Batches> = futures_util::stream::iter(reads)
            .buffered(limit)
            .try_collect()
            .await?;
        let schema = parts[0].schema.clone();
        if let Some(other) = parts.iter().find(|p| p.schema != schema) {
            return Err(self.fail(
                Error::query(format!(
                    "the partitions' results differ in type ({:?} and {:?})",
                    schema, other.schema
                )),
                operation,
            ));
        }
        Ok(Batches {
            schema,
            batches: parts.into_iter().flat_map(|p| p.batches).collect(),
        })
    }
}

/// `before` + the statement + `after`, its parameters unchanged (a newline
/// ends a trailing line comment; a trailing `;` is dropped).
fn wrap(sql: &ParsedSql, before: &str, after: &str) -> ParsedSql {
    let mut segments = Vec::with_capacity(sql.segments.len() + 2);
    segments.push(Segment::Text(before.to_owned()));
    segments.extend(sql.segments.iter().cloned());
    if let Some(Segment::Text(last)) = segments.last_mut() {
        let trimmed = last
            .trim_end_matches(|c: char| c.is_whitespace() || c == ';')
            .len();
        last.truncate(trimmed);
    }
    segments.push(Segment::Text(format!("\n{after}")));
    ParsedSql {
        segments,
        names: sql.names.clone(),
        comment: sql.comment.clone(),
    }
}

/// `parts` inclusive ranges covering `low..=high` (fewer when there are
/// fewer values than parts).
fn ranges(low: i64, high: i64, parts: usize) -> Vec<(i64, i64)> {
    let span = high as i128 - low as i128 + 1;
    let parts = (parts as i128).min(span).max(1);
    let width = (span + parts - 1) / parts;
    (0..parts)
        .map(|i| {
            let lo = low as i128 + i * width;
            let hi = (lo + width - 1).min(high as i128);
            (lo as i64, hi as i64)
        })
        .filter(|(lo, hi)| lo <= hi)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_value_once() {
        assert_eq!(ranges(1, 10, 4), [(1, 3), (4, 6), (7, 9), (10, 10)]);
        assert_eq!(ranges(5, 6, 4), [(5, 5), (6, 6)]);
        assert_eq!(ranges(7, 7, 3), [(7, 7)]);
        let wide = ranges(i64::MIN, i64::MAX, 3);
        assert_eq!(wide.first().unwrap().0, i64::MIN);
        assert_eq!(wide.last().unwrap().1, i64::MAX);
        for pair in wide.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0);
        }
    }

    #[test]
    fn wrapping_keeps_parameters_and_survives_comments() {
        let sql = crate::sql::parse(
            "SELECT * FROM t WHERE a = :a -- note\n;",
            &crate::backend::postgres::LEXICON,
        );
        let wrapped = wrap(&sql, "SELECT * FROM (", ") p");
        assert_eq!(wrapped.names, ["a"]);
        let text = wrapped.render_with(|_| "$1".into());
        assert_eq!(
            text,
            "SELECT * FROM (SELECT * FROM t WHERE a = $1 -- note\n) p"
        );
    }
}
