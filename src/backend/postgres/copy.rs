//! `bulk_insert`: `COPY ... FROM STDIN` in PostgreSQL's binary format.

use sqlx::{Column, Executor, SqlSafeStr, Statement as _, TypeInfo};

use super::bind::target_of;
use super::copy_arrow::{self, TargetColumn};
use super::encode::{self, Mismatch};
use super::{quote_ident, quote_qualified, PgConn};
use crate::error::{Error, Result};
use crate::feed::{Part, RowFeed};
use crate::value::Value;

impl PgConn {
    pub(super) async fn bulk_insert_here(
        &mut self,
        table: &str,
        columns: &[String],
        feed: &mut RowFeed,
    ) -> Result<u64> {
        let target = quote_qualified(table)?;
        let cols: Vec<String> = columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Result<_>>()?;
        let probe = format!("SELECT {} FROM {target} LIMIT 0", cols.join(", "));
        let stmt = self
            .conn
            .prepare_with(sqlx::AssertSqlSafe(probe).into_sql_str(), &[])
            .await?;
        let targets: Vec<TargetColumn> = stmt
            .columns()
            .iter()
            .map(|c| TargetColumn {
                target: target_of(c.type_info()),
                type_name: c.type_info().name().to_owned(),
                numeric_scale: super::arrow::numeric_modifier(c.type_modifier()).map(|(_, s)| s),
            })
            .collect();
        let mut copy = self
            .conn
            .copy_in_raw(&format!(
                "COPY {target} ({}) FROM STDIN (FORMAT binary)",
                cols.join(", ")
            ))
            .await?;
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        let mut index = 0;
        loop {
            let encoded = match feed.next_part().await {
                Ok(Some(Part::Rows(rows))) => rows.iter().try_for_each(|row| {
                    index += 1;
                    encode_copy_row(&mut buf, row, &targets, columns, index - 1, feed)
                }),
                // Arrow data: written from its buffers as it is.
                Ok(Some(Part::Batch { batch, first_row })) => {
                    copy_arrow::encode_batch(&mut buf, &batch, first_row, &targets, columns)
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = copy.abort("the rows could not be converted").await;
                    return Err(e);
                }
            };
            if let Err(e) = encoded {
                let _ = copy.abort("bad value").await;
                return Err(e);
            }
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(1 << 17);
        }
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        copy.send(buf).await?;
        Ok(copy.finish().await?)
    }
}

/// One row of binary COPY data: the field count, then each value's length
/// and bytes (-1 for NULL) in its column's binary form.
fn encode_copy_row(
    buf: &mut Vec<u8>,
    row: &[Value],
    targets: &[TargetColumn],
    columns: &[String],
    index: usize,
    feed: &RowFeed,
) -> Result<()> {
    if row.len() != targets.len() {
        return Err(Error::parameter(format!(
            "row {index} has {} values for {} columns",
            row.len(),
            targets.len()
        )));
    }
    buf.extend_from_slice(&(targets.len() as i16).to_be_bytes());
    for (i, ((value, target), column)) in row.iter().zip(targets).zip(columns).enumerate() {
        let TargetColumn {
            target, type_name, ..
        } = target;
        if matches!(value, Value::Null) {
            buf.extend_from_slice(&(-1i32).to_be_bytes());
            continue;
        }
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        if let Err(m) = encode::encode(value, target, buf) {
            let why = match m {
                Mismatch::Invalid(msg) => msg,
                Mismatch::Retype => format!(
                    "{} cannot be written to a {type_name} column",
                    feed.describe(i, value)
                ),
            };
            return Err(Error::parameter(format!(
                "row {index}, column {column}: {why}"
            )));
        }
        let len = (buf.len() - at - 4) as i32;
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}
