//! Rotating secrets that come from Python: a `password_provider=` callable,
//! and the built-ins of `<DB>_AUTH` (`dbflow._credentials`: boto3's RDS IAM
//! token, azure-identity's Entra token). The core calls them through
//! [`Provider`] on a blocking thread, taking the GIL only for the call
//! (`config::credentials` keeps the deadline and the expiry cache).

use std::time::{Duration, SystemTime};

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::config::credentials::{Auth, Credentials, Fetched, Login, Provider, Secret, Target};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};

/// How much of a provider's exception message a dbflow error quotes.
const QUOTED: usize = 200;

struct PyProvider {
    callable: Py<PyAny>,
    /// The built-ins take the target and may say when their token expires.
    builtin: bool,
    /// Entra on SQL Server: the answer is an access token, not a password.
    token: bool,
    identity: String,
}

impl Provider for PyProvider {
    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn fetch(&self, target: &Target, origin: &str, _timeout: Duration) -> Result<Fetched> {
        Python::attach(|py| {
            let callable = self.callable.bind(py);
            let answer = if self.builtin {
                callable.call1((target.host.clone(), target.port, target.user.clone()))
            } else {
                callable.call0()
            };
            let answer = answer.map_err(|e| raised(py, &e, origin))?;
            let (text, expires) = match answer.extract::<(Bound<'_, PyAny>, f64)>() {
                Ok((text, at)) if self.builtin => (text, expiry(at)),
                _ => (answer, None),
            };
            let Ok(text) = text.cast::<PyString>() else {
                let kind = text
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                return Err(Error::config(format!(
                    "{origin} returned a {kind}, not a str; make it return the password as a str"
                )));
            };
            let text = text.to_str().map_err(|_| {
                Error::config(format!("{origin} returned a str that is not valid UTF-8"))
            })?;
            if text.is_empty() {
                return Err(Error::config(format!(
                    "{origin} returned an empty str; make it return the password"
                )));
            }
            let secret = Secret::new(text.to_owned());
            Ok(Fetched {
                login: if self.token {
                    Login::AccessToken(secret)
                } else {
                    Login::Password(secret)
                },
                expires,
            })
        })
    }
}

fn expiry(epoch_seconds: f64) -> Option<SystemTime> {
    (epoch_seconds.is_finite() && epoch_seconds > 0.0)
        .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(epoch_seconds))
}

/// A provider's exception in dbflow's words: its class and the start of its
/// message (which the provider wrote, so it holds no secret dbflow knows).
fn raised(py: Python<'_>, e: &PyErr, origin: &str) -> Error {
    let class = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let text = e.value(py).to_string();
    let text: String = text.chars().take(QUOTED).collect();
    Error::config(format!(
        "{origin} raised {class} ({text}); fix it so it returns the current password"
    ))
}

/// Give `config` its rotating source from Python: `password_provider`, or
/// the built-in its `<DB>_AUTH` names. Conflicting sources are errors.
pub(crate) fn attach(
    config: &mut DatabaseConfig,
    password_provider: Option<Bound<'_, PyAny>>,
) -> Result<()> {
    let timeout = config.credential_timeout;
    if let Some(provider) = password_provider {
        if !provider.is_callable() {
            return Err(Error::config(
                "password_provider must be a callable taking no arguments that returns the \
                 password (a str)",
            ));
        }
        let other = match (&config.auth, config.credentials.origin()) {
            (_, Some(origin)) => Some(origin.to_owned()),
            (Auth::Password, None) => None,
            (auth, None) => Some(format!("{}={}", config.auth_key, auth.name())),
        };
        if let Some(other) = other {
            return Err(Error::config(format!(
                "password_provider= and {other} both give the password; keep one"
            )));
        }
        if config.spec.password.is_some() {
            return Err(Error::config(format!(
                "{} has a password and password_provider= gives one too; remove the password \
                 from {}",
                config.source_key, config.source_key
            )));
        }
        let identity = format!("python:{:x}", provider.as_ptr() as usize);
        let provider = PyProvider {
            callable: provider.unbind(),
            builtin: false,
            token: false,
            identity,
        };
        config.credentials =
            Credentials::rotating(Box::new(provider), "password_provider".to_owned(), timeout);
        return Ok(());
    }
    let region = match &config.auth {
        Auth::Password => return Ok(()),
        Auth::RdsIam { region } => region.clone(),
        Auth::Entra => None,
    };
    let kind = config.database_type.as_str();
    let callable = Python::attach(|py| {
        py.import("dbflow._credentials")
            .and_then(|m| m.getattr("builtin"))
            .and_then(|f| f.call1((config.auth.name(), kind, region.clone(), &config.auth_key)))
            .map(Bound::unbind)
            .map_err(|e| {
                // The built-in explains itself (a missing extra, a region).
                Error::config(e.value(py).to_string())
            })
    })?;
    let provider = PyProvider {
        callable,
        builtin: true,
        token: config.auth == Auth::Entra && kind == "sqlserver",
        identity: format!("{}:{}", config.auth.name(), region.unwrap_or_default()),
    };
    let origin = format!("{}={}", config.auth_key, config.auth.name());
    config.credentials = Credentials::rotating(Box::new(provider), origin, timeout);
    Ok(())
}
