//! PostgreSQL as configuration and the layers above the seam see it: its
//! names and connection strings, its lexicon and its SQL.

use super::super::{DialectSql, KindInfo};
use crate::config::url::{parse_url, scheme_of};
use crate::config::StringForm;
use crate::error::{Error, Result};
use crate::sql::Lexicon;

pub static KIND: KindInfo = KindInfo {
    name: "postgresql",
    aliases: &["postgres", "pg", "psql"],
    scheme: "postgresql",
    example_url: "postgresql://user:password@host:5432/dbname",
    detect: |conn| {
        let scheme = scheme_of(conn)?;
        matches!(scheme.as_str(), "postgresql" | "postgres").then_some(StringForm::Url)
    },
    parse: |conn, _form, key| parse_url(conn, super::super::Kind(&KIND), key),
    sql: &SQL,
};

/// Dollar-quoted bodies, `E'...'` strings, `$n` placeholders.
pub static LEXICON: Lexicon = Lexicon {
    bracket_identifiers: false,
    dollar_quotes: true,
    escape_strings: true,
    placeholder_prefix: "$",
};

pub(super) fn begin_with_timeout(timeout_ms: Option<u128>) -> String {
    match timeout_ms {
        Some(ms) => format!("BEGIN; SET LOCAL statement_timeout = {ms}"),
        None => "BEGIN".to_owned(),
    }
}

/// PostgreSQL's SQL for the parts written above the seam.
pub static SQL: DialectSql = DialectSql {
    dialect: &LEXICON,
    split_script: |text| crate::sql::split_statements(text, &LEXICON),
    quote: |ident| format!("\"{ident}\""),
    default_schema: None,
    table_exists: "SELECT to_regclass(:name) IS NOT NULL AS e",
    history_ddl: |table, _| {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                installed_rank integer NOT NULL PRIMARY KEY,
                version varchar(50),
                description varchar(200) NOT NULL,
                type varchar(20) NOT NULL,
                script varchar(1000) NOT NULL,
                checksum integer,
                installed_by varchar(100) NOT NULL,
                installed_on timestamp NOT NULL DEFAULT now(),
                execution_time integer NOT NULL,
                success boolean NOT NULL)"
        )
    },
    schema_has_tables: |schema| {
        let schema = schema.map_or_else(|| "current_schema()".to_owned(), |s| format!("'{s}'"));
        format!(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = {schema}) AS e"
        )
    },
    lock: "SELECT pg_advisory_lock(hashtextextended(:name, 0))",
    lock_for_transaction: Some("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
    unlock: "SELECT pg_advisory_unlock(hashtextextended(:name, 0))",
    create_database: |name| vec![format!("CREATE DATABASE {name}")],
    drop_database: |name| vec![format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")],
    empty_tables: |tables| {
        vec![format!(
            "TRUNCATE {} RESTART IDENTITY CASCADE",
            tables.join(", ")
        )]
    },
    timeout_sqlstate: Some("57014"),
    session_role: Some(
        "SELECT current_setting('transaction_read_only') = 'on', pg_is_in_recovery()",
    ),
};

/// A plain identifier, quoted (`"name"`); anything else is refused rather
/// than spliced into SQL.
pub fn quote_ident(name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    {
        return Err(Error::parameter(format!(
            "'{name}' is not a plain table or column name (letters, digits, '_')"
        )));
    }
    Ok(format!("\"{name}\""))
}

/// `schema.table` or `table`, each part quoted.
pub fn quote_qualified(name: &str) -> Result<String> {
    Ok(name
        .split('.')
        .map(quote_ident)
        .collect::<Result<Vec<_>>>()?
        .join("."))
}
