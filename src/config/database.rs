//! One database's resolved settings ([`DatabaseConfig`]) and how a
//! [`ConfigManager`] resolves them: the connection target first, then each
//! group of settings (pool, deadlines, retries, migrations) on its own.

use std::time::Duration;

use super::{key_part, keys, ConfigManager, ConnectSpec, StringForm};
use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// How long a server may stay silent before its connection counts as dead:
/// long enough for a busy server or a slow link to acknowledge, short
/// enough that a flow notices a dead network path within a minute.
pub const DEFAULT_SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a database lives: its connection string parsed by its backend.
struct Target {
    /// `<DB>_CONNECTION_STRING`, as written in keys.
    key: String,
    /// The full key the string was found under (for messages).
    source: String,
    kind: Kind,
    spec: ConnectSpec,
}

impl ConfigManager {
    /// Resolve everything dbflow needs to reach `database`.
    pub fn database_config(&self, database: &str) -> Result<DatabaseConfig> {
        let db = key_part(database);
        let target = self.target(database, &db)?;
        let secs = |key: &str| self.db_seconds(&db, key);
        let login = self.credentials(&db, &target.spec, &target.source)?;
        Ok(DatabaseConfig {
            name: database.to_owned(),
            environment: self.environment.clone(),
            pool: self.pool_settings(&db)?,
            connect_timeout: match target.spec.option("connect_timeout") {
                Some(v) => Duration::from_secs(v.parse::<u64>().map_err(|_| {
                    Error::config(format!(
                        "{}: connect_timeout='{v}' must be whole seconds",
                        target.source
                    ))
                })?),
                None => secs("CONNECT_TIMEOUT")?.unwrap_or(Duration::from_secs(10)),
            },
            socket_timeout: match secs("SOCKET_TIMEOUT")? {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => Some(DEFAULT_SOCKET_TIMEOUT),
            },
            database_timeout: secs("DATABASE_TIMEOUT")?.unwrap_or(Duration::from_secs(30)),
            query_timeout: secs("QUERY_TIMEOUT")?.filter(|d| !d.is_zero()),
            prepared_statements: self.db_flag(&db, "PREPARED_STATEMENTS")?.unwrap_or(true),
            trace_parameters: self.db_flag(&db, "TRACE_PARAMETERS")?.unwrap_or(false),
            query_comments: self.db_flag(&db, "QUERY_COMMENTS")?.unwrap_or(false),
            slow_query: secs("SLOW_QUERY_SECONDS")?.filter(|d| !d.is_zero()),
            retry: self.retry_policy(&db)?,
            health_timeout: secs("HEALTH_TIMEOUT")?.unwrap_or(Duration::from_secs(5)),
            health_slow: secs("HEALTH_SLOW_THRESHOLD")?.unwrap_or(Duration::from_secs(1)),
            migrations_dir: self.get(&format!("{db}_MIGRATIONS_DIR"))?,
            migrations_root: self.get("MIGRATIONS_DIR")?,
            migrations_table: self
                .identifier(&db, "_MIGRATIONS_TABLE")?
                .unwrap_or_else(|| "schema_version".to_owned()),
            migrations_schema: self.identifier(&db, "_MIGRATIONS_SCHEMA")?,
            auto_migrate: match self.get_with_key(&format!("{db}_AUTO_MIGRATE"))? {
                Some((v, full)) => AutoMigrate::parse(&v).ok_or_else(|| {
                    Error::config(format!("{full}='{v}' must be off, check or apply"))
                })?,
                None => AutoMigrate::Check,
            },
            placeholders: self
                .with_prefix(&format!("{db}_PLACEHOLDER_"))?
                .into_iter()
                .filter(|(name, _)| name != "REPLACEMENT")
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect(),
            placeholder_replacement: self
                .flag(&format!("{db}_PLACEHOLDER_REPLACEMENT"))?
                .unwrap_or(true),
            baseline_on_migrate: self
                .flag(&format!("{db}_BASELINE_ON_MIGRATE"))?
                .unwrap_or(false),
            baseline_version: self.baseline_version(&db)?,
            migration_artifact: self
                .flag(&format!("{db}_MIGRATION_ARTIFACT"))?
                .unwrap_or(true),
            login_refs: self.references(&target.key),
            auth: login.auth,
            auth_key: login.auth_key,
            credentials: login.credentials,
            credential_timeout: login.timeout,
            database_type: target.kind,
            spec: target.spec,
            source_key: target.source,
        })
    }

    /// The connection string, its backend (declared by `<DB>_TYPE`,
    /// recognised from the string, or both, and then they must agree) and
    /// the string parsed by that backend.
    fn target(&self, database: &str, db: &str) -> Result<Target> {
        let key = format!("{db}_CONNECTION_STRING");
        let Some((conn, source)) = self.get_with_key(&key)? else {
            let flow_hint = match &self.flow_name {
                Some(f) => format!(
                    " (or the flow-specific {}_{}_{key})",
                    key_part(&self.environment),
                    key_part(f)
                ),
                None => String::new(),
            };
            let configured = self.configured_databases();
            let known = match keys::nearest(db, configured.iter().map(String::as_str)) {
                Some(near) => format!("; did you mean '{}'?", near.to_ascii_lowercase()),
                None if !configured.is_empty() => format!(
                    "; configured here: {}",
                    configured
                        .iter()
                        .map(|n| n.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => String::new(),
            };
            return Err(Error::config(format!(
                "database '{database}' is not configured for environment '{}': set {}{flow_hint} \
                 in the process environment or in an env file (searched: {}){known}",
                self.environment,
                self.global_key(&key),
                self.searched_files()
            )));
        };
        if conn.trim().is_empty() {
            return Err(Error::config(format!(
                "{source} is empty; set it to a connection string"
            )));
        }
        let type_key = format!("{db}_TYPE");
        let declared = match self.get_with_key(&type_key)? {
            Some((v, full)) => Some((
                Kind::named(&v).ok_or_else(|| {
                    Error::config(format!(
                        "{full}='{v}' is not a database type; use {}",
                        Kind::names()
                    ))
                })?,
                full,
            )),
            None => None,
        };
        let (kind, form): (Kind, StringForm) = match (declared, Kind::detect(&conn)) {
            (Some((declared, full)), Some((found, form))) => {
                if declared != found {
                    return Err(Error::config(format!(
                        "{full} says {} but {source} is a {} connection string; \
                         make them agree (or remove {full} to detect the type)",
                        declared.as_str(),
                        found.as_str()
                    )));
                }
                (declared, form)
            }
            (None, Some(found)) => found,
            (Some((declared, _)), None) => {
                return Err(Error::config(format!(
                    "{source} is not a recognised {} connection string; write a URL such as {}",
                    declared.as_str(),
                    declared.example_url()
                )))
            }
            (None, None) => {
                return Err(Error::config(format!(
                    "cannot tell the database type of {source}; set {} to {}, \
                     or write a URL such as {}",
                    self.global_key(&type_key),
                    Kind::names(),
                    Kind::examples()
                )))
            }
        };
        let spec = kind.parse(&conn, form, &source)?;
        Ok(Target {
            key,
            source,
            kind,
            spec,
        })
    }

    /// QueuePool's settings: this database's own, else the global ones.
    fn pool_settings(&self, db: &str) -> Result<PoolSettings> {
        let count = |key: &str, global: &str, default: usize| -> Result<usize> {
            let own = self.parsed::<usize>(&format!("{db}_{key}"), "a whole number")?;
            let fallback = self.parsed::<usize>(global, "a whole number")?;
            Ok(own.or(fallback).unwrap_or(default))
        };
        let size = count("POOL_SIZE", "CONNECTION_POOL_SIZE", 5)?;
        if size == 0 {
            return Err(Error::config(format!(
                "{db}_POOL_SIZE must be at least 1; set {} to 1 or more",
                self.global_key(&format!("{db}_POOL_SIZE"))
            )));
        }
        let secs = |key: &str| self.db_seconds(db, key);
        Ok(PoolSettings {
            size,
            max_overflow: count("MAX_OVERFLOW", "MAX_OVERFLOW", 10)?,
            timeout: secs("POOL_TIMEOUT")?.unwrap_or(Duration::from_secs(30)),
            pre_ping: self.db_flag(db, "POOL_PRE_PING")?.unwrap_or(true),
            recycle: secs("POOL_RECYCLE")?.filter(|d| !d.is_zero()),
            release_grace: secs("POOL_RELEASE_GRACE")?.unwrap_or(Duration::from_secs(5)),
            overflow_idle_timeout: secs("OVERFLOW_IDLE_TIMEOUT")?.unwrap_or(Duration::from_secs(2)),
        })
    }

    fn retry_policy(&self, db: &str) -> Result<RetryPolicy> {
        let attempts =
            match self.parsed::<u32>(&format!("{db}_RETRY_ATTEMPTS"), "a whole number")? {
                Some(n) => n,
                None => self
                    .parsed::<u32>("RETRY_ATTEMPTS", "a whole number")?
                    .unwrap_or(3),
            };
        Ok(RetryPolicy {
            attempts: attempts.max(1),
            min_delay: self
                .db_seconds(db, "RETRY_MIN_DELAY")?
                .unwrap_or(Duration::from_secs(4)),
            max_delay: self
                .db_seconds(db, "RETRY_MAX_DELAY")?
                .unwrap_or(Duration::from_secs(10)),
        })
    }

    /// `<DB>_BASELINE_VERSION`, checked to be a version (default 1).
    fn baseline_version(&self, db: &str) -> Result<String> {
        match self.get_with_key(&format!("{db}_BASELINE_VERSION"))? {
            Some((v, full)) => {
                if crate::migrate::files::Version::parse(&v).is_none() {
                    return Err(Error::config(format!(
                        "{full}='{v}' is not a version; write e.g. 1, V3 or 1.1"
                    )));
                }
                Ok(v.trim().to_owned())
            }
            None => Ok("1".to_owned()),
        }
    }

    /// `<DB><suffix>`, which must be a plain identifier when set.
    fn identifier(&self, db: &str, suffix: &str) -> Result<Option<String>> {
        let value = self.get(&format!("{db}{suffix}"))?;
        if let Some(v) = &value {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::config(format!(
                    "{}{suffix}='{v}' must be a plain identifier (letters, digits, '_')",
                    self.global_key(db)
                )));
            }
        }
        Ok(value)
    }

    /// A duration setting: this database's own, else the global one.
    fn db_seconds(&self, db: &str, key: &str) -> Result<Option<Duration>> {
        Ok(match self.seconds(&format!("{db}_{key}"))? {
            Some(d) => Some(d),
            None => self.seconds(key)?,
        })
    }

    /// A true/false setting: this database's own, else the global one.
    fn db_flag(&self, db: &str, key: &str) -> Result<Option<bool>> {
        Ok(self.flag(&format!("{db}_{key}"))?.or(self.flag(key)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoMigrate {
    Off,
    Check,
    Apply,
}

impl AutoMigrate {
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "no" | "0" => Some(AutoMigrate::Off),
            "check" => Some(AutoMigrate::Check),
            "apply" | "true" | "yes" | "1" => Some(AutoMigrate::Apply),
            _ => None,
        }
    }
}

/// QueuePool semantics, as SQLAlchemy documents them.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub size: usize,
    pub max_overflow: usize,
    pub timeout: Duration,
    pub pre_ping: bool,
    pub recycle: Option<Duration>,
    /// How long an unused pool keeps its connections after its last user left.
    pub release_grace: Duration,
    /// How long a connection beyond `size` may sit idle before it is closed
    /// (zero: closed when returned, QueuePool's rule).
    pub overflow_idle_timeout: Duration,
}

impl DatabaseConfig {
    /// Where a rejected login's user and password came from, for the message.
    pub fn login_source(&self) -> String {
        if let Some(origin) = self.credentials.origin() {
            format!("{} (the user) and {origin} (the password)", self.source_key)
        } else if self.login_refs.is_empty() {
            self.source_key.clone()
        } else {
            format!(
                "{} (which takes {})",
                self.source_key,
                self.login_refs.join(", ")
            )
        }
    }
}

impl PoolSettings {
    pub fn max_connections(&self) -> usize {
        self.size + self.max_overflow
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub name: String,
    pub environment: String,
    pub database_type: Kind,
    pub spec: ConnectSpec,
    /// The key the connection string came from (for messages).
    pub source_key: String,
    /// The `${VAR}`s the connection string takes, and where each came from.
    pub login_refs: Vec<String>,
    /// `<DB>_AUTH` and the key it was found under (or would be).
    pub auth: super::credentials::Auth,
    pub auth_key: String,
    /// Where each new connection's secret comes from.
    pub credentials: super::credentials::Credentials,
    /// `<DB>_CREDENTIAL_TIMEOUT`: how long a source may take.
    pub credential_timeout: Duration,
    pub pool: PoolSettings,
    /// `${name}` values for migration files (`<DB>_PLACEHOLDER_<NAME>`),
    /// names lower-cased.
    pub placeholders: std::collections::BTreeMap<String, String>,
    /// `<DB>_PLACEHOLDER_REPLACEMENT` (default true).
    pub placeholder_replacement: bool,
    /// `<DB>_BASELINE_ON_MIGRATE`: baseline a non-empty schema that has no
    /// history table at `baseline_version` when migrating.
    pub baseline_on_migrate: bool,
    pub baseline_version: String,
    /// `<DB>_MIGRATION_ARTIFACT` (default true): a markdown artifact of the
    /// migrations applied inside a Prefect flow run.
    pub migration_artifact: bool,
    pub connect_timeout: Duration,
    /// A connection whose server acknowledged nothing for this long is dead
    /// (`<DB>_SOCKET_TIMEOUT`; `None`: the kernel's own rules).
    pub socket_timeout: Option<Duration>,
    /// Default deadline of `execute_query_with_timeout` (`DATABASE_TIMEOUT`).
    pub database_timeout: Duration,
    /// Deadline of every statement, when configured (`<DB>_QUERY_TIMEOUT`).
    pub query_timeout: Option<Duration>,
    pub prepared_statements: bool,
    /// `<DB>_TRACE_PARAMETERS`: spans carry parameter values and the
    /// server's wording of errors.
    pub trace_parameters: bool,
    /// `<DB>_QUERY_COMMENTS`: statements carry a sqlcommenter comment.
    pub query_comments: bool,
    /// `<DB>_SLOW_QUERY_SECONDS`: a statement slower than this is logged
    /// at WARNING.
    pub slow_query: Option<Duration>,
    pub retry: crate::retry::RetryPolicy,
    /// A health check reports by this deadline whatever the server does.
    pub health_timeout: Duration,
    /// A health check slower than this reports `degraded`.
    pub health_slow: Duration,
    /// This database's own migrations directory (`<DB>_MIGRATIONS_DIR`).
    pub migrations_dir: Option<String>,
    /// Root holding `<database_name>/` directories (`MIGRATIONS_DIR`).
    pub migrations_root: Option<String>,
    pub migrations_table: String,
    pub migrations_schema: Option<String>,
    pub auto_migrate: AutoMigrate,
}

impl DatabaseConfig {
    /// Identity of the pool this configuration may share: same target, same
    /// credentials, same pool settings. A rotating source is part of it by
    /// what it is, not by the secret it gives now, so a rotation keeps the pool.
    pub fn pool_key(&self) -> String {
        format!(
            "{}|{}|{}|{:?}|{}|{}|{:?}|{}",
            self.name,
            self.environment,
            self.spec.redacted(),
            self.spec.password.as_deref().map(fingerprint),
            self.auth.name(),
            self.credentials.identity(),
            self.pool,
            self.prepared_statements
        )
    }
}

/// A changed password makes a new pool without the password being kept in
/// the key.
use super::credentials::fingerprint;
