//! Flyway's baseline: put an existing database under migrations. A
//! BASELINE history row at a version; versions at or below it count as
//! applied and never run.

use super::files::{migration_error, Version};
use super::history::Applied;
use super::Migrator;
use crate::backend::Connection;
use crate::error::Result;
use crate::value::Value;

/// Flyway's default description of the baseline row.
pub const DEFAULT_DESCRIPTION: &str = "<< Flyway Baseline >>";

/// The baseline version the history records, if any.
pub fn baseline_of(history: &[Applied]) -> Option<Version> {
    history
        .iter()
        .filter(|a| a.success && a.kind == "BASELINE")
        .filter_map(|a| Version::parse(&a.version))
        .max()
}

impl Migrator<'_> {
    /// `dbflow baseline`: refused when the history already has rows.
    pub async fn baseline(&self, version: &str, description: &str) -> Result<Applied> {
        let op = "baseline_migrations";
        let version = Version::parse(version).ok_or_else(|| {
            self.fail(
                migration_error(format!(
                    "baseline version '{version}' is not a version (e.g. 1, V3 or 1.1)"
                )),
                op,
            )
        })?;
        self.locked(op, async |conn| {
            self.table.create(conn).await?;
            let history = self.table.read(conn).await?;
            if let Some(first) = history.first() {
                return Err(migration_error(format!(
                    "cannot baseline: the history table {} already has {} row(s) (first: {} {}); \
                     baseline is for a database not yet under migrations",
                    self.table.qualified(),
                    history.len(),
                    first.kind,
                    first.script
                )));
            }
            self.insert_baseline(conn, &version, description, &history)
                .await
        })
        .await
    }

    pub(super) async fn insert_baseline(
        &self,
        conn: &mut Connection,
        version: &Version,
        description: &str,
        history: &[Applied],
    ) -> Result<Applied> {
        let row = Applied {
            installed_rank: Self::next_rank(history),
            version: version.written.clone(),
            description: description.to_owned(),
            kind: "BASELINE".to_owned(),
            script: description.to_owned(),
            checksum: None,
            installed_by: self.installed_by(),
            installed_on: Value::DateTime(chrono::Utc::now().naive_utc()),
            execution_time_ms: 0,
            success: true,
        };
        self.table.insert(conn, &row).await?;
        tracing::info!(database = %self.db.config().name, version = %version.label(), "baselined the database");
        Ok(row)
    }

    /// `<DB>_BASELINE_ON_MIGRATE`: a schema that holds tables but no history
    /// table (the caller checked) is baselined at `<DB>_BASELINE_VERSION`.
    pub(super) async fn baseline_due(&self, conn: &mut Connection) -> Result<Option<Version>> {
        let config = self.db.config();
        if !config.baseline_on_migrate {
            return Ok(None);
        }
        if !self.table.schema_has_tables(conn).await? {
            return Ok(None);
        }
        Ok(Version::parse(&config.baseline_version))
    }
}
