//! `:name` placeholders → the server's placeholders (`$1`, `@P1`, ...).
//!
//! A small tokenizer, not a regex: string literals, quoted identifiers,
//! comments, dollar-quoted bodies, `[bracketed]` identifiers and `::` casts
//! are passed through untouched, as the backend's [`Lexicon`] says its SQL
//! has them. A name is recognised as SQLAlchemy's `text()` does: `:`
//! followed by a word, not preceded by a word character or another `:`;
//! `\:` is a literal colon.

use crate::error::{Error, Result};

mod lex;
mod values;

use lex::is_word_char;
pub use lex::{parse, split_statements};
pub use values::ValuesTemplate;

/// How a backend writes SQL, as far as `:name` parsing, script splitting
/// and placeholders care. Each backend defines its own
/// (`backend/<name>/`); nothing here knows which database it is.
#[derive(Debug, PartialEq, Eq)]
pub struct Lexicon {
    /// `[bracketed]` identifiers.
    pub bracket_identifiers: bool,
    /// `$$ … $$` and `$tag$ … $tag$` bodies.
    pub dollar_quotes: bool,
    /// `E'…'` strings, whose backslashes escape.
    pub escape_strings: bool,
    /// Parameter `n` (1-based) is sent as this prefix and `n`.
    pub placeholder_prefix: &'static str,
}

/// The lexicon of the SQL at hand.
pub type Dialect = &'static Lexicon;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    /// Index into [`ParsedSql::names`].
    Param(usize),
}

/// A statement split into text and parameter references; render it once per
/// placeholder style. Each distinct name is one server parameter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedSql {
    pub segments: Vec<Segment>,
    pub names: Vec<String>,
    /// A comment sent after the statement (`<DB>_QUERY_COMMENTS`), apart
    /// from it: a statement cache keys on the text without it.
    pub comment: Option<String>,
}

impl ParsedSql {
    /// The first psycopg2-style `%(name)s` placeholder in the text, if any:
    /// written by habit, it would reach the server as a syntax error.
    pub fn pyformat_name(&self) -> Option<String> {
        self.segments.iter().find_map(|segment| {
            let Segment::Text(text) = segment else {
                return None;
            };
            text.match_indices("%(").find_map(|(at, _)| {
                let rest = &text[at + 2..];
                let close = rest.find(")s")?;
                let name = &rest[..close];
                (!name.is_empty() && name.chars().all(is_word_char)).then(|| name.to_owned())
            })
        })
    }

    /// `text` (this statement rendered) with its comment, as it is sent.
    /// Before a final `;`, which would leave the comment a second statement.
    pub fn commented(&self, mut text: String) -> String {
        if let Some(comment) = &self.comment {
            let end = text.trim_end().trim_end_matches(';').len();
            // After a `--` comment on the last line, a space would hide it.
            let line_comment = text[..end]
                .rsplit('\n')
                .next()
                .is_some_and(|l| l.contains("--"));
            let gap = if line_comment { '\n' } else { ' ' };
            text.insert_str(end, &format!("{gap}{comment}"));
        }
        text
    }

    /// Render with the dialect's placeholders (`$1`, `@P1`, ...).
    pub fn render(&self, dialect: Dialect) -> String {
        let prefix = dialect.placeholder_prefix;
        self.render_with(|i| format!("{prefix}{}", i + 1))
    }

    pub fn render_with(&self, mut placeholder: impl FnMut(usize) -> String) -> String {
        let mut out = String::with_capacity(
            self.segments
                .iter()
                .map(|s| match s {
                    Segment::Text(t) => t.len(),
                    Segment::Param(_) => 4,
                })
                .sum(),
        );
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Param(i) => out.push_str(&placeholder(*i)),
            }
        }
        out
    }

    /// Order the supplied values as the statement needs them. A missing name
    /// is a `ParameterError` naming it, raised before anything is sent; extra
    /// names are ignored (a whole row dict may be passed).
    pub fn bind_order<'a, V>(
        &self,
        lookup: impl Fn(&str) -> Option<&'a V>,
        supplied: impl Fn() -> Vec<String>,
    ) -> Result<Vec<&'a V>> {
        let mut out = Vec::with_capacity(self.names.len());
        for name in &self.names {
            match lookup(name) {
                Some(v) => out.push(v),
                None => {
                    let mut given = supplied();
                    given.sort();
                    return Err(Error::parameter(format!(
                        "the statement uses :{name} but no value named '{name}' was given \
                         (given: {}); pass {{\"{name}\": ...}} in params or write \\:{name} for a literal colon",
                        if given.is_empty() { "none".to_owned() } else { given.join(", ") }
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// Lexicons for tests above the backends.
/// A dialect with dollar quotes and `E''` strings (as PostgreSQL).
#[cfg(test)]
pub(crate) const DOLLARS: Lexicon = Lexicon {
    bracket_identifiers: false,
    dollar_quotes: true,
    escape_strings: true,
    placeholder_prefix: "$",
};
/// A dialect with `[bracketed]` identifiers (as T-SQL).
#[cfg(test)]
pub(crate) const BRACKETS: Lexicon = Lexicon {
    bracket_identifiers: true,
    dollar_quotes: false,
    escape_strings: false,
    placeholder_prefix: "@P",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyformat_placeholders_are_found() {
        let sql = parse("SELECT * FROM t WHERE id = %(customer_id)s", &DOLLARS);
        assert_eq!(sql.pyformat_name().as_deref(), Some("customer_id"));
        assert_eq!(parse("SELECT 100 % 7", &DOLLARS).pyformat_name(), None);
        assert_eq!(parse("SELECT :x", &DOLLARS).pyformat_name(), None);
    }

    #[test]
    fn a_comment_goes_where_the_server_reads_it() {
        let mut sql = parse("SELECT :v;  ", &DOLLARS);
        assert_eq!(sql.commented("SELECT $1;  ".into()), "SELECT $1;  ");
        sql.comment = Some("/*a='b'*/".into());
        assert_eq!(
            sql.commented("SELECT $1;  ".into()),
            "SELECT $1 /*a='b'*/;  "
        );
        assert_eq!(
            sql.commented("SELECT $1 -- mine".into()),
            "SELECT $1 -- mine\n/*a='b'*/"
        );
        assert_eq!(
            sql.render(&DOLLARS),
            "SELECT $1;  ",
            "the text itself has no comment"
        );
    }

    use proptest::prelude::*;

    fn pg(sql: &str) -> (String, Vec<String>) {
        let p = parse(sql, &DOLLARS);
        (p.render(&DOLLARS), p.names)
    }

    #[test]
    fn basic_and_repeated_names() {
        let (sql, names) = pg("SELECT * FROM t WHERE a = :a AND b = :b OR a2 = :a");
        assert_eq!(sql, "SELECT * FROM t WHERE a = $1 AND b = $2 OR a2 = $1");
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn leaves_literals_identifiers_comments_and_casts_alone() {
        let src = "SELECT ':no', \":no\", E'\\':no', x::text, :yes::int -- :no\n\
                   /* :no /* nested :no */ :no */ $$ :no $$, $tag$ :no $tag$, arr[1:2], a:b";
        let (sql, names) = pg(src);
        assert_eq!(names, ["yes"]);
        assert!(sql.contains("$1::int"));
        assert!(sql.contains("arr[1:2]") && sql.contains("a:b"));
        assert!(sql.contains("$tag$ :no $tag$"));
    }

    #[test]
    fn escaped_colon_is_literal() {
        let (sql, names) = pg(r"SELECT '10' \:x");
        assert_eq!(sql, "SELECT '10' :x");
        assert!(names.is_empty());
    }

    #[test]
    fn dollar_after_word_is_not_a_quote() {
        let (sql, names) = pg("SELECT a$b$, :x");
        assert_eq!(names, ["x"]);
        assert_eq!(sql, "SELECT a$b$, $1");
    }

    #[test]
    fn sql_server_brackets_and_n_strings() {
        let p = parse("SELECT [a:b], N':no', :yes FROM [t]", &BRACKETS);
        assert_eq!(p.names, ["yes"]);
        assert_eq!(p.render(&BRACKETS), "SELECT [a:b], N':no', @P1 FROM [t]");
    }

    #[test]
    fn missing_key_names_it() {
        let p = parse("SELECT :a, :b", &DOLLARS);
        let values = std::collections::HashMap::from([("a".to_string(), 1)]);
        let err = p
            .bind_order(|k| values.get(k), || values.keys().cloned().collect())
            .unwrap_err();
        assert!(err.message.contains(":b"), "{}", err.message);
        assert_eq!(err.kind, crate::error::ErrorKind::Parameter);
    }

    #[test]
    fn insert_values_become_multi_row() {
        let p = parse(
            "INSERT INTO t (a, b) VALUES (:a, lower(:b)) ON CONFLICT (a) DO NOTHING",
            &DOLLARS,
        );
        let t = p.values_template().expect("a single-row insert");
        let two = t.expand(2, &p.names);
        assert_eq!(
            two.render(&DOLLARS),
            "INSERT INTO t (a, b) VALUES ($1, lower($2)), ($3, lower($4)) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(two.names, ["a", "b", "a", "b"]);
        assert_eq!(
            t.expand(1, &p.names).render(&BRACKETS),
            "INSERT INTO t (a, b) VALUES (@P1, lower(@P2)) ON CONFLICT (a) DO NOTHING"
        );
        for not_batchable in [
            "UPDATE t SET a = :a",
            "INSERT INTO t SELECT :a",
            "INSERT INTO t VALUES (1), (:a)",
            "INSERT INTO t VALUES (:a) RETURNING (SELECT :b)",
            "INSERT INTO t (a) VALUES (':x' || :a)",
            "INSERT INTO t (a) VALUES (1)",
            "INSERT INTO t (a) VALUES (:a) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a",
        ] {
            assert!(
                parse(not_batchable, &DOLLARS).values_template().is_none(),
                "{not_batchable}"
            );
        }
    }

    #[test]
    fn statements_split_with_their_start_lines() {
        let script = "-- header\nCREATE TABLE a (t text DEFAULT ';');\n\n/* ; */\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nINSERT INTO a VALUES ('x;y'); -- trailing ;\n  SELECT 1";
        let parts = split_statements(script, &DOLLARS);
        let lines: Vec<usize> = parts.iter().map(|p| p.0).collect();
        assert_eq!(lines, [2, 5, 6, 7], "{parts:?}");
        assert!(parts[1].1.contains("SELECT 1; $$"));
        assert_eq!(
            split_statements(";;  \n-- only a comment\n", &DOLLARS),
            vec![]
        );
    }

    proptest! {
        #[test]
        fn splitting_never_panics(s in "\\PC*") {
            let _ = split_statements(&s, &DOLLARS);
            let _ = split_statements(&s, &BRACKETS);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let p = parse(&s, &DOLLARS);
            let _ = p.render(&DOLLARS);
            let q = parse(&s, &BRACKETS);
            let _ = q.render(&BRACKETS);
        }

        #[test]
        fn never_panics_on_sql_like_soup(s in "[:'\"$\\\\/*\\-\\[\\]a-z_ \n]{0,40}") {
            let p = parse(&s, &DOLLARS);
            prop_assert!(p.names.iter().all(|n| !n.is_empty()));
            let _ = parse(&s, &BRACKETS).render(&BRACKETS);
        }

        #[test]
        fn text_without_colons_is_unchanged(s in "[^:\\\\]*") {
            prop_assert_eq!(parse(&s, &DOLLARS).render(&DOLLARS), s.clone());
        }

        #[test]
        fn names_inside_string_literals_are_kept(name in "[a-z_][a-z0-9_]{0,8}") {
            let sql = format!("SELECT ':{name}', :{name}");
            let p = parse(&sql, &DOLLARS);
            prop_assert_eq!(&p.names, &vec![name.clone()]);
            prop_assert_eq!(p.render(&DOLLARS), format!("SELECT ':{name}', $1"));
        }
    }
}
