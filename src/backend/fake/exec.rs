//! The fake's tables and how a parsed data statement runs on them. One
//! statement is atomic: it is checked whole before any row changes.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::parse::{CmpOp, Cond, Expr, Item, Stmt};
use crate::error::{Error, ErrorKind, Result};
use crate::value::Value;

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    /// The PRIMARY KEY column: its values are unique and not null.
    pub pk: Option<usize>,
    pub rows: Vec<Vec<Value>>,
}

/// Every table of one database state (the server's committed one, or a
/// transaction's own copy).
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub tables: BTreeMap<String, Table>,
}

/// What a statement produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub affected: u64,
}

fn undefined_table(name: &str) -> Error {
    let mut e = Error::query(format!("relation \"{name}\" does not exist"));
    e.sqlstate = Some("42P01".to_owned());
    e
}

fn undefined_column(name: &str) -> Error {
    let mut e = Error::query(format!("column \"{name}\" does not exist"));
    e.sqlstate = Some("42703".to_owned());
    e
}

/// SQL's comparison: NULL compares as unknown (`None`).
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (x, y) if x == y => Some(Ordering::Equal),
        _ => None,
    }
}

/// Evaluate `expr` for one row (`None`: no FROM).
fn eval(
    data: &Data,
    expr: &Expr,
    params: &[Value],
    row: Option<(&Table, &[Value])>,
) -> Result<Value> {
    Ok(match expr {
        Expr::Lit(v) => v.clone(),
        Expr::Param(n) => params.get(*n).cloned().ok_or_else(|| {
            Error::parameter(format!(
                "the statement uses parameter ${} but {} value(s) were bound",
                n + 1,
                params.len()
            ))
        })?,
        Expr::Col(c) => {
            let (table, values) = row.ok_or_else(|| undefined_column(c))?;
            let at = table
                .columns
                .iter()
                .position(|x| x == c)
                .ok_or_else(|| undefined_column(c))?;
            values[at].clone()
        }
        Expr::CountStar => return Err(super::parse::syntax("count(*) outside a query")),
        Expr::Call(f, args) => {
            let args = args
                .iter()
                .map(|a| eval(data, a, params, row))
                .collect::<Result<Vec<_>>>()?;
            match (f.as_str(), args.as_slice()) {
                ("fake_table_exists", [Value::Text(name)]) => {
                    Value::Bool(data.tables.contains_key(name))
                }
                ("fake_has_tables", []) => {
                    Value::Bool(data.tables.keys().any(|t| !t.contains('.')))
                }
                ("fake_has_tables", [Value::Text(schema)]) => Value::Bool(
                    data.tables
                        .keys()
                        .any(|t| t.starts_with(&format!("{schema}."))),
                ),
                ("now", []) => Value::DateTime(chrono::Utc::now().naive_utc()),
                ("fake_fail", [Value::Text(message)]) => return Err(Error::query(message.clone())),
                _ => {
                    let mut e = Error::query(format!("function {f}() does not exist"));
                    e.sqlstate = Some("42883".to_owned());
                    return Err(e);
                }
            }
        }
    })
}

fn matches(
    table: &Table,
    row: &[Value],
    filter: &[Cond],
    params: &[Value],
    data: &Data,
) -> Result<bool> {
    for cond in filter {
        let left = eval(
            data,
            &Expr::Col(cond.col.clone()),
            params,
            Some((table, row)),
        )?;
        let right = eval(data, &cond.rhs, params, Some((table, row)))?;
        let ord = compare(&left, &right);
        let ok = match cond.op {
            CmpOp::IsNull => left == Value::Null,
            CmpOp::NotNull => left != Value::Null,
            CmpOp::Eq => ord == Some(Ordering::Equal),
            CmpOp::Ne => matches!(ord, Some(o) if o != Ordering::Equal),
            CmpOp::Lt => ord == Some(Ordering::Less),
            CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            CmpOp::Gt => ord == Some(Ordering::Greater),
            CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn unique_violation(table: &str, key: &Value) -> Error {
    let mut e = Error::new(
        ErrorKind::Integrity,
        format!("duplicate key value violates unique constraint \"{table}_pkey\" (key {key:?})"),
    );
    e.sqlstate = Some("23505".to_owned());
    e
}

/// The primary key stays unique and not null over `rows`.
fn check_pk(name: &str, table: &Table, rows: &[Vec<Value>]) -> Result<()> {
    let Some(pk) = table.pk else { return Ok(()) };
    let mut seen: Vec<&Value> = Vec::with_capacity(rows.len());
    for row in rows {
        let key = &row[pk];
        if *key == Value::Null {
            let mut e = Error::new(
                ErrorKind::Integrity,
                format!(
                    "null value in column \"{}\" of \"{name}\"",
                    table.columns[pk]
                ),
            );
            e.sqlstate = Some("23502".to_owned());
            return Err(e);
        }
        if seen
            .iter()
            .any(|s| compare(s, key) == Some(Ordering::Equal))
        {
            return Err(unique_violation(name, key));
        }
        seen.push(key);
    }
    Ok(())
}

impl Data {
    fn table(&self, name: &str) -> Result<&Table> {
        self.tables.get(name).ok_or_else(|| undefined_table(name))
    }

    /// Run one data statement (not transaction control, sleep or locks).
    pub fn run(&mut self, stmt: &Stmt, params: &[Value]) -> Result<Outcome> {
        match stmt {
            Stmt::Create {
                table,
                if_not_exists,
                columns,
                pk,
            } => {
                if self.tables.contains_key(table) {
                    if *if_not_exists {
                        return Ok(Outcome::default());
                    }
                    let mut e = Error::query(format!("relation \"{table}\" already exists"));
                    e.sqlstate = Some("42P07".to_owned());
                    return Err(e);
                }
                let pk = pk
                    .as_ref()
                    .and_then(|p| columns.iter().position(|c| c == p));
                self.tables.insert(
                    table.clone(),
                    Table {
                        columns: columns.clone(),
                        pk,
                        rows: Vec::new(),
                    },
                );
                Ok(Outcome::default())
            }
            Stmt::Drop { table, if_exists } => {
                if self.tables.remove(table).is_none() && !*if_exists {
                    return Err(undefined_table(table));
                }
                Ok(Outcome::default())
            }
            Stmt::Insert {
                table: name,
                columns,
                rows,
            } => {
                let table = self.table(name)?;
                let targets: Vec<usize> = match columns {
                    None => (0..table.columns.len()).collect(),
                    Some(cols) => cols
                        .iter()
                        .map(|c| {
                            table
                                .columns
                                .iter()
                                .position(|x| x == c)
                                .ok_or_else(|| undefined_column(c))
                        })
                        .collect::<Result<_>>()?,
                };
                let mut new_rows = Vec::with_capacity(rows.len());
                for row in rows {
                    if row.len() != targets.len() {
                        return Err(super::parse::syntax(format!(
                            "INSERT has {} values for {} columns",
                            row.len(),
                            targets.len()
                        )));
                    }
                    let mut values = vec![Value::Null; table.columns.len()];
                    for (expr, &at) in row.iter().zip(&targets) {
                        values[at] = eval(self, expr, params, None)?;
                    }
                    new_rows.push(values);
                }
                let mut all = table.rows.clone();
                all.extend(new_rows);
                check_pk(name, table, &all)?;
                let n = rows.len() as u64;
                self.tables.get_mut(name).expect("checked above").rows = all;
                Ok(Outcome {
                    affected: n,
                    ..Outcome::default()
                })
            }
            Stmt::Update {
                table: name,
                sets,
                filter,
            } => {
                let table = self.table(name)?;
                let mut all = table.rows.clone();
                let mut n = 0;
                for row in &mut all {
                    if !matches(table, row, filter, params, self)? {
                        continue;
                    }
                    let mut changed = row.clone();
                    for (col, expr) in sets {
                        let at = table
                            .columns
                            .iter()
                            .position(|x| x == col)
                            .ok_or_else(|| undefined_column(col))?;
                        changed[at] = eval(self, expr, params, Some((table, row)))?;
                    }
                    *row = changed;
                    n += 1;
                }
                check_pk(name, table, &all)?;
                self.tables.get_mut(name).expect("checked above").rows = all;
                Ok(Outcome {
                    affected: n,
                    ..Outcome::default()
                })
            }
            Stmt::Delete {
                table: name,
                filter,
            } => {
                let table = self.table(name)?;
                let mut kept = Vec::with_capacity(table.rows.len());
                for row in &table.rows {
                    if !matches(table, row, filter, params, self)? {
                        kept.push(row.clone());
                    }
                }
                let n = (table.rows.len() - kept.len()) as u64;
                self.tables.get_mut(name).expect("checked above").rows = kept;
                Ok(Outcome {
                    affected: n,
                    ..Outcome::default()
                })
            }
            Stmt::Select {
                items,
                from,
                filter,
                order,
                limit,
            } => self.select(
                items,
                from.as_deref(),
                filter,
                order,
                limit.as_ref(),
                params,
            ),
            other => Err(super::parse::syntax(format!(
                "{other:?} is not a data statement"
            ))),
        }
    }

    fn select(
        &self,
        items: &[Item],
        from: Option<&str>,
        filter: &[Cond],
        order: &[(String, bool)],
        limit: Option<&Expr>,
        params: &[Value],
    ) -> Result<Outcome> {
        let empty = Table::default();
        let (table, mut rows) = match from {
            None => (&empty, vec![Vec::new()]),
            Some(name) => {
                let table = self.table(name)?;
                let mut rows = Vec::new();
                for row in &table.rows {
                    if matches(table, row, filter, params, self)? {
                        rows.push(row.clone());
                    }
                }
                (table, rows)
            }
        };
        for (col, desc) in order.iter().rev() {
            let at = table
                .columns
                .iter()
                .position(|x| x == col)
                .ok_or_else(|| undefined_column(col))?;
            rows.sort_by(|a, b| {
                let o = compare(&a[at], &b[at]).unwrap_or(Ordering::Equal);
                if *desc {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        if let Some(limit) = limit {
            if let Value::Int(n) = eval(self, limit, params, None)? {
                rows.truncate(n.max(0) as usize);
            }
        }
        let mut columns = Vec::new();
        for item in items {
            match item {
                Item::Star => columns.extend(table.columns.iter().cloned()),
                Item::Expr(_, name) => columns.push(name.clone()),
            }
        }
        if items
            .iter()
            .any(|i| matches!(i, Item::Expr(Expr::CountStar, _)))
        {
            let count = Value::Int(rows.len() as i64);
            return Ok(Outcome {
                rows: vec![columns.iter().map(|_| count.clone()).collect()],
                columns,
                affected: 0,
            });
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for item in items {
                match item {
                    Item::Star => values.extend(row.iter().cloned()),
                    Item::Expr(expr, _) => {
                        let context = from.map(|_| (table, row.as_slice()));
                        values.push(eval(self, expr, params, context)?);
                    }
                }
            }
            out.push(values);
        }
        Ok(Outcome {
            columns,
            rows: out,
            affected: 0,
        })
    }
}
