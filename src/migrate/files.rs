//! Migration files on disk, Flyway's names: versioned `V<version>__<description>.sql`,
//! undo `U<version>__<description>.sql`, repeatable `R__<description>.sql`,
//! and SQL callbacks (`beforeMigrate.sql`, `afterEachMigrate__note.sql`, ...).
//! Versions compare numerically part by part (`V1` < `V1.1` = `V1_1` <
//! `V2`); checksums are Flyway's (CRC32 over the lines, so line endings and a
//! leading BOM do not matter), of the file as written.
//!
//! Why not refinery: its history table is its own (not the `schema_version`
//! columns flows already have), `U` means "unversioned" there, it has no
//! undo, and an out-of-order file is skipped silently. dbflow's runner
//! replaces it; every way a set can be wrong is an error naming the file.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// A version as numeric parts, with trailing zero parts ignored for
/// comparison (`1.0` = `1`), and the spelling from the file name.
#[derive(Debug, Clone)]
pub struct Version {
    parts: Vec<u64>,
    /// As written after the `V`, e.g. `003` or `1.1`.
    pub written: String,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix(['V', 'v', 'U', 'u']).unwrap_or(text);
        if text.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        for part in text.split(['.', '_']) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 18 {
                return None;
            }
            parts.push(part.parse().ok()?);
        }
        Some(Version {
            parts,
            written: text.to_owned(),
        })
    }

    fn significant(&self) -> &[u64] {
        let end = self
            .parts
            .iter()
            .rposition(|p| *p != 0)
            .map_or(0, |i| i + 1);
        &self.parts[..end]
    }

    /// `V` + the spelling from the file name, as reported to users.
    pub fn label(&self) -> String {
        format!("V{}", self.written)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.significant().cmp(other.significant())
    }
}

/// One executable piece of a migration and the file line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub line: usize,
    pub sql: String,
}

/// One SQL file as read: what every kind of migration file has.
#[derive(Debug, Clone)]
pub struct SqlFile {
    pub description: String,
    /// The file name, as recorded in the history.
    pub script: String,
    pub path: PathBuf,
    pub checksum: i32,
    /// False when the first line is `-- dbflow:no-transaction`.
    pub transactional: bool,
    text: String,
}

impl SqlFile {
    /// The file split into what is sent to the server, placeholders
    /// replaced first, as the backend splits a script (statements, so a
    /// failure names its statement's line; or T-SQL's `GO` batches).
    pub fn chunks(
        &self,
        split: fn(&str) -> Vec<(usize, String)>,
        placeholders: &Placeholders,
    ) -> Result<Vec<Chunk>> {
        let text = placeholders.replace(&self.text, &self.script)?;
        Ok(split(&text)
            .into_iter()
            .map(|(line, sql)| Chunk { line, sql })
            .collect())
    }
}

/// A versioned (or undo) file: a version and its SQL.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub version: Version,
    pub file: SqlFile,
}

impl std::ops::Deref for MigrationFile {
    type Target = SqlFile;
    fn deref(&self) -> &SqlFile {
        &self.file
    }
}

/// When a SQL callback runs (Flyway's event names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    BeforeMigrate,
    BeforeEachMigrate,
    AfterEachMigrate,
    AfterMigrate,
    AfterMigrateError,
    BeforeUndo,
    BeforeEachUndo,
    AfterEachUndo,
    AfterUndo,
    AfterUndoError,
    BeforeRepair,
    AfterRepair,
    AfterRepairError,
}

impl Event {
    const ALL: [(&'static str, Event); 13] = [
        ("beforeMigrate", Event::BeforeMigrate),
        ("beforeEachMigrate", Event::BeforeEachMigrate),
        ("afterEachMigrate", Event::AfterEachMigrate),
        ("afterMigrate", Event::AfterMigrate),
        ("afterMigrateError", Event::AfterMigrateError),
        ("beforeUndo", Event::BeforeUndo),
        ("beforeEachUndo", Event::BeforeEachUndo),
        ("afterEachUndo", Event::AfterEachUndo),
        ("afterUndo", Event::AfterUndo),
        ("afterUndoError", Event::AfterUndoError),
        ("beforeRepair", Event::BeforeRepair),
        ("afterRepair", Event::AfterRepair),
        ("afterRepairError", Event::AfterRepairError),
    ];

    fn parse(name: &str) -> Option<Event> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, e)| *e)
    }
}

/// The files of one database, validated.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    pub directory: Option<PathBuf>,
    pub versions: Vec<MigrationFile>,
    pub undo: BTreeMap<String, MigrationFile>,
    /// `R__` files in description order (the order Flyway applies them).
    pub repeatable: Vec<SqlFile>,
    /// SQL callbacks by event; several for one event run in name order.
    pub callbacks: Vec<(Event, SqlFile)>,
}

impl MigrationSet {
    pub fn undo_for(&self, version: &Version) -> Option<&MigrationFile> {
        self.undo.values().find(|u| &u.version == version)
    }

    pub fn find(&self, version: &Version) -> Option<&MigrationFile> {
        self.versions.iter().find(|f| &f.version == version)
    }

    pub fn callbacks(&self, event: Event) -> impl Iterator<Item = &SqlFile> {
        self.callbacks
            .iter()
            .filter(move |(e, _)| *e == event)
            .map(|(_, f)| f)
    }

    /// Whether there is anything at all to run.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty() && self.repeatable.is_empty()
    }
}

/// `${name}` placeholders (Flyway's syntax), matched case-insensitively;
/// `${flyway:...}` names are Flyway's built-ins.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    /// Lower-cased names → values.
    pub values: BTreeMap<String, String>,
    /// `<DB>_PLACEHOLDER_REPLACEMENT=false` leaves `${...}` text alone.
    pub enabled: bool,
    /// How to set a missing one, for the error message.
    pub setting_hint: String,
}

impl Placeholders {
    /// These placeholders plus Flyway's `${flyway:filename}` for `script`.
    pub fn for_file(&self, script: &str) -> Placeholders {
        let mut own = self.clone();
        own.values
            .insert("flyway:filename".to_owned(), script.to_owned());
        own
    }

    /// The text with every placeholder replaced; a placeholder without a
    /// value is an error naming it, the file and the line.
    pub fn replace(&self, text: &str, script: &str) -> Result<String> {
        if !self.enabled || !text.contains("${") {
            return Ok(text.to_owned());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut consumed = 0;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else { break };
            let name = &after[..end];
            out.push_str(&rest[..start]);
            match self.values.get(&name.to_ascii_lowercase()) {
                Some(value) => out.push_str(value),
                None => {
                    let line = text[..consumed + start].matches('\n').count() + 1;
                    return Err(migration_error(format!(
                        "{script} line {line}: placeholder ${{{name}}} has no value; {}",
                        self.setting_hint
                            .replace("{NAME}", &crate::config::keys::key_part(name))
                    )));
                }
            }
            consumed += start + 2 + end + 1;
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

pub fn migration_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Migration, message)
}

/// Flyway's checksum: CRC32 over each line's UTF-8 bytes without line
/// terminators, a BOM at the start removed; stored as a signed 32-bit int.
pub fn checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut crc = crc32fast::Hasher::new();
    for line in text.split('\n') {
        crc.update(line.strip_suffix('\r').unwrap_or(line).as_bytes());
    }
    crc.finalize() as i32
}

/// What a file name says the file is.
enum Named {
    /// `V` or `U`, the version, the description.
    Versioned(char, Version, String),
    Repeatable(String),
    Callback(Event, String),
}

/// Parse `V1_2__Add_phone.sql`, `R__Views.sql`, `afterMigrate__note.sql`.
fn parse_name(name: &str) -> Option<Named> {
    // Any case of `.sql`, as the directory listing accepts.
    let cut = name.len().checked_sub(4)?;
    let stem = (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".sql"))
        .then(|| &name[..cut])?;
    let described = |d: &str| d.replace('_', " ").trim().to_owned();
    let (head, description) = match stem.split_once("__") {
        Some((h, d)) => (h, Some(d)),
        None => (stem, None),
    };
    if let Some(event) = Event::parse(head) {
        return Some(Named::Callback(event, described(description.unwrap_or(""))));
    }
    let description = description?;
    let prefix = head.chars().next()?.to_ascii_uppercase();
    match prefix {
        'R' if head.len() == 1 => Some(Named::Repeatable(described(description))),
        'V' | 'U' => Some(Named::Versioned(
            prefix,
            Version::parse(&head[1..])?,
            described(description),
        )),
        _ => None,
    }
}

/// Read and validate a directory of migrations. A missing directory is an
/// empty set (a read-only database); a bad name, a duplicate version or an
/// undo file without its version is an error naming the file.
pub fn load(directory: Option<&Path>) -> Result<MigrationSet> {
    let Some(dir) = directory.filter(|d| d.is_dir()) else {
        return Ok(MigrationSet {
            directory: directory.map(Path::to_path_buf),
            ..Default::default()
        });
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            migration_error(format!(
                "cannot read migrations directory {}: {e}",
                dir.display()
            ))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("sql")))
        .collect();
    entries.sort();
    let mut set = MigrationSet {
        directory: Some(dir.to_path_buf()),
        ..Default::default()
    };
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(named) = parse_name(&name) else {
            return Err(migration_error(format!(
                "{}: not a migration file name; write V<version>__<description>.sql \
                 (e.g. V004__Add_phone_column.sql), U<version>__<description>.sql for an undo, \
                 R__<description>.sql for a repeatable file, or a callback such as \
                 afterMigrate.sql",
                path.display()
            )));
        };
        let read = |description: String| -> Result<SqlFile> {
            let raw = std::fs::read(&path)
                .map_err(|e| migration_error(format!("{}: cannot read: {e}", path.display())))?;
            let text = String::from_utf8(raw)
                .map_err(|_| migration_error(format!("{}: not valid UTF-8", path.display())))?;
            let first_line = text
                .trim_start_matches('\u{feff}')
                .lines()
                .next()
                .unwrap_or("");
            Ok(SqlFile {
                checksum: checksum(&text),
                description,
                script: name.clone(),
                path: path.clone(),
                transactional: !first_line
                    .trim()
                    .eq_ignore_ascii_case("-- dbflow:no-transaction"),
                text,
            })
        };
        match named {
            Named::Versioned(prefix, version, description) => {
                let file = MigrationFile {
                    version,
                    file: read(description)?,
                };
                if prefix == 'V' {
                    if let Some(other) = set.versions.iter().find(|f| f.version == file.version) {
                        return Err(migration_error(format!(
                            "{} and {} both define version {}; give one of them a new version",
                            other.script, file.script, file.version.written
                        )));
                    }
                    set.versions.push(file);
                } else {
                    if let Some(other) = set.undo.values().find(|u| u.version == file.version) {
                        return Err(migration_error(format!(
                            "{} and {} both undo version {}; keep one",
                            other.script, file.script, file.version.written
                        )));
                    }
                    set.undo.insert(name, file);
                }
            }
            Named::Repeatable(description) => {
                let file = read(description)?;
                if let Some(other) = set
                    .repeatable
                    .iter()
                    .find(|r| r.description == file.description)
                {
                    return Err(migration_error(format!(
                        "{} and {} are both the repeatable migration '{}'; keep one",
                        other.script, file.script, file.description
                    )));
                }
                set.repeatable.push(file);
            }
            Named::Callback(event, description) => set.callbacks.push((event, read(description)?)),
        }
    }
    for u in set.undo.values() {
        if !set.versions.iter().any(|v| v.version == u.version) {
            return Err(migration_error(format!(
                "{}: undoes version {}, but there is no V{}__*.sql file",
                u.path.display(),
                u.version.written,
                u.version.written
            )));
        }
    }
    set.versions.sort_by(|a, b| a.version.cmp(&b.version));
    set.repeatable
        .sort_by(|a, b| a.description.cmp(&b.description));
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_part_by_part() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("V2") > v("V1.1"));
        assert!(v("V1.1") > v("V1"));
        assert_eq!(v("V1_1"), v("1.1"));
        assert_eq!(v("V001"), v("1"));
        assert_eq!(v("V1.0"), v("V1"));
        assert!(v("V10") > v("V9"));
        assert_eq!(v("V003").label(), "V003");
        for bad in ["", "V", "Vx", "V1..2", "V1.a", "V-1"] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names() {
        let Some(Named::Versioned(p, v, d)) = parse_name("V003__Create_views.sql") else {
            panic!("a versioned file")
        };
        assert_eq!(
            (p, v.written.as_str(), d.as_str()),
            ('V', "003", "Create views")
        );
        assert!(matches!(
            parse_name("v1__x.SQL"),
            Some(Named::Versioned('V', _, _))
        ));
        assert!(matches!(
            parse_name("R__Customer_views.sql"),
            Some(Named::Repeatable(d)) if d == "Customer views"
        ));
        assert!(matches!(
            parse_name("afterMigrate.sql"),
            Some(Named::Callback(Event::AfterMigrate, d)) if d.is_empty()
        ));
        assert!(matches!(
            parse_name("beforeEachMigrate__audit.sql"),
            Some(Named::Callback(Event::BeforeEachMigrate, d)) if d == "audit"
        ));
        assert!(parse_name("V1_Create.sql").is_none());
        assert!(parse_name("R1__x.sql").is_none());
        assert!(parse_name("|1__x.sql").is_none());
        assert!(parse_name("V__x.sql").is_none());
        assert!(parse_name("afterEverything.sql").is_none());
    }

    fn placeholders(pairs: &[(&str, &str)]) -> Placeholders {
        Placeholders {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            enabled: true,
            setting_hint: "set X_PLACEHOLDER_{NAME}".to_owned(),
        }
    }

    #[test]
    fn placeholders_are_replaced_case_insensitively() {
        let p = placeholders(&[("table_name", "people"), ("flyway:user", "app")]);
        assert_eq!(
            p.replace(
                "CREATE TABLE ${Table_Name} (by text DEFAULT '${flyway:user}');",
                "V1__x.sql"
            )
            .unwrap(),
            "CREATE TABLE people (by text DEFAULT 'app');"
        );
    }

    #[test]
    fn a_missing_placeholder_names_itself_the_file_and_the_line() {
        let p = placeholders(&[("a", "1")]);
        let e = p
            .replace("SELECT ${a};\n\nSELECT ${owner};", "V2__x.sql")
            .unwrap_err();
        assert!(
            e.message
                .starts_with("V2__x.sql line 3: placeholder ${owner}"),
            "{}",
            e.message
        );
        assert!(e.message.contains("X_PLACEHOLDER_OWNER"), "{}", e.message);
    }

    #[test]
    fn replacement_off_leaves_dollar_braces_alone() {
        let mut p = placeholders(&[]);
        p.enabled = false;
        assert_eq!(
            p.replace("SELECT '${x}'", "V1__x.sql").unwrap(),
            "SELECT '${x}'"
        );
    }

    #[test]
    fn checksum_ignores_line_endings_and_bom() {
        let unix = "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n";
        let windows = "\u{feff}CREATE TABLE a (id int);\r\nINSERT INTO a VALUES (1);\r\n";
        assert_eq!(checksum(unix), checksum(windows));
        assert_ne!(checksum(unix), checksum("CREATE TABLE a (id bigint);\n"));
    }
}
