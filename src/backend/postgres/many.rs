//! `execute_many`: a single-row INSERT as multi-row VALUES statements,
//! anything else pipelined (sqlx-postgres patch: `execute_pipelined`).

use sqlx::postgres::PgArguments;
use sqlx::Statement as _;

use super::bind::Typed;
use super::PgConn;
use crate::error::Result;
use crate::feed::{RowFeed, ValuesBatches};
use crate::sql::ParsedSql;

/// Parameter sets per pipelined round trip: the server's answer to each is
/// a few fixed bytes, so a thousand stay far below any socket buffer while
/// the next requests are still being written.
const PIPELINE_SETS: usize = 1000;

impl PgConn {
    pub(super) async fn execute_many_here(
        &mut self,
        sql: &ParsedSql,
        feed: &mut RowFeed,
    ) -> Result<u64> {
        let mut total = 0;
        // About 2000 bound values per statement: wider statements cost the
        // server more to plan than the round trips they save (10k rows of 7
        // columns: 60 ms in chunks of 1000 rows, 54 ms in chunks of 250; 2
        // columns: equal). PostgreSQL's own limit is 65535 parameters.
        if let Some(mut batches) = ValuesBatches::new(sql, 2048) {
            // The full statement is prepared and typed once; later full
            // statements only encode their values (a value its types
            // refuse goes through `bind`, which settles them again).
            let mut typed: Option<Typed> = None;
            while let Some(batch) = batches.next(feed).await? {
                let cached = typed
                    .as_ref()
                    .filter(|_| batch.full)
                    .and_then(|t| Some((t.stmt.clone(), t.encode(batch.values)?)));
                let (stmt, args) = match cached {
                    Some(ready) => ready,
                    None => {
                        let (stmt, args) = self.bind(batch.sql, batch.values).await?;
                        if batch.full {
                            typed = Typed::of(&stmt);
                        }
                        (stmt, args)
                    }
                };
                total += stmt
                    .query_with(args)
                    .execute(&mut self.conn)
                    .await?
                    .rows_affected();
            }
            return Ok(total);
        }
        // Any other statement (UPDATE, DELETE, an upsert): prepared and typed
        // once, its parameter sets pipelined, up to PIPELINE_SETS per round
        // trip. A set its types refuse is bound afresh (the sets before it
        // go first); a statement that returns rows runs set by set.
        let mut typed: Option<Typed> = None;
        let mut sets: Vec<PgArguments> = Vec::new();
        while let Some(values) = feed.next_row().await? {
            if let Some(args) = typed.as_ref().and_then(|t| t.encode(&values)) {
                sets.push(args);
            } else {
                if let Some(t) = &typed {
                    let ready = std::mem::take(&mut sets);
                    total += self.conn.execute_pipelined(&t.stmt, ready).await?;
                }
                let (stmt, args) = self.bind(sql, &values).await?;
                typed = stmt
                    .columns()
                    .is_empty()
                    .then(|| Typed::of(&stmt))
                    .flatten();
                if typed.is_some() {
                    sets.push(args);
                } else {
                    let done = stmt.query_with(args).execute(&mut self.conn).await?;
                    total += done.rows_affected();
                }
            }
            if sets.len() >= PIPELINE_SETS {
                if let Some(t) = &typed {
                    let ready = std::mem::take(&mut sets);
                    total += self.conn.execute_pipelined(&t.stmt, ready).await?;
                }
            }
        }
        if let Some(t) = &typed {
            total += self.conn.execute_pipelined(&t.stmt, sets).await?;
        }
        Ok(total)
    }
}
