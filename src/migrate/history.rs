//! The `schema_version` history table (the original design's columns) and
//! the server-side lock that makes concurrent runs apply each file once.
//! The SQL of each backend comes from its table behind the seam
//! ([`DialectSql`]); nothing here asks which database it talks to.

use crate::backend::{Connection, DialectSql, Statement};
use crate::error::Result;
use crate::sql;
use crate::value::{Rows, Value};

#[derive(Clone)]
pub struct HistoryTable {
    pub schema: Option<String>,
    pub name: String,
    pub sql: &'static DialectSql,
}

impl std::fmt::Debug for HistoryTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HistoryTable({})", self.qualified())
    }
}

/// One row of the history table.
#[derive(Debug, Clone)]
pub struct Applied {
    pub installed_rank: i64,
    pub version: String,
    pub description: String,
    pub kind: String,
    pub script: String,
    pub checksum: Option<i32>,
    pub installed_by: String,
    pub installed_on: Value,
    pub execution_time_ms: i64,
    pub success: bool,
}

async fn query(conn: &mut Connection, text: &str, values: Vec<Value>) -> Result<Rows> {
    let parsed = sql::parse(text, conn.dialect());
    conn.query(&Statement {
        sql: parsed,
        values,
    })
    .await
}

impl HistoryTable {
    pub fn qualified(&self) -> String {
        let quote = self.sql.quote;
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.name)),
            None => quote(&self.name),
        }
    }

    /// The name as the catalog functions take it (unquoted identifiers).
    fn catalog_name(&self) -> String {
        match (&self.schema, self.sql.default_schema) {
            (Some(s), _) => format!("{s}.{}", self.name),
            (None, Some(default)) => format!("{default}.{}", self.name),
            (None, None) => self.name.clone(),
        }
    }

    /// A lock key shared by every process migrating this database.
    fn lock_name(&self) -> String {
        format!("dbflow.migrations.{}", self.catalog_name())
    }

    /// Whether the table exists, without creating anything.
    pub async fn exists(&self, conn: &mut Connection) -> Result<bool> {
        let text = self.sql.table_exists;
        let rows = query(conn, text, vec![Value::Text(self.catalog_name())]).await?;
        Ok(matches!(rows.values.first(), Some(Value::Bool(true))))
    }

    /// Whether the history's schema holds any table or view (before the
    /// history table exists: baseline-on-migrate's "non-empty schema").
    pub async fn schema_has_tables(&self, conn: &mut Connection) -> Result<bool> {
        let text = (self.sql.schema_has_tables)(self.schema.as_deref());
        let rows = query(conn, &text, Vec::new()).await?;
        Ok(matches!(rows.values.first(), Some(Value::Bool(true))))
    }

    pub async fn create(&self, conn: &mut Connection) -> Result<()> {
        if self.exists(conn).await? {
            return Ok(());
        }
        let ddl = (self.sql.history_ddl)(&self.qualified(), &self.catalog_name());
        conn.script(&ddl).await
    }

    pub async fn read(&self, conn: &mut Connection) -> Result<Vec<Applied>> {
        let rows = query(
            conn,
            &format!(
                "SELECT installed_rank, version, description, type, script, checksum, installed_by, \
                 installed_on, execution_time, success FROM {} ORDER BY installed_rank",
                self.qualified()
            ),
            Vec::new(),
        )
        .await?;
        let text = |v: &Value| match v {
            Value::Text(s) => s.clone(),
            _ => String::new(),
        };
        let int = |v: &Value| match v {
            Value::Int(i) => *i,
            _ => 0,
        };
        Ok(rows
            .rows()
            .map(|r| Applied {
                installed_rank: int(&r[0]),
                version: text(&r[1]),
                description: text(&r[2]),
                kind: text(&r[3]),
                script: text(&r[4]),
                checksum: match &r[5] {
                    Value::Int(i) => i32::try_from(*i).ok(),
                    _ => None,
                },
                installed_by: text(&r[6]),
                installed_on: r[7].clone(),
                execution_time_ms: int(&r[8]),
                success: matches!(r[9], Value::Bool(true)),
            })
            .collect())
    }

    pub async fn insert(&self, conn: &mut Connection, row: &Applied) -> Result<()> {
        query(
            conn,
            &format!(
                "INSERT INTO {} (installed_rank, version, description, type, script, checksum, \
                 installed_by, installed_on, execution_time, success) VALUES (:rank, :version, \
                 :description, :type, :script, :checksum, :by, :on, :ms, :success)",
                self.qualified()
            ),
            vec![
                Value::Int(row.installed_rank),
                // Repeatable migrations have no version.
                if row.version.is_empty() {
                    Value::Null
                } else {
                    Value::Text(row.version.clone())
                },
                Value::Text(row.description.clone()),
                Value::Text(row.kind.clone()),
                Value::Text(row.script.clone()),
                row.checksum.map_or(Value::Null, |c| Value::Int(c as i64)),
                Value::Text(row.installed_by.clone()),
                row.installed_on.clone(),
                Value::Int(row.execution_time_ms),
                Value::Bool(row.success),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn delete(&self, conn: &mut Connection, installed_rank: i64) -> Result<()> {
        query(
            conn,
            &format!(
                "DELETE FROM {} WHERE installed_rank = :rank",
                self.qualified()
            ),
            vec![Value::Int(installed_rank)],
        )
        .await?;
        Ok(())
    }

    pub async fn realign(
        &self,
        conn: &mut Connection,
        rank: i64,
        checksum: i32,
        description: &str,
    ) -> Result<()> {
        query(
            conn,
            &format!(
                "UPDATE {} SET checksum = :checksum, description = :description WHERE installed_rank = :rank",
                self.qualified()
            ),
            vec![Value::Int(checksum as i64), Value::Text(description.to_owned()), Value::Int(rank)],
        )
        .await?;
        Ok(())
    }

    /// Take the database-wide migration lock (session-level, waits).
    pub async fn lock(&self, conn: &mut Connection) -> Result<()> {
        let rows = query(conn, self.sql.lock, vec![Value::Text(self.lock_name())]).await?;
        if matches!(rows.values.first(), Some(Value::Int(r)) if *r < 0) {
            return Err(crate::migrate::files::migration_error(
                "could not take the migration lock (the server refused it)",
            ));
        }
        Ok(())
    }

    /// The same lock held until the current transaction ends (PostgreSQL;
    /// for PgBouncer's transaction pooling, where sessions are not ours).
    pub async fn lock_for_transaction(&self, conn: &mut Connection) -> Result<()> {
        let Some(text) = self.sql.lock_for_transaction else {
            return Err(crate::migrate::files::migration_error(
                "this database has no transaction-scoped migration lock",
            ));
        };
        query(conn, text, vec![Value::Text(self.lock_name())]).await?;
        Ok(())
    }

    pub async fn unlock(&self, conn: &mut Connection) -> Result<()> {
        query(conn, self.sql.unlock, vec![Value::Text(self.lock_name())]).await?;
        Ok(())
    }
}
