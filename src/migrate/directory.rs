//! Where a database's migration files are, and what to say when they are
//! nowhere.

use std::path::{Path, PathBuf};

use crate::config::DatabaseConfig;
use crate::error::Error;

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
/// was not found: every path searched, absolute, and how to point at it —
/// first in the terms the caller used (`migrations_dir=` in code, or the
/// settings).
pub fn missing_directory(
    config: &DatabaseConfig,
    searched: &[PathBuf],
    root_in_code: Option<&Path>,
) -> Error {
    let cwd = std::env::current_dir().unwrap_or_default();
    let paths: Vec<String> = searched
        .iter()
        .map(|p| cwd.join(p).display().to_string())
        .collect();
    let key = format!(
        "{}_GLOBAL_{}_MIGRATIONS_DIR",
        crate::config::key_part(&config.environment),
        crate::config::key_part(&config.name),
    );
    let remedy = match root_in_code {
        Some(root) if config.migrations_dir.is_none() => format!(
            "create it, or give migrations_dir= (the manager's argument, the command's \
             --migrations-dir) the folder that holds a '{}' folder instead of {} \
             ({key} names the database's own folder and wins over it)",
            config.name,
            cwd.join(root).display(),
        ),
        _ => format!(
            "create it, or set {key} (or MIGRATIONS_DIR, the directory holding one folder per \
             database) to where the files are"
        ),
    };
    Error::config(format!(
        "no migrations directory for database '{}': looked for {} (working directory {}); {remedy}",
        config.name,
        paths.join(", "),
        cwd.display(),
    ))
}
