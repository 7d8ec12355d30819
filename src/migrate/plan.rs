//! What a run will execute, worked out before anything runs: every file it
//! touches (callbacks, versioned, repeatable) split into chunks with its
//! placeholders replaced. A missing placeholder fails here, with nothing
//! changed; a dry run returns the plan instead of executing it.

use super::files::{Chunk, Event, MigrationFile, MigrationSet, Placeholders, SqlFile};
use crate::backend::DialectSql;
use crate::error::Result;

/// One file of a plan, ready to send.
pub struct Prepared<'s> {
    pub file: &'s SqlFile,
    /// The version of a versioned or undo file.
    pub version: Option<&'s super::files::Version>,
    pub chunks: Vec<Chunk>,
}

/// The callbacks of one operation (migrate, undo, repair).
#[derive(Default)]
pub struct Hooks<'s> {
    pub before: Vec<Prepared<'s>>,
    pub before_each: Vec<Prepared<'s>>,
    pub after_each: Vec<Prepared<'s>>,
    pub after: Vec<Prepared<'s>>,
    pub on_error: Vec<Prepared<'s>>,
}

/// The events of each operation, in `Hooks` order (None: Flyway has none).
pub const MIGRATE: [Option<Event>; 5] = [
    Some(Event::BeforeMigrate),
    Some(Event::BeforeEachMigrate),
    Some(Event::AfterEachMigrate),
    Some(Event::AfterMigrate),
    Some(Event::AfterMigrateError),
];
pub const UNDO: [Option<Event>; 5] = [
    Some(Event::BeforeUndo),
    Some(Event::BeforeEachUndo),
    Some(Event::AfterEachUndo),
    Some(Event::AfterUndo),
    Some(Event::AfterUndoError),
];
pub const REPAIR: [Option<Event>; 5] = [
    Some(Event::BeforeRepair),
    None,
    None,
    Some(Event::AfterRepair),
    Some(Event::AfterRepairError),
];

pub fn prepare<'s>(
    file: &'s SqlFile,
    version: Option<&'s super::files::Version>,
    sql: &'static DialectSql,
    placeholders: &Placeholders,
) -> Result<Prepared<'s>> {
    Ok(Prepared {
        file,
        version,
        chunks: file.chunks(sql.split_script, &placeholders.for_file(&file.script))?,
    })
}

pub fn versioned<'s>(
    file: &'s MigrationFile,
    sql: &'static DialectSql,
    placeholders: &Placeholders,
) -> Result<Prepared<'s>> {
    prepare(&file.file, Some(&file.version), sql, placeholders)
}

pub fn hooks<'s>(
    set: &'s MigrationSet,
    events: [Option<Event>; 5],
    sql: &'static DialectSql,
    placeholders: &Placeholders,
) -> Result<Hooks<'s>> {
    let of = |event: Option<Event>| -> Result<Vec<Prepared<'s>>> {
        let Some(event) = event else {
            return Ok(Vec::new());
        };
        set.callbacks(event)
            .map(|f| prepare(f, None, sql, placeholders))
            .collect()
    };
    Ok(Hooks {
        before: of(events[0])?,
        before_each: of(events[1])?,
        after_each: of(events[2])?,
        after: of(events[3])?,
        on_error: of(events[4])?,
    })
}

/// One statement (or batch) of a dry run: which file, which version, where.
#[derive(Debug, Clone)]
pub struct PlannedPart {
    pub kind: &'static str,
    pub script: String,
    pub version: Option<String>,
    pub line: usize,
    pub sql: String,
}

/// The parts of a migrate run in the order they would be sent.
pub fn dry_run_parts(
    hooks: &Hooks<'_>,
    versioned: &[Prepared<'_>],
    repeatable: &[Prepared<'_>],
) -> Vec<PlannedPart> {
    let mut parts = Vec::new();
    let mut add = |kind: &'static str, p: &Prepared<'_>| {
        for chunk in &p.chunks {
            parts.push(PlannedPart {
                kind,
                script: p.file.script.clone(),
                version: p.version.map(|v| v.label()),
                line: chunk.line,
                sql: chunk.sql.clone(),
            });
        }
    };
    hooks.before.iter().for_each(|p| add("callback", p));
    for (kind, items) in [("versioned", versioned), ("repeatable", repeatable)] {
        for item in items {
            hooks.before_each.iter().for_each(|p| add("callback", p));
            add(kind, item);
            hooks.after_each.iter().for_each(|p| add("callback", p));
        }
    }
    hooks.after.iter().for_each(|p| add("callback", p));
    parts
}
