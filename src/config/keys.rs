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

/// One setting dbflow reads: its name (the key's tail), where it may be
/// written, its default and what it means. The documentation's
/// configuration table is generated from [`SETTINGS`], so this is the one
/// place a setting is described.
pub struct Setting {
    pub name: &'static str,
    reach: Reach,
    pub default: &'static str,
    pub meaning: &'static str,
}

impl Setting {
    const fn new(
        name: &'static str,
        reach: Reach,
        default: &'static str,
        meaning: &'static str,
    ) -> Self {
        Self {
            name,
            reach,
            default,
            meaning,
        }
    }

    /// `database` (after `<DB>_`), `global` (right after the scope) or
    /// `both` (either; the database's key wins).
    pub fn scope(&self) -> &'static str {
        match self.reach {
            Reach::Database => "database",
            Reach::Global => "global",
            Reach::Both => "both",
        }
    }
}

/// Every setting dbflow reads. Defaults and meanings are Markdown: they are
/// the documentation's configuration reference.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "CONNECTION_STRING",
        Reach::Database,
        "required",
        "`postgresql://`, `postgres://`, `postgresql+psycopg2://` URLs; options `sslmode`, \
         `sslrootcert`, `sslcert`, `sslkey`, `connect_timeout`, `application_name`, `options`, \
         `host=/socket/dir` (socket: `postgresql:///db?host=/var/run/postgresql`); SQL Server's \
         forms are in [Connection strings and TLS](connection-strings.md). Unknown options are an error naming them.",
    ),
    Setting::new(
        "TYPE",
        Reach::Database,
        "detected",
        "`postgresql` or `sqlserver`; must agree with the connection string",
    ),
    Setting::new(
        "PASSWORD_COMMAND",
        Reach::Database,
        "off",
        "a command whose standard output is the password, run (through `sh -c`) for every \
         new connection, so a rotated password is used by the next connection; one trailing \
         newline is removed. Its output and standard error are never shown; a failure, an \
         empty output or the deadline (`CREDENTIAL_TIMEOUT`) is a `ConfigurationError` \
         naming the exit status. The connection string then carries no password \
         ([Credentials that rotate](connection-strings.md#credentials-that-rotate))",
    ),
    Setting::new(
        "AUTH",
        Reach::Database,
        "`password`",
        "`rds-iam`: an Amazon RDS IAM token (boto3, `dbflow[rds-iam]`) for every new \
         connection, PostgreSQL only; `entra`: a Microsoft Entra token (azure-identity's \
         `DefaultAzureCredential`, `dbflow[entra]`), on SQL Server as the login's access \
         token, on Azure Database for PostgreSQL as the password. Both need TLS \
         (`sslmode=require` or stronger, `encrypt=yes`)",
    ),
    Setting::new(
        "AUTH_REGION",
        Reach::Database,
        "boto3's (`AWS_REGION`)",
        "the AWS region an `AUTH=rds-iam` token is signed for",
    ),
    Setting::new(
        "CREDENTIAL_TIMEOUT",
        Reach::Both,
        "10",
        "seconds a `PASSWORD_COMMAND` (then killed), a `password_provider` or an `AUTH` \
         token source may take to give a new connection its secret",
    ),
    Setting::new(
        "POOL_SIZE",
        Reach::Database,
        "`CONNECTION_POOL_SIZE`, else 5",
        "connections kept open",
    ),
    Setting::new(
        "CONNECTION_POOL_SIZE",
        Reach::Global,
        "5",
        "the `POOL_SIZE` of every database that sets none",
    ),
    Setting::new(
        "MAX_OVERFLOW",
        Reach::Both,
        "10",
        "extra connections under load, beyond `POOL_SIZE`",
    ),
    Setting::new(
        "OVERFLOW_IDLE_TIMEOUT",
        Reach::Both,
        "2",
        "seconds an extra connection may sit idle before it is closed, so repeated bursts \
         reuse it; `0` closes it when returned (SQLAlchemy QueuePool's rule)",
    ),
    Setting::new(
        "POOL_TIMEOUT",
        Reach::Both,
        "30",
        "seconds to wait for a free connection, then `PoolTimeoutError`",
    ),
    Setting::new(
        "POOL_PRE_PING",
        Reach::Both,
        "true",
        "ping a connection idle for over a second before handing it out; a dead one is \
         replaced transparently. Every checkout also asks the socket, without a round trip, \
         whether the server closed it (a terminated session, a restart): such a connection \
         is never handed out, with or without pre-ping",
    ),
    Setting::new(
        "POOL_RECYCLE",
        Reach::Both,
        "off",
        "seconds after which a connection is replaced, each connection's age drawn \
         within ±10% of it (as HikariCP's `maxLifetime`) so connections opened together \
         are not all replaced together",
    ),
    Setting::new(
        "POOL_RELEASE_GRACE",
        Reach::Both,
        "5",
        "seconds an unused pool keeps its connections after its last manager left",
    ),
    Setting::new(
        "CONNECT_TIMEOUT",
        Reach::Both,
        "10",
        "seconds to establish a connection (`connect_timeout` in the URL wins)",
    ),
    Setting::new(
        "SOCKET_TIMEOUT",
        Reach::Both,
        "30",
        "seconds a server may acknowledge nothing before its connection counts as dead: \
         TCP keepalive probes and `TCP_USER_TIMEOUT` (Linux) end a call on a network path \
         that died without a reset with `DatabaseConnectionError` (\"the server stopped \
         answering\"); a long statement on a healthy network is never cut (the server's \
         kernel answers the probes). `0`: the kernel's own rules (minutes to hours)",
    ),
    Setting::new(
        "DATABASE_TIMEOUT",
        Reach::Both,
        "30",
        "default deadline of `execute_query_with_timeout`, in seconds",
    ),
    Setting::new(
        "QUERY_TIMEOUT",
        Reach::Both,
        "none",
        "deadline of every statement, in seconds (PostgreSQL: `statement_timeout`; \
         SQL Server: the command timeout) → `QueryTimeoutError`",
    ),
    Setting::new(
        "TRACE_PARAMETERS",
        Reach::Both,
        "false",
        "OpenTelemetry spans carry the statement's parameter values (`dbflow.query.parameters`) \
         and the server's own wording of an error, which may quote values; off, a span names \
         the statement as written (`:name` placeholders) and an error by its type and code",
    ),
    Setting::new(
        "QUERY_COMMENTS",
        Reach::Both,
        "false",
        "append a comment in sqlcommenter's format to each statement: \
         `/*application='..',flow='..',task='..',traceparent='00-..'*/` (the Prefect flow and \
         task run, the current OpenTelemetry span), so the server's activity views and logs show \
         who sent it. PostgreSQL keeps its prepared statements: the statement is described once \
         and its commented text parsed in the same round trip as its execution; SQL Server sends \
         a commented statement through `sp_executesql`, not by a prepared handle",
    ),
    Setting::new(
        "SLOW_QUERY_SECONDS",
        Reach::Both,
        "off",
        "a statement slower than this logs one WARNING through the `dbflow` logger (so the \
         Prefect run log shows it): its text as written, duration, rows and database, never a \
         parameter value",
    ),
    Setting::new(
        "PREPARED_STATEMENTS",
        Reach::Both,
        "true",
        "statements are prepared once per connection and cached (PostgreSQL: named \
         statements; SQL Server: `sp_prepexec` once, then `sp_execute` by handle, at most 256 \
         per connection, the least recently used unprepared); `false` is PgBouncer's \
         transaction-pooling mode (see [Behind PgBouncer](pgbouncer.md)), and on SQL Server sends every \
         parameterized statement through `sp_executesql`",
    ),
    Setting::new(
        "MIGRATIONS_DIR",
        Reach::Both,
        "`migrations`, then `core/migrations`",
        "`<DB>_MIGRATIONS_DIR`: this database's migrations directory; `MIGRATIONS_DIR`: the \
         root holding `<database_name>/` directories",
    ),
    Setting::new(
        "MIGRATIONS_TABLE",
        Reach::Database,
        "`schema_version`",
        "the migration history table",
    ),
    Setting::new(
        "MIGRATIONS_SCHEMA",
        Reach::Database,
        "the default schema",
        "the schema of the migration history table",
    ),
    Setting::new(
        "AUTO_MIGRATE",
        Reach::Database,
        "`check`",
        "`off`, `check` (warn about pending), `apply` (run before the first query)",
    ),
    Setting::new(
        "RETRY_ATTEMPTS",
        Reach::Both,
        "3",
        "attempts of `execute_query_with_retry`",
    ),
    Setting::new(
        "RETRY_MIN_DELAY",
        Reach::Both,
        "4",
        "seconds `execute_query_with_retry` waits before its first retry",
    ),
    Setting::new(
        "RETRY_MAX_DELAY",
        Reach::Both,
        "10",
        "the longest wait between retries, in seconds",
    ),
    Setting::new(
        "HEALTH_TIMEOUT",
        Reach::Both,
        "5",
        "seconds a health check may take",
    ),
    Setting::new(
        "HEALTH_SLOW_THRESHOLD",
        Reach::Both,
        "1",
        "the response time, in seconds, above which a health check reports `degraded`",
    ),
    Setting::new(
        "PLACEHOLDER_REPLACEMENT",
        Reach::Database,
        "true",
        "`false` leaves `${...}` text in migration files alone",
    ),
    Setting::new(
        "BASELINE_ON_MIGRATE",
        Reach::Database,
        "false",
        "baseline a schema that has tables but no history table when migrating (see \
         [Migrations](migrations.md))",
    ),
    Setting::new(
        "BASELINE_VERSION",
        Reach::Database,
        "1",
        "the version `BASELINE_ON_MIGRATE` records",
    ),
    Setting::new(
        "MIGRATION_ARTIFACT",
        Reach::Database,
        "true",
        "inside a Prefect flow run, `run_migrations()` publishes a markdown artifact of what \
         it applied",
    ),
];

/// Settings whose name has a part the user chooses; matched by shape, not
/// by name (see `is_known`), and documented beside [`SETTINGS`].
pub const PATTERNS: &[Setting] = &[Setting::new(
    "PLACEHOLDER_<NAME>",
    Reach::Database,
    "—",
    "the value of `${name}` in migration files",
)];

fn settings(global: bool) -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(move |s| match s.reach {
            Reach::Database => !global,
            Reach::Global => global,
            Reach::Both => true,
        })
        .map(|s| s.name)
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
    fn every_setting_is_documented() {
        for setting in SETTINGS.iter().chain(PATTERNS) {
            assert!(
                !setting.default.trim().is_empty(),
                "{} has no default",
                setting.name
            );
            assert!(
                setting.meaning.trim().len() > 10,
                "{} has no meaning",
                setting.name
            );
        }
    }

    #[test]
    fn distance_is_bounded() {
        assert_eq!(distance("TIMOUT", "TIMEOUT", 1), Some(1));
        assert_eq!(distance("TSET", "TEST", 1), Some(1));
        assert_eq!(distance("ABC", "XYZ", 2), None);
    }
}
