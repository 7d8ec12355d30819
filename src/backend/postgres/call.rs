//! Procedures and multi-statement scripts on PostgreSQL.
//!
//! A call is `CALL schema.name(a => $1, total => NULL::int)` in named
//! notation: inputs bound as every statement's values, OUT parameters
//! passed as typed NULLs (PostgreSQL 14+ wants an argument for them), and
//! the one row `CALL` returns for OUT and INOUT parameters becomes the
//! output. PostgreSQL has no return code, rowcounts or result sets of a
//! procedure (a function returning a table is read with `execute_query`).
//!
//! A script's statements are each prepared and read as any statement (the
//! same binary decoding as `execute_query`), inside one transaction — the
//! caller's, or one of its own, as PostgreSQL runs a multi-statement
//! query.

use super::PgConn;
use crate::backend::rows::{Destination, Read};
use crate::backend::Statement;
use crate::error::{Error, Result};
use crate::procedure::{Call, Called};
use crate::sql::{ParsedSql, Segment};
use crate::value::{Rows, Value};

/// A name part as PostgreSQL resolves it: unquoted parts fold to lower
/// case.
fn quoted_part(part: &str, bare: bool) -> String {
    let name = if bare {
        part.to_lowercase()
    } else {
        part.to_owned()
    };
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `CALL` statement and its input values.
pub fn statement(call: &Call) -> Statement {
    let name = call
        .parts
        .iter()
        .zip(&call.bare)
        .map(|(p, bare)| quoted_part(p, *bare))
        .collect::<Vec<_>>()
        .join(".");
    let mut segments = Vec::new();
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut text = format!("CALL {name}(");
    for (i, p) in call.params.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        // Parameter names are plain words (checked): unquoted, they fold
        // as the procedure's declaration did.
        text.push_str(&format!("{} => ", p.name));
        match (&p.value, &p.output) {
            (None, Some(sql_type)) => text.push_str(&format!("NULL::{sql_type}")),
            (value, _) => {
                segments.push(Segment::Text(std::mem::take(&mut text)));
                segments.push(Segment::Param(names.len()));
                names.push(p.name.clone());
                values.push(value.clone().unwrap_or(Value::Null));
                if let Some(sql_type) = &p.output {
                    text.push_str(&format!("::{sql_type}"));
                }
            }
        }
    }
    text.push(')');
    segments.push(Segment::Text(text));
    Statement {
        sql: ParsedSql {
            segments,
            names,
            comment: None,
        },
        values,
    }
}

impl PgConn {
    pub(super) async fn call_here(&mut self, call: &Call) -> Result<Called> {
        let statement = statement(call);
        let read = self
            .query_one(&statement, Destination::Collect)
            .await
            .map_err(|mut e| {
                // "is not a procedure", or no procedure of that signature:
                // PostgreSQL looks up procedures and functions apart.
                if matches!(e.sqlstate.as_deref(), Some("42809" | "42883")) {
                    e.message.push_str(&format!(
                        "; call_procedure runs procedures (CALL); if {} is a function, read its \
                         rows with execute_query(\"SELECT * FROM {0}(:arg)\")",
                        call.written
                    ));
                }
                e
            })?;
        let rows = read.rows;
        let mut output = Vec::with_capacity(rows.columns.len());
        if let Some(row) = rows.rows().next() {
            output.extend(rows.columns.iter().cloned().zip(row.iter().cloned()));
        }
        for (p, _) in call.outputs() {
            if !output
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(&p.name))
            {
                return Err(Error::query(format!(
                    "{} returned no OUT or INOUT parameter {:?}; it returned {}",
                    call.written,
                    p.name,
                    if output.is_empty() {
                        "none".to_owned()
                    } else {
                        output
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )));
            }
        }
        Ok(Called {
            output,
            ..Called::default()
        })
    }

    /// Every result set of `statement`: a script without parameters is
    /// split into its statements, run in one transaction.
    pub(super) async fn query_sets(&mut self, statement: &Statement) -> Result<Read> {
        let parts = if statement.values.is_empty() {
            let text = statement.sql.render_with(|_| String::new());
            crate::sql::split_statements(&text, &super::LEXICON)
        } else {
            Vec::new()
        };
        if parts.len() <= 1 {
            let read = self.query_one(statement, Destination::Collect).await?;
            return Ok(sets_of(vec![read]));
        }
        let statements: Vec<Statement> = parts
            .iter()
            .map(|(_, text)| Statement {
                sql: crate::sql::parse(text, &super::LEXICON),
                values: Vec::new(),
            })
            .collect();
        let run = async |c: &mut PgConn| {
            let mut reads = Vec::with_capacity(statements.len());
            for part in &statements {
                reads.push(c.read(part, Destination::Collect).await?);
            }
            Ok(sets_of(reads))
        };
        if self.pooled.is_some() {
            // A transaction of its own unless the caller's is open.
            return self.pinned(None, |_| true, run).await;
        }
        if self.in_transaction {
            return run(self).await;
        }
        self.simple("BEGIN").await?;
        let result = run(self).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = self.simple(end).await {
            self.poisoned = true;
            return Err(result.err().unwrap_or(e));
        }
        result
    }
}

/// The result sets among `reads`: the statements that had columns.
fn sets_of(reads: Vec<Read>) -> Read {
    let sets: Vec<Rows> = reads
        .into_iter()
        .filter(|r| r.result_sets > 0)
        .map(|r| r.rows)
        .collect();
    Read {
        result_sets: sets.len(),
        sets,
        ..Read::rows(Rows::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_named_notation_with_typed_out_nulls() {
        let call = Call::new(
            "Sales.\"Monthly Close\"",
            vec![
                ("month".into(), Value::Int(3)),
                ("total".into(), Value::Int(1)),
            ],
            vec![
                ("total".into(), "numeric".into()),
                ("note".into(), "text".into()),
            ],
        )
        .unwrap();
        let s = statement(&call);
        assert_eq!(
            s.sql.render_with(|i| format!("${}", i + 1)),
            "CALL \"sales\".\"Monthly Close\"(month => $1, total => $2::numeric, note => NULL::text)"
        );
        assert_eq!(s.values, [Value::Int(3), Value::Int(1)]);
    }
}
