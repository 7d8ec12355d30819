//! Table-valued parameters. The table type's columns come from the server
//! (`DECLARE @t AS type; SELECT TOP 0 * FROM @t`); each value is converted
//! for its column by the bulk load's own rules ([`super::bulk::cell`]), so
//! both encodings below see the same values:
//!
//! - **native**: the protocol's TVP type, to Microsoft SQL Server;
//! - **bulk**: Babelfish 4.2 takes the TVP type but mishandles it (string
//!   values pasted into SQL unescaped, decimals beside NULLs and some
//!   dates garbled, a large one kills its server process). There the rows
//!   are bulk-loaded into a temporary table shaped like the type, copied
//!   into a table variable of the type by the statement's own batch, and
//!   the temporary table dropped. The bulk load is binary, so every value
//!   arrives exact; `OPENJSON ... WITH` (the usual workaround) is not exact
//!   on Babelfish 4.2: it leaves JSON escapes (`\"`) in strings and does
//!   not decode binary.

use futures_util::TryStreamExt;
use tiberius::{ColumnData, MetaDataColumn, QueryItem};

use super::bulk;
use crate::error::{Error, Result};
use crate::procedure::split_name;
use crate::value::{TableArg, Value};

/// How this connection sends table-valued parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Native,
    Bulk,
}

/// Babelfish's native TVPs are only allowed this small (tests compare the
/// encodings with values it handles); more has crashed its server.
pub const BABELFISH_NATIVE_LIMIT: usize = 1_000;

/// A table type's name, quoted part by part (`[dbo].[IdList]`).
pub fn quoted_type(name: &str) -> Result<String> {
    let (parts, _) = split_name(name).map_err(|_| {
        Error::parameter(format!(
            "{name:?} is not a table type name; write it as type or schema.type \
             (TableValue(\"dbo.IdList\", rows))"
        ))
    })?;
    Ok(parts
        .iter()
        .map(|p| format!("[{}]", p.replace(']', "]]")))
        .collect::<Vec<_>>()
        .join("."))
}

/// A table type's name as the protocol's TVP type carries it: `schema.name`
/// in plain words (the driver splits it at the dot).
pub fn wire_type(name: &str) -> Result<String> {
    let (parts, _) = split_name(name)?;
    let plain = |p: &String| p.chars().all(|c| c.is_alphanumeric() || c == '_');
    if parts.len() > 2 || !parts.iter().all(plain) {
        return Err(Error::parameter(format!(
            "{name:?}: a table-valued parameter sent natively names its type as schema.type \
             in letters, digits and _; rename the type, or send it by bulk load (table_values=bulk)"
        )));
    }
    Ok(parts.join("."))
}

/// The columns of a table type, as the server describes them; for the bulk
/// encoding, with the temporary table `temp` made in the same batch.
pub async fn describe<S>(
    client: &mut tiberius::Client<S>,
    type_name: &str,
    temp: Option<&str>,
) -> Result<Vec<MetaDataColumn<'static>>>
where
    S: futures_util::AsyncRead + futures_util::AsyncWrite + Unpin + Send,
{
    let type_sql = quoted_type(type_name)?;
    let sql = match temp {
        None => format!("DECLARE @dbflow_t AS {type_sql}; SELECT TOP 0 * FROM @dbflow_t"),
        Some(temp) => format!(
            "DROP TABLE IF EXISTS {temp}; DECLARE @dbflow_t AS {type_sql}; \
             SELECT * INTO {temp} FROM @dbflow_t WHERE 1 = 0; SELECT TOP 0 * FROM {temp}"
        ),
    };
    let mut stream = client.simple_query(sql).await?;
    let mut columns = None;
    while let Some(item) = stream.try_next().await? {
        if let (QueryItem::Metadata(meta), None) = (&item, &columns) {
            columns = Some(
                meta.columns()
                    .iter()
                    .filter_map(|c| {
                        Some(MetaDataColumn {
                            base: tiberius::BaseMetaDataColumn {
                                flags: Default::default(),
                                ty: c.type_info()?.clone(),
                                table_name: None,
                            },
                            col_name: c.name().to_owned().into(),
                        })
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    columns.ok_or_else(|| Error::query(format!("{type_name} describes no columns")))
}

/// The rows as cells of the type's columns, in its column order.
pub fn cells(
    param: &str,
    table: &TableArg,
    columns: &[MetaDataColumn<'static>],
) -> Result<Vec<Vec<ColumnData<'static>>>> {
    let order = column_order(param, table, columns)?;
    // For each type column, where its value sits in a row (None: NULL).
    let index: Vec<Option<usize>> = columns
        .iter()
        .map(|c| {
            order
                .iter()
                .position(|o| o.as_deref() == Some(c.col_name.as_ref()))
        })
        .collect();
    let mut rows = Vec::with_capacity(table.rows.len());
    for (r, row) in table.rows.iter().enumerate() {
        if row.len() != order.len() {
            return Err(Error::parameter(format!(
                "parameter :{param}: row {r} of the {} has {} values for its {} columns",
                table.type_name,
                row.len(),
                columns.len()
            )));
        }
        let mut cells = Vec::with_capacity(columns.len());
        for (column, at) in columns.iter().zip(&index) {
            let value = at.map_or(&Value::Null, |i| &row[i]);
            cells.push(bulk::cell(column, r, value, || {
                format!("{} ({})", value.kind_name(), param)
            })?);
        }
        rows.push(cells);
    }
    Ok(rows)
}

/// For each value position of a row, the type column it fills.
fn column_order(
    param: &str,
    table: &TableArg,
    columns: &[MetaDataColumn<'static>],
) -> Result<Vec<Option<String>>> {
    let names: Vec<&str> = columns.iter().map(|c| c.col_name.as_ref()).collect();
    match &table.columns {
        None => {
            if let Some(row) = table.rows.first().filter(|r| r.len() != names.len()) {
                return Err(Error::parameter(format!(
                    "parameter :{param}: rows of {} have {} values; the type has {} columns ({})",
                    table.type_name,
                    row.len(),
                    names.len(),
                    names.join(", ")
                )));
            }
            Ok(names.iter().map(|n| Some((*n).to_owned())).collect())
        }
        Some(given) => {
            let mut order = Vec::with_capacity(given.len());
            for name in given {
                match names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
                    Some(n) => order.push(Some((*n).to_owned())),
                    None => {
                        return Err(Error::parameter(format!(
                            "parameter :{param}: {} has no column {name:?}; its columns are {}",
                            table.type_name,
                            names.join(", ")
                        )))
                    }
                }
            }
            Ok(order)
        }
    }
}

/// The T-SQL that fills the table variable `var` from `temp` and drops it.
pub fn unpack(var: &str, temp: &str, type_sql: &str) -> String {
    format!(
        "DECLARE {var} AS {type_sql}; INSERT INTO {var} SELECT * FROM {temp}; DROP TABLE {temp};\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_quoted_part_by_part() {
        assert_eq!(quoted_type("dbo.IdList").unwrap(), "[dbo].[IdList]");
        assert_eq!(quoted_type("[a]]b]").unwrap(), "[a]]b]");
        assert!(quoted_type("dbo.t; DROP TABLE x").is_err());
    }
}
