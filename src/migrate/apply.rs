//! Running prepared files: each migration in its own unit (transaction, or
//! savepoint inside the run's transaction) with its each-callbacks, history
//! rows written in the same unit, callbacks around the whole run.

use std::time::Instant;

use super::files::migration_error;
use super::history::Applied;
use super::plan::{Hooks, Prepared};
use super::Migrator;
use crate::backend::Connection;
use crate::error::{ErrorKind, Result};
use crate::telemetry::{self, About, Count, Subject};
use crate::value::Value;

impl Migrator<'_> {
    /// Send a prepared file chunk by chunk; a failure names the file, the
    /// line in it and the server's message.
    pub(super) async fn run_prepared(&self, conn: &mut Connection, p: &Prepared<'_>) -> Result<()> {
        for chunk in &p.chunks {
            if let Err(e) = conn.script(&chunk.sql).await {
                let line = chunk.line + e.server_line.map_or(0, |l| (l as usize).saturating_sub(1));
                let mut failure =
                    migration_error(format!("{} line {line}: {}", p.file.script, e.message));
                failure.sqlstate = e.sqlstate.clone();
                failure.error_number = e.error_number;
                failure.server_line = Some(line as u32);
                if e.kind == ErrorKind::Connection {
                    conn.broken = true;
                }
                return Err(failure);
            }
        }
        Ok(())
    }

    /// Callbacks of one point (beforeMigrate, afterMigrate, ...), each in its
    /// own unit when it is transactional.
    pub(super) async fn run_hooks(
        &self,
        conn: &mut Connection,
        hooks: &[Prepared<'_>],
    ) -> Result<()> {
        for hook in hooks {
            tracing::info!(database = %self.db.config().name, script = %hook.file.script, "running callback");
            if hook.file.transactional {
                in_unit(conn, async |conn| self.run_prepared(conn, hook).await).await?;
            } else {
                self.run_prepared(conn, hook).await?;
            }
        }
        Ok(())
    }

    /// The error callbacks after a failed run; the run's own error is what
    /// the caller gets (a failing error callback is added to its message).
    pub(super) async fn after_error(
        &self,
        conn: &mut Connection,
        hooks: &Hooks<'_>,
        mut e: crate::error::Error,
    ) -> crate::error::Error {
        if conn.broken || hooks.on_error.is_empty() {
            return e;
        }
        if let Err(also) = self.run_hooks(conn, &hooks.on_error).await {
            e.message = format!(
                "{}; then the error callback failed too: {}",
                e.message, also.message
            );
        }
        e
    }

    /// One versioned or repeatable file with its each-callbacks, recorded in
    /// the history: all of it in one unit when the file is transactional.
    /// Each file is one span (`migration`, its script and version).
    pub(super) async fn apply(
        &self,
        conn: &mut Connection,
        hooks: &Hooks<'_>,
        item: &Prepared<'_>,
        history: &[Applied],
    ) -> Result<Applied> {
        let subject = Subject::Migration {
            script: &item.file.script,
            version: item.version.map(|v| v.written.as_str()),
        };
        let about = About::new(self.db.config(), "migration", subject);
        let work = self.apply_file(conn, hooks, item, history);
        telemetry::run(about, |_| Count::Nothing, work).await
    }

    async fn apply_file(
        &self,
        conn: &mut Connection,
        hooks: &Hooks<'_>,
        item: &Prepared<'_>,
        history: &[Applied],
    ) -> Result<Applied> {
        let started = Instant::now();
        let mut row = Applied {
            installed_rank: Self::next_rank(history),
            // Repeatable migrations have no version (NULL in the table).
            version: item.version.map(|v| v.written.clone()).unwrap_or_default(),
            description: item.file.description.clone(),
            kind: "SQL".to_owned(),
            script: item.file.script.clone(),
            checksum: Some(item.file.checksum),
            installed_by: self.installed_by(),
            installed_on: Value::DateTime(chrono::Utc::now().naive_utc()),
            execution_time_ms: 0,
            success: true,
        };
        if item.file.transactional {
            in_unit(conn, async |conn| {
                self.each(conn, &hooks.before_each).await?;
                self.run_prepared(conn, item).await?;
                self.each(conn, &hooks.after_each).await?;
                row.execution_time_ms = started.elapsed().as_millis() as i64;
                self.table.insert(conn, &row).await
            })
            .await?;
        } else {
            let outcome = async {
                self.each(conn, &hooks.before_each).await?;
                self.run_prepared(conn, item).await?;
                self.each(conn, &hooks.after_each).await
            }
            .await;
            row.execution_time_ms = started.elapsed().as_millis() as i64;
            row.success = outcome.is_ok();
            self.table.insert(conn, &row).await?;
            outcome?;
        }
        Ok(row)
    }

    /// Each-callbacks run inside the migration's own unit.
    pub(super) async fn each(&self, conn: &mut Connection, hooks: &[Prepared<'_>]) -> Result<()> {
        for hook in hooks {
            self.run_prepared(conn, hook).await?;
        }
        Ok(())
    }
}

/// One migration's own transaction, or a savepoint when the run already
/// holds a transaction (transaction pooling): all of `work` or none of it.
pub(super) async fn in_unit<T>(
    conn: &mut Connection,
    work: impl for<'c> AsyncFnOnce(&'c mut Connection) -> Result<T>,
) -> Result<T> {
    const SAVEPOINT: &str = "dbflow_migration";
    let nested = conn.in_transaction;
    if nested {
        conn.savepoint(SAVEPOINT).await?;
    } else {
        conn.begin().await?;
    }
    match work(conn).await {
        Ok(value) => {
            if nested {
                conn.release_savepoint(SAVEPOINT).await?;
            } else {
                conn.commit().await?;
            }
            Ok(value)
        }
        Err(e) => {
            let undone = if nested {
                conn.rollback_to_savepoint(SAVEPOINT).await
            } else {
                conn.rollback().await
            };
            if undone.is_err() {
                conn.broken = true;
            }
            Err(e)
        }
    }
}
