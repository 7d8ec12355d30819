//! Configuration: `.env.<environment>` files plus the process environment,
//! resolved into a [`DatabaseConfig`] per database (no network I/O here).
//!
//! Lookup for a setting `K` of environment `ENV` and flow `FLOW`:
//! process env `ENV_FLOW_K`, file `ENV_FLOW_K`, process env `ENV_GLOBAL_K`,
//! file `ENV_GLOBAL_K`, then the documented default.

pub mod credentials;
mod database;
pub mod envfile;
pub mod keys;
mod password_command;
pub mod url;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use self::database::{AutoMigrate, DatabaseConfig, PoolSettings};
pub use self::keys::key_part;
pub use self::url::{ConnectSpec, StringForm};
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

    /// The databases this environment (and flow) configures: the `<DB>`
    /// of every `<ENV>_GLOBAL_<DB>_CONNECTION_STRING` (or the flow's) in the
    /// env file, the process environment or the settings given in code.
    pub fn configured_databases(&self) -> Vec<String> {
        let env = key_part(&self.environment);
        let mut scopes = vec![format!("{env}_GLOBAL_")];
        if let Some(flow) = &self.flow_name {
            scopes.push(format!("{env}_{}_", key_part(flow)));
        }
        let mut names: Vec<String> = self
            .values
            .keys()
            .cloned()
            .chain(self.env.keys())
            .filter_map(|k| {
                let rest = scopes.iter().find_map(|s| k.strip_prefix(s.as_str()))?;
                rest.strip_suffix("_CONNECTION_STRING").map(str::to_owned)
            })
            .chain(
                self.overrides
                    .keys()
                    .filter_map(|k| k.strip_suffix("_CONNECTION_STRING").map(str::to_owned)),
            )
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        names.dedup();
        names
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

    pub(crate) fn parsed<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.get_with_key(key)? {
            Some((v, full)) => v.trim().parse::<T>().map(Some).map_err(|_| {
                Error::config(format!("{full}='{v}' is not {what}; set it to {what}"))
            }),
            None => Ok(None),
        }
    }

    pub(crate) fn seconds(&self, key: &str) -> Result<Option<Duration>> {
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

    pub(crate) fn flag(&self, key: &str) -> Result<Option<bool>> {
        match self.get_with_key(key)? {
            Some((v, full)) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some(true)),
                "0" | "false" | "no" | "off" => Ok(Some(false)),
                _ => Err(Error::config(format!("{full}='{v}' must be true or false"))),
            },
            None => Ok(None),
        }
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

#[cfg(test)]
mod tests;
