//! The `schema_version` history table (the original design's columns) and
//! the server-side lock that makes concurrent runs apply each file once.
//! The only per-backend SQL of the migration runner lives here.

use crate::backend::{Connection, Statement};
use crate::error::Result;
use crate::sql::{self, Dialect};
use crate::value::{Rows, Value};

#[derive(Debug, Clone)]
pub struct HistoryTable {
    pub schema: Option<String>,
    pub name: String,
    pub dialect: Dialect,
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

fn quote(dialect: Dialect, ident: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("\"{ident}\""),
        Dialect::SqlServer => format!("[{ident}]"),
    }
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
        match &self.schema {
            Some(schema) => format!(
                "{}.{}",
                quote(self.dialect, schema),
                quote(self.dialect, &self.name)
            ),
            None => quote(self.dialect, &self.name),
        }
    }

    /// The name as the catalog functions take it (unquoted identifiers).
    fn catalog_name(&self) -> String {
        match (&self.schema, self.dialect) {
            (Some(s), _) => format!("{s}.{}", self.name),
            (None, Dialect::Postgres) => self.name.clone(),
            (None, Dialect::SqlServer) => format!("dbo.{}", self.name),
        }
    }

    /// A lock key shared by every process migrating this database.
    fn lock_name(&self) -> String {
        format!("dbflow.migrations.{}", self.catalog_name())
    }

    /// Whether the table exists, without creating anything.
    pub async fn exists(&self, conn: &mut Connection) -> Result<bool> {
        let text = match self.dialect {
            Dialect::Postgres => "SELECT to_regclass(:name) IS NOT NULL AS e",
            Dialect::SqlServer => {
                "SELECT CAST(CASE WHEN OBJECT_ID(:name, 'U') IS NULL THEN 0 ELSE 1 END AS bit) AS e"
            }
        };
        let rows = query(conn, text, vec![Value::Text(self.catalog_name())]).await?;
        Ok(matches!(rows.values.first(), Some(Value::Bool(true))))
    }

    pub async fn create(&self, conn: &mut Connection) -> Result<()> {
        if self.exists(conn).await? {
            return Ok(());
        }
        let t = self.qualified();
        let ddl = match self.dialect {
            Dialect::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {t} (
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
            ),
            Dialect::SqlServer => format!(
                "IF OBJECT_ID(N'{}', N'U') IS NULL CREATE TABLE {t} (
                    installed_rank int NOT NULL PRIMARY KEY,
                    version nvarchar(50),
                    description nvarchar(200) NOT NULL,
                    type nvarchar(20) NOT NULL,
                    script nvarchar(1000) NOT NULL,
                    checksum int,
                    installed_by nvarchar(100) NOT NULL,
                    installed_on datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
                    execution_time int NOT NULL,
                    success bit NOT NULL)",
                self.catalog_name()
            ),
        };
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
                Value::Text(row.version.clone()),
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
        match self.dialect {
            Dialect::Postgres => {
                query(
                    conn,
                    "SELECT pg_advisory_lock(hashtextextended(:name, 0))",
                    vec![Value::Text(self.lock_name())],
                )
                .await?;
            }
            Dialect::SqlServer => {
                let rows = query(
                    conn,
                    "DECLARE @r int; EXEC @r = sp_getapplock @Resource = :name, @LockMode = 'Exclusive', \
                     @LockOwner = 'Session', @LockTimeout = -1; SELECT @r AS r",
                    vec![Value::Text(self.lock_name())],
                )
                .await?;
                if !matches!(rows.values.first(), Some(Value::Int(r)) if *r >= 0) {
                    return Err(crate::migrate::files::migration_error(
                        "could not take the migration lock (sp_getapplock refused)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The same lock held until the current transaction ends (PostgreSQL;
    /// for PgBouncer's transaction pooling, where sessions are not ours).
    pub async fn lock_for_transaction(&self, conn: &mut Connection) -> Result<()> {
        query(
            conn,
            "SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))",
            vec![Value::Text(self.lock_name())],
        )
        .await?;
        Ok(())
    }

    pub async fn unlock(&self, conn: &mut Connection) -> Result<()> {
        let text = match self.dialect {
            Dialect::Postgres => "SELECT pg_advisory_unlock(hashtextextended(:name, 0))",
            Dialect::SqlServer => {
                "EXEC sp_releaseapplock @Resource = :name, @LockOwner = 'Session'"
            }
        };
        query(conn, text, vec![Value::Text(self.lock_name())]).await?;
        Ok(())
    }
}
