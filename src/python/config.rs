//! `dbflow.ConfigManager`: the Rust configuration reader, exposed as is.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::IntoPyResult;
use crate::config::ConfigManager;

/// The settings of one environment (and flow): `ConfigManager(environment=None,
/// flow_name=None, envs_dir=None)` reads `<envs_dir>/.env.<environment>` and
/// the process environment (which wins), resolving `${VAR}`. The environment
/// defaults to `DBFLOW_ENVIRONMENT`, then `PREFECT_ENVIRONMENT`, then
/// `development`; the directory to `DBFLOW_ENVS_DIR`, then `envs/` or
/// `core/envs/` under the working directory. A flow's keys
/// (`<ENV>_<FLOW>_<DB>_...`) beat the global ones (`<ENV>_GLOBAL_<DB>_...`).
/// `with_settings(name, {...})` gives a copy with settings in code.
#[pyclass(module = "dbflow._native", name = "ConfigManager", frozen)]
pub struct PyConfigManager {
    pub inner: ConfigManager,
}

#[pymethods]
impl PyConfigManager {
    #[new]
    #[pyo3(signature = (environment=None, flow_name=None, envs_dir=None))]
    fn new(
        environment: Option<&str>,
        flow_name: Option<&str>,
        envs_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        Ok(PyConfigManager {
            inner: ConfigManager::new(environment, flow_name, envs_dir.as_deref()).py_result()?,
        })
    }

    #[getter]
    fn environment(&self) -> &str {
        self.inner.environment()
    }

    #[getter]
    fn flow_name(&self) -> Option<&str> {
        self.inner.flow_name()
    }

    /// The env file that was read, or None when none exists.
    #[getter]
    fn env_file(&self) -> Option<PathBuf> {
        self.inner.env_file().map(|p| p.to_path_buf())
    }

    /// A setting by its short name (`"rpa_db_type"` → `<ENV>_GLOBAL_RPA_DB_TYPE`).
    #[pyo3(signature = (name, default=None))]
    fn get_variable(&self, name: &str, default: Option<String>) -> PyResult<Option<String>> {
        Ok(self.inner.get(name).py_result()?.or(default))
    }

    /// Like `get_variable`, for values that must never be logged.
    #[pyo3(signature = (name, default=None))]
    fn get_secret(&self, name: &str, default: Option<String>) -> PyResult<Option<String>> {
        self.get_variable(name, default)
    }

    /// A copy in which `database_name`'s settings (short names such as
    /// `connection_string`, `pool_size`) take the given values — how a
    /// Prefect Block configures a database instead of an env file.
    fn with_settings(
        &self,
        database_name: &str,
        settings: std::collections::HashMap<String, Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let db = crate::config::key_part(database_name);
        let mut pairs = Vec::with_capacity(settings.len());
        for (k, v) in settings {
            if v.is_none() {
                continue;
            }
            let text = if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
                b.is_true().to_string()
            } else {
                v.str()?.to_string()
            };
            pairs.push((format!("{db}_{}", crate::config::key_part(&k)), text));
        }
        Ok(PyConfigManager {
            inner: self.inner.with_overrides(pairs),
        })
    }

    /// The settings given in code (`with_settings`), as
    /// `<DATABASE>_<SETTING>` names (values may be secrets).
    fn settings_in_code(&self) -> Vec<String> {
        self.inner.override_keys()
    }

    /// Every key the env file defines (names only; values may be secrets).
    fn file_keys(&self) -> Vec<String> {
        self.inner.file_keys()
    }

    /// Keys (env file, process environment) that look like dbflow settings
    /// but are none, each said with the key it probably meant.
    fn unknown_keys(&self) -> Vec<String> {
        self.inner
            .suspect_keys()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The full keys looked up for a setting, most specific first.
    fn candidate_keys(&self, name: &str) -> Vec<String> {
        self.inner.candidate_keys(name)
    }

    /// The resolved settings of one database, with the password redacted.
    fn database_config<'py>(
        &self,
        py: Python<'py>,
        database_name: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.database_config(database_name).py_result()?;
        let d = PyDict::new(py);
        d.set_item("database_name", &c.name)?;
        d.set_item("database_type", c.database_type.as_str())?;
        d.set_item("connection_string", c.spec.redacted())?;
        d.set_item("source_key", &c.source_key)?;
        d.set_item("pool_size", c.pool.size)?;
        d.set_item("max_overflow", c.pool.max_overflow)?;
        d.set_item("pool_timeout", c.pool.timeout.as_secs_f64())?;
        d.set_item("pool_pre_ping", c.pool.pre_ping)?;
        d.set_item("pool_recycle", c.pool.recycle.map(|r| r.as_secs_f64()))?;
        d.set_item("pool_release_grace", c.pool.release_grace.as_secs_f64())?;
        d.set_item(
            "overflow_idle_timeout",
            c.pool.overflow_idle_timeout.as_secs_f64(),
        )?;
        d.set_item("connect_timeout", c.connect_timeout.as_secs_f64())?;
        d.set_item("database_timeout", c.database_timeout.as_secs_f64())?;
        d.set_item("query_timeout", c.query_timeout.map(|t| t.as_secs_f64()))?;
        d.set_item("prepared_statements", c.prepared_statements)?;
        d.set_item("migrations_dir", c.migrations_dir.as_deref())?;
        d.set_item(
            "auto_migrate",
            format!("{:?}", c.auto_migrate).to_ascii_lowercase(),
        )?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "ConfigManager(environment={:?}, flow_name={:?}, env_file={:?})",
            self.inner.environment(),
            self.inner.flow_name(),
            self.inner.env_file().map(|p| p.display().to_string())
        )
    }
}

/// The process environment's keys (those that are valid Unicode).
/// Say each suspect key once per process, as a warning.
pub(crate) fn warn_suspect_keys(config: &ConfigManager) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let suspects = config.suspect_keys();
    let Ok(mut said) = SAID.lock() else { return };
    for suspect in suspects {
        if !said.contains(&suspect.key) {
            tracing::warn!("{suspect}");
            said.push(suspect.key);
        }
    }
}
