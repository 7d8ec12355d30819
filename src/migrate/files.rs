//! Migration files on disk: `V<version>__<description>.sql` and undo files
//! `U<version>__<description>.sql` (Flyway's meaning), versions compared
//! numerically part by part (`V1` < `V1.1` = `V1_1` < `V2`), checksums as
//! Flyway computes them (CRC32 over the lines, so line endings and a
//! leading BOM do not matter).
//!
//! Why not refinery: its history table is its own (not the `schema_version`
//! columns flows already have), `U` means "unversioned" there, it has no
//! undo, and an out-of-order file is skipped silently. dbflow's runner
//! replaces it; every way a set can be wrong is an error naming the file.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::sql::Dialect;

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

#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub version: Version,
    pub description: String,
    pub script: String,
    pub path: PathBuf,
    pub checksum: i32,
    pub transactional: bool,
    text: String,
}

impl MigrationFile {
    /// The file split into what is sent to the server: statements on
    /// PostgreSQL (so a failure names its statement's line), `GO` batches
    /// on SQL Server.
    pub fn chunks(&self, dialect: Dialect) -> Vec<Chunk> {
        match dialect {
            Dialect::Postgres => crate::sql::split_statements(&self.text, dialect)
                .into_iter()
                .map(|(line, sql)| Chunk { line, sql })
                .collect(),
            Dialect::SqlServer => split_go_batches(&self.text),
        }
    }
}

/// The versioned files and undo files of one database, validated.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    pub directory: Option<PathBuf>,
    pub versions: Vec<MigrationFile>,
    pub undo: BTreeMap<String, MigrationFile>,
}

impl MigrationSet {
    pub fn undo_for(&self, version: &Version) -> Option<&MigrationFile> {
        self.undo.values().find(|u| &u.version == version)
    }

    pub fn find(&self, version: &Version) -> Option<&MigrationFile> {
        self.versions.iter().find(|f| &f.version == version)
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

/// Parse `V1_2__Add_phone.sql` → (prefix, version, description).
fn parse_name(name: &str) -> Option<(char, Version, String)> {
    // Any case of `.sql`, as the directory listing accepts.
    let cut = name.len().checked_sub(4)?;
    let stem = (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".sql"))
        .then(|| &name[..cut])?;
    let prefix = stem.chars().next()?.to_ascii_uppercase();
    if prefix != 'V' && prefix != 'U' {
        return None;
    }
    let (version, description) = stem[1..].split_once("__")?;
    let version = Version::parse(version)?;
    Some((
        prefix,
        version,
        description.replace('_', " ").trim().to_owned(),
    ))
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
    let mut versions: Vec<MigrationFile> = Vec::new();
    let mut undo: BTreeMap<String, MigrationFile> = BTreeMap::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((prefix, version, description)) = parse_name(&name) else {
            return Err(migration_error(format!(
                "{}: not a migration file name; write V<version>__<description>.sql \
                 (e.g. V004__Add_phone_column.sql) or U<version>__<description>.sql for an undo",
                path.display()
            )));
        };
        let raw = std::fs::read(&path)
            .map_err(|e| migration_error(format!("{}: cannot read: {e}", path.display())))?;
        let text = String::from_utf8(raw)
            .map_err(|_| migration_error(format!("{}: not valid UTF-8", path.display())))?;
        let first_line = text
            .trim_start_matches('\u{feff}')
            .lines()
            .next()
            .unwrap_or("");
        let transactional = !first_line
            .trim()
            .eq_ignore_ascii_case("-- dbflow:no-transaction");
        let file = MigrationFile {
            checksum: checksum(&text),
            version,
            description,
            script: name.clone(),
            path: path.clone(),
            transactional,
            text,
        };
        if prefix == 'V' {
            if let Some(other) = versions.iter().find(|f| f.version == file.version) {
                return Err(migration_error(format!(
                    "{} and {} both define version {}; give one of them a new version",
                    other.script, file.script, file.version.written
                )));
            }
            versions.push(file);
        } else {
            if let Some(other) = undo.values().find(|u| u.version == file.version) {
                return Err(migration_error(format!(
                    "{} and {} both undo version {}; keep one",
                    other.script, file.script, file.version.written
                )));
            }
            undo.insert(name, file);
        }
    }
    for u in undo.values() {
        if !versions.iter().any(|v| v.version == u.version) {
            return Err(migration_error(format!(
                "{}: undoes version {}, but there is no V{}__*.sql file",
                u.path.display(),
                u.version.written,
                u.version.written
            )));
        }
    }
    versions.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(MigrationSet {
        directory: Some(dir.to_path_buf()),
        versions,
        undo,
    })
}

/// SQL Server batches: split on lines holding only `GO` (any case).
pub fn split_go_batches(text: &str) -> Vec<Chunk> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        if line.trim().eq_ignore_ascii_case("go") {
            if !current.trim().is_empty() {
                chunks.push(Chunk {
                    line: start,
                    sql: std::mem::take(&mut current),
                });
            }
            current.clear();
            start = index + 2;
            continue;
        }
        if current.trim().is_empty() {
            current.clear();
            start = index + 1;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        chunks.push(Chunk {
            line: start,
            sql: current,
        });
    }
    chunks
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
        let (p, v, d) = parse_name("V003__Create_views.sql").unwrap();
        assert_eq!(
            (p, v.written.as_str(), d.as_str()),
            ('V', "003", "Create views")
        );
        assert!(parse_name("V1_Create.sql").is_none());
        assert!(parse_name("R__repeatable.sql").is_none());
        assert!(parse_name("|1__x.sql").is_none());
        assert!(parse_name("V__x.sql").is_none());
    }

    #[test]
    fn checksum_ignores_line_endings_and_bom() {
        let unix = "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n";
        let windows = "\u{feff}CREATE TABLE a (id int);\r\nINSERT INTO a VALUES (1);\r\n";
        assert_eq!(checksum(unix), checksum(windows));
        assert_ne!(checksum(unix), checksum("CREATE TABLE a (id bigint);\n"));
    }

    #[test]
    fn go_batches_keep_their_start_lines() {
        let text = "CREATE TABLE a (id int)\nGO\n\n  go  \nCREATE VIEW v AS\nSELECT 1 AS x\nGO\n";
        let chunks = split_go_batches(text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].line, 1);
        assert_eq!(chunks[1].line, 5);
        assert!(chunks[1].sql.starts_with("CREATE VIEW"));
    }
}
