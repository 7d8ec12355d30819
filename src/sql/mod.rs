//! `:name` placeholders → server placeholders (`$1` / `@P1`).
//!
//! A small tokenizer, not a regex: string literals, quoted identifiers,
//! comments, dollar-quoted bodies (PostgreSQL), `[bracketed]` identifiers
//! (SQL Server) and `::` casts are passed through untouched. A name is
//! recognised as SQLAlchemy's `text()` does: `:` followed by a word, not
//! preceded by a word character or another `:`; `\:` is a literal colon.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    SqlServer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    /// Index into [`ParsedSql::names`].
    Param(usize),
}

/// A statement split into text and parameter references; render it once per
/// placeholder style. Each distinct name is one server parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSql {
    pub segments: Vec<Segment>,
    pub names: Vec<String>,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

pub fn parse(sql: &str, dialect: Dialect) -> ParsedSql {
    let chars: Vec<char> = sql.chars().collect();
    let mut segments = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut text = String::with_capacity(sql.len() + 8);
    let mut i = 0;
    let n = chars.len();
    // Copies chars[i..end] to text and returns end.
    let copy = |text: &mut String, from: usize, to: usize| {
        text.extend(&chars[from..to.min(n)]);
        to.min(n)
    };
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' => {
                // E'..' allows backslash escapes in PostgreSQL.
                let backslash = dialect == Dialect::Postgres
                    && i > 0
                    && matches!(chars[i - 1], 'e' | 'E')
                    && (i < 2 || !is_word_char(chars[i - 2]));
                i = copy(&mut text, i, skip_quoted(&chars, i, '\'', backslash));
            }
            '"' => i = copy(&mut text, i, skip_quoted(&chars, i, '"', false)),
            '[' if dialect == Dialect::SqlServer => {
                i = copy(&mut text, i, skip_quoted(&chars, i, ']', false))
            }
            '-' if next == Some('-') => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(n, |p| i + p);
                i = copy(&mut text, i, end);
            }
            '/' if next == Some('*') => i = copy(&mut text, i, skip_block_comment(&chars, i)),
            '$' if dialect == Dialect::Postgres && (i == 0 || !is_word_char(chars[i - 1])) => {
                match dollar_tag_end(&chars, i) {
                    Some(tag_end) => {
                        let tag: Vec<char> = chars[i..tag_end].to_vec();
                        let body_end = find_seq(&chars, tag_end, &tag).map_or(n, |p| p + tag.len());
                        i = copy(&mut text, i, body_end);
                    }
                    None => {
                        text.push(c);
                        i += 1;
                    }
                }
            }
            '\\' if next == Some(':') => {
                text.push(':');
                i += 2;
            }
            ':' if next == Some(':') => {
                text.push_str("::");
                i += 2;
            }
            ':' if next.is_some_and(is_name_start) && (i == 0 || !is_word_char(chars[i - 1])) => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| !is_word_char(c))
                    .map_or(n, |p| i + 1 + p);
                let name: String = chars[i + 1..end].iter().collect();
                let index = match names.iter().position(|x| *x == name) {
                    Some(idx) => idx,
                    None => {
                        names.push(name);
                        names.len() - 1
                    }
                };
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Param(index));
                i = end;
            }
            _ => {
                text.push(c);
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    ParsedSql { segments, names }
}

/// End (exclusive) of a quoted run starting at `start`; a doubled closing
/// quote is an escaped quote. Unterminated runs extend to the end.
fn skip_quoted(chars: &[char], start: usize, close: char, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if backslash && c == '\\' {
            i += 2;
            continue;
        }
        if c == close {
            if chars.get(i + 1) == Some(&close) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// Block comments nest in both PostgreSQL and T-SQL.
fn skip_block_comment(chars: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < chars.len() {
        if chars[i] == '/' && chars[i + 1] == '*' {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars[i + 1] == '/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// If a dollar-quote tag (`$$` or `$tag$`) starts at `start`, its end.
fn dollar_tag_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if chars.get(i) == Some(&'$') {
        return Some(i + 1);
    }
    if !chars.get(i).copied().is_some_and(is_name_start) {
        return None;
    }
    while let Some(&c) = chars.get(i) {
        if c == '$' {
            return Some(i + 1);
        }
        if !is_word_char(c) {
            return None;
        }
        i += 1;
    }
    None
}

fn find_seq(chars: &[char], from: usize, seq: &[char]) -> Option<usize> {
    if seq.is_empty() || from >= chars.len() {
        return None;
    }
    chars[from..]
        .windows(seq.len())
        .position(|w| w == seq)
        .map(|p| from + p)
}

/// Split a script into statements at top-level `;`, leaving literals,
/// quoted identifiers, comments and dollar-quoted bodies whole. Each
/// statement comes with the 1-based line of its first token (leading
/// comments and blank lines are not its start). Empty statements are dropped.
pub fn split_statements(text: &str, dialect: Dialect) -> Vec<(usize, String)> {
    let chars: Vec<char> = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .chars()
        .collect();
    let n = chars.len();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start_line: Option<usize> = None;
    let mut line = 1;
    let mut i = 0;
    let count_lines = |from: usize, to: usize| {
        chars[from..to.min(n)]
            .iter()
            .filter(|c| **c == '\n')
            .count()
    };
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let end = match c {
            '\'' => Some(skip_quoted(
                &chars,
                i,
                '\'',
                dialect == Dialect::Postgres && i > 0 && matches!(chars[i - 1], 'e' | 'E'),
            )),
            '"' => Some(skip_quoted(&chars, i, '"', false)),
            '[' if dialect == Dialect::SqlServer => Some(skip_quoted(&chars, i, ']', false)),
            '$' if dialect == Dialect::Postgres && (i == 0 || !is_word_char(chars[i - 1])) => {
                dollar_tag_end(&chars, i).map(|tag_end| {
                    let tag: Vec<char> = chars[i..tag_end].to_vec();
                    find_seq(&chars, tag_end, &tag).map_or(n, |p| p + tag.len())
                })
            }
            _ => None,
        };
        let comment_end = match (c, next) {
            ('-', Some('-')) => Some(
                chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(n, |p| i + p),
            ),
            ('/', Some('*')) => Some(skip_block_comment(&chars, i)),
            _ => None,
        };
        if let Some(e) = comment_end {
            current.extend(&chars[i..e.min(n)]);
            line += count_lines(i, e);
            i = e;
            continue;
        }
        if c == ';' {
            if start_line.is_some() && !current.trim().is_empty() {
                out.push((
                    start_line.unwrap_or(line),
                    std::mem::take(&mut current).trim().to_owned(),
                ));
            }
            current.clear();
            start_line = None;
            i += 1;
            continue;
        }
        if !c.is_whitespace() && start_line.is_none() {
            start_line = Some(line);
        }
        let e = end.unwrap_or(i + 1);
        current.extend(&chars[i..e.min(n)]);
        line += count_lines(i, e);
        i = e;
    }
    if let Some(start) = start_line {
        if !current.trim().is_empty() {
            out.push((start, current.trim().to_owned()));
        }
    }
    out
}

/// An `INSERT ... VALUES (<one row>) [ON CONFLICT ...] [RETURNING ...]`
/// split around its row, so many parameter sets can be sent as one
/// multi-row `VALUES` statement (SQLAlchemy's "insertmanyvalues"): still
/// bound parameters, one round trip per chunk instead of one per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuesTemplate {
    prefix: Vec<Segment>,
    row: Vec<Segment>,
    suffix: Vec<Segment>,
}

fn keyword_at(text: &str, at: usize, word: &str) -> bool {
    let bytes = text.as_bytes();
    text.get(at..at + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
        && (at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_'))
        && bytes
            .get(at + word.len())
            .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
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

    /// The multi-row form of this statement, when it is a single-row INSERT
    /// whose row holds every parameter and nothing outside it depends on
    /// the row (no parameters in the prefix or suffix).
    pub fn values_template(&self) -> Option<ValuesTemplate> {
        let first = match self.segments.first()? {
            Segment::Text(t) => t.trim_start(),
            Segment::Param(_) => return None,
        };
        if !keyword_at(first, 0, "INSERT") {
            return None;
        }
        // Locate "VALUES (" in a text segment, then the matching ")".
        let mut prefix = Vec::new();
        let mut row = Vec::new();
        let mut suffix = Vec::new();
        let mut state = 0; // 0: before VALUES, 1: inside the row, 2: after
        let mut depth = 0i32;
        for segment in &self.segments {
            match (state, segment) {
                (0, Segment::Param(_)) | (2, Segment::Param(_)) => return None,
                (1, Segment::Param(_)) => row.push(segment.clone()),
                (_, Segment::Text(text)) => {
                    let mut start = 0;
                    let mut i = 0;
                    let bytes = text.as_bytes();
                    while i < bytes.len() {
                        match state {
                            0 => {
                                if keyword_at(text, i, "VALUES") {
                                    let mut j = i + 6;
                                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                                        j += 1;
                                    }
                                    if bytes.get(j) != Some(&b'(') {
                                        return None;
                                    }
                                    prefix.push(Segment::Text(text[start..=j].to_owned()));
                                    state = 1;
                                    depth = 1;
                                    i = j + 1;
                                    start = i;
                                    continue;
                                }
                            }
                            1 => match bytes[i] {
                                b'(' => depth += 1,
                                b')' => {
                                    depth -= 1;
                                    if depth == 0 {
                                        if i > start {
                                            row.push(Segment::Text(text[start..i].to_owned()));
                                        }
                                        state = 2;
                                        start = i;
                                    }
                                }
                                // Quotes inside the row would need the tokenizer's rules.
                                b'\'' | b'"' | b'$' | b';' => return None,
                                _ => {}
                            },
                            _ => {
                                if bytes[i] == b',' && text[start..i].trim() == ")" {
                                    return None; // already a multi-row VALUES
                                }
                                if bytes[i] == b';' {
                                    return None;
                                }
                            }
                        }
                        i += 1;
                    }
                    match state {
                        0 => prefix.push(segment.clone()),
                        1 if start < text.len() => {
                            row.push(Segment::Text(text[start..].to_owned()))
                        }
                        2 => suffix.push(Segment::Text(text[start..].to_owned())),
                        _ => {}
                    }
                    if state == 2 && !matches!(suffix.last(), Some(Segment::Text(_))) {
                        suffix.push(Segment::Text(text[start..].to_owned()));
                    }
                }
                _ => return None,
            }
        }
        if state != 2 || row.iter().all(|s| matches!(s, Segment::Text(_))) {
            return None;
        }
        // The suffix must start with the row's closing ")".
        match suffix.first() {
            Some(Segment::Text(t)) if t.starts_with(')') => {}
            _ => return None,
        }
        let mut tail = suffix.clone();
        if let Some(Segment::Text(t)) = tail.first_mut() {
            *t = t[1..].to_owned();
        }
        // A trailing row constructor list ("), (") means VALUES already has
        // many rows; DO UPDATE could meet the same key twice in one statement,
        // which PostgreSQL refuses where row-by-row execution would not.
        if let Some(Segment::Text(t)) = tail.first() {
            if t.trim_start().starts_with(',') || t.to_ascii_uppercase().contains("DO UPDATE") {
                return None;
            }
        }
        Some(ValuesTemplate {
            prefix,
            row,
            suffix: tail,
        })
    }
}

impl ValuesTemplate {
    /// The statement for `rows` rows: parameter `k` of row `r` becomes
    /// parameter `r * names.len() + k` (names repeat, for messages).
    pub fn expand(&self, rows: usize, names: &[String]) -> ParsedSql {
        let per_row = names.len();
        let mut segments = self.prefix.clone();
        for r in 0..rows {
            if r > 0 {
                segments.push(Segment::Text("), (".to_owned()));
            }
            for s in &self.row {
                segments.push(match s {
                    Segment::Param(i) => Segment::Param(r * per_row + i),
                    text => text.clone(),
                });
            }
        }
        segments.push(Segment::Text(")".to_owned()));
        segments.extend(self.suffix.iter().cloned());
        ParsedSql {
            segments,
            names: (0..rows).flat_map(|_| names.iter().cloned()).collect(),
        }
    }
}

impl ParsedSql {
    /// Render with `$n` (PostgreSQL) or `@Pn` (SQL Server).
    pub fn render(&self, dialect: Dialect) -> String {
        self.render_with(|i| match dialect {
            Dialect::Postgres => format!("${}", i + 1),
            Dialect::SqlServer => format!("@P{}", i + 1),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyformat_placeholders_are_found() {
        let sql = parse(
            "SELECT * FROM t WHERE id = %(customer_id)s",
            Dialect::Postgres,
        );
        assert_eq!(sql.pyformat_name().as_deref(), Some("customer_id"));
        assert_eq!(
            parse("SELECT 100 % 7", Dialect::Postgres).pyformat_name(),
            None
        );
        assert_eq!(parse("SELECT :x", Dialect::Postgres).pyformat_name(), None);
    }
    use proptest::prelude::*;

    fn pg(sql: &str) -> (String, Vec<String>) {
        let p = parse(sql, Dialect::Postgres);
        (p.render(Dialect::Postgres), p.names)
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
        let p = parse("SELECT [a:b], N':no', :yes FROM [t]", Dialect::SqlServer);
        assert_eq!(p.names, ["yes"]);
        assert_eq!(
            p.render(Dialect::SqlServer),
            "SELECT [a:b], N':no', @P1 FROM [t]"
        );
    }

    #[test]
    fn missing_key_names_it() {
        let p = parse("SELECT :a, :b", Dialect::Postgres);
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
            Dialect::Postgres,
        );
        let t = p.values_template().expect("a single-row insert");
        let two = t.expand(2, &p.names);
        assert_eq!(
            two.render(Dialect::Postgres),
            "INSERT INTO t (a, b) VALUES ($1, lower($2)), ($3, lower($4)) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(two.names, ["a", "b", "a", "b"]);
        assert_eq!(
            t.expand(1, &p.names).render(Dialect::SqlServer),
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
                parse(not_batchable, Dialect::Postgres)
                    .values_template()
                    .is_none(),
                "{not_batchable}"
            );
        }
    }

    #[test]
    fn statements_split_with_their_start_lines() {
        let script = "-- header\nCREATE TABLE a (t text DEFAULT ';');\n\n/* ; */\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nINSERT INTO a VALUES ('x;y'); -- trailing ;\n  SELECT 1";
        let parts = split_statements(script, Dialect::Postgres);
        let lines: Vec<usize> = parts.iter().map(|p| p.0).collect();
        assert_eq!(lines, [2, 5, 6, 7], "{parts:?}");
        assert!(parts[1].1.contains("SELECT 1; $$"));
        assert_eq!(
            split_statements(";;  \n-- only a comment\n", Dialect::Postgres),
            vec![]
        );
    }

    proptest! {
        #[test]
        fn splitting_never_panics(s in "\\PC*") {
            let _ = split_statements(&s, Dialect::Postgres);
            let _ = split_statements(&s, Dialect::SqlServer);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let p = parse(&s, Dialect::Postgres);
            let _ = p.render(Dialect::Postgres);
            let q = parse(&s, Dialect::SqlServer);
            let _ = q.render(Dialect::SqlServer);
        }

        #[test]
        fn never_panics_on_sql_like_soup(s in "[:'\"$\\\\/*\\-\\[\\]a-z_ \n]{0,40}") {
            let p = parse(&s, Dialect::Postgres);
            prop_assert!(p.names.iter().all(|n| !n.is_empty()));
            let _ = parse(&s, Dialect::SqlServer).render(Dialect::SqlServer);
        }

        #[test]
        fn text_without_colons_is_unchanged(s in "[^:\\\\]*") {
            prop_assert_eq!(parse(&s, Dialect::Postgres).render(Dialect::Postgres), s.clone());
        }

        #[test]
        fn names_inside_string_literals_are_kept(name in "[a-z_][a-z0-9_]{0,8}") {
            let sql = format!("SELECT ':{name}', :{name}");
            let p = parse(&sql, Dialect::Postgres);
            prop_assert_eq!(&p.names, &vec![name.clone()]);
            prop_assert_eq!(p.render(Dialect::Postgres), format!("SELECT ':{name}', $1"));
        }
    }
}
