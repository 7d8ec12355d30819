//! Single-row INSERTs made multi-row for `execute_many`.

use super::{ParsedSql, Segment};

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
            comment: None,
        }
    }
}
