//! `status` and `validate`: the files read against the history, nothing
//! written.

use super::baseline::baseline_of;
use super::files::{migration_error, Version};
use super::history::Applied;
use super::{label_of, max_applied, successful, AppliedInfo, Migrator, RepeatableInfo, Status};
use crate::error::{Error, ErrorKind, Result};

impl Migrator<'_> {
    /// Current version, pending and applied migrations. Creates nothing.
    pub async fn status(&self) -> Result<Status> {
        let op = "get_migration_status";
        let mut conn = self.db.checkout(op).await?;
        let history = self
            .history(&mut conn)
            .await
            .map_err(|e| self.fail(e, op))?;
        Ok(Status {
            directory: self.set.directory.clone(),
            repeatable: self
                .set
                .repeatable
                .iter()
                .map(|f| RepeatableInfo {
                    script: f.script.clone(),
                    description: f.description.clone(),
                    state: Self::repeatable_state(&history, f),
                })
                .collect(),
            baseline: baseline_of(&history).map(|v| v.label()),
            current_version: label_of(&history),
            pending: self
                .pending(&history)
                .iter()
                .map(|f| (f.version.label(), f.description.clone(), f.script.clone()))
                .collect(),
            last_migration: history
                .iter()
                .rev()
                .find(|a| a.success)
                .map(|a| a.installed_on.clone()),
            applied: history
                .iter()
                .map(|a| AppliedInfo {
                    version: Version::parse(&a.version)
                        .map_or_else(|| a.version.clone(), |v| v.label()),
                    description: a.description.clone(),
                    script: a.script.clone(),
                    checksum: a.checksum,
                    installed_by: a.installed_by.clone(),
                    installed_on: a.installed_on.clone(),
                    execution_time_ms: a.execution_time_ms,
                    success: a.success,
                    kind: a.kind.clone(),
                })
                .collect(),
            total: self.set.versions.len(),
        })
    }

    /// Every way the history and the files can disagree, as typed errors
    /// naming the file.
    pub(super) fn check(&self, history: &[Applied], out_of_order: bool) -> Result<()> {
        if let Some(failed) = history.iter().find(|a| !a.success) {
            return Err(migration_error(format!(
                "{} (version {}) failed earlier and may have left partial changes; fix the database by \
                 hand, then run repair (dbflow repair <db>) before migrating again",
                failed.script, failed.version
            )));
        }
        for applied in successful(history).filter(|a| a.kind != "BASELINE") {
            // Repeatable rows have no version; an edited one is simply due again.
            let Some(version) = Version::parse(&applied.version) else {
                continue;
            };
            match self.set.find(&version) {
                None => {
                    return Err(migration_error(format!(
                        "version {} ({}) is applied but its file is missing from {}; restore the file",
                        version.label(),
                        applied.script,
                        self.set.directory.as_deref().map_or("the migrations directory".into(), |d| d.display().to_string())
                    )))
                }
                Some(file) if applied.checksum.is_some_and(|c| c != file.checksum) => {
                    return Err(Error::new(
                        ErrorKind::ChecksumMismatch,
                        format!(
                            "{} was edited after it was applied (applied checksum {}, file checksum {}); \
                             revert the edit and add a new migration, or run repair to accept the file",
                            file.script,
                            applied.checksum.unwrap_or_default(),
                            file.checksum
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if !out_of_order {
            if let Some(max) = max_applied(history) {
                if let Some(late) = self.pending(history).into_iter().find(|f| f.version < max) {
                    return Err(migration_error(format!(
                        "{} is older than the applied version {} (out of order); give it a version above {}, \
                         or allow it with out_of_order=True",
                        late.script,
                        max.label(),
                        max.label()
                    )));
                }
            }
        }
        Ok(())
    }

    pub async fn validate(&self, out_of_order: bool) -> Result<()> {
        let op = "validate_migrations";
        let mut conn = self.db.checkout(op).await?;
        let history = self
            .history(&mut conn)
            .await
            .map_err(|e| self.fail(e, op))?;
        self.check(&history, out_of_order)
            .map_err(|e| self.fail(e, op))
    }
}
