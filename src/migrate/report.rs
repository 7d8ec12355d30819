//! What the migration commands report.

use std::path::PathBuf;

use super::plan::PlannedPart;
use crate::value::Value;

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

/// A repeatable file and its state: `pending` (never applied), `applied`
/// (this checksum is the latest applied), `outdated` (edited since).
#[derive(Debug, Clone)]
pub struct RepeatableInfo {
    pub script: String,
    pub description: String,
    pub state: &'static str,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub directory: Option<PathBuf>,
    pub repeatable: Vec<RepeatableInfo>,
    pub baseline: Option<String>,
    pub current_version: Option<String>,
    pub pending: Vec<(String, String, String)>,
    pub applied: Vec<AppliedInfo>,
    pub total: usize,
    pub last_migration: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub applied: Vec<String>,
    /// Repeatable files applied (script names), after the versions.
    pub repeatable: Vec<String>,
    pub current_version: Option<String>,
    /// The version baselined by `<DB>_BASELINE_ON_MIGRATE` in this run.
    pub baselined: Option<String>,
    /// A dry run: what would be sent, in order; nothing was changed.
    pub dry_run: Option<Vec<PlannedPart>>,
}
