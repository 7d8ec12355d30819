//! A procedure call as one T-SQL batch, sent in one round trip:
//!
//! ```sql
//! DECLARE @dbflow_rc int, @dbflow_o0 nvarchar(200) = @P2;  -- INPUT OUTPUT
//! EXEC @dbflow_rc = [dbo].[usp_Import] @batch = @P1, @note = @dbflow_o1 OUTPUT;
//! SELECT @dbflow_rc AS [dbflow_return_value], @dbflow_o1 AS [note];
//! ```
//!
//! The OUTPUT variables are declared with the caller's SQL types, so their
//! values come back typed exactly as query results, in a last result set
//! of the batch's own that is taken off. A procedure that raises an error
//! and returns (`RAISERROR`, a failed statement) still reaches that last
//! statement: its OUTPUT values and return code are known and travel with
//! the error. An error that ends the batch (`THROW`, `XACT_ABORT`) leaves
//! them unknown.

use crate::procedure::{Call, Called};
use crate::sql::{ParsedSql, Segment};
use crate::value::{Rows, Value};

/// The first column of the batch's own last result set.
const RETURN_COLUMN: &str = "dbflow_return_value";

/// The batch for `call`, with its input values in parameter order.
pub fn batch(call: &Call) -> (ParsedSql, Vec<Value>) {
    let mut segments = Vec::new();
    let mut names = Vec::new();
    let mut values = Vec::new();
    // One DECLARE, values included: each statement costs the server a
    // little, and a SET would report a rowcount of its own on Babelfish.
    let mut text = String::from("DECLARE @dbflow_rc int");
    let mut param =
        |p: &crate::procedure::Param, segments: &mut Vec<Segment>, text: &mut String| {
            segments.push(Segment::Text(std::mem::take(text)));
            segments.push(Segment::Param(names.len()));
            names.push(p.name.clone());
            values.push(p.value.clone().unwrap_or(Value::Null));
        };
    for (k, (p, sql_type)) in call.outputs().enumerate() {
        text.push_str(&format!(", @dbflow_o{k} {sql_type}"));
        if p.value.is_some() {
            text.push_str(" = ");
            param(p, &mut segments, &mut text);
        }
    }
    text.push_str(";\n");
    text.push_str(&format!("EXEC @dbflow_rc = {}", quoted(call)));
    let mut k = 0;
    for (i, p) in call.params.iter().enumerate() {
        text.push_str(if i == 0 { " " } else { ", " });
        text.push_str(&format!("@{} = ", p.name));
        if p.output.is_some() {
            text.push_str(&format!("@dbflow_o{k} OUTPUT"));
            k += 1;
        } else {
            param(p, &mut segments, &mut text);
        }
    }
    text.push_str(&format!(";\nSELECT @dbflow_rc AS [{RETURN_COLUMN}]"));
    for (k, (p, _)) in call.outputs().enumerate() {
        text.push_str(&format!(
            ", @dbflow_o{k} AS [{}]",
            p.name.replace(']', "]]")
        ));
    }
    text.push(';');
    segments.push(Segment::Text(text));
    (
        ParsedSql {
            segments,
            names,
            comment: None,
        },
        values,
    )
}

/// `[part].[part]`, each part as written (SQL Server resolves names by the
/// database's collation, so a bare part keeps its case).
fn quoted(call: &Call) -> String {
    call.parts
        .iter()
        .map(|p| format!("[{}]", p.replace(']', "]]")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The call's result: the batch's own last result set (when the batch got
/// that far) becomes the return code and OUTPUT values; its rowcount is
/// the batch's, not the procedure's.
pub fn called(call: &Call, mut sets: Vec<Rows>, mut rowcounts: Vec<u64>) -> Called {
    let ours = sets.last().is_some_and(|last| {
        last.columns.first().map(String::as_str) == Some(RETURN_COLUMN)
            && last.columns.len() == call.outputs().count() + 1
            && last.row_count() == 1
    });
    let mut result = Called::default();
    if ours {
        let last = sets.pop().unwrap_or_default();
        rowcounts.pop();
        let mut values = last.values.into_iter();
        result.return_value = match values.next() {
            Some(Value::Int(rc)) => Some(rc),
            _ => None,
        };
        result.output = call
            .outputs()
            .map(|(p, _)| p.name.clone())
            .zip(values)
            .collect();
    }
    result.result_sets = sets;
    result.rowcounts = rowcounts;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call::new(
            "dbo.[usp Import]",
            vec![
                ("batch".into(), Value::Int(3)),
                ("counter".into(), Value::Int(5)),
            ],
            vec![
                ("counter".into(), "int".into()),
                ("note".into(), "nvarchar(200)".into()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_batch_declares_outputs_and_reads_them_back() {
        let (sql, values) = batch(&call());
        let text = sql.render_with(|i| format!("@P{}", i + 1));
        assert_eq!(
            text,
            "DECLARE @dbflow_rc int, @dbflow_o0 int = @P1, @dbflow_o1 nvarchar(200);\n\
             EXEC @dbflow_rc = [dbo].[usp Import] @batch = @P2, @counter = @dbflow_o0 OUTPUT, \
             @note = @dbflow_o1 OUTPUT;\n\
             SELECT @dbflow_rc AS [dbflow_return_value], @dbflow_o0 AS [counter], \
             @dbflow_o1 AS [note];"
        );
        assert_eq!(values, [Value::Int(5), Value::Int(3)]);
        assert_eq!(sql.names, ["counter", "batch"]);
    }

    #[test]
    fn the_last_set_becomes_return_code_and_outputs() {
        let user = Rows {
            columns: vec!["a".into()],
            values: vec![Value::Int(1)],
            rows_affected: 1,
        };
        let ours = Rows {
            columns: vec![RETURN_COLUMN.into(), "counter".into(), "note".into()],
            values: vec![Value::Int(7), Value::Int(10), Value::Text("n".into())],
            rows_affected: 1,
        };
        let c = called(&call(), vec![user.clone(), ours], vec![1, 1]);
        assert_eq!(c.result_sets, std::slice::from_ref(&user));
        assert_eq!(c.return_value, Some(7));
        assert_eq!(
            c.output,
            [
                ("counter".to_owned(), Value::Int(10)),
                ("note".to_owned(), Value::Text("n".into()))
            ]
        );
        assert_eq!(c.rowcounts, [1]);
        // A batch ended early: nothing is taken off.
        let early = called(&call(), vec![user.clone()], vec![1]);
        assert_eq!((early.result_sets.len(), early.return_value), (1, None));
    }
}
