//! What a statement does, in OpenTelemetry's words: its operation
//! (`db.operation.name`), the one table it names (`db.collection.name`) and
//! a low-cardinality summary (`db.query.summary`: operations and tables in
//! order, `SELECT orders customers`). Read from the SQL text by a small
//! tokenizer that skips literals, comments and quoted bodies, so a value
//! written into the text never reaches a span.

/// The words that start an operation, and how many words name it
/// (`CREATE TABLE`, `MERGE INTO` is `MERGE`).
const OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "CALL",
    "EXEC",
    "EXECUTE",
    "COPY",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "WITH",
    "VALUES",
    "SET",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "GRANT",
    "REVOKE",
    "DECLARE",
    "SHOW",
    "VACUUM",
    "ANALYZE",
    "EXPLAIN",
    "LOCK",
    "SAVEPOINT",
];

/// Words after which a table's name comes.
const TARGET_BEFORE: &[&str] = &["FROM", "JOIN", "INTO", "UPDATE", "TABLE", "USING", "MERGE"];

/// Object words of DDL: `CREATE TABLE`, `DROP INDEX`.
const OBJECTS: &[&str] = &[
    "TABLE",
    "INDEX",
    "VIEW",
    "SCHEMA",
    "SEQUENCE",
    "FUNCTION",
    "PROCEDURE",
    "PROC",
    "TRIGGER",
    "TYPE",
    "DATABASE",
    "EXTENSION",
    "MATERIALIZED",
];

const MAX_SUMMARY: usize = 255;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The first operation (`SELECT`, `INSERT`, `CREATE TABLE`).
    pub operation: Option<String>,
    /// The table, when the statement names exactly one.
    pub collection: Option<String>,
    /// Operations and tables in order (`INSERT archive SELECT orders`).
    pub text: Option<String>,
    /// The procedure a `CALL` / `EXEC` names.
    pub procedure: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// A quoted identifier, unquoted.
    Quoted(String),
    Punct(char),
}

/// Tokens of `sql`; literals, numbers, placeholders and comments are dropped.
fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let until = |from: usize, end: &[char]| -> usize {
        let mut j = from;
        while j < chars.len() && !chars[j..].starts_with(end) {
            j += 1;
        }
        (j + end.len()).min(chars.len())
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '-' if chars.get(i + 1) == Some(&'-') => i = until(i, &['\n']),
            '/' if chars.get(i + 1) == Some(&'*') => i = until(i + 2, &['*', '/']),
            '\'' => {
                // '' inside a literal is a quote, so scanning on finds the end.
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            '"' | '[' | '`' => {
                let close = if c == '[' { ']' } else { c };
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == close)
                    .map_or(chars.len(), |p| i + 1 + p);
                out.push(Token::Quoted(chars[i + 1..end].iter().collect()));
                i = end + 1;
            }
            '$' => {
                // $1 is a placeholder; $$ or $tag$ opens a body closed by the same tag.
                let mut e = i + 1;
                while e < chars.len() && (chars[e].is_alphanumeric() || chars[e] == '_') {
                    e += 1;
                }
                let placeholder = e > i + 1 && chars[i + 1..e].iter().all(char::is_ascii_digit);
                if !placeholder && chars.get(e) == Some(&'$') {
                    let tag: Vec<char> = chars[i..=e].to_vec();
                    i = until(e + 1, &tag);
                } else {
                    i = e;
                }
            }
            _ if c.is_alphabetic() || c == '_' || c == '#' || c == '@' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '#' | '@' | '$'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if !word.starts_with('@') {
                    out.push(Token::Word(word));
                }
            }
            ':' if chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphabetic() || *n == '_') =>
            {
                // A :name placeholder.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            _ if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            '.' | '(' | ')' | ';' | ',' => {
                out.push(Token::Punct(c));
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn upper(token: Option<&Token>) -> Option<String> {
    match token {
        Some(Token::Word(w)) => Some(w.to_ascii_uppercase()),
        _ => None,
    }
}

/// A possibly qualified name starting at `i`: (`schema.table`, tokens used).
fn name_at(tokens: &[Token], mut i: usize) -> Option<(String, usize)> {
    let start = i;
    let mut name = String::new();
    loop {
        match tokens.get(i) {
            Some(Token::Word(w)) | Some(Token::Quoted(w)) => name.push_str(w),
            _ => return None,
        }
        i += 1;
        if tokens.get(i) == Some(&Token::Punct('.')) {
            name.push('.');
            i += 1;
        } else {
            return Some((name, i - start));
        }
    }
}

pub fn summarize(sql: &str) -> Summary {
    let tokens = tokens(sql);
    let mut summary = Summary::default();
    let mut parts: Vec<String> = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    let mut depth_start = true;
    let mut i = 0;
    while i < tokens.len() {
        let word = upper(tokens.get(i));
        let Some(word) = word else {
            depth_start = matches!(tokens[i], Token::Punct('(') | Token::Punct(';'));
            i += 1;
            continue;
        };
        let at_start = depth_start || i == 0;
        depth_start = false;
        if at_start && OPERATIONS.contains(&word.as_str()) || word == "SELECT" {
            let mut operation = word.clone();
            if matches!(word.as_str(), "CREATE" | "ALTER" | "DROP") {
                // CREATE [OR REPLACE] [UNIQUE] TABLE: the object word names it.
                let object = tokens[i + 1..]
                    .iter()
                    .take(4)
                    .filter_map(|t| upper(Some(t)))
                    .find(|w| OBJECTS.contains(&w.as_str()));
                if let Some(object) = object {
                    operation = format!("{word} {object}");
                }
            }
            if matches!(word.as_str(), "CALL" | "EXEC" | "EXECUTE") {
                if let Some((name, used)) = name_at(&tokens, i + 1) {
                    summary.procedure.get_or_insert(name.clone());
                    parts.push(format!("{operation} {name}"));
                    summary.operation.get_or_insert(operation);
                    i += 1 + used;
                    continue;
                }
            }
            if operation != "WITH" {
                summary.operation.get_or_insert(operation.clone());
                parts.push(operation);
            }
            if !matches!(word.as_str(), "UPDATE" | "MERGE") {
                i += 1;
                continue;
            }
        }
        if TARGET_BEFORE.contains(&word.as_str()) {
            let mut j = i + 1;
            // Words between the keyword and the name: INTO, ONLY, IF [NOT] EXISTS.
            while let Some(w) = upper(tokens.get(j)) {
                if matches!(
                    w.as_str(),
                    "INTO" | "ONLY" | "IF" | "NOT" | "EXISTS" | "TABLE"
                ) {
                    j += 1;
                } else {
                    break;
                }
            }
            if let Some((name, used)) = name_at(&tokens, j) {
                let keyword = upper(Some(&tokens[j]));
                let is_keyword = keyword.as_deref().is_some_and(|k| {
                    OPERATIONS.contains(&k) && matches!(tokens[j], Token::Word(_))
                });
                if !is_keyword {
                    if !tables.contains(&name) {
                        tables.push(name.clone());
                    }
                    parts.push(name);
                    i = j + used;
                    continue;
                }
            }
        }
        i += 1;
    }
    if tables.len() == 1 {
        summary.collection = tables.pop();
    }
    if !parts.is_empty() {
        let mut text = String::new();
        for part in parts {
            if text.len() + part.len() + 1 > MAX_SUMMARY {
                break;
            }
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&part);
        }
        summary.text = Some(text);
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sql: &str) -> (Option<String>, Option<String>, Option<String>) {
        let s = summarize(sql);
        (s.operation, s.collection, s.text)
    }

    fn some(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn common_statements() {
        assert_eq!(
            s("SELECT id, name FROM public.users WHERE id = :id"),
            (
                some("SELECT"),
                some("public.users"),
                some("SELECT public.users")
            )
        );
        assert_eq!(
            s("insert into orders (a, b) values (:a, 'x')"),
            (some("INSERT"), some("orders"), some("INSERT orders"))
        );
        assert_eq!(
            s("UPDATE [dbo].[Orders] SET x = 1"),
            (
                some("UPDATE"),
                some("dbo.Orders"),
                some("UPDATE dbo.Orders")
            )
        );
        assert_eq!(
            s("DELETE FROM \"Odd Name\" WHERE y = $1"),
            (some("DELETE"), some("Odd Name"), some("DELETE Odd Name"))
        );
        assert_eq!(s("SELECT 1"), (some("SELECT"), None, some("SELECT")));
    }

    #[test]
    fn several_tables_have_no_collection() {
        let got = s("SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id");
        assert_eq!(got, (some("SELECT"), None, some("SELECT orders customers")));
        let got = s("INSERT INTO archive SELECT * FROM orders WHERE done");
        assert_eq!(
            got,
            (some("INSERT"), None, some("INSERT archive SELECT orders"))
        );
        let got = s("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent");
        assert_eq!(
            got,
            (some("SELECT"), None, some("SELECT orders SELECT recent"))
        );
    }

    #[test]
    fn literals_and_comments_never_reach_the_summary() {
        let got = summarize("SELECT 'FROM secret' AS a /* FROM hidden */ -- FROM x\n FROM t");
        assert_eq!(got.text, some("SELECT t"));
        let got = summarize("SELECT $$ FROM inside $$, $tag$ FROM t2 $tag$ FROM real_one");
        assert_eq!(got.text, some("SELECT real_one"));
        let got = summarize("SELECT 'it''s FROM x' FROM t3");
        assert_eq!(got.text, some("SELECT t3"));
    }

    #[test]
    fn procedures_and_ddl() {
        let got = summarize("EXEC dbo.refresh_scores @since = @p1");
        assert_eq!(got.procedure, some("dbo.refresh_scores"));
        assert_eq!(got.text, some("EXEC dbo.refresh_scores"));
        let got = summarize("CALL archive_orders(:days)");
        assert_eq!(
            (got.operation, got.text),
            (some("CALL"), some("CALL archive_orders"))
        );
        let got = summarize("CREATE TABLE IF NOT EXISTS events (id int)");
        assert_eq!(got.operation, some("CREATE TABLE"));
        assert_eq!(got.collection, some("events"));
        let got = summarize("DROP TABLE IF EXISTS t_1");
        assert_eq!(got.text, some("DROP TABLE t_1"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_text(text in "\\PC{0,80}") {
            let _ = summarize(&text);
        }

        #[test]
        fn never_panics_on_sql_like_text(text in "[ A-Za-z_'\"\\[\\]$;:().,*/-]{0,60}") {
            let _ = summarize(&text);
        }
    }

    #[test]
    fn never_panics_on_odd_text() {
        for text in [
            "",
            "'",
            "\"",
            "[",
            "$",
            "$a",
            "/*",
            "--",
            "FROM",
            "SELECT FROM",
            "(((",
            ":x",
        ] {
            let _ = summarize(text);
        }
    }
}
