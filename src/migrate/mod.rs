//! Versioned SQL migrations, written once above the backend seam: files
//! (`files`), the history table and lock (`history`), and the runner here.
//! Every run holds a database-wide lock, re-reads the history under it and
//! validates before applying, so many workers starting at once apply each
//! file exactly once and all end at the same version.

pub mod files;
pub mod history;

use std::path::{Path, PathBuf};
use std::time::Instant;

use self::files::{migration_error, MigrationFile, MigrationSet, Version};
use self::history::{Applied, HistoryTable};
use crate::backend::Connection;
use crate::config::DatabaseConfig;
use crate::engine::Database;
use crate::error::{Error, ErrorKind, Result};
use crate::value::Value;

/// Where a database's migration files live: `<DB>_MIGRATIONS_DIR`, else
/// `<root>/<database_name>` for the root given to the manager, the
/// `MIGRATIONS_DIR` setting, or the first of `migrations/` and
/// `core/migrations/` that has one. The database name matches a directory
/// whatever its case, as it matches configuration keys (`Shop` finds
/// `migrations/shop/`). `Err` lists every path searched.
pub fn resolve_directory(
    config: &DatabaseConfig,
    root_override: Option<&Path>,
) -> Result<PathBuf, Vec<PathBuf>> {
    if let Some(dir) = &config.migrations_dir {
        let dir = PathBuf::from(dir);
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(vec![dir])
        };
    }
    let roots: Vec<PathBuf> = match (root_override, &config.migrations_root) {
        (Some(root), _) => vec![root.to_path_buf()],
        (None, Some(root)) => vec![PathBuf::from(root)],
        (None, None) => vec![
            PathBuf::from("migrations"),
            PathBuf::from("core/migrations"),
        ],
    };
    let mut searched = Vec::new();
    for root in roots {
        let exact = root.join(&config.name);
        if exact.is_dir() {
            return Ok(exact);
        }
        let other_case = std::fs::read_dir(&root).ok().and_then(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.eq_ignore_ascii_case(&config.name))
                .min()
        });
        if let Some(found) = other_case {
            return Ok(root.join(found));
        }
        searched.push(exact);
    }
    Err(searched)
}

/// The error of an explicit migration call for a database whose directory
/// was not found: every path searched, absolute, and how to point at it.
pub fn missing_directory(config: &DatabaseConfig, searched: &[PathBuf]) -> Error {
    let cwd = std::env::current_dir().unwrap_or_default();
    let paths: Vec<String> = searched
        .iter()
        .map(|p| cwd.join(p).display().to_string())
        .collect();
    Error::config(format!(
        "no migrations directory for database '{}': looked for {} (working directory {}); \
         create it, or set {}_GLOBAL_{}_MIGRATIONS_DIR (or MIGRATIONS_DIR, the directory holding \
         one folder per database) to where the files are",
        config.name,
        paths.join(", "),
        cwd.display(),
        crate::config::key_part(&config.environment),
        crate::config::key_part(&config.name),
    ))
}

/// One history row as reported to users.
#[derive(Debug, Clone)]
pub struct AppliedInfo {
    pub version: String,
    pub description: String,
    pub script: String,
    pub checksum: Option<i32>,
    pub installed_by: String,
    pub installed_on: Value,
    pub execution_time_ms: i64,
    pub success: bool,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub directory: Option<PathBuf>,
    pub current_version: Option<String>,
    pub pending: Vec<(String, String, String)>,
    pub applied: Vec<AppliedInfo>,
    pub total: usize,
    pub last_migration: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub applied: Vec<String>,
    pub current_version: Option<String>,
}

pub struct Migrator<'a> {
    db: &'a Database,
    set: MigrationSet,
    table: HistoryTable,
}

fn successful(history: &[Applied]) -> impl Iterator<Item = &Applied> {
    history.iter().filter(|a| a.success && a.kind != "UNDO_SQL")
}

fn max_applied(history: &[Applied]) -> Option<Version> {
    successful(history)
        .filter_map(|a| Version::parse(&a.version))
        .max()
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
    pub fn new(
        db: &'a Database,
        root_override: Option<&Path>,
        operation: &'static str,
    ) -> Result<Self> {
        match resolve_directory(db.config(), root_override) {
            Ok(dir) => Self::with_directory(db, Some(dir)),
            Err(searched) => Err(db.fail(missing_directory(db.config(), &searched), operation)),
        }
    }

    /// For start-up and health: no directory means a database this code
    /// only reads (no migrations, nothing pending).
    pub fn if_present(db: &'a Database, root_override: Option<&Path>) -> Result<Self> {
        Self::with_directory(db, resolve_directory(db.config(), root_override).ok())
    }

    fn with_directory(db: &'a Database, directory: Option<PathBuf>) -> Result<Self> {
        let config = db.config();
        let set = files::load(directory.as_deref()).map_err(|e| db.fail(e, "migrations"))?;
        let table = HistoryTable {
            schema: config.migrations_schema.clone(),
            name: config.migrations_table.clone(),
            sql: crate::backend::sql_of(config.database_type),
        };
        Ok(Migrator { db, set, table })
    }

    pub fn has_migrations(&self) -> bool {
        !self.set.versions.is_empty()
    }

    pub fn directory(&self) -> Option<&Path> {
        self.set.directory.as_deref()
    }

    fn fail(&self, e: Error, operation: &'static str) -> Error {
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
        self.set
            .versions
            .iter()
            .filter(|f| {
                !successful(history)
                    .any(|a| Version::parse(&a.version).as_ref() == Some(&f.version))
            })
            .collect()
    }

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
    fn check(&self, history: &[Applied], out_of_order: bool) -> Result<()> {
        if let Some(failed) = history.iter().find(|a| !a.success) {
            return Err(migration_error(format!(
                "{} (version {}) failed earlier and may have left partial changes; fix the database by \
                 hand, then run repair (dbflow repair <db>) before migrating again",
                failed.script, failed.version
            )));
        }
        for applied in successful(history) {
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

    /// Apply pending migrations in order, up to `target` when given.
    pub async fn migrate(&self, target: Option<&str>, out_of_order: bool) -> Result<Report> {
        let target = match target {
            Some(t) => Some(Version::parse(t).ok_or_else(|| {
                self.fail(
                    migration_error(format!("target '{t}' is not a version (e.g. V3, 3 or 1.1)")),
                    "run_migrations",
                )
            })?),
            None => None,
        };
        if self.set.versions.is_empty() {
            // Nothing to apply, but the database may well be migrated.
            let mut conn = self.db.checkout("run_migrations").await?;
            let history = self
                .history(&mut conn)
                .await
                .map_err(|e| self.fail(e, "run_migrations"))?;
            return Ok(Report {
                applied: Vec::new(),
                current_version: label_of(&history),
            });
        }
        self.locked("run_migrations", async |conn| {
            self.table.create(conn).await?;
            let mut history = self.table.read(conn).await?;
            self.check(&history, out_of_order)?;
            if let (Some(t), Some(current)) = (&target, max_applied(&history)) {
                if *t < current {
                    return Err(migration_error(format!(
                        "target {} is below the current version {}; use rollback_migrations to go back",
                        t.label(),
                        current.label()
                    )));
                }
            }
            let mut report = Report::default();
            let pending: Vec<MigrationFile> = self
                .pending(&history)
                .into_iter()
                .filter(|f| target.as_ref().is_none_or(|t| f.version <= *t))
                .cloned()
                .collect();
            if conn.transaction_pooling() {
                if let Some(file) = pending.iter().find(|f| !f.transactional) {
                    return Err(migration_error(format!(
                        "{} is marked -- dbflow:no-transaction, which cannot run through \
                         PgBouncer's transaction pooling (PREPARED_STATEMENTS=false); apply the \
                         migrations over a direct connection; nothing was changed",
                        file.script
                    )));
                }
            }
            for file in pending {
                tracing::info!(database = %self.db.name(), script = %file.script, "applying migration");
                let row = self.apply(conn, &file, &history).await?;
                report.applied.push(file.version.label());
                history.push(row);
            }
            report.current_version = label_of(&history);
            Ok(report)
        })
        .await
    }

    fn installed_by(&self) -> String {
        self.db
            .config()
            .spec
            .user
            .clone()
            .unwrap_or_else(|| "dbflow".to_owned())
    }

    fn next_rank(history: &[Applied]) -> i64 {
        history.iter().map(|a| a.installed_rank).max().unwrap_or(0) + 1
    }

    async fn run_file(&self, conn: &mut Connection, file: &MigrationFile) -> Result<()> {
        for chunk in file.chunks(conn.dialect()) {
            if let Err(e) = conn.script(&chunk.sql).await {
                let line = chunk.line + e.server_line.map_or(0, |l| (l as usize).saturating_sub(1));
                let mut failure =
                    migration_error(format!("{} line {line}: {}", file.script, e.message));
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

    async fn apply(
        &self,
        conn: &mut Connection,
        file: &MigrationFile,
        history: &[Applied],
    ) -> Result<Applied> {
        let started = Instant::now();
        let mut row = Applied {
            installed_rank: Self::next_rank(history),
            version: file.version.written.clone(),
            description: file.description.clone(),
            kind: "SQL".to_owned(),
            script: file.script.clone(),
            checksum: Some(file.checksum),
            installed_by: self.installed_by(),
            installed_on: Value::DateTime(chrono::Utc::now().naive_utc()),
            execution_time_ms: 0,
            success: true,
        };
        if file.transactional {
            in_unit(conn, async |conn| {
                self.run_file(conn, file).await?;
                row.execution_time_ms = started.elapsed().as_millis() as i64;
                self.table.insert(conn, &row).await
            })
            .await?;
        } else {
            let outcome = self.run_file(conn, file).await;
            row.execution_time_ms = started.elapsed().as_millis() as i64;
            row.success = outcome.is_ok();
            self.table.insert(conn, &row).await?;
            outcome?;
        }
        Ok(row)
    }

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
            let mut undone = Vec::new();
            for (applied, version) in newer {
                let undo = self.set.undo_for(&version).expect("checked above");
                tracing::info!(database = %self.db.name(), script = %undo.script, "undoing migration");
                in_unit(conn, async |conn| {
                    self.run_file(conn, undo).await?;
                    self.table.delete(conn, applied.installed_rank).await
                })
                .await?;
                undone.push(version.label());
            }
            Ok(undone)
        })
        .await
    }

    /// Flyway's repair: drop failed entries and accept the files' current
    /// checksums and descriptions. Returns (removed, realigned).
    pub async fn repair(&self) -> Result<(usize, usize)> {
        self.locked("repair_migrations", async |conn| {
            if !self.table.exists(conn).await? {
                return Ok((0, 0));
            }
            let history = self.table.read(conn).await?;
            let mut removed = 0;
            let mut realigned = 0;
            for row in &history {
                if !row.success {
                    self.table.delete(conn, row.installed_rank).await?;
                    removed += 1;
                    continue;
                }
                let Some(file) = Version::parse(&row.version).and_then(|v| self.set.find(&v))
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
            Ok((removed, realigned))
        })
        .await
    }
}

/// One migration's own transaction, or a savepoint when the run already
/// holds a transaction (transaction pooling): all of `work` or none of it.
async fn in_unit<T>(
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
