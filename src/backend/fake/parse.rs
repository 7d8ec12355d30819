//! The fake's statement recognizer: a tokenizer and a recursive-descent
//! parser for the small SQL subset listed in the module doc of
//! [`super`]. Anything else is a `Query` error ("syntax error"), as a
//! server would answer.

use super::lex::{tokenize, Tok};
use crate::error::{Error, Result};
use crate::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Param(usize),
    Col(String),
    Call(String, Vec<Expr>),
    /// `count(*)`
    CountStar,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    IsNull,
    NotNull,
}

/// `column op value`; a WHERE clause is a conjunction of these.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub col: String,
    pub op: CmpOp,
    pub rhs: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Star,
    Expr(Expr, String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Begin,
    Commit,
    Rollback,
    Savepoint(String),
    RollbackTo(String),
    Release(String),
    Create {
        table: String,
        if_not_exists: bool,
        columns: Vec<String>,
        pk: Option<String>,
    },
    Drop {
        table: String,
        if_exists: bool,
    },
    Insert {
        table: String,
        columns: Option<Vec<String>>,
        rows: Vec<Vec<Expr>>,
    },
    Select {
        items: Vec<Item>,
        from: Option<String>,
        filter: Vec<Cond>,
        order: Vec<(String, bool)>,
        limit: Option<Expr>,
    },
    Update {
        table: String,
        sets: Vec<(String, Expr)>,
        filter: Vec<Cond>,
    },
    Delete {
        table: String,
        filter: Vec<Cond>,
    },
    /// `SELECT sleep(ms)`: waits on the (possibly paused) tokio clock.
    Sleep(Expr),
    /// `SELECT fake_lock(name)`: the session lock; waits while another
    /// session holds it.
    Lock(Expr),
    /// `SELECT fake_unlock(name)`
    Unlock(Expr),
    /// `SELECT fake_session()`: which server session answers.
    Session,
}

impl Stmt {
    /// Whether the statement changes data (and so is replayed at COMMIT).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Stmt::Create { .. }
                | Stmt::Drop { .. }
                | Stmt::Insert { .. }
                | Stmt::Update { .. }
                | Stmt::Delete { .. }
        )
    }
}

pub fn syntax(message: impl std::fmt::Display) -> Error {
    let mut e = Error::query(format!("syntax error: {message}"));
    e.sqlstate = Some("42601".to_owned());
    e
}

/// Every statement of `sql` (split at top-level `;`), parsed.
pub fn parse_all(sql: &str) -> Result<Vec<Stmt>> {
    let toks = tokenize(sql)?;
    toks.split(|t| *t == Tok::Sym(';'))
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut p = Parser { toks: part, i: 0 };
            let stmt = p.statement()?;
            match p.toks.get(p.i) {
                None => Ok(stmt),
                Some(t) => Err(syntax(format!("unexpected {t:?}"))),
            }
        })
        .collect()
}

struct Parser<'t> {
    toks: &'t [Tok],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let found = self.is_kw(kw);
        if found {
            self.i += 1;
        }
        found
    }

    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(syntax(format!("expected {kw} at {:?}", self.peek())))
        }
    }

    fn eat_sym(&mut self, c: char) -> bool {
        let found = self.peek() == Some(&Tok::Sym(c));
        if found {
            self.i += 1;
        }
        found
    }

    fn expect_sym(&mut self, c: char) -> Result<()> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(syntax(format!("expected '{c}' at {:?}", self.peek())))
        }
    }

    fn ident(&mut self) -> Result<String> {
        match self.peek().cloned() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => {
                self.i += 1;
                Ok(w)
            }
            other => Err(syntax(format!("expected a name at {other:?}"))),
        }
    }

    /// `name` or `schema.name`.
    fn table(&mut self) -> Result<String> {
        let mut name = self.ident()?;
        while self.eat_sym('.') {
            name = format!("{name}.{}", self.ident()?);
        }
        Ok(name)
    }

    fn statement(&mut self) -> Result<Stmt> {
        let Some(Tok::Word(first)) = self.peek().cloned() else {
            return Err(syntax(format!("unexpected {:?}", self.peek())));
        };
        self.i += 1;
        match first.as_str() {
            "begin" | "start" => {
                self.eat_kw("transaction");
                Ok(Stmt::Begin)
            }
            "commit" | "end" => Ok(Stmt::Commit),
            "rollback" => {
                if self.eat_kw("to") {
                    self.eat_kw("savepoint");
                    Ok(Stmt::RollbackTo(self.ident()?))
                } else {
                    Ok(Stmt::Rollback)
                }
            }
            "savepoint" => Ok(Stmt::Savepoint(self.ident()?)),
            "release" => {
                self.eat_kw("savepoint");
                Ok(Stmt::Release(self.ident()?))
            }
            "create" => self.create(),
            "drop" => {
                self.expect_kw("table")?;
                let if_exists = self.eat_kw("if");
                if if_exists {
                    self.expect_kw("exists")?;
                }
                Ok(Stmt::Drop {
                    table: self.table()?,
                    if_exists,
                })
            }
            "insert" => self.insert(),
            "select" => self.select(),
            "update" => {
                let table = self.table()?;
                self.expect_kw("set")?;
                let mut sets = Vec::new();
                loop {
                    let col = self.ident()?;
                    if self.peek() != Some(&Tok::Op("=")) {
                        return Err(syntax("expected = in SET"));
                    }
                    self.i += 1;
                    sets.push((col, self.expr()?));
                    if !self.eat_sym(',') {
                        break;
                    }
                }
                let filter = self.filter()?;
                Ok(Stmt::Update {
                    table,
                    sets,
                    filter,
                })
            }
            "delete" => {
                self.expect_kw("from")?;
                let table = self.table()?;
                let filter = self.filter()?;
                Ok(Stmt::Delete { table, filter })
            }
            other => Err(syntax(format!("at or near \"{other}\""))),
        }
    }

    fn create(&mut self) -> Result<Stmt> {
        self.expect_kw("table")?;
        let if_not_exists = self.eat_kw("if");
        if if_not_exists {
            self.expect_kw("not")?;
            self.expect_kw("exists")?;
        }
        let table = self.table()?;
        self.expect_sym('(')?;
        let (mut columns, mut pk) = (Vec::new(), None);
        loop {
            // A table constraint: only PRIMARY KEY (col) means anything here.
            if self.eat_kw("primary") {
                self.expect_kw("key")?;
                self.expect_sym('(')?;
                pk = Some(self.ident()?);
                self.expect_sym(')')?;
            } else {
                let column = self.ident()?;
                // The type and column constraints, up to the next top-level ','.
                let mut depth = 0;
                while let Some(t) = self.peek() {
                    match t {
                        Tok::Sym('(') => depth += 1,
                        Tok::Sym(')') if depth == 0 => break,
                        Tok::Sym(')') => depth -= 1,
                        Tok::Sym(',') if depth == 0 => break,
                        Tok::Word(w) if w == "primary" => pk = Some(column.clone()),
                        _ => {}
                    }
                    self.i += 1;
                }
                columns.push(column);
            }
            if !self.eat_sym(',') {
                break;
            }
        }
        self.expect_sym(')')?;
        Ok(Stmt::Create {
            table,
            if_not_exists,
            columns,
            pk,
        })
    }

    fn insert(&mut self) -> Result<Stmt> {
        self.expect_kw("into")?;
        let table = self.table()?;
        let columns = if self.eat_sym('(') {
            let mut cols = vec![self.ident()?];
            while self.eat_sym(',') {
                cols.push(self.ident()?);
            }
            self.expect_sym(')')?;
            Some(cols)
        } else {
            None
        };
        self.expect_kw("values")?;
        let mut rows = Vec::new();
        loop {
            self.expect_sym('(')?;
            let mut row = vec![self.expr()?];
            while self.eat_sym(',') {
                row.push(self.expr()?);
            }
            self.expect_sym(')')?;
            rows.push(row);
            if !self.eat_sym(',') {
                break;
            }
        }
        Ok(Stmt::Insert {
            table,
            columns,
            rows,
        })
    }

    fn select(&mut self) -> Result<Stmt> {
        let mut items = Vec::new();
        loop {
            if self.eat_sym('*') {
                items.push(Item::Star);
            } else {
                let expr = self.expr()?;
                let name = if self.eat_kw("as") {
                    self.ident()?
                } else {
                    match &expr {
                        Expr::Col(c) => c.clone(),
                        Expr::Call(f, _) => f.clone(),
                        Expr::CountStar => "count".to_owned(),
                        _ => "?column?".to_owned(),
                    }
                };
                items.push(Item::Expr(expr, name));
            }
            if !self.eat_sym(',') {
                break;
            }
        }
        let from = if self.eat_kw("from") {
            Some(self.table()?)
        } else {
            None
        };
        if from.is_none() {
            if let [Item::Expr(Expr::Call(f, args), _)] = items.as_slice() {
                let arg = args.first().cloned().unwrap_or(Expr::Lit(Value::Null));
                match f.as_str() {
                    "sleep" => return Ok(Stmt::Sleep(arg)),
                    "fake_lock" => return Ok(Stmt::Lock(arg)),
                    "fake_unlock" => return Ok(Stmt::Unlock(arg)),
                    "fake_session" => return Ok(Stmt::Session),
                    _ => {}
                }
            }
        }
        let filter = self.filter()?;
        let mut order = Vec::new();
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            loop {
                let col = self.ident()?;
                let desc = self.eat_kw("desc");
                if !desc {
                    self.eat_kw("asc");
                }
                order.push((col, desc));
                if !self.eat_sym(',') {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("limit") {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(Stmt::Select {
            items,
            from,
            filter,
            order,
            limit,
        })
    }

    fn filter(&mut self) -> Result<Vec<Cond>> {
        let mut conds = Vec::new();
        if !self.eat_kw("where") {
            return Ok(conds);
        }
        loop {
            let col = self.ident()?;
            let (op, rhs) = if self.eat_kw("is") {
                let not = self.eat_kw("not");
                self.expect_kw("null")?;
                let op = if not { CmpOp::NotNull } else { CmpOp::IsNull };
                (op, Expr::Lit(Value::Null))
            } else {
                let op = match self.peek() {
                    Some(Tok::Op("=")) => CmpOp::Eq,
                    Some(Tok::Op("<>")) => CmpOp::Ne,
                    Some(Tok::Op("<")) => CmpOp::Lt,
                    Some(Tok::Op("<=")) => CmpOp::Le,
                    Some(Tok::Op(">")) => CmpOp::Gt,
                    Some(Tok::Op(">=")) => CmpOp::Ge,
                    other => return Err(syntax(format!("expected a comparison at {other:?}"))),
                };
                self.i += 1;
                (op, self.expr()?)
            };
            conds.push(Cond { col, op, rhs });
            if !self.eat_kw("and") {
                break;
            }
        }
        Ok(conds)
    }

    fn expr(&mut self) -> Result<Expr> {
        let negative = self.eat_sym('-');
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| syntax("expected a value"))?;
        self.i += 1;
        let expr = match tok {
            Tok::Param(n) => Expr::Param(n),
            Tok::Str(s) => Expr::Lit(Value::Text(s)),
            Tok::Num(n) => {
                let text = if negative { format!("-{n}") } else { n };
                match text.parse::<i64>() {
                    Ok(i) => Expr::Lit(Value::Int(i)),
                    Err(_) => Expr::Lit(Value::Float(
                        text.parse()
                            .map_err(|_| syntax(format!("bad number {text}")))?,
                    )),
                }
            }
            Tok::Word(w) if w == "null" => Expr::Lit(Value::Null),
            Tok::Word(w) if w == "true" => Expr::Lit(Value::Bool(true)),
            Tok::Word(w) if w == "false" => Expr::Lit(Value::Bool(false)),
            Tok::Word(w) | Tok::Quoted(w) if self.peek() == Some(&Tok::Sym('(')) => {
                self.i += 1;
                if w == "count" && self.eat_sym('*') {
                    self.expect_sym(')')?;
                    return Ok(Expr::CountStar);
                }
                let mut args = Vec::new();
                if !self.eat_sym(')') {
                    args.push(self.expr()?);
                    while self.eat_sym(',') {
                        args.push(self.expr()?);
                    }
                    self.expect_sym(')')?;
                }
                Expr::Call(w, args)
            }
            Tok::Word(w) | Tok::Quoted(w) => Expr::Col(w),
            other => return Err(syntax(format!("unexpected {other:?}"))),
        };
        if negative && !matches!(expr, Expr::Lit(Value::Int(_) | Value::Float(_))) {
            return Err(syntax("'-' before something other than a number"));
        }
        Ok(expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_history_ddl_and_queries() {
        let ddl = parse_all(
            "CREATE TABLE IF NOT EXISTS \"schema_version\" (installed_rank integer NOT NULL \
             PRIMARY KEY, version varchar(50), success boolean NOT NULL)",
        )
        .unwrap();
        assert_eq!(
            ddl,
            vec![Stmt::Create {
                table: "schema_version".into(),
                if_not_exists: true,
                columns: vec!["installed_rank".into(), "version".into(), "success".into()],
                pk: Some("installed_rank".into()),
            }]
        );
        let two = parse_all("INSERT INTO t (a) VALUES ($1), (-2); SELECT a FROM t WHERE a >= 1 ORDER BY a DESC LIMIT 1").unwrap();
        assert_eq!(two.len(), 2);
        assert!(matches!(
            parse_all("SELECT sleep(5)").unwrap()[0],
            Stmt::Sleep(_)
        ));
        assert!(parse_all("VACUUM").is_err());
        assert!(parse_all("SELECT 'open").is_err());
    }
}
