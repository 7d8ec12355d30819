//! The settings dbflow reads, and the keys that look like one of them but
//! are not (`…_QUERY_TIMOUT`, `DEVELOPEMENT_…`): a typo must not pass as
//! "not set". A key is suspect when it carries this environment's prefix
//! (or a misspelling of it) and does not end in a known setting; the
//! setting it probably meant is the nearest known one by edit distance.

/// Upper-case a name for use in a key: `SurveyHub` -> `SURVEYHUB`,
/// `rpa-db` -> `RPA_DB`.
pub fn key_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Where a setting may be written: after `<ENV>_<SCOPE>_<DB>_` (one
/// database), right after `<ENV>_<SCOPE>_` (every database), or both.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    Database,
    Global,
    Both,
}

/// Every setting dbflow reads (the README's configuration reference).
const SETTINGS: &[(&str, Reach)] = &[
    ("CONNECTION_STRING", Reach::Database),
    ("TYPE", Reach::Database),
    ("POOL_SIZE", Reach::Database),
    ("CONNECTION_POOL_SIZE", Reach::Global),
    ("MAX_OVERFLOW", Reach::Both),
    ("OVERFLOW_IDLE_TIMEOUT", Reach::Both),
    ("POOL_TIMEOUT", Reach::Both),
    ("POOL_PRE_PING", Reach::Both),
    ("POOL_RECYCLE", Reach::Both),
    ("POOL_RELEASE_GRACE", Reach::Both),
    ("CONNECT_TIMEOUT", Reach::Both),
    ("SOCKET_TIMEOUT", Reach::Both),
    ("DATABASE_TIMEOUT", Reach::Both),
    ("QUERY_TIMEOUT", Reach::Both),
    ("PREPARED_STATEMENTS", Reach::Both),
    ("MIGRATIONS_DIR", Reach::Both),
    ("MIGRATIONS_TABLE", Reach::Database),
    ("MIGRATIONS_SCHEMA", Reach::Database),
    ("AUTO_MIGRATE", Reach::Database),
    ("RETRY_ATTEMPTS", Reach::Both),
    ("RETRY_MIN_DELAY", Reach::Both),
    ("RETRY_MAX_DELAY", Reach::Both),
    ("HEALTH_TIMEOUT", Reach::Both),
    ("HEALTH_SLOW_THRESHOLD", Reach::Both),
    ("PLACEHOLDER_REPLACEMENT", Reach::Database),
    ("BASELINE_ON_MIGRATE", Reach::Database),
    ("BASELINE_VERSION", Reach::Database),
    ("MIGRATION_ARTIFACT", Reach::Database),
];

fn settings(global: bool) -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(move |(_, reach)| match reach {
            Reach::Database => !global,
            Reach::Global => global,
            Reach::Both => true,
        })
        .map(|(name, _)| *name)
}

/// Environment names people use; a key starting with a near miss of one of
/// them (or of the current environment) is a typo, not another environment.
const USUAL_ENVIRONMENTS: &[&str] = &["DEVELOPMENT", "STAGING", "PRODUCTION", "TEST", "TESTING"];

/// A key that looks like a dbflow setting but is none, and what it
/// probably meant (`None`: nothing close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    pub key: String,
    pub meant: Option<String>,
}

/// Edit distance counting an adjacent swap as one edit (optimal string
/// alignment: `TSET` is one edit from `TEST`), bounded: `None` above `limit`.
fn distance(a: &str, b: &str, limit: usize) -> Option<usize> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    let found = d[a.len() * width + b.len()];
    (found <= limit).then_some(found)
}

/// The candidate `word` is most likely a typo of (`None` if none is near).
pub fn nearest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .filter_map(|c| distance(word, c, tolerance(c)).map(|d| (d, c)))
        .filter(|(d, _)| *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// How many edits a word of this length may carry and still be a typo.
fn tolerance(word: &str) -> usize {
    match word.len() {
        0..=3 => 0,
        4..=8 => 1,
        _ => 2,
    }
}

/// Whether `rest` (a key after `<ENV>_`) is a setting dbflow reads.
fn is_known(rest: &str) -> bool {
    let Some((_, after_scope)) = rest.split_once('_') else {
        return false;
    };
    // `<DB>_PLACEHOLDER_<NAME>`: any name is a placeholder's.
    let placeholder = after_scope
        .split_once("_PLACEHOLDER_")
        .is_some_and(|(db, name)| !db.is_empty() && !name.is_empty());
    placeholder
        || settings(true).any(|s| s == after_scope)
        || settings(false)
            .any(|s| after_scope.len() > s.len() + 1 && after_scope.ends_with(&format!("_{s}")))
}

/// The known setting nearest to a tail of `rest`, as the corrected `rest`.
fn nearest_setting(rest: &str) -> Option<String> {
    let words: Vec<&str> = rest.split('_').collect();
    let mut best: Option<(usize, String)> = None;
    // Tails of one to four words against database settings; a global
    // setting right after the scope.
    for take in 1..=4.min(words.len().saturating_sub(1)) {
        let (head, tail) = words.split_at(words.len() - take);
        let tail = tail.join("_");
        // A global setting follows the scope directly; a database's follows its name.
        for known in settings(head.len() == 1) {
            if let Some(d) = distance(&tail, known, tolerance(known)) {
                if d > 0 && best.as_ref().is_none_or(|(b, _)| d < *b) {
                    best = Some((d, format!("{}_{known}", head.join("_"))));
                }
            }
        }
    }
    best.map(|(_, fixed)| fixed)
}

/// The suspect keys among `keys` for environment `environment`.
pub fn suspects<'k>(keys: impl IntoIterator<Item = &'k str>, environment: &str) -> Vec<Suspect> {
    let env = key_part(environment);
    let mut out = Vec::new();
    for key in keys {
        let Some((first, rest)) = key.split_once('_') else {
            continue;
        };
        if first == env {
            if is_known(rest) {
                continue;
            }
            out.push(Suspect {
                key: key.to_owned(),
                meant: nearest_setting(rest).map(|r| format!("{env}_{r}")),
            });
            continue;
        }
        // `DEVELOPEMENT_GLOBAL_…`: a misspelt environment in front of a
        // setting (misspelt too, perhaps).
        let near_env = std::iter::once(env.as_str())
            .chain(USUAL_ENVIRONMENTS.iter().copied())
            .filter(|e| *e != first)
            .find(|e| distance(first, e, tolerance(e)).is_some_and(|d| d > 0));
        if let Some(meant_env) = near_env {
            let rest_fixed = if is_known(rest) {
                Some(rest.to_owned())
            } else {
                nearest_setting(rest)
            };
            if let Some(rest_fixed) = rest_fixed {
                out.push(Suspect {
                    key: key.to_owned(),
                    meant: Some(format!("{meant_env}_{rest_fixed}")),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup();
    out
}

impl std::fmt::Display for Suspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.meant {
            Some(meant) => write!(
                f,
                "{} is not a dbflow setting; did you mean {meant}?",
                self.key
            ),
            None => write!(
                f,
                "{} is not a dbflow setting (none of the documented keys ends its name)",
                self.key
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meant(key: &str) -> Option<String> {
        let found = suspects([key], "development");
        assert_eq!(found.len(), 1, "{key} should be suspect: {found:?}");
        found[0].meant.clone()
    }

    #[test]
    fn known_keys_pass() {
        for key in [
            "DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMEOUT",
            "DEVELOPMENT_GLOBAL_RPA_DB_CONNECTION_STRING",
            "DEVELOPMENT_MY_FLOW_SHOP_POOL_SIZE",
            "DEVELOPMENT_GLOBAL_CONNECTION_POOL_SIZE",
            "DEVELOPMENT_GLOBAL_DATABASE_TIMEOUT",
            "DEVELOPMENT_GLOBAL_SHOP_PLACEHOLDER_TABLE_NAME",
            "DEVELOPMENT_GLOBAL_SHOP_BASELINE_ON_MIGRATE",
            "SHOP_DB_PASSWORD",
            "PATH",
            "PRODUCTION_GLOBAL_SHOP_CONNECTION_STRING",
        ] {
            assert!(suspects([key], "development").is_empty(), "{key}");
        }
    }

    #[test]
    fn misspelt_settings_name_the_key_meant() {
        assert_eq!(
            meant("DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMOUT").as_deref(),
            Some("DEVELOPMENT_GLOBAL_SHOP_QUERY_TIMEOUT")
        );
        assert_eq!(
            meant("DEVELOPMENT_GLOBAL_SHOP_CONECTION_STRING").as_deref(),
            Some("DEVELOPMENT_GLOBAL_SHOP_CONNECTION_STRING")
        );
        assert_eq!(
            meant("DEVELOPMENT_GLOBAL_RPA_DB_POOL_SIZ").as_deref(),
            Some("DEVELOPMENT_GLOBAL_RPA_DB_POOL_SIZE")
        );
        assert_eq!(
            meant("DEVELOPMENT_GLOBAL_DATABASE_TIMEOT").as_deref(),
            Some("DEVELOPMENT_GLOBAL_DATABASE_TIMEOUT")
        );
    }

    #[test]
    fn a_misspelt_environment_is_named() {
        assert_eq!(
            meant("DEVELOPEMENT_GLOBAL_SHOP_CONNECTION_STRING").as_deref(),
            Some("DEVELOPMENT_GLOBAL_SHOP_CONNECTION_STRING")
        );
        // Other real environments are not typos.
        assert!(suspects(["STAGING_GLOBAL_SHOP_CONNECTION_STRING"], "development").is_empty());
    }

    #[test]
    fn an_unknown_key_under_the_prefix_is_named_without_a_guess() {
        assert_eq!(meant("DEVELOPMENT_GLOBAL_SHOP_COLOUR"), None);
    }

    #[test]
    fn nearest_finds_the_typo_and_nothing_far() {
        assert_eq!(nearest("RPA_BD", ["RPA_DB", "SHOP"]), Some("RPA_DB"));
        assert_eq!(nearest("CRM", ["RPA_DB", "SHOP"]), None);
        assert_eq!(nearest("SHOP", ["SHOP"]), None);
    }

    #[test]
    fn distance_is_bounded() {
        assert_eq!(distance("TIMOUT", "TIMEOUT", 1), Some(1));
        assert_eq!(distance("TSET", "TEST", 1), Some(1));
        assert_eq!(distance("ABC", "XYZ", 2), None);
    }
}
