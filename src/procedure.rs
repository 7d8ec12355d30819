//! A stored-procedure call, said once for every backend: the name split
//! into its parts, the parameters in the caller's order (input, OUTPUT or
//! both), and what came back. Each backend turns a [`Call`] into its own
//! SQL (`backend/<name>/`); nothing here knows which database it is.

use crate::error::{Error, Result};
use crate::value::{Rows, Value};

/// One parameter of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Without `@`, as the procedure declares it.
    pub name: String,
    /// The value sent (`None`: OUTPUT only; the server starts it as NULL).
    pub value: Option<Value>,
    /// The declared SQL type of an OUTPUT (or INPUT OUTPUT) parameter.
    pub output: Option<String>,
}

/// A procedure and its parameters, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The name as the caller wrote it (for messages).
    pub written: String,
    /// The name's parts (`[schema, name]`), unquoted; `folded[i]` is true
    /// for a part written without quotes (a server may fold its case).
    pub parts: Vec<String>,
    pub bare: Vec<bool>,
    pub params: Vec<Param>,
}

/// What the server sent back for a call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Called {
    pub result_sets: Vec<Rows>,
    /// OUTPUT parameters, in the order the caller gave them.
    pub output: Vec<(String, Value)>,
    /// SQL Server's `RETURN` code (`None` where the server has none).
    pub return_value: Option<i64>,
    pub rowcounts: Vec<u64>,
}

impl Call {
    /// Check a call's name and parameters: `inputs` and `outputs` (name →
    /// SQL type) in the caller's order; a name in both is INPUT OUTPUT.
    pub fn new(
        name: &str,
        inputs: Vec<(String, Value)>,
        outputs: Vec<(String, String)>,
    ) -> Result<Call> {
        let (parts, bare) = split_name(name)?;
        let mut params: Vec<Param> = Vec::with_capacity(inputs.len() + outputs.len());
        for (given, value) in inputs {
            let name = param_name(&given)?;
            if params.iter().any(|p| p.name.eq_ignore_ascii_case(&name)) {
                return Err(Error::parameter(format!(
                    "the parameter {name:?} is given twice; give each parameter once"
                )));
            }
            params.push(Param {
                name,
                value: Some(value),
                output: None,
            });
        }
        for (given, sql_type) in outputs {
            let name = param_name(&given)?;
            check_type(&name, &sql_type)?;
            match params
                .iter_mut()
                .find(|p| p.name.eq_ignore_ascii_case(&name))
            {
                Some(p) if p.output.is_some() => {
                    return Err(Error::parameter(format!(
                        "the OUTPUT parameter {name:?} is given twice; give each parameter once"
                    )))
                }
                Some(p) => p.output = Some(sql_type),
                None => params.push(Param {
                    name,
                    value: None,
                    output: Some(sql_type),
                }),
            }
        }
        Ok(Call {
            written: name.to_owned(),
            parts,
            bare,
            params,
        })
    }

    /// The OUTPUT parameters, in order.
    pub fn outputs(&self) -> impl Iterator<Item = (&Param, &str)> {
        self.params
            .iter()
            .filter_map(|p| p.output.as_deref().map(|t| (p, t)))
    }
}

/// A name of one to three dot-separated parts, each bare (letters, digits,
/// `_`, `$`, `#`) or quoted with `[...]` (`]]` for `]`) or `"..."` (`""` for
/// `"`).
pub(crate) fn split_name(name: &str) -> Result<(Vec<String>, Vec<bool>)> {
    let bad = |why: &str| {
        Error::parameter(format!(
            "{name:?} is not a procedure name ({why}); write it as name, schema.name or \
             database.schema.name, quoting a part with [brackets] or \"double quotes\""
        ))
    };
    let mut parts = Vec::new();
    let mut bare = Vec::new();
    let mut chars = name.trim().chars().peekable();
    loop {
        let mut part = String::new();
        match chars.peek() {
            Some(&close @ ('[' | '"')) => {
                let close = if close == '[' { ']' } else { '"' };
                chars.next();
                loop {
                    match chars.next() {
                        Some(c) if c == close && chars.peek() == Some(&close) => {
                            chars.next();
                            part.push(c);
                        }
                        Some(c) if c == close => break,
                        Some(c) => part.push(c),
                        None => return Err(bad("a quote is not closed")),
                    }
                }
                bare.push(false);
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '$' | '#') {
                        part.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                bare.push(true);
            }
        }
        if part.is_empty() || part.chars().any(char::is_control) {
            return Err(bad("a part is empty or not a name"));
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(c) => return Err(bad(&format!("unexpected {c:?}"))),
        }
    }
    if parts.len() > 3 {
        return Err(bad("more than three parts"));
    }
    Ok((parts, bare))
}

/// A parameter name: a word, without the `@`.
fn param_name(given: &str) -> Result<String> {
    if let Some(bare) = given.strip_prefix('@') {
        return Err(Error::parameter(format!(
            "parameter names are given without @: {bare:?}, not {given:?}"
        )));
    }
    let name = given;
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_');
    if !ok {
        return Err(Error::parameter(format!(
            "{given:?} is not a parameter name; use the name the procedure declares, \
             letters, digits and _ (without @)"
        )));
    }
    Ok(name.to_owned())
}

/// An OUTPUT parameter's SQL type, as written in a declaration: words,
/// digits, spaces, dots, `(p, s)`, `max` and `[]` — nothing that could end
/// the statement it is pasted into.
fn check_type(name: &str, sql_type: &str) -> Result<()> {
    let t = sql_type.trim();
    let ok = t.chars().next().is_some_and(char::is_alphabetic)
        && t.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '_' | ' ' | '.' | '(' | ')' | ',' | '[' | ']')
        })
        && t.matches('(').count() == t.matches(')').count()
        && t.matches('(').count() <= 1;
    if ok {
        Ok(())
    } else {
        Err(Error::parameter(format!(
            "the OUTPUT parameter {name:?} has the type {sql_type:?}, which is not a SQL type \
             name; write it as in a declaration, e.g. \"int\", \"nvarchar(200)\" or \"decimal(18, 2)\""
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(name: &str) -> Vec<String> {
        split_name(name).unwrap().0
    }

    #[test]
    fn names_split_into_unquoted_parts() {
        assert_eq!(parts("usp_Import"), ["usp_Import"]);
        assert_eq!(parts("dbo.usp_Import"), ["dbo", "usp_Import"]);
        assert_eq!(parts("[dbo].[usp Import]"), ["dbo", "usp Import"]);
        assert_eq!(parts("\"my schema\".\"p\"\"q\""), ["my schema", "p\"q"]);
        assert_eq!(parts("[a]]b].c"), ["a]b", "c"]);
        assert_eq!(parts("db.dbo.p"), ["db", "dbo", "p"]);
        assert_eq!(split_name("dbo.[P]").unwrap().1, [true, false]);
    }

    #[test]
    fn injection_and_malformed_names_are_refused() {
        for name in [
            "",
            "p; DROP TABLE x",
            "p--",
            "[unclosed",
            "a..b",
            "a.b.c.d",
            "p'",
            "p(1)",
            "dbo.",
        ] {
            let e = split_name(name).unwrap_err();
            assert!(e.message.contains("is not a procedure name"), "{name}: {e}");
        }
    }

    #[test]
    fn inputs_outputs_and_input_outputs_merge_by_name() {
        let call = Call::new(
            "dbo.p",
            vec![
                ("a".into(), Value::Int(1)),
                ("counter".into(), Value::Int(5)),
            ],
            vec![
                ("counter".into(), "int".into()),
                ("note".into(), "nvarchar(200)".into()),
            ],
        )
        .unwrap();
        let shape: Vec<_> = call
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.value.is_some(), p.output.as_deref()))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", true, None),
                ("counter", true, Some("int")),
                ("note", false, Some("nvarchar(200)"))
            ]
        );
        assert_eq!(call.outputs().count(), 2);
    }

    #[test]
    fn bad_parameters_are_refused_with_the_reason() {
        let dup = Call::new(
            "p",
            vec![("a".into(), Value::Null), ("A".into(), Value::Null)],
            vec![],
        );
        assert!(dup.unwrap_err().message.contains("given twice"));
        let name = Call::new("p", vec![("a b".into(), Value::Null)], vec![]);
        assert!(name.unwrap_err().message.contains("not a parameter name"));
        let at = Call::new("p", vec![("@a".into(), Value::Null)], vec![]);
        assert!(at.unwrap_err().message.contains("without @"));
        for bad in ["int; DROP TABLE x", "int'", "nvarchar(10", "", "(int)"] {
            let e = Call::new("p", vec![], vec![("t".into(), bad.into())]).unwrap_err();
            assert!(e.message.contains("not a SQL type name"), "{bad}: {e}");
        }
        for good in [
            "int",
            "nvarchar(max)",
            "decimal(18, 2)",
            "double precision",
            "int[]",
            "dbo.MyType",
        ] {
            Call::new("p", vec![], vec![("t".into(), good.into())]).unwrap();
        }
    }
}
