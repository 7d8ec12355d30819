//! Credentials that rotate: where each new physical connection's secret
//! comes from. A database logs in with the connection string's password
//! ([`Credentials::Written`]), or asks a source for every new connection
//! ([`Rotating`]): `<DB>_PASSWORD_COMMAND` ([`super::password_command`]), a
//! `password_provider=` callable, or a built-in of `<DB>_AUTH` (RDS IAM,
//! Entra; the Python layer supplies those, since they are SDK calls). The
//! seam asks once per connection ([`for_connection`]), before the backend
//! connects; a secret is never cached past its expiry, and only a login
//! whose expiry is known (an Entra token) is cached at all.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{ConfigManager, ConnectSpec, DatabaseConfig};
use crate::error::{Error, Result};

/// How long a source may take to give a secret (`<DB>_CREDENTIAL_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A cached token is replaced this long before it expires, so a login never
/// carries one that lapses while the server checks it.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// A secret: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What one new connection logs in with.
#[derive(Clone, Debug)]
pub enum Login {
    Password(Secret),
    /// SQL Server's federated-authentication token (Entra).
    AccessToken(Secret),
}

/// A login from a source and, when the source knows it, when it lapses.
#[derive(Debug)]
pub struct Fetched {
    pub login: Login,
    pub expires: Option<SystemTime>,
}

/// The connection a source is asked for (an RDS IAM token is signed for
/// this host, port and user).
#[derive(Clone, Debug)]
pub struct Target {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
}

impl Target {
    fn of(spec: &ConnectSpec) -> Self {
        Target {
            host: spec
                .host
                .clone()
                .or_else(|| spec.option("host").map(str::to_owned)),
            port: spec.port,
            user: spec.user.clone(),
        }
    }
}

/// A source of secrets. `fetch` may block (a command, a Python call): it
/// runs on the runtime's blocking threads, never on a worker.
pub trait Provider: Send + Sync {
    /// Names the source in the pool's identity; never a secret.
    fn identity(&self) -> String;
    /// One login for `target`, within `timeout` where the source can be
    /// stopped (a command is killed at it). Errors name `origin` (the
    /// setting or argument the source came from) and never a secret.
    fn fetch(&self, target: &Target, origin: &str, timeout: Duration) -> Result<Fetched>;
}

/// `<DB>_AUTH`: which login the database uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// The connection string's, `<DB>_PASSWORD_COMMAND`'s or a provider's.
    Password,
    /// An RDS IAM token (boto3) as the password; region from `<DB>_AUTH_REGION`.
    RdsIam { region: Option<String> },
    /// A Microsoft Entra access token (azure-identity).
    Entra,
}

impl Auth {
    pub fn name(&self) -> &'static str {
        match self {
            Auth::Password => "password",
            Auth::RdsIam { .. } => "rds-iam",
            Auth::Entra => "entra",
        }
    }

    /// A token is a bearer credential: it only travels over TLS.
    pub fn needs_tls(&self) -> bool {
        !matches!(self, Auth::Password)
    }
}

/// One source asked for every new connection, with its deadline and the
/// last token it gave while that token is fresh.
pub struct Rotating {
    provider: Box<dyn Provider>,
    /// The setting or argument the source came from, for messages.
    pub origin: String,
    timeout: Duration,
    cached: Mutex<Option<Fetched>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Rotating {
    /// A login for one new connection: the cached token while it has more
    /// than [`EXPIRY_MARGIN`] left, else a fresh one.
    async fn login(self: &Arc<Self>, target: Target) -> Result<Login> {
        // One fetch at a time: connections opened together share a token
        // instead of each asking for one.
        let _turn = self.fetching.lock().await;
        if let Some(login) = self.fresh_cached() {
            return Ok(login);
        }
        let me = self.clone();
        let task =
            tokio::task::spawn_blocking(move || me.provider.fetch(&target, &me.origin, me.timeout));
        // A command is killed at its deadline; a Python call cannot be
        // stopped, so the wait for it ends a second later.
        let fetched = match tokio::time::timeout(self.timeout + Duration::from_secs(1), task).await
        {
            Err(_) => {
                return Err(Error::config(format!(
                    "{} gave no password within {:?} (CREDENTIAL_TIMEOUT); make it answer sooner \
                     or raise the timeout",
                    self.origin, self.timeout
                )))
            }
            Ok(Err(_)) => {
                return Err(Error::config(format!(
                    "{} stopped unexpectedly while giving a password",
                    self.origin
                )))
            }
            Ok(Ok(fetched)) => fetched?,
        };
        let login = fetched.login.clone();
        let lasting = fetched.expires.is_some_and(|at| {
            at.duration_since(SystemTime::now())
                .is_ok_and(|left| left > EXPIRY_MARGIN)
        });
        if let Ok(mut cached) = self.cached.lock() {
            *cached = lasting.then_some(fetched);
        }
        Ok(login)
    }

    fn fresh_cached(&self) -> Option<Login> {
        let cached = self.cached.lock().ok()?;
        let fetched = cached.as_ref()?;
        let left = fetched.expires?.duration_since(SystemTime::now()).ok()?;
        (left > EXPIRY_MARGIN).then(|| fetched.login.clone())
    }
}

/// Where a database's secret comes from.
#[derive(Clone, Default)]
pub enum Credentials {
    /// The connection string's password (or none).
    #[default]
    Written,
    /// A source asked for every new connection.
    Rotating(Arc<Rotating>),
    /// One connection's access token, resolved from a rotating source.
    Token(Secret),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Written => f.write_str("Written"),
            Credentials::Rotating(r) => write!(f, "Rotating({})", r.origin),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

impl Credentials {
    pub fn rotating(provider: Box<dyn Provider>, origin: String, timeout: Duration) -> Self {
        Credentials::Rotating(Arc::new(Rotating {
            provider,
            origin,
            timeout,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    /// The part of the pool's identity the source gives (a rotated secret
    /// keeps its pool; another source makes another).
    pub fn identity(&self) -> String {
        match self {
            Credentials::Written => "written".to_owned(),
            Credentials::Rotating(r) => r.provider.identity(),
            Credentials::Token(_) => "token".to_owned(),
        }
    }

    /// The access token this connection logs in with, if any.
    pub fn access_token(&self) -> Option<&str> {
        match self {
            Credentials::Token(t) => Some(t.expose()),
            _ => None,
        }
    }

    /// The setting or argument a rotating secret comes from.
    pub fn origin(&self) -> Option<&str> {
        match self {
            Credentials::Rotating(r) => Some(&r.origin),
            _ => None,
        }
    }
}

/// `config` as one new connection uses it: with a fresh secret from its
/// rotating source (a copy), or as it is.
pub async fn for_connection(config: &DatabaseConfig) -> Result<Cow<'_, DatabaseConfig>> {
    let rotating = match &config.credentials {
        Credentials::Rotating(r) => r,
        Credentials::Token(_) => return Ok(Cow::Borrowed(config)),
        Credentials::Written if config.auth == Auth::Password => return Ok(Cow::Borrowed(config)),
        Credentials::Written => {
            return Err(Error::config(format!(
                "{}={} is served by dbflow's Python package (DatabaseManager); it has no \
                 token source here",
                config.auth_key,
                config.auth.name()
            )))
        }
    };
    let login = rotating.login(Target::of(&config.spec)).await?;
    let mut copy = config.clone();
    match login {
        Login::Password(p) => copy.spec.password = Some(p.0),
        Login::AccessToken(t) => copy.credentials = Credentials::Token(t),
    }
    Ok(Cow::Owned(copy))
}

/// A backend's check that a token login travels over TLS: `required` is
/// whether its connection string demands verified-or-not TLS, `how` says
/// how to ask for it.
pub fn require_tls(config: &DatabaseConfig, required: bool, how: &str) -> Result<()> {
    if !config.auth.needs_tls() || required {
        return Ok(());
    }
    Err(Error::config(format!(
        "{}={} sends a token that is as good as a password, so it needs TLS: {how} in {}",
        config.auth_key,
        config.auth.name(),
        config.source_key
    )))
}

/// A short non-reversible fingerprint (a command may hold a secret).
pub(super) fn fingerprint(secret: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    secret.hash(&mut h);
    h.finish()
}

/// What configuration says about a database's login: `<DB>_AUTH` (with its
/// key) and `<DB>_PASSWORD_COMMAND`'s source.
pub(super) struct Configured {
    pub auth: Auth,
    pub auth_key: String,
    pub credentials: Credentials,
    pub timeout: Duration,
}

impl ConfigManager {
    pub(super) fn credentials(
        &self,
        db: &str,
        spec: &ConnectSpec,
        source: &str,
    ) -> Result<Configured> {
        let timeout = self
            .seconds(&format!("{db}_CREDENTIAL_TIMEOUT"))?
            .or(self.seconds("CREDENTIAL_TIMEOUT")?)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TIMEOUT);
        let auth_key = self.global_key(&format!("{db}_AUTH"));
        let (auth, auth_key) = match self.get_with_key(&format!("{db}_AUTH"))? {
            None => (Auth::Password, auth_key),
            Some((v, full)) => match v.trim().to_ascii_lowercase().as_str() {
                "password" | "" => (Auth::Password, full),
                "rds-iam" | "rds_iam" => (
                    Auth::RdsIam {
                        region: self.get(&format!("{db}_AUTH_REGION"))?,
                    },
                    full,
                ),
                "entra" => (Auth::Entra, full),
                other => {
                    return Err(Error::config(format!(
                        "{full}='{other}' is not a login method; use password, rds-iam or entra"
                    )))
                }
            },
        };
        let command = self.get_with_key(&format!("{db}_PASSWORD_COMMAND"))?;
        let credentials = match command {
            None => Credentials::Written,
            Some((command, full)) => {
                if command.trim().is_empty() {
                    return Err(Error::config(format!(
                        "{full} is empty; set it to a command that prints the password"
                    )));
                }
                if auth != Auth::Password {
                    return Err(Error::config(format!(
                        "{full} and {auth_key}={} both give the login; keep one",
                        auth.name()
                    )));
                }
                Credentials::rotating(
                    Box::new(super::password_command::PasswordCommand::new(command)),
                    full,
                    timeout,
                )
            }
        };
        if spec.password.is_some() && (auth != Auth::Password || credentials.origin().is_some()) {
            let by = credentials
                .origin()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{auth_key}={}", auth.name()));
            return Err(Error::config(format!(
                "{source} has a password and {by} gives one too; remove the password \
                 from {source}"
            )));
        }
        Ok(Configured {
            auth,
            auth_key,
            credentials,
            timeout,
        })
    }
}
