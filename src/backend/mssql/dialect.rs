//! SQL Server as configuration and the layers above the seam see it: its
//! names and connection strings, its lexicon and its T-SQL.

use super::super::{DialectSql, KindInfo};
use crate::config::url::scheme_of;
use crate::config::StringForm;
use crate::error::{Error, Result};
use crate::sql::Lexicon;

pub static KIND: KindInfo = KindInfo {
    name: "sqlserver",
    aliases: &["mssql", "sql_server", "sql server", "tsql"],
    scheme: "mssql",
    example_url: "mssql://user:password@host:1433/dbname",
    detect,
    parse: super::config::parse,
    sql: &SQL,
};

/// `[bracketed]` identifiers, `@Pn` placeholders.
pub static LEXICON: Lexicon = Lexicon {
    bracket_identifiers: true,
    dollar_quotes: false,
    escape_strings: false,
    placeholder_prefix: "@P",
};

/// SQLAlchemy URLs (`mssql://`, `mssql+pyodbc://`, ...), JDBC
/// (`sqlserver://host;...`) and ADO.NET / ODBC (`Server=...;...`).
fn detect(conn: &str) -> Option<StringForm> {
    if let Some(scheme) = scheme_of(conn) {
        let lower = conn.trim().to_ascii_lowercase();
        let lower = lower.strip_prefix("jdbc:").unwrap_or(&lower);
        return match scheme.as_str() {
            "mssql" | "sqlserver" if lower.starts_with("sqlserver://") && lower.contains(';') => {
                Some(StringForm::Jdbc)
            }
            "mssql" | "sqlserver" => Some(StringForm::Url),
            _ => None,
        };
    }
    let lower = conn.trim().to_ascii_lowercase();
    let has = |k: &str| {
        lower
            .split(';')
            .any(|part| part.trim_start().starts_with(k) && part.contains('='))
    };
    ((has("server") || has("data source") || has("addr")) && lower.contains(';'))
        .then_some(StringForm::AdoNet)
}

/// A table or column name spliced into T-SQL (identifiers cannot be bound):
/// letters, digits, `_` and `.` only; anything else is refused.
pub(super) fn plain_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
    {
        return Err(Error::parameter(format!(
            "'{name}' is not a plain table or column name"
        )));
    }
    Ok(())
}

/// T-SQL for the parts written above the seam.
pub static SQL: DialectSql = DialectSql {
    dialect: &LEXICON,
    split_script: split_go_batches,
    quote: |ident| format!("[{ident}]"),
    default_schema: Some("dbo"),
    table_exists:
        "SELECT CAST(CASE WHEN OBJECT_ID(:name, 'U') IS NULL THEN 0 ELSE 1 END AS bit) AS e",
    history_ddl: |table, catalog| {
        format!(
            "IF OBJECT_ID(N'{catalog}', N'U') IS NULL CREATE TABLE {table} (
                installed_rank int NOT NULL PRIMARY KEY,
                version nvarchar(50),
                description nvarchar(200) NOT NULL,
                type nvarchar(20) NOT NULL,
                script nvarchar(1000) NOT NULL,
                checksum int,
                installed_by nvarchar(100) NOT NULL,
                installed_on datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
                execution_time int NOT NULL,
                success bit NOT NULL)"
        )
    },
    schema_has_tables: |schema| {
        let schema = schema.map_or_else(|| "SCHEMA_NAME()".to_owned(), |s| format!("N'{s}'"));
        format!(
            "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM INFORMATION_SCHEMA.TABLES \
             WHERE TABLE_SCHEMA = {schema}) THEN 1 ELSE 0 END AS bit) AS e"
        )
    },
    lock: "DECLARE @r int; EXEC @r = sp_getapplock @Resource = :name, @LockMode = 'Exclusive', \
           @LockOwner = 'Session', @LockTimeout = -1; SELECT @r AS r",
    lock_for_transaction: None,
    unlock: "EXEC sp_releaseapplock @Resource = :name, @LockOwner = 'Session'",
    create_database: |name| vec![format!("CREATE DATABASE {name}")],
    // Microsoft SQL Server ends the database's other sessions first;
    // Babelfish has no ALTER DATABASE (inside EXEC, so it is never parsed
    // there) and drops a database its sessions have left.
    drop_database: |name| {
        vec![format!(
            "IF DB_ID('{name}') IS NOT NULL BEGIN \
             IF @@VERSION NOT LIKE '%Babelfish%' \
             EXEC('ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE'); \
             DROP DATABASE [{name}]; END"
        )]
    },
    // TRUNCATE refuses tables that foreign keys point at; DELETE does not
    // (identities keep counting, as the T-SQL DELETE leaves them).
    empty_tables: |tables| tables.iter().map(|t| format!("DELETE FROM {t}")).collect(),
    timeout_sqlstate: None,
    session_role: None,
};

/// SQL Server batches: split on lines holding only `GO` (any case).
pub fn split_go_batches(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        if line.trim().eq_ignore_ascii_case("go") {
            if !current.trim().is_empty() {
                chunks.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = index + 2;
            continue;
        }
        if current.trim().is_empty() {
            current.clear();
            start = index + 1;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        chunks.push((start, current));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_batches_keep_their_start_lines() {
        let text = "CREATE TABLE a (id int)\nGO\n\n  go  \nCREATE VIEW v AS\nSELECT 1 AS x\nGO\n";
        let chunks = split_go_batches(text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].0, 1);
        assert_eq!(chunks[1].0, 5);
        assert!(chunks[1].1.starts_with("CREATE VIEW"));
    }
}
