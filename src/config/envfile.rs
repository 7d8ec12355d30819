//! `.env` file parsing and `${VAR}` interpolation (pure logic, no I/O here
//! beyond what the caller passes in).

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Parse dotenv text: `KEY=VALUE`, optional `export `, `#` comments, blank
/// lines, single- or double-quoted values, inline ` #` comments after
/// unquoted values. A malformed line is an error naming the file and line.
pub fn parse(text: &str, origin: &str) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::config(format!(
                "{origin}:{}: expected KEY=VALUE, found a line without '='",
                index + 1
            )));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::config(format!(
                "{origin}:{}: '{key}' is not a valid key (letters, digits and '_' only)",
                index + 1
            )));
        }
        values.insert(key.to_owned(), unquote(value.trim()));
    }
    Ok(values)
}

fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) {
            if let Some(end) = value[1..].find(quote) {
                let inner = &value[1..1 + end];
                return if quote == '"' {
                    inner.replace("\\n", "\n").replace("\\\"", "\"")
                } else {
                    inner.to_owned()
                };
            }
        }
    }
    match value.find(" #") {
        Some(pos) => value[..pos].trim_end().to_owned(),
        None => value.to_owned(),
    }
}

/// Fill `${VAR}` and `${VAR:-default}` from `lookup`. An unset variable
/// without a default is an error naming the variable and the key using it.
pub fn interpolate(
    value: &str,
    key: &str,
    lookup: &dyn Fn(&str) -> Result<Option<String>>,
    searched: &str,
) -> Result<String> {
    if !value.contains("${") {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(Error::config(format!(
                "{key}: unterminated '${{' in value; write ${{VARIABLE}}"
            )));
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match (lookup(name)?, default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                let files = if searched.is_empty() {
                    String::new()
                } else {
                    format!(" nor in the env file ({searched})")
                };
                return Err(Error::config(format!(
                    "{key} refers to ${{{name}}}, but {name} is set neither in the process \
                     environment{files}; export {name}, define it in the env file, or give a \
                     default with ${{{name}:-value}}"
                )));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable names `${NAME}` / `${NAME:-default}` in a value, in order.
pub fn referenced_names(value: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let expr = &after[..end];
        let name = expr.split_once(":-").map_or(expr, |(n, _)| n);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_export_and_bom() {
        let text = "\u{feff}# c\n\nexport A=1\nB = \"two words\" \nC='x # y'\nD=v # note\nE=\n";
        let v = parse(text, ".env.test").unwrap();
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two words");
        assert_eq!(v["C"], "x # y");
        assert_eq!(v["D"], "v");
        assert_eq!(v["E"], "");
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let err = parse("A=1\nnot a pair\n", "envs/.env.dev").unwrap_err();
        assert!(err.message.contains("envs/.env.dev:2"), "{}", err.message);
    }

    #[test]
    fn interpolation_fills_and_defaults() {
        let env = |n: &str| Ok((n == "PW").then(|| "pa:ss".to_owned()));
        assert_eq!(
            interpolate("u:${PW}@h", "K", &env, "").unwrap(),
            "u:pa:ss@h"
        );
        assert_eq!(interpolate("${NOPE:-d}", "K", &env, "").unwrap(), "d");
        let err = interpolate("${NOPE}", "X_KEY", &env, "envs/.env.test").unwrap_err();
        assert!(err.message.contains("NOPE") && err.message.contains("X_KEY"));
        assert!(err.message.contains("envs/.env.test"), "{}", err.message);
        assert_eq!(referenced_names("a${X}b${Y:-1}${X}"), ["X", "Y"]);
    }
}
