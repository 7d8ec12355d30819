//! Table-valued parameters. The table type's columns come from the server
//! (`DECLARE @t AS type; SELECT TOP 0 * FROM @t`); each value is converted
//! for its column by the bulk load's own rules ([`super::bulk::cell`]), so
//! both encodings below see the same values:
//!
//! - **native**: the protocol's TVP type, to Microsoft SQL Server;
//! - **json**: Babelfish 4.2 takes the TVP type but mishandles it (string
//!   values pasted into SQL unescaped, decimals beside NULLs garbled, a
//!   large one kills its server process), so there the rows travel as one
//!   `nvarchar(max)` JSON parameter, unpacked into a table variable of the
//!   type by `OPENJSON ... WITH` in the same batch: one round trip, exact
//!   values (numbers as text where a float would round them), and the
//!   server parses the JSON in one pass.

use std::fmt::Write as _;

use futures_util::TryStreamExt;
use tiberius::{ColumnData, MetaDataColumn, QueryItem};

use super::bulk;
use super::values::to_value;
use crate::error::{Error, Result};
use crate::procedure::split_name;
use crate::value::{TableArg, Value};

/// How this connection sends table-valued parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Native,
    Json,
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
             in letters, digits and _; rename the type, or send it as JSON (table_values=json)"
        )));
    }
    Ok(parts.join("."))
}

/// The columns of a table type, as the server describes them.
pub async fn describe<S>(
    client: &mut tiberius::Client<S>,
    type_name: &str,
) -> Result<Vec<MetaDataColumn<'static>>>
where
    S: futures_util::AsyncRead + futures_util::AsyncWrite + Unpin + Send,
{
    let sql = format!(
        "DECLARE @dbflow_t AS {}; SELECT TOP 0 * FROM @dbflow_t",
        quoted_type(type_name)?
    );
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

/// The rows as one JSON array of arrays, each cell as `OPENJSON` converts
/// it exactly to its column's type.
pub fn json(rows: &[Vec<ColumnData<'static>>]) -> Result<String> {
    let mut out = String::with_capacity(rows.len() * 16 + 2);
    out.push('[');
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            out.push(',');
        }
        out.push('[');
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                out.push(',');
            }
            write_cell(&mut out, cell)?;
        }
        out.push(']');
    }
    out.push(']');
    Ok(out)
}

fn write_cell(out: &mut String, cell: &ColumnData<'static>) -> Result<()> {
    let string = |out: &mut String, s: &str| {
        out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
    };
    match to_value(cell)? {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // Shortest text that round-trips, read back by the server as float.
        Value::Float(f) => string(out, &format!("{f:?}")),
        Value::Bytes(b) => {
            out.push_str("\"0x");
            for byte in b {
                let _ = write!(out, "{byte:02X}");
            }
            out.push('"');
        }
        Value::DateTime(dt) => string(out, &dt.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        Value::DateTimeTz(dt) => string(out, &dt.format("%Y-%m-%dT%H:%M:%S%.f%:z").to_string()),
        other => string(out, &other.to_text()),
    }
    Ok(())
}

/// The T-SQL that fills the table variable `var` of type `type_sql` from
/// the JSON parameter `json_param`.
pub fn unpack(
    var: &str,
    json_param: &str,
    type_sql: &str,
    columns: &[MetaDataColumn<'static>],
) -> String {
    let quote = |n: &str| format!("[{}]", n.replace(']', "]]"));
    let names: Vec<String> = columns.iter().map(|c| quote(&c.col_name)).collect();
    let mut with = Vec::with_capacity(columns.len());
    let mut select = Vec::with_capacity(columns.len());
    for (i, (column, name)) in columns.iter().zip(&names).enumerate() {
        let declared = bulk::type_name(column);
        let binary = declared.contains("binary") || declared == "image";
        // Binary travels as 0x-hex text, turned back by CONVERT style 1.
        let read_as = if binary {
            "varchar(max)".to_owned()
        } else {
            declared.clone()
        };
        with.push(format!("{name} {read_as} '$[{i}]'"));
        select.push(if binary {
            format!("CONVERT({declared}, {name}, 1)")
        } else {
            name.clone()
        });
    }
    format!(
        "DECLARE {var} AS {type_sql}; INSERT INTO {var} ({}) SELECT {} FROM OPENJSON({json_param}) WITH ({});\n",
        names.join(", "),
        select.join(", "),
        with.join(", ")
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

    #[test]
    fn json_cells_keep_exact_values() {
        let rows = vec![vec![
            ColumnData::I32(Some(7)),
            ColumnData::String(Some("it's \"q\"".into())),
            ColumnData::Numeric(Some(tiberius::numeric::Numeric::new_with_scale(-1250, 2))),
            ColumnData::F64(Some(0.1)),
            ColumnData::Bit(Some(true)),
            ColumnData::Binary(Some(vec![0, 255].into())),
            ColumnData::I32(None),
        ]];
        assert_eq!(
            json(&rows).unwrap(),
            r#"[[7,"it's \"q\"","-12.50","0.1",true,"0x00FF",null]]"#
        );
    }
}
