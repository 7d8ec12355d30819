//! Undo (`rollback`) and `repair`: the history put right by hand.

use super::files::{migration_error, Version};
use super::history::Applied;
use super::{apply, plan, successful, Migrator};
use crate::error::Result;

impl Migrator<'_> {
    /// Undo applied versions newer than `target`, newest first, each with its
    /// `U` file in a transaction. Every undo file must exist before anything runs.
    pub async fn rollback(&self, target: &str) -> Result<Vec<String>> {
        let op = "rollback_migrations";
        let target = Version::parse(target).ok_or_else(|| {
            self.fail(
                migration_error(format!(
                    "target '{target}' is not a version (e.g. V3, 3 or 1.1)"
                )),
                op,
            )
        })?;
        self.locked(op, async |conn| {
            if !self.table.exists(conn).await? {
                return Ok(Vec::new());
            }
            let history = self.table.read(conn).await?;
            let mut newer: Vec<(&Applied, Version)> = successful(&history)
                .filter(|a| a.kind != "BASELINE")
                .filter_map(|a| Version::parse(&a.version).map(|v| (a, v)))
                .filter(|(_, v)| *v > target)
                .collect();
            newer.sort_by(|a, b| b.1.cmp(&a.1));
            let missing: Vec<String> = newer
                .iter()
                .filter(|(_, v)| self.set.undo_for(v).is_none())
                .map(|(_, v)| format!("U{}__<description>.sql", v.written))
                .collect();
            if !missing.is_empty() {
                return Err(migration_error(format!(
                    "cannot roll back to {}: no undo file for {}; nothing was changed",
                    target.label(),
                    missing.join(", ")
                )));
            }
            let dialect = self.table.sql;
            let hooks = plan::hooks(&self.set, plan::UNDO, dialect, &self.placeholders)?;
            let mut prepared = Vec::new();
            for (applied, version) in &newer {
                let Some(undo) = self.set.undo_for(version) else {
                    continue; // every one was checked above
                };
                prepared.push((*applied, version.label(), plan::versioned(undo, dialect, &self.placeholders)?));
            }
            let mut undone = Vec::new();
            let run = async {
                self.run_hooks(conn, &hooks.before).await?;
                for (applied, label, undo) in &prepared {
                    tracing::info!(database = %self.db.config().name, script = %undo.file.script, "undoing migration");
                    apply::in_unit(conn, async |conn| {
                        self.each(conn, &hooks.before_each).await?;
                        self.run_prepared(conn, undo).await?;
                        self.each(conn, &hooks.after_each).await?;
                        self.table.delete(conn, applied.installed_rank).await
                    })
                    .await?;
                    undone.push(label.clone());
                }
                self.run_hooks(conn, &hooks.after).await
            }
            .await;
            match run {
                Ok(()) => Ok(undone),
                Err(e) => Err(self.after_error(conn, &hooks, e).await),
            }
        })
        .await
    }

    /// Flyway's repair: drop failed entries and accept the files' current
    /// checksums and descriptions. Returns (removed, realigned).
    pub async fn repair(&self) -> Result<(usize, usize)> {
        let dialect = self.table.sql;
        let hooks = plan::hooks(&self.set, plan::REPAIR, dialect, &self.placeholders)
            .map_err(|e| self.fail(e, "repair_migrations"))?;
        self.locked("repair_migrations", async |conn| {
            if !self.table.exists(conn).await? {
                return Ok((0, 0));
            }
            let history = self.table.read(conn).await?;
            let run = async {
                self.run_hooks(conn, &hooks.before).await?;
                let mut removed = 0;
                let mut realigned = 0;
                for row in &history {
                    if !row.success {
                        self.table.delete(conn, row.installed_rank).await?;
                        removed += 1;
                        continue;
                    }
                    let Some(file) = Version::parse(&row.version)
                        .filter(|_| row.kind != "BASELINE")
                        .and_then(|v| self.set.find(&v))
                    else {
                        continue;
                    };
                    if row.checksum != Some(file.checksum) || row.description != file.description {
                        self.table
                            .realign(conn, row.installed_rank, file.checksum, &file.description)
                            .await?;
                        realigned += 1;
                    }
                }
                self.run_hooks(conn, &hooks.after).await?;
                Ok((removed, realigned))
            }
            .await;
            match run {
                Ok(done) => Ok(done),
                Err(e) => Err(self.after_error(conn, &hooks, e).await),
            }
        })
        .await
    }
}
