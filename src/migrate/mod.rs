//! Versioned SQL migrations, written once above the backend seam: files
//! (`files`), the history table and lock (`history`), and the runner here.
//! Every run holds a database-wide lock, re-reads the history under it and
//! validates before applying, so many workers starting at once apply each
//! file exactly once and all end at the same version.

mod apply;
pub mod baseline;
mod directory;
pub mod files;
pub mod history;
mod inspect;
pub mod plan;
mod report;
mod undo;

pub use self::directory::{missing_directory, resolve_directory};
pub use self::report::{AppliedInfo, RepeatableInfo, Report, Status};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use self::baseline::baseline_of;
use self::files::{migration_error, MigrationFile, MigrationSet, Placeholders, SqlFile, Version};
use self::history::{Applied, HistoryTable};
use crate::backend::Connection;
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use crate::pool::PooledConnection;
use crate::value::Value;

/// What `plan_run` decided, before anything was written.
struct Planned<'s> {
    report: Report,
    history: Vec<Applied>,
    hooks: plan::Hooks<'s>,
    versioned: Vec<plan::Prepared<'s>>,
    repeatable: Vec<plan::Prepared<'s>>,
    /// The history table existed (so it need not be created).
    had_table: bool,
    /// Baseline-on-migrate's version, when due.
    baseline: Option<Version>,
}

/// Where a migrator gets its connections, its database's settings, and
/// how its errors name the database. `engine::Database` is one; the
/// migrator never names the engine (which runs it at start-up).
pub trait Connections: Sync {
    fn config(&self) -> &DatabaseConfig;

    /// `e` with the database and operation attached and secrets removed.
    fn fail(&self, e: Error, operation: &'static str) -> Error;

    /// A connection for the migrator's own work (no start-up hook).
    fn checkout<'s>(
        &'s self,
        operation: &'static str,
    ) -> Pin<Box<dyn Future<Output = Result<PooledConnection>> + Send + 's>>;
}

impl<T: Connections + Send + ?Sized> Connections for std::sync::Arc<T> {
    fn config(&self) -> &DatabaseConfig {
        (**self).config()
    }

    fn fail(&self, e: Error, operation: &'static str) -> Error {
        (**self).fail(e, operation)
    }

    fn checkout<'s>(
        &'s self,
        operation: &'static str,
    ) -> Pin<Box<dyn Future<Output = Result<PooledConnection>> + Send + 's>> {
        (**self).checkout(operation)
    }
}

pub struct Migrator<'a> {
    db: &'a dyn Connections,
    set: MigrationSet,
    table: HistoryTable,
    placeholders: Placeholders,
}

fn successful(history: &[Applied]) -> impl Iterator<Item = &Applied> {
    history.iter().filter(|a| a.success && a.kind != "UNDO_SQL")
}

fn max_applied(history: &[Applied]) -> Option<Version> {
    successful(history)
        .filter_map(|a| Version::parse(&a.version))
        .max()
}

fn row_label(row: &Applied) -> String {
    Version::parse(&row.version).map_or_else(|| row.version.clone(), |v| v.label())
}

fn label_of(history: &[Applied]) -> Option<String> {
    let max = max_applied(history)?;
    successful(history)
        .filter_map(|a| Version::parse(&a.version).map(|v| (v, a)))
        .find(|(v, _)| *v == max)
        .map(|(v, _)| v.label())
}

impl<'a> Migrator<'a> {
    /// For an explicit migration call: a database without a migrations
    /// directory is an error naming where it was looked for.
    pub fn new<C: Connections>(
        db: &'a C,
        root_override: Option<&Path>,
        operation: &'static str,
    ) -> Result<Self> {
        match resolve_directory(db.config(), root_override) {
            Ok(dir) => Self::with_directory(db, Some(dir)),
            Err(searched) => Err(db.fail(
                missing_directory(db.config(), &searched, root_override),
                operation,
            )),
        }
    }

    /// For start-up and health: no directory means a database this code
    /// only reads (no migrations, nothing pending).
    pub fn if_present<C: Connections>(db: &'a C, root_override: Option<&Path>) -> Result<Self> {
        Self::with_directory(db, resolve_directory(db.config(), root_override).ok())
    }

    fn with_directory(db: &'a dyn Connections, directory: Option<PathBuf>) -> Result<Self> {
        let config = db.config();
        let set = files::load(directory.as_deref()).map_err(|e| db.fail(e, "migrations"))?;
        let sql = config.database_type.sql();
        let table = HistoryTable {
            schema: config.migrations_schema.clone(),
            name: config.migrations_table.clone(),
            sql,
        };
        let mut values = config.placeholders.clone();
        // Flyway's built-ins (`${flyway:filename}` is added per file).
        for (name, value) in [
            (
                "flyway:database",
                config.spec.database.clone().unwrap_or_default(),
            ),
            ("flyway:user", config.spec.user.clone().unwrap_or_default()),
            (
                "flyway:defaultschema",
                config
                    .migrations_schema
                    .clone()
                    .or(sql.default_schema.map(str::to_owned))
                    .unwrap_or_else(|| "public".to_owned()),
            ),
            ("flyway:table", config.migrations_table.clone()),
            (
                "flyway:timestamp",
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
        ] {
            values.entry(name.to_owned()).or_insert(value);
        }
        let placeholders = Placeholders {
            values,
            enabled: config.placeholder_replacement,
            setting_hint: format!(
                "set {env}_GLOBAL_{db}_PLACEHOLDER_{{NAME}}, pass run_migrations(placeholders=...), \
                 or set {env}_GLOBAL_{db}_PLACEHOLDER_REPLACEMENT=false to leave ${{...}} text alone",
                env = crate::config::key_part(&config.environment),
                db = crate::config::key_part(&config.name),
            ),
        };
        Ok(Migrator {
            db,
            set,
            table,
            placeholders,
        })
    }

    /// Placeholder values given for one run; they beat the settings.
    pub fn with_placeholders(mut self, given: BTreeMap<String, String>) -> Self {
        for (name, value) in given {
            self.placeholders
                .values
                .insert(name.to_ascii_lowercase(), value);
        }
        self
    }

    pub fn has_migrations(&self) -> bool {
        !self.set.is_empty()
    }

    pub fn directory(&self) -> Option<&Path> {
        self.set.directory.as_deref()
    }

    pub(super) fn fail(&self, e: Error, operation: &'static str) -> Error {
        self.db.fail(e, operation)
    }

    async fn history(&self, conn: &mut Connection) -> Result<Vec<Applied>> {
        if self.table.exists(conn).await? {
            self.table.read(conn).await
        } else {
            Ok(Vec::new())
        }
    }

    fn pending<'s>(&'s self, history: &[Applied]) -> Vec<&'s MigrationFile> {
        let baseline = baseline_of(history);
        self.set
            .versions
            .iter()
            .filter(|f| baseline.as_ref().is_none_or(|b| f.version > *b))
            .filter(|f| {
                !successful(history)
                    .any(|a| Version::parse(&a.version).as_ref() == Some(&f.version))
            })
            .collect()
    }

    /// The latest applied checksum of a repeatable file (by description,
    /// as Flyway identifies them).
    fn repeatable_checksum(history: &[Applied], file: &SqlFile) -> Option<Option<i32>> {
        history
            .iter()
            .filter(|a| a.success && a.version.is_empty() && a.kind == "SQL")
            .filter(|a| a.description == file.description)
            .max_by_key(|a| a.installed_rank)
            .map(|a| a.checksum)
    }

    fn repeatable_state(history: &[Applied], file: &SqlFile) -> &'static str {
        match Self::repeatable_checksum(history, file) {
            None => "pending",
            Some(c) if c == Some(file.checksum) => "applied",
            Some(_) => "outdated",
        }
    }

    /// Repeatable files to apply: never applied, or edited since (Flyway's rule).
    fn repeatables_due<'s>(&'s self, history: &[Applied]) -> Vec<&'s SqlFile> {
        self.set
            .repeatable
            .iter()
            .filter(|f| Self::repeatable_state(history, f) != "applied")
            .collect()
    }

    /// Run `work` holding the migration lock on a dedicated connection; the
    /// lock is released whatever happens.
    async fn locked<T>(
        &self,
        op: &'static str,
        work: impl for<'c> AsyncFnOnce(&'c mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.db.checkout(op).await?;
        if conn.transaction_pooling() {
            return self.locked_in_transaction(op, conn, work).await;
        }
        self.table
            .lock(&mut conn)
            .await
            .map_err(|e| self.fail(e, op))?;
        let result = work(&mut conn).await;
        if self.table.unlock(&mut conn).await.is_err() {
            // A session-level lock dies with its session: never reuse it.
            conn.broken = true;
        }
        result.map_err(|e| self.fail(e, op))
    }

    /// Behind PgBouncer's transaction pooling a session lock would stay with
    /// a server session other clients get next. So the whole run is one
    /// transaction holding a transaction-level lock, each migration a
    /// savepoint in it ([`in_unit`]); what succeeded is committed at the end.
    async fn locked_in_transaction<T>(
        &self,
        op: &'static str,
        mut conn: crate::pool::PooledConnection,
        work: impl for<'c> AsyncFnOnce(&'c mut Connection) -> Result<T>,
    ) -> Result<T> {
        let locked = async {
            conn.begin().await?;
            self.table.lock_for_transaction(&mut conn).await
        }
        .await;
        if let Err(e) = locked {
            if conn.rollback().await.is_err() {
                conn.broken = true;
            }
            return Err(self.fail(e, op));
        }
        let result = work(&mut conn).await;
        let committed = conn.commit().await;
        if committed.is_err() {
            conn.broken = true;
        }
        match (result, committed) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(self.fail(e, op)),
            (Ok(value), Ok(())) => Ok(value),
        }
    }

    /// Apply pending migrations in order, up to `target` when given, then
    /// the repeatable files that are due, with the SQL callbacks around
    /// them. Everything is prepared (placeholders replaced) before anything
    /// runs. `dry_run`: the same checks and plan, nothing sent but reads.
    pub async fn migrate(
        &self,
        target: Option<&str>,
        out_of_order: bool,
        dry_run: bool,
    ) -> Result<Report> {
        let op = "run_migrations";
        let target = match target {
            Some(t) => Some(Version::parse(t).ok_or_else(|| {
                self.fail(
                    migration_error(format!("target '{t}' is not a version (e.g. V3, 3 or 1.1)")),
                    op,
                )
            })?),
            None => None,
        };
        if self.set.is_empty() {
            // Nothing to apply, but the database may well be migrated.
            let mut conn = self.db.checkout(op).await?;
            let history = self
                .history(&mut conn)
                .await
                .map_err(|e| self.fail(e, op))?;
            return Ok(Report {
                current_version: label_of(&history),
                ..Report::default()
            });
        }
        if dry_run {
            // The same checks and plan as a run, with reads only: no lock,
            // no history table, no baseline row.
            let mut conn = self.db.checkout(op).await?;
            let planned = self
                .plan_run(&mut conn, target.as_ref(), out_of_order)
                .await
                .map_err(|e| self.fail(e, op))?;
            let mut report = planned.report;
            report.applied = planned
                .versioned
                .iter()
                .filter_map(|p| p.version.map(|v| v.label()))
                .collect();
            report.repeatable = planned
                .repeatable
                .iter()
                .map(|p| p.file.script.clone())
                .collect();
            report.dry_run = Some(plan::dry_run_parts(
                &planned.hooks,
                &planned.versioned,
                &planned.repeatable,
            ));
            return Ok(report);
        }
        self.locked(op, async |conn| {
            let Planned {
                mut report,
                mut history,
                hooks,
                versioned,
                repeatable,
                had_table,
                baseline,
            } = self.plan_run(conn, target.as_ref(), out_of_order).await?;
            // Only now, with every file prepared, is anything written.
            if !had_table {
                self.table.create(conn).await?;
            }
            if let Some(version) = baseline {
                history.retain(|a| a.installed_rank != 0); // the provisional row
                let row = self
                    .insert_baseline(conn, &version, baseline::DEFAULT_DESCRIPTION, &history)
                    .await?;
                history.push(row);
            }
            if conn.transaction_pooling() {
                if let Some(p) = versioned.iter().chain(&repeatable).find(|p| !p.file.transactional) {
                    return Err(migration_error(format!(
                        "{} is marked -- dbflow:no-transaction, which cannot run through \
                         PgBouncer's transaction pooling (PREPARED_STATEMENTS=false); apply the \
                         migrations over a direct connection; nothing was changed",
                        p.file.script
                    )));
                }
            }
            let run = async {
                self.run_hooks(conn, &hooks.before).await?;
                for item in &versioned {
                    tracing::info!(database = %self.db.config().name, script = %item.file.script, "applying migration");
                    let row = self.apply(conn, &hooks, item, &history).await?;
                    report.applied.push(row_label(&row));
                    history.push(row);
                }
                for item in &repeatable {
                    tracing::info!(database = %self.db.config().name, script = %item.file.script, "applying repeatable migration");
                    let row = self.apply(conn, &hooks, item, &history).await?;
                    report.repeatable.push(row.script.clone());
                    history.push(row);
                }
                self.run_hooks(conn, &hooks.after).await
            }
            .await;
            if let Err(e) = run {
                return Err(self.after_error(conn, &hooks, e).await);
            }
            report.current_version = label_of(&history);
            Ok(report)
        })
        .await
    }

    /// Everything a run decides before it writes: the history as it is (or
    /// would be after baseline-on-migrate, whose row is provisional with
    /// rank 0), validation, and every file prepared.
    async fn plan_run(
        &self,
        conn: &mut Connection,
        target: Option<&Version>,
        out_of_order: bool,
    ) -> Result<Planned<'_>> {
        let mut report = Report::default();
        let had_table = self.table.exists(conn).await?;
        let baseline = if had_table {
            None
        } else {
            self.baseline_due(conn).await?
        };
        let mut history = if had_table {
            self.table.read(conn).await?
        } else {
            Vec::new()
        };
        if let Some(version) = &baseline {
            history.push(self.baseline_row(version));
            report.baselined = Some(version.label());
        }
        report.current_version = label_of(&history);
        self.check(&history, out_of_order)?;
        self.target_check(&history, target)?;
        let (hooks, versioned, repeatable) = self.prepare_run(&history, target)?;
        Ok(Planned {
            report,
            history,
            hooks,
            versioned,
            repeatable,
            had_table,
            baseline,
        })
    }

    /// A target below the current version is an error (use rollback).
    fn target_check(&self, history: &[Applied], target: Option<&Version>) -> Result<()> {
        if let (Some(t), Some(current)) = (target, max_applied(history)) {
            if *t < current {
                return Err(migration_error(format!(
                    "target {} is below the current version {}; use rollback_migrations to go back",
                    t.label(),
                    current.label()
                )));
            }
        }
        Ok(())
    }

    /// Callbacks, pending versions (up to `target`) and due repeatable files,
    /// each split into chunks with placeholders replaced.
    #[allow(clippy::type_complexity)]
    fn prepare_run<'s>(
        &'s self,
        history: &[Applied],
        target: Option<&Version>,
    ) -> Result<(
        plan::Hooks<'s>,
        Vec<plan::Prepared<'s>>,
        Vec<plan::Prepared<'s>>,
    )> {
        let dialect = self.table.sql;
        let hooks = plan::hooks(&self.set, plan::MIGRATE, dialect, &self.placeholders)?;
        let versioned = self
            .pending(history)
            .into_iter()
            .filter(|f| target.is_none_or(|t| f.version <= *t))
            .map(|f| plan::versioned(f, dialect, &self.placeholders))
            .collect::<Result<Vec<_>>>()?;
        let repeatable = self
            .repeatables_due(history)
            .into_iter()
            .map(|f| plan::prepare(f, None, dialect, &self.placeholders))
            .collect::<Result<Vec<_>>>()?;
        Ok((hooks, versioned, repeatable))
    }

    /// The row a baseline would write (for a dry run's view of the history).
    fn baseline_row(&self, version: &Version) -> Applied {
        Applied {
            installed_rank: 0,
            version: version.written.clone(),
            description: baseline::DEFAULT_DESCRIPTION.to_owned(),
            kind: "BASELINE".to_owned(),
            script: baseline::DEFAULT_DESCRIPTION.to_owned(),
            checksum: None,
            installed_by: self.installed_by(),
            installed_on: Value::Null,
            execution_time_ms: 0,
            success: true,
        }
    }

    pub(super) fn installed_by(&self) -> String {
        self.db
            .config()
            .spec
            .user
            .clone()
            .unwrap_or_else(|| "dbflow".to_owned())
    }

    pub(super) fn next_rank(history: &[Applied]) -> i64 {
        history.iter().map(|a| a.installed_rank).max().unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests;
