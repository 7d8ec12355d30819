//! The tokenizer: `:name` parsing and script splitting, by a [`Lexicon`].

use super::{Dialect, ParsedSql, Segment};

pub(super) fn is_word_char(c: char) -> bool {
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
                let backslash = dialect.escape_strings
                    && i > 0
                    && matches!(chars[i - 1], 'e' | 'E')
                    && (i < 2 || !is_word_char(chars[i - 2]));
                i = copy(&mut text, i, skip_quoted(&chars, i, '\'', backslash));
            }
            '"' => i = copy(&mut text, i, skip_quoted(&chars, i, '"', false)),
            '[' if dialect.bracket_identifiers => {
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
            '$' if dialect.dollar_quotes && (i == 0 || !is_word_char(chars[i - 1])) => {
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
    ParsedSql {
        segments,
        names,
        comment: None,
    }
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
                dialect.escape_strings && i > 0 && matches!(chars[i - 1], 'e' | 'E'),
            )),
            '"' => Some(skip_quoted(&chars, i, '"', false)),
            '[' if dialect.bracket_identifiers => Some(skip_quoted(&chars, i, ']', false)),
            '$' if dialect.dollar_quotes && (i == 0 || !is_word_char(chars[i - 1])) => {
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
