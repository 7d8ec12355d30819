//! Configuration: `.env.<environment>` files plus the process environment,
//! resolved into a [`DatabaseConfig`] per database (no network I/O here).
//!
//! Lookup for a setting `K` of environment `ENV` and flow `FLOW`:
//! process env `ENV_FLOW_K`, file `ENV_FLOW_K`, process env `ENV_GLOBAL_K`,
//! file `ENV_GLOBAL_K`, then the documented default.

pub mod envfile;
pub mod keys;
pub mod url;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use self::url::{ConnectSpec, StringForm};
use crate::backend::Kind;
use crate::error::{Error, Result};

pub const DEFAULT_ENVIRONMENT: &str = "development";
const DEFAULT_ENVS_DIRS: [&str; 2] = ["core/envs", "envs"];

/// The process environment as configuration reads it: one key's value,
/// and every key (prefixed settings such as placeholders, and the scan for
/// misspelt keys). [`ProcessEnv::real`] in use; a fixed map in tests.
#[derive(Clone)]
pub struct ProcessEnv {
    values: Option<Arc<HashMap<String, String>>>,
}

impl ProcessEnv {
    /// This process's environment, read when asked (never copied).
    pub fn real() -> Self {
        ProcessEnv { values: None }
    }

    /// A fixed environment of these pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map = pairs.into_iter().map(|(k, v)| (k.into(), v.into()));
        ProcessEnv {
            values: Some(Arc::new(map.collect())),
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        match &self.values {
            Some(map) => map.get(key).cloned(),
            None => std::env::var(key).ok(),
        }
    }

    /// Every key (those that are valid UTF-8).
    pub fn keys(&self) -> Vec<String> {
        match &self.values {
            Some(map) => map.keys().cloned().collect(),
            None => std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect(),
        }
    }
}

/// Reads one environment's settings. Cheap to clone.
#[derive(Clone)]
pub struct ConfigManager {
    environment: String,
    flow_name: Option<String>,
    file: Option<PathBuf>,
    searched: Vec<PathBuf>,
    values: Arc<HashMap<String, String>>,
    /// Settings given in code (a Prefect Block): they beat everything else.
    overrides: Arc<HashMap<String, String>>,
    env: ProcessEnv,
}

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

/// A path as the user should read it in a message: relative paths are
/// relative to the working directory, so say which.
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    }
}

impl ConfigManager {
    /// `environment`: explicit, else `DBFLOW_ENVIRONMENT`, else
    /// `PREFECT_ENVIRONMENT`, else `development`. `envs_dir`: explicit, else
    /// `DBFLOW_ENVS_DIR`, else the first of `core/envs`, `envs` holding the file.
    pub fn new(
        environment: Option<&str>,
        flow_name: Option<&str>,
        envs_dir: Option<&Path>,
    ) -> Result<Self> {
        Self::with_env(environment, flow_name, envs_dir, ProcessEnv::real())
    }

    /// As [`ConfigManager::new`] with an injected process environment (tests).
    pub fn with_env(
        environment: Option<&str>,
        flow_name: Option<&str>,
        envs_dir: Option<&Path>,
        env: ProcessEnv,
    ) -> Result<Self> {
        let environment = environment
            .map(str::to_owned)
            .or_else(|| env.get("DBFLOW_ENVIRONMENT"))
            .or_else(|| env.get("PREFECT_ENVIRONMENT"))
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned())
            .trim()
            .to_ascii_lowercase();
        let file_name = format!(".env.{environment}");
        let dirs: Vec<PathBuf> = match envs_dir
            .map(Path::to_path_buf)
            .or_else(|| env.get("DBFLOW_ENVS_DIR").map(PathBuf::from))
        {
            Some(dir) => vec![dir],
            None => DEFAULT_ENVS_DIRS.iter().map(PathBuf::from).collect(),
        };
        let searched: Vec<PathBuf> = dirs.iter().map(|d| d.join(&file_name)).collect();
        let file = searched.iter().find(|p| p.is_file()).cloned();
        let values = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
                envfile::parse(&text, &path.display().to_string())?
            }
            None => HashMap::new(),
        };
        Ok(ConfigManager {
            environment,
            flow_name: flow_name.map(str::to_owned).filter(|f| !f.is_empty()),
            file,
            searched,
            values: Arc::new(values),
            overrides: Arc::new(HashMap::new()),
            env,
        })
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    pub fn flow_name(&self) -> Option<&str> {
        self.flow_name.as_deref()
    }

    /// The file that was read, if any.
    pub fn env_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The env files looked for, as absolute paths.
    pub fn searched_files(&self) -> String {
        self.searched
            .iter()
            .map(|p| absolute(p).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A copy whose settings `key` (e.g. `RPA_DB_CONNECTION_STRING`) take the
    /// given values, ahead of the environment and the env file.
    pub fn with_overrides(
        &self,
        settings: impl IntoIterator<Item = (String, String)>,
    ) -> ConfigManager {
        let mut overrides = (*self.overrides).clone();
        for (k, v) in settings {
            overrides.insert(key_part(&k), v);
        }
        ConfigManager {
            overrides: Arc::new(overrides),
            ..self.clone()
        }
    }

    /// The keys the env file defines, sorted.
    /// The settings given in code ([`ConfigManager::with_overrides`]), as
    /// `<DATABASE>_<SETTING>` names (values may be secrets).
    pub fn override_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.overrides.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn file_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.values.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Keys of the env file and of the process environment
    /// that look like dbflow settings but are none (see [`keys`]). Of the
    /// process environment only keys under `<ENV>_GLOBAL_`, this flow's
    /// prefix, or a near miss of `<ENV>_GLOBAL_` are looked at: it holds
    /// much that is not ours.
    pub fn suspect_keys(&self) -> Vec<keys::Suspect> {
        let env = key_part(&self.environment);
        let mut scopes = vec![format!("{env}_GLOBAL_")];
        if let Some(flow) = &self.flow_name {
            scopes.push(format!("{env}_{}_", key_part(flow)));
        }
        let ours = |k: &str| {
            scopes.iter().any(|s| k.starts_with(s.as_str()))
                || k.split('_').nth(1) == Some("GLOBAL")
        };
        let mut all: Vec<String> = self.values.keys().cloned().collect();
        all.extend(self.env.keys().into_iter().filter(|k| ours(k)));
        keys::suspects(all.iter().map(String::as_str), &self.environment)
    }

    /// The full keys tried for setting `key`, most specific first.
    pub fn candidate_keys(&self, key: &str) -> Vec<String> {
        let env = key_part(&self.environment);
        let key = key_part(key);
        let mut keys = Vec::with_capacity(2);
        if let Some(flow) = &self.flow_name {
            keys.push(format!("{env}_{}_{key}", key_part(flow)));
        }
        keys.push(format!("{env}_GLOBAL_{key}"));
        keys
    }

    /// The global key a user should set for `key` (used in messages).
    pub fn global_key(&self, key: &str) -> String {
        format!("{}_GLOBAL_{}", key_part(&self.environment), key_part(key))
    }

    /// Every setting whose key starts with `prefix` (e.g. `SHOP_PLACEHOLDER_`)
    /// in this environment, as (rest of the key, value): global keys, then
    /// this flow's over them; the process environment over the file.
    pub fn with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let env = key_part(&self.environment);
        let prefix = key_part(prefix);
        let mut scopes = vec![format!("{env}_GLOBAL_{prefix}")];
        if let Some(flow) = &self.flow_name {
            scopes.push(format!("{env}_{}_{prefix}", key_part(flow)));
        }
        let process = self.env.keys();
        let mut found: std::collections::BTreeMap<String, (String, String)> = Default::default();
        for scope in &scopes {
            let mut keys: Vec<&String> = self
                .values
                .keys()
                .chain(process.iter())
                .filter(|k| k.starts_with(scope.as_str()) && k.len() > scope.len())
                .collect();
            keys.sort();
            keys.dedup();
            for full in keys {
                let raw = self
                    .env
                    .get(full)
                    .or_else(|| self.values.get(full).cloned());
                if let Some(raw) = raw {
                    found.insert(full[scope.len()..].to_owned(), (raw, full.clone()));
                }
            }
        }
        for (key, value) in self.overrides.iter() {
            if let Some(rest) = key.strip_prefix(&prefix).filter(|r| !r.is_empty()) {
                found.insert(
                    rest.to_owned(),
                    (value.clone(), format!("{key} (given in code)")),
                );
            }
        }
        found
            .into_iter()
            .map(|(rest, (raw, full))| Ok((rest, self.expand(&raw, &full, 0)?)))
            .collect()
    }

    /// Raw lookup: the value and the full key it came from.
    fn lookup_raw(&self, key: &str) -> Option<(String, String)> {
        if let Some(v) = self.overrides.get(&key_part(key)) {
            return Some((v.clone(), format!("{} (given in code)", key_part(key))));
        }
        for full in self.candidate_keys(key) {
            if let Some(v) = self.env.get(&full) {
                return Some((v, full));
            }
            if let Some(v) = self.values.get(&full) {
                return Some((v.clone(), full));
            }
        }
        None
    }

    /// Look a setting up and fill `${VAR}` references. Returns the value and
    /// the key it came from.
    pub fn get_with_key(&self, key: &str) -> Result<Option<(String, String)>> {
        match self.lookup_raw(key) {
            Some((raw, full)) => Ok(Some((self.expand(&raw, &full, 0)?, full))),
            None => Ok(None),
        }
    }

    /// Fill `${VAR}` from the process environment, else from a variable the
    /// env file defines (as python-dotenv and docker compose do), itself
    /// expanded the same way.
    fn expand(&self, raw: &str, key: &str, depth: usize) -> Result<String> {
        let lookup = |name: &str| -> Result<Option<String>> {
            if let Some(v) = self.env.get(name) {
                return Ok(Some(v));
            }
            match self.values.get(name) {
                Some(_) if depth >= 8 => Err(Error::config(format!(
                    "{key}: ${{{name}}} refers back to itself through other variables; \
                     give one of them a plain value"
                ))),
                Some(value) => self.expand(value, name, depth + 1).map(Some),
                None => Ok(None),
            }
        };
        let files = match &self.file {
            Some(f) => absolute(f).display().to_string(),
            None => self.searched_files(),
        };
        envfile::interpolate(raw, key, &lookup, &files)
    }

    /// The `${VAR}` names a setting's raw value refers to, each with where
    /// its value comes from: for messages about a rejected login.
    pub fn references(&self, key: &str) -> Vec<String> {
        let Some((raw, _)) = self.lookup_raw(key) else {
            return Vec::new();
        };
        envfile::referenced_names(&raw)
            .into_iter()
            .map(|name| {
                let from = if self.env.get(&name).is_some() {
                    "the process environment".to_owned()
                } else if self.values.contains_key(&name) {
                    self.file
                        .as_ref()
                        .map_or_else(|| "the env file".to_owned(), |f| f.display().to_string())
                } else {
                    "its default".to_owned()
                };
                format!("${{{name}}} from {from}")
            })
            .collect()
    }

    pub fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.get_with_key(key)?.map(|(v, _)| v))
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.get_with_key(key)? {
            Some((v, full)) => v.trim().parse::<T>().map(Some).map_err(|_| {
                Error::config(format!("{full}='{v}' is not {what}; set it to {what}"))
            }),
            None => Ok(None),
        }
    }

    fn seconds(&self, key: &str) -> Result<Option<Duration>> {
        match self.get_with_key(key)? {
            Some((v, full)) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
                _ => Err(Error::config(format!(
                    "{full}='{v}' is not a number of seconds; set it to e.g. 30"
                ))),
            },
            None => Ok(None),
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>> {
        match self.get_with_key(key)? {
            Some((v, full)) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some(true)),
                "0" | "false" | "no" | "off" => Ok(Some(false)),
                _ => Err(Error::config(format!("{full}='{v}' must be true or false"))),
            },
            None => Ok(None),
        }
    }

    /// Resolve everything dbflow needs to reach `database`.
    pub fn database_config(&self, database: &str) -> Result<DatabaseConfig> {
        let db = key_part(database);
        let conn_key = format!("{db}_CONNECTION_STRING");
        let Some((conn, conn_source)) = self.get_with_key(&conn_key)? else {
            let flow_hint = match &self.flow_name {
                Some(f) => format!(
                    " (or the flow-specific {}_{}_{conn_key})",
                    key_part(&self.environment),
                    key_part(f)
                ),
                None => String::new(),
            };
            return Err(Error::config(format!(
                "database '{database}' is not configured for environment '{}': set {}{flow_hint} \
                 in the process environment or in an env file (searched: {})",
                self.environment,
                self.global_key(&conn_key),
                self.searched_files()
            )));
        };
        if conn.trim().is_empty() {
            return Err(Error::config(format!(
                "{conn_source} is empty; set it to a connection string"
            )));
        }
        let detected = Kind::detect(&conn);
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
        let (database_type, form) = match (declared, detected) {
            (Some((declared, full)), Some((found, form))) => {
                if declared != found {
                    return Err(Error::config(format!(
                        "{full} says {} but {conn_source} is a {} connection string; \
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
                "{conn_source} is not a recognised {} connection string; write a URL such as {}",
                declared.as_str(),
                declared.example_url()
            )))
            }
            (None, None) => {
                return Err(Error::config(format!(
                    "cannot tell the database type of {conn_source}; set {} to {}, \
                     or write a URL such as {}",
                    self.global_key(&type_key),
                    Kind::names(),
                    Kind::examples()
                )))
            }
        };
        let spec = database_type.parse(&conn, form, &conn_source)?;

        let setting_usize = |key: &str, global: Option<&str>, default: usize| -> Result<usize> {
            let own = self.parsed::<usize>(&format!("{db}_{key}"), "a whole number")?;
            let fallback = match global {
                Some(g) => self.parsed::<usize>(g, "a whole number")?,
                None => None,
            };
            Ok(own.or(fallback).unwrap_or(default))
        };
        let size = setting_usize("POOL_SIZE", Some("CONNECTION_POOL_SIZE"), 5)?;
        if size == 0 {
            return Err(Error::config(format!(
                "{db}_POOL_SIZE must be at least 1; set {} to 1 or more",
                self.global_key(&format!("{db}_POOL_SIZE"))
            )));
        }
        let max_overflow = setting_usize("MAX_OVERFLOW", Some("MAX_OVERFLOW"), 10)?;
        let secs = |key: &str| -> Result<Option<Duration>> {
            Ok(match self.seconds(&format!("{db}_{key}"))? {
                Some(d) => Some(d),
                None => self.seconds(key)?,
            })
        };
        let pool = PoolSettings {
            size,
            max_overflow,
            timeout: secs("POOL_TIMEOUT")?.unwrap_or(Duration::from_secs(30)),
            pre_ping: self
                .flag(&format!("{db}_POOL_PRE_PING"))?
                .or(self.flag("POOL_PRE_PING")?)
                .unwrap_or(true),
            recycle: secs("POOL_RECYCLE")?.filter(|d| !d.is_zero()),
            release_grace: secs("POOL_RELEASE_GRACE")?.unwrap_or(Duration::from_secs(5)),
            overflow_idle_timeout: secs("OVERFLOW_IDLE_TIMEOUT")?.unwrap_or(Duration::from_secs(2)),
        };
        let connect_timeout = match spec.option("connect_timeout") {
            Some(v) => Duration::from_secs(v.parse::<u64>().map_err(|_| {
                Error::config(format!(
                    "{conn_source}: connect_timeout='{v}' must be whole seconds"
                ))
            })?),
            None => secs("CONNECT_TIMEOUT")?.unwrap_or(Duration::from_secs(10)),
        };
        let database_timeout = secs("DATABASE_TIMEOUT")?.unwrap_or(Duration::from_secs(30));
        let query_timeout = secs("QUERY_TIMEOUT")?.filter(|d| !d.is_zero());
        let prepared_statements = self
            .flag(&format!("{db}_PREPARED_STATEMENTS"))?
            .or(self.flag("PREPARED_STATEMENTS")?)
            .unwrap_or(true);
        let migrations_dir = self.get(&format!("{db}_MIGRATIONS_DIR"))?;
        let migrations_root = self.get("MIGRATIONS_DIR")?;
        let migrations_table = self
            .get(&format!("{db}_MIGRATIONS_TABLE"))?
            .unwrap_or_else(|| "schema_version".to_owned());
        let migrations_schema = self.get(&format!("{db}_MIGRATIONS_SCHEMA"))?;
        for (what, value) in [
            ("_MIGRATIONS_TABLE", Some(&migrations_table)),
            ("_MIGRATIONS_SCHEMA", migrations_schema.as_ref()),
        ] {
            if let Some(v) = value {
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(Error::config(format!(
                        "{}{what}='{v}' must be a plain identifier (letters, digits, '_')",
                        self.global_key(&db)
                    )));
                }
            }
        }
        let retry = crate::retry::RetryPolicy {
            attempts:
                match self.parsed::<u32>(&format!("{db}_RETRY_ATTEMPTS"), "a whole number")? {
                    Some(n) => n,
                    None => self
                        .parsed::<u32>("RETRY_ATTEMPTS", "a whole number")?
                        .unwrap_or(3),
                }
                .max(1),
            min_delay: secs("RETRY_MIN_DELAY")?.unwrap_or(Duration::from_secs(4)),
            max_delay: secs("RETRY_MAX_DELAY")?.unwrap_or(Duration::from_secs(10)),
        };
        let health_timeout = secs("HEALTH_TIMEOUT")?.unwrap_or(Duration::from_secs(5));
        let health_slow = secs("HEALTH_SLOW_THRESHOLD")?.unwrap_or(Duration::from_secs(1));
        let placeholders = self
            .with_prefix(&format!("{db}_PLACEHOLDER_"))?
            .into_iter()
            .filter(|(name, _)| name != "REPLACEMENT")
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        let placeholder_replacement = self
            .flag(&format!("{db}_PLACEHOLDER_REPLACEMENT"))?
            .unwrap_or(true);
        let baseline_on_migrate = self
            .flag(&format!("{db}_BASELINE_ON_MIGRATE"))?
            .unwrap_or(false);
        let baseline_version = match self.get_with_key(&format!("{db}_BASELINE_VERSION"))? {
            Some((v, full)) => {
                if crate::migrate::files::Version::parse(&v).is_none() {
                    return Err(Error::config(format!(
                        "{full}='{v}' is not a version; write e.g. 1, V3 or 1.1"
                    )));
                }
                v.trim().to_owned()
            }
            None => "1".to_owned(),
        };
        let migration_artifact = self
            .flag(&format!("{db}_MIGRATION_ARTIFACT"))?
            .unwrap_or(true);
        let auto_migrate = match self.get_with_key(&format!("{db}_AUTO_MIGRATE"))? {
            Some((v, full)) => AutoMigrate::parse(&v).ok_or_else(|| {
                Error::config(format!("{full}='{v}' must be off, check or apply"))
            })?,
            None => AutoMigrate::Check,
        };
        Ok(DatabaseConfig {
            name: database.to_owned(),
            environment: self.environment.clone(),
            database_type,
            spec,
            login_refs: self.references(&conn_key),
            source_key: conn_source,
            pool,
            connect_timeout,
            database_timeout,
            query_timeout,
            prepared_statements,
            retry,
            health_timeout,
            health_slow,
            migrations_dir,
            migrations_root,
            migrations_table,
            migrations_schema,
            auto_migrate,
            placeholders,
            placeholder_replacement,
            baseline_on_migrate,
            baseline_version,
            migration_artifact,
        })
    }
}

impl std::fmt::Debug for ConfigManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConfigManager(environment={:?}, flow_name={:?}, env_file={:?})",
            self.environment, self.flow_name, self.file
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoMigrate {
    Off,
    Check,
    Apply,
}

impl AutoMigrate {
    fn parse(v: &str) -> Option<Self> {
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
        if self.login_refs.is_empty() {
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
    /// Default deadline of `execute_query_with_timeout` (`DATABASE_TIMEOUT`).
    pub database_timeout: Duration,
    /// Deadline of every statement, when configured (`<DB>_QUERY_TIMEOUT`).
    pub query_timeout: Option<Duration>,
    pub prepared_statements: bool,
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
    /// credentials, same pool settings.
    pub fn pool_key(&self) -> String {
        format!(
            "{}|{}|{}|{:?}|{:?}|{}",
            self.name,
            self.environment,
            self.spec.redacted(),
            self.spec.password.as_deref().map(fingerprint),
            self.pool,
            self.prepared_statements
        )
    }
}

/// A short non-reversible fingerprint so a changed password makes a new pool
/// without the password being kept in the key.
fn fingerprint(secret: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    secret.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn manager(
        file: &str,
        env: &[(&str, &str)],
        flow: Option<&str>,
    ) -> (ConfigManager, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let mut f = std::fs::File::create(dir.path().join(".env.development")).unwrap();
        f.write_all(file.as_bytes()).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let m = ConfigManager::with_env(None, flow, Some(dir.path()), ProcessEnv::from_pairs(env))
            .unwrap();
        (m, dir)
    }

    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicUsize, Ordering};
        pub struct Dir(PathBuf);
        static N: AtomicUsize = AtomicUsize::new(0);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "dbflow-cfg-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const FILE: &str =
        "DEVELOPMENT_GLOBAL_RPA_DB_CONNECTION_STRING=postgresql://u:${PW}@h:5432/rpa_db\n\
                        DEVELOPMENT_GLOBAL_RPA_DB_POOL_SIZE=7\n\
                        DEVELOPMENT_GLOBAL_CONNECTION_POOL_SIZE=3\n\
                        DEVELOPMENT_GLOBAL_DATABASE_TIMEOUT=45\n\
                        DEVELOPMENT_RPA1_RPA_DB_MAX_OVERFLOW=2\n";

    #[test]
    fn resolves_file_interpolation_and_defaults() {
        let (m, _d) = manager(FILE, &[("PW", "s3cret")], None);
        let c = m.database_config("rpa_db").unwrap();
        assert_eq!(c.database_type.as_str(), "postgresql");
        assert_eq!(c.spec.password.as_deref(), Some("s3cret"));
        assert_eq!(c.pool.size, 7);
        assert_eq!(c.pool.max_overflow, 10);
        assert_eq!(c.database_timeout, Duration::from_secs(45));
        assert!(c.pool.pre_ping);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn flow_key_beats_global_and_env_beats_file() {
        let (m, _d) = manager(
            FILE,
            &[("PW", "x"), ("DEVELOPMENT_GLOBAL_RPA_DB_POOL_SIZE", "9")],
            Some("rpa1"),
        );
        let c = m.database_config("rpa_db").unwrap();
        assert_eq!(c.pool.max_overflow, 2, "flow-specific key wins");
        assert_eq!(c.pool.size, 9, "process environment beats the file");
    }

    #[test]
    fn global_pool_size_is_the_fallback() {
        let file = "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\n\
                    DEVELOPMENT_GLOBAL_CONNECTION_POOL_SIZE=3\n";
        let (m, _d) = manager(file, &[], None);
        assert_eq!(m.database_config("x").unwrap().pool.size, 3);
    }

    #[test]
    fn missing_connection_string_names_key_and_files() {
        let (m, _d) = manager("", &[], Some("rpa1"));
        let err = m.database_config("SurveyHub").unwrap_err();
        assert!(
            err.message
                .contains("DEVELOPMENT_GLOBAL_SURVEYHUB_CONNECTION_STRING"),
            "{}",
            err.message
        );
        assert!(err
            .message
            .contains("DEVELOPMENT_RPA1_SURVEYHUB_CONNECTION_STRING"));
        assert!(err.message.contains(".env.development"));
    }

    #[test]
    fn contradictory_type_is_an_error_naming_the_key() {
        let file = "DEVELOPMENT_GLOBAL_X_TYPE=sqlserver\nDEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\n";
        let (m, _d) = manager(file, &[], None);
        let err = m.database_config("x").unwrap_err();
        assert!(
            err.message.contains("DEVELOPMENT_GLOBAL_X_TYPE"),
            "{}",
            err.message
        );
    }

    #[test]
    fn bad_number_names_the_key() {
        let file = "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\nDEVELOPMENT_GLOBAL_X_POOL_SIZE=many\n";
        let (m, _d) = manager(file, &[], None);
        let err = m.database_config("x").unwrap_err();
        assert!(
            err.message.contains("DEVELOPMENT_GLOBAL_X_POOL_SIZE"),
            "{}",
            err.message
        );
    }

    #[test]
    fn environment_selection_order() {
        let env: HashMap<String, String> = [("PREFECT_ENVIRONMENT", "Staging")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let m = ConfigManager::with_env(
            None,
            None,
            Some(Path::new("/nonexistent")),
            ProcessEnv::from_pairs(env),
        )
        .unwrap();
        assert_eq!(m.environment(), "staging");
        let env2: HashMap<String, String> = [
            ("PREFECT_ENVIRONMENT", "staging"),
            ("DBFLOW_ENVIRONMENT", "test"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = ConfigManager::with_env(
            None,
            None,
            Some(Path::new("/nonexistent")),
            ProcessEnv::from_pairs(env2),
        )
        .unwrap();
        assert_eq!(m.environment(), "test");
    }

    #[test]
    fn overrides_beat_environment_and_file() {
        let (m, _d) = manager(FILE, &[("PW", "x")], Some("rpa1"));
        let m = m.with_overrides([
            (
                "rpa_db_connection_string".to_string(),
                "postgresql://block@h/rpa_db".to_string(),
            ),
            ("RPA_DB_POOL_SIZE".to_string(), "2".to_string()),
        ]);
        let c = m.database_config("rpa_db").unwrap();
        assert_eq!(c.spec.user.as_deref(), Some("block"));
        assert_eq!(c.pool.size, 2);
        assert_eq!(
            c.pool.max_overflow, 2,
            "other settings still come from the file"
        );
    }

    #[test]
    fn prefixed_settings_and_the_typo_scan_read_the_given_environment() {
        let (m, _d) = manager(
            "DEVELOPMENT_GLOBAL_SHOP_PLACEHOLDER_SCHEMA=from_file\n\
             DEVELOPMENT_GLOBAL_SHOP_PLACEHOLDER_OWNER=file_owner\n",
            &[
                ("DEVELOPMENT_GLOBAL_SHOP_PLACEHOLDER_SCHEMA", "from_env"),
                ("DEVELOPMENT_RPA1_SHOP_PLACEHOLDER_REGION", "eu"),
                ("DEVELOPMENT_GLOBAL_SHOP_POOL_SIZ", "4"),
            ],
            Some("rpa1"),
        );
        let found = m.with_prefix("SHOP_PLACEHOLDER_").unwrap();
        assert_eq!(
            found,
            vec![
                ("OWNER".to_owned(), "file_owner".to_owned()),
                ("REGION".to_owned(), "eu".to_owned()),
                ("SCHEMA".to_owned(), "from_env".to_owned()),
            ]
        );
        let suspects: Vec<String> = m.suspect_keys().into_iter().map(|s| s.key).collect();
        assert_eq!(
            suspects,
            vec!["DEVELOPMENT_GLOBAL_SHOP_POOL_SIZ".to_owned()]
        );
    }

    #[test]
    fn key_part_normalizes() {
        assert_eq!(key_part("SurveyHub"), "SURVEYHUB");
        assert_eq!(key_part("rpa-db.x"), "RPA_DB_X");
    }
}
