//! Statements this backend sends as its own `sp_executesql` RPC rather
//! than through the driver's query: those with table-valued parameters,
//! and procedure calls (the driver's query stream does not report
//! rowcounts). One round trip either way; the answer is read into the same
//! row buffer as every query.

use std::borrow::Cow;

use futures_util::StreamExt;
use tiberius::{ColumnData, Command, CommandItem, SqlTableData, ToSql};

use super::tvp::{self, Encoding};
use super::values::{to_param, to_value, Param};
use super::MsConn;
use crate::backend::rows::{Destination, Read, RowBuffer};
use crate::error::{Error, Result};
use crate::sql::ParsedSql;
use crate::value::{TableArg, Value};

/// A table-valued parameter ready to send.
struct Table {
    /// `@Pn`
    name: String,
    /// `schema.type`, as the protocol carries it.
    wire_type: String,
    /// The type's columns as the server described them.
    columns: Vec<tiberius::MetaDataColumn<'static>>,
    rows: Vec<Vec<ColumnData<'static>>>,
}

/// What an RPC read: the rows (as the destination keeps them), the
/// rowcounts the server reported, and the error it ended with, if any
/// (what came before the error is kept: a procedure's caller wants it).
pub(super) struct RpcRead {
    pub read: Read,
    pub rowcounts: Vec<u64>,
    pub failed: Option<Error>,
}

/// The text, declarations and parameters of one `sp_executesql` call.
pub(super) struct Prepared {
    text: String,
    declarations: Vec<String>,
    scalars: Vec<(String, Param)>,
    tables: Vec<Table>,
    /// Rowcounts the text's own statements report before the caller's
    /// (one per table unpacked from JSON), taken off the result.
    own_counts: usize,
}

/// `@Pn`'s declared type, as the driver would declare the value it sends.
fn declared(data: &ColumnData<'_>) -> String {
    match data {
        ColumnData::Bit(_) => "bit".into(),
        ColumnData::I32(_) => "int".into(),
        ColumnData::I64(_) => "bigint".into(),
        ColumnData::F64(_) => "float(53)".into(),
        ColumnData::Numeric(Some(n)) => format!("numeric({},{})", n.precision(), n.scale()),
        ColumnData::String(Some(s)) if s.len() <= 4000 => "nvarchar(4000)".into(),
        ColumnData::String(_) => "nvarchar(max)".into(),
        ColumnData::Binary(Some(b)) if b.len() <= 8000 => "varbinary(8000)".into(),
        ColumnData::Binary(_) => "varbinary(max)".into(),
        ColumnData::Guid(_) => "uniqueidentifier".into(),
        ColumnData::Date(_) => "date".into(),
        ColumnData::Time(_) => "time".into(),
        ColumnData::DateTime2(_) => "datetime2".into(),
        ColumnData::DateTimeOffset(_) => "datetimeoffset".into(),
        // Not made by `to_param`.
        _ => "sql_variant".into(),
    }
}

impl MsConn {
    /// How table-valued parameters go to this server: as configured, else
    /// native unless the server is Babelfish (asked once per connection).
    async fn tvp_encoding(&mut self, rows: usize) -> Result<Encoding> {
        let babelfish = self.is_babelfish().await?;
        Ok(match (self.tvp, babelfish) {
            (Some(Encoding::Native), true) if rows > tvp::BABELFISH_NATIVE_LIMIT => {
                return Err(Error::parameter(format!(
                    "table_values=native sends Babelfish a table-valued parameter of {rows} rows; \
                     it handles at most {} safely (more has crashed its server); leave \
                     table_values unset to send them by bulk load",
                    tvp::BABELFISH_NATIVE_LIMIT
                )))
            }
            (Some(chosen), _) => chosen,
            (None, true) => Encoding::Bulk,
            (None, false) => Encoding::Native,
        })
    }

    /// Render `sql` with `values` for `sp_executesql`: scalars as `@Pn`
    /// (NULLs as the literal, see `values::bind`), tables by this server's
    /// encoding.
    pub(super) async fn prepare_rpc(
        &mut self,
        sql: &ParsedSql,
        values: &[Value],
    ) -> Result<Prepared> {
        let mut placeholder = vec![String::from("NULL"); values.len()];
        let mut prologue = String::new();
        let mut prepared = Prepared {
            text: String::new(),
            declarations: Vec::new(),
            scalars: Vec::new(),
            tables: Vec::new(),
            own_counts: 0,
        };
        for (i, (value, name)) in values.iter().zip(&sql.names).enumerate() {
            let n = format!("@P{}", i + 1);
            match value {
                Value::Table(table) => {
                    let quoted_type = tvp::quoted_type(&table.type_name)?;
                    match self.tvp_encoding(table.rows.len()).await? {
                        Encoding::Native => {
                            let columns =
                                tvp::describe(&mut self.client, &table.type_name, None).await?;
                            prepared
                                .declarations
                                .push(format!("{n} {quoted_type} READONLY"));
                            prepared.tables.push(Table {
                                name: n.clone(),
                                wire_type: tvp::wire_type(&table.type_name)?,
                                rows: tvp::cells(name, table, &columns)?,
                                columns,
                            });
                        }
                        Encoding::Bulk => {
                            // A fresh name each time: Babelfish fails a
                            // statement on a temporary table dropped and
                            // made again under the same name in a session.
                            self.temp_tables += 1;
                            let temp = format!("#dbflow_tvp_{}", self.temp_tables);
                            self.load_temp(name, table, &temp).await?;
                            prologue.push_str(&tvp::unpack(&n, &temp, &quoted_type));
                            prepared.own_counts += 1;
                        }
                    }
                    placeholder[i] = n;
                }
                other => {
                    if let Some(param) = to_param(name, other)? {
                        prepared
                            .declarations
                            .push(format!("{n} {}", declared(&param.to_sql())));
                        prepared.scalars.push((n.clone(), param));
                        placeholder[i] = n;
                    }
                }
            }
        }
        prepared.text = prologue + &sql.render_with(|i| placeholder[i].clone());
        Ok(prepared)
    }

    /// Bulk-load a table value's rows into the temporary table `temp`
    /// (made in the same round trip as the type's description).
    async fn load_temp(&mut self, param: &str, table: &TableArg, temp: &str) -> Result<()> {
        let columns = tvp::describe(&mut self.client, &table.type_name, Some(temp)).await?;
        // Every row is converted before the load starts: a bad value is
        // refused with nothing sent.
        let rows = tvp::cells(param, table, &columns)?;
        let mut request = self.client.bulk_insert(temp).await?;
        for cells in rows {
            let mut row = tiberius::TokenRow::with_capacity(cells.len());
            for cell in cells {
                row.push(cell);
            }
            request.send(row).await?;
        }
        request.finalize().await?;
        Ok(())
    }

    /// Send a prepared statement and read its answer into `destination`.
    pub(super) async fn run_rpc(
        &mut self,
        mut prepared: Prepared,
        destination: Destination<'_>,
    ) -> Result<RpcRead> {
        let mut command = Command::executesql();
        command.bind_param("@stmt", prepared.text.as_str());
        if !prepared.declarations.is_empty() {
            command.bind_param("@params", prepared.declarations.join(", "));
        }
        for (name, param) in &prepared.scalars {
            command.bind_param(Cow::Borrowed(name.as_str()), param.to_sql());
        }
        for Table {
            name,
            wire_type,
            columns,
            rows,
        } in prepared.tables.iter_mut()
        {
            // The columns read for converting the values: the driver need
            // not ask the server for them again.
            let data = SqlTableData::from_rows(wire_type.as_str(), std::mem::take(rows))
                .with_columns(std::mem::take(columns));
            command.bind_table_data(Cow::Borrowed(name.as_str()), data);
        }
        let mut own_counts = prepared.own_counts;
        let mut stream = command.exec(&mut self.client).await?;
        let mut buffer = RowBuffer::new(destination);
        let mut rowcounts = Vec::new();
        let mut failed = None;
        // A value that cannot be decoded ends the read, not the wire: the
        // rest is drained so the connection stays in step.
        let mut undecodable = None;
        while let Some(item) = stream.next().await {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    failed = Some(Error::from(e));
                    break;
                }
            };
            if undecodable.is_some() {
                continue;
            }
            match item {
                CommandItem::Metadata(meta) => {
                    buffer.start(meta.columns().iter().map(|c| c.name().to_owned()).collect())
                }
                CommandItem::Row(row) => {
                    let values = buffer.values();
                    for (_, data) in row.cells() {
                        match to_value(data) {
                            Ok(v) => values.push(v),
                            Err(e) => {
                                undecodable = Some(e);
                                break;
                            }
                        }
                    }
                    if undecodable.is_none() && !buffer.row_done().await? {
                        break;
                    }
                }
                CommandItem::RowsAffected(_) if own_counts > 0 => own_counts -= 1,
                CommandItem::RowsAffected(n) => rowcounts.push(n),
                // sp_executesql's own status; a procedure's comes back as
                // a value of the batch (see `call`).
                CommandItem::ReturnStatus(_) | CommandItem::ReturnValue(_) => {}
            }
        }
        Ok(RpcRead {
            read: buffer.finish().await,
            rowcounts,
            failed: failed.or(undecodable),
        })
    }
}
