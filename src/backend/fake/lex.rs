//! The fake's tokenizer: words (folded to lower case), `"identifiers"`,
//! `'text'`, numbers, `$n` parameters, comparison operators and single
//! characters; comments are skipped.

use super::parse::syntax;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An unquoted word, lower-cased (identifiers fold as PostgreSQL's do).
    Word(String),
    /// A `"quoted"` identifier, as written.
    Quoted(String),
    Str(String),
    Num(String),
    /// `$n`, 0-based.
    Param(usize),
    Op(&'static str),
    Sym(char),
}

pub fn tokenize(sql: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .ok_or_else(|| syntax("unterminated /* comment"))?;
            i = end + 2;
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(syntax("unterminated quoted text")),
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        text.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            out.push(if c == '\'' {
                Tok::Str(text)
            } else {
                Tok::Quoted(text)
            });
        } else if c == '$' && next.is_some_and(|d| d.is_ascii_digit()) {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: usize = chars[start..i]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            out.push(Tok::Param(n.saturating_sub(1)));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(Tok::Word(word.to_lowercase()));
        } else {
            let two: String = [c, next.unwrap_or(' ')].iter().collect();
            let op = match two.as_str() {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "<>" | "!=" => Some("<>"),
                _ => None,
            };
            match (op, c) {
                (Some(op), _) => {
                    out.push(Tok::Op(op));
                    i += 2;
                }
                (None, '=') => {
                    out.push(Tok::Op("="));
                    i += 1;
                }
                (None, '<') => {
                    out.push(Tok::Op("<"));
                    i += 1;
                }
                (None, '>') => {
                    out.push(Tok::Op(">"));
                    i += 1;
                }
                (None, _) => {
                    out.push(Tok::Sym(c));
                    i += 1;
                }
            }
        }
    }
    Ok(out)
}
