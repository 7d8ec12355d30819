//! SQL Server connection strings in every form flows use — SQLAlchemy URLs
//! (`mssql+pyodbc://`, `mssql+pymssql://`, `mssql://`), JDBC
//! (`sqlserver://host:1433;databaseName=db`) and ADO.NET
//! (`Server=tcp:host,1433;Database=db;User Id=u;Password=p`) — into one
//! [`ConnectSpec`] with normalized option names:
//! `encrypt`, `trust_server_certificate`, `ca_file`, `application_name`,
//! `connect_timeout`, `instance`, `multi_subnet_failover`; a failover
//! partner becomes the spec's second server ([`crate::backend::targets`]).

use crate::config::url::{parse_url, ConnectSpec, Endpoint, StringForm};
use crate::error::{Error, Result};

/// Options only ODBC drivers understand: accepted, and without effect here.
const ODBC_ONLY: &[&str] = &[
    "driver",
    "mars_connection",
    "multipleactiveresultsets",
    "persist security info",
    "persistsecurityinfo",
    "ansi",
    "autotranslate",
    "regional",
    "quotedid",
    "column encryption setting",
    "charset",
    "tds_version",
];

/// Normalize an option name; `None` for options accepted and ignored.
fn normalize(key: &str) -> std::result::Result<Option<&'static str>, ()> {
    let k = key.trim().to_ascii_lowercase().replace(['_', ' '], "");
    Ok(Some(match k.as_str() {
        "encrypt" | "encryption" => "encrypt",
        "trustservercertificate" | "trustcert" => "trust_server_certificate",
        "cafile" | "trustservercertificateca" | "sslrootcert" | "servercertificate" => "ca_file",
        "applicationname" | "app" => "application_name",
        "connecttimeout" | "connectiontimeout" | "logintimeout" | "timeout" => "connect_timeout",
        "instance" | "instancename" => "instance",
        "hostnameincertificate" => "hostname_in_certificate",
        "tablevalues" => "table_values",
        "multisubnetfailover" => "multi_subnet_failover",
        _ if ODBC_ONLY.iter().any(|o| o.replace(['_', ' '], "") == k) => return Ok(None),
        _ => return Err(()),
    }))
}

/// Options a pool or login mode would need that dbflow configures elsewhere.
fn refused(key: &str) -> Option<&'static str> {
    let k = key.trim().to_ascii_lowercase().replace(['_', ' '], "");
    match k.as_str() {
        "pooling" | "maxpoolsize" | "minpoolsize" => {
            Some("dbflow pools connections itself; set <DB>_POOL_SIZE / _MAX_OVERFLOW instead")
        }
        "integratedsecurity" | "trustedconnection" | "authentication" => {
            Some("dbflow logs in with a user and password, or an Entra token with <DB>_AUTH=entra")
        }
        _ => None,
    }
}

fn set_option(spec: &mut ConnectSpec, raw_key: &str, value: String, key: &str) -> Result<()> {
    if raw_key.to_ascii_lowercase().replace(['_', ' '], "") == "failoverpartner" {
        return add_partner(spec, &value, key);
    }
    if let Some(why) = refused(raw_key) {
        return Err(Error::config(format!(
            "{key}: option '{raw_key}' is not supported: {why}"
        )));
    }
    let Ok(name) = normalize(raw_key) else {
        return Err(Error::config(format!(
            "{key}: unknown option '{raw_key}'; SQL Server connection strings accept encrypt, \
             TrustServerCertificate, ca_file, ApplicationName, ConnectTimeout, instance, \
             table_values, Failover_Partner, MultiSubnetFailover \
             (and ODBC-only options such as driver, which are ignored)"
        )));
    };
    let Some(name) = name else { return Ok(()) };
    if let Some((_, existing)) = spec.options.iter().find(|(k, _)| k == name) {
        if !existing.eq_ignore_ascii_case(&value) {
            return Err(Error::config(format!(
                "{key}: '{raw_key}' is given twice with different values ({existing} and {value}); keep one"
            )));
        }
        return Ok(());
    }
    spec.options.push((name.to_owned(), value));
    Ok(())
}

/// `host\instance`, `host,port`, `tcp:host,port`, `(local)`, `.`
fn set_server(spec: &mut ConnectSpec, server: &str, key: &str) -> Result<()> {
    let mut s = server.trim();
    if let Some(rest) = s.strip_prefix("tcp:") {
        s = rest;
    }
    let (host, port) = match s.rsplit_once(',') {
        Some((h, p)) => (h, Some(p.trim())),
        None => (s, None),
    };
    let (host, instance) = match host.split_once('\\') {
        Some((h, i)) => (h, Some(i)),
        None => (host, None),
    };
    let host = match host.trim() {
        "" | "." | "(local)" | "(localdb)" => "localhost",
        h => h,
    };
    spec.host = Some(host.to_owned());
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        spec.port = Some(port.parse().map_err(|_| {
            Error::config(format!(
                "{key}: port '{port}' is not a number between 1 and 65535"
            ))
        })?);
    }
    if let Some(instance) = instance {
        set_option(spec, "instance", instance.to_owned(), key)?;
    }
    Ok(())
}

/// `Failover_Partner=host[,port]` (ADO.NET, ODBC) / `failoverPartner`
/// (JDBC): the server tried when the first does not answer. A named
/// instance there must be the first server's (its port is asked of the
/// partner's SQL Browser).
fn add_partner(spec: &mut ConnectSpec, server: &str, key: &str) -> Result<()> {
    if server.trim().is_empty() {
        return Ok(());
    }
    let mut partner = empty_spec();
    set_server(&mut partner, server, key)?;
    if let Some(instance) = partner.option("instance") {
        if spec.option("instance") != Some(instance) {
            return Err(Error::config(format!(
                "{key}: the failover partner names instance '{instance}', which the server does \
                 not; give the partner as host,port"
            )));
        }
    }
    spec.fallbacks.push(Endpoint {
        host: partner.host.unwrap_or_else(|| "localhost".to_owned()),
        port: partner.port,
    });
    Ok(())
}

fn empty_spec() -> ConnectSpec {
    ConnectSpec {
        database_type: super::kind(),
        host: None,
        port: None,
        fallbacks: Vec::new(),
        user: None,
        password: None,
        database: None,
        options: Vec::new(),
    }
}

/// Split `k=v;k=v` honouring `'...'`, `"..."` and `{...}` quoting.
fn split_pairs(text: &str, key: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut k = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            k.push(c);
        }
        let k = k.trim().to_owned();
        while chars.peek().is_some_and(|c| *c == ' ') {
            chars.next();
        }
        let mut v = String::new();
        match chars.peek().copied() {
            Some(q @ ('\'' | '"' | '{')) => {
                chars.next();
                let close = if q == '{' { '}' } else { q };
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == close {
                        if chars.peek() == Some(&close) {
                            v.push(close);
                            chars.next();
                            continue;
                        }
                        closed = true;
                        break;
                    }
                    v.push(c);
                }
                if !closed {
                    return Err(Error::config(format!(
                        "{key}: unterminated quoted value for '{k}'"
                    )));
                }
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                }
            }
            _ => {
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                    v.push(c);
                }
                v = v.trim().to_owned();
            }
        }
        if !k.is_empty() {
            pairs.push((k, v));
        } else if !v.is_empty() {
            return Err(Error::config(format!(
                "{key}: expected key=value, found '{v}'"
            )));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    Ok(pairs)
}

fn apply_pairs(spec: &mut ConnectSpec, pairs: Vec<(String, String)>, key: &str) -> Result<()> {
    for (k, v) in pairs {
        match k.to_ascii_lowercase().replace(['_', ' '], "").as_str() {
            "server" | "datasource" | "address" | "addr" | "networkaddress" | "servername" => {
                set_server(spec, &v, key)?
            }
            "database" | "initialcatalog" | "databasename" => spec.database = Some(v),
            "userid" | "uid" | "user" | "username" => spec.user = Some(v),
            "password" | "pwd" => spec.password = Some(v),
            "port" | "portnumber" => {
                spec.port = Some(v.parse().map_err(|_| {
                    Error::config(format!(
                        "{key}: port '{v}' is not a number between 1 and 65535"
                    ))
                })?)
            }
            _ => set_option(spec, &k, v, key)?,
        }
    }
    Ok(())
}

/// Parse any accepted SQL Server form. `key` names the setting in errors.
pub fn parse(conn: &str, form: StringForm, key: &str) -> Result<ConnectSpec> {
    let mut defaults = match form {
        StringForm::Url => TlsDefaults::Dbflow,
        StringForm::Jdbc => TlsDefaults::Jdbc,
        StringForm::AdoNet => TlsDefaults::AdoNet,
    };
    let mut spec = match form {
        StringForm::Url => {
            let mut url = parse_url(conn, super::kind(), key)?;
            if !url.fallbacks.is_empty() {
                return Err(Error::config(format!(
                    "{key}: a SQL Server URL names one server; give a mirror or availability \
                     group partner with ?failover_partner=host,port"
                )));
            }
            let options = std::mem::take(&mut url.options);
            let scheme = conn
                .trim()
                .split("://")
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let driver = options
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("driver"))
                .map(|(_, v)| v.as_str());
            defaults = match scheme.as_str() {
                "mssql+pyodbc" => TlsDefaults::of_odbc_driver(driver),
                "mssql+pymssql" | "mssql+pytds" => TlsDefaults::FreeTds,
                _ => TlsDefaults::Dbflow,
            };
            if let Some(host) = url.host.take() {
                // `host\instance` may arrive percent-decoded from the URL.
                let server = match url.port.take() {
                    Some(p) => format!("{host},{p}"),
                    None => host,
                };
                set_server(&mut url, &server, key)?;
            }
            for (k, v) in options {
                set_option(&mut url, &k, v, key)?;
            }
            url
        }
        StringForm::Jdbc => {
            let body = conn.trim();
            let body = body.strip_prefix("jdbc:").unwrap_or(body);
            let body = body
                .get(..12)
                .filter(|p| p.eq_ignore_ascii_case("sqlserver://"))
                .map(|_| &body[12..])
                .ok_or_else(|| {
                    Error::config(format!("{key}: a JDBC string starts with sqlserver://"))
                })?;
            let (server, rest) = body.split_once(';').unwrap_or((body, ""));
            let mut spec = empty_spec();
            // JDBC writes host\instance:port.
            let server = match server.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
                    format!("{h},{p}")
                }
                _ => server.to_owned(),
            };
            set_server(&mut spec, &server, key)?;
            apply_pairs(&mut spec, split_pairs(rest, key)?, key)?;
            spec
        }
        StringForm::AdoNet => {
            let mut spec = empty_spec();
            apply_pairs(&mut spec, split_pairs(conn, key)?, key)?;
            spec
        }
    };
    if spec.host.is_none() {
        return Err(Error::config(format!(
            "{key}: no server given; write Server=host,1433 or mssql://user:password@host:1433/db"
        )));
    }
    spec.database_type = super::kind();
    spec.options
        .push(("tls_defaults".to_owned(), defaults.as_str().to_owned()));
    tls_of(&spec, key)?;
    Ok(spec)
}

/// How the connection should be encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypt {
    /// No TLS at all (`encrypt=disable`): for servers without TLS support.
    Disabled,
    /// TLS for the login packets only (`encrypt=no/false/off/optional`), as
    /// ODBC, JDBC and ADO.NET do for `Encrypt=no`.
    LoginOnly,
    /// TLS when the server offers it (`encrypt=request`; `mssql://`'s and
    /// FreeTDS's default).
    Preferred,
    /// TLS or fail (`encrypt=yes/true/on/mandatory/required`).
    Required,
}

/// Whose documented defaults a connection string follows, from its form
/// (and, for `mssql+pyodbc`, its `driver`). Recorded at parse time in the
/// internal option `tls_defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsDefaults {
    /// `mssql://`: dbflow's own — TLS when offered, certificate verified.
    Dbflow,
    /// `mssql+pyodbc` with ODBC Driver 17 (or 13, 11, none named): login-only TLS.
    Odbc17,
    /// `mssql+pyodbc` with ODBC Driver 18 or later: TLS required, verified.
    Odbc18,
    /// `mssql+pymssql` (FreeTDS): TLS when offered; verified only against a `ca_file`.
    FreeTds,
    /// ADO.NET strings (Microsoft.Data.SqlClient 4+): TLS required, verified.
    AdoNet,
    /// JDBC strings (mssql-jdbc 10.2+): TLS required, verified.
    Jdbc,
}

impl TlsDefaults {
    fn as_str(self) -> &'static str {
        match self {
            TlsDefaults::Dbflow => "dbflow",
            TlsDefaults::Odbc17 => "odbc17",
            TlsDefaults::Odbc18 => "odbc18",
            TlsDefaults::FreeTds => "freetds",
            TlsDefaults::AdoNet => "adonet",
            TlsDefaults::Jdbc => "jdbc",
        }
    }

    fn from_str(s: &str) -> TlsDefaults {
        match s {
            "odbc17" => TlsDefaults::Odbc17,
            "odbc18" => TlsDefaults::Odbc18,
            "freetds" => TlsDefaults::FreeTds,
            "adonet" => TlsDefaults::AdoNet,
            "jdbc" => TlsDefaults::Jdbc,
            _ => TlsDefaults::Dbflow,
        }
    }

    /// The defaults an ODBC driver name implies (`ODBC Driver 18 for SQL
    /// Server`, `FreeTDS`, ...).
    fn of_odbc_driver(driver: Option<&str>) -> TlsDefaults {
        let Some(driver) = driver else {
            return TlsDefaults::Odbc17;
        };
        let lower = driver.to_ascii_lowercase();
        if lower.contains("freetds") {
            return TlsDefaults::FreeTds;
        }
        let version = lower
            .strip_prefix("odbc driver ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        match version {
            Some(v) if v >= 18 => TlsDefaults::Odbc18,
            _ => TlsDefaults::Odbc17,
        }
    }

    fn default_encrypt(self) -> Encrypt {
        match self {
            TlsDefaults::Dbflow | TlsDefaults::FreeTds => Encrypt::Preferred,
            TlsDefaults::Odbc17 => Encrypt::LoginOnly,
            TlsDefaults::Odbc18 | TlsDefaults::AdoNet | TlsDefaults::Jdbc => Encrypt::Required,
        }
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the system's trusted roots, and the host name.
    SystemRoots,
    /// Against this CA file (`ca_file=`).
    CaFile(String),
    /// Not at all: login-only TLS (as every Microsoft driver does),
    /// `TrustServerCertificate=true`, or FreeTDS's default without a CA file.
    Not { asked: bool },
}

/// The TLS a connection string asks for, under its own driver's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub encrypt: Encrypt,
    pub verify: Verify,
    pub defaults: TlsDefaults,
}

fn explicit_encrypt(spec: &ConnectSpec, key: &str) -> Result<Option<Encrypt>> {
    let Some(value) = spec.option("encrypt") else {
        return Ok(None);
    };
    Ok(Some(match value.trim().to_ascii_lowercase().as_str() {
        "no" | "false" | "off" | "optional" | "0" => Encrypt::LoginOnly,
        "yes" | "true" | "on" | "mandatory" | "required" | "1" => Encrypt::Required,
        "request" | "preferred" => Encrypt::Preferred,
        "disable" | "disabled" | "not_supported" | "notsupported" => Encrypt::Disabled,
        "strict" => {
            return Err(Error::config(format!(
                "{key}: encrypt=strict (TDS 8.0) is not supported; use encrypt=yes \
                 (TLS required, certificate verified)"
            )))
        }
        other => {
            return Err(Error::config(format!(
                "{key}: encrypt='{other}' is not one of yes, no, request (TLS when the server \
                 offers it) or disable (no TLS at all, for servers without it)"
            )))
        }
    }))
}

/// The TLS settings of a parsed SQL Server spec; contradictions are errors.
/// How table-valued parameters are sent (`table_values=native|bulk`);
/// `None`: by the server (native, bulk on Babelfish).
pub fn table_values(spec: &ConnectSpec, key: &str) -> Result<Option<super::tvp::Encoding>> {
    use super::tvp::Encoding;
    match spec
        .option("table_values")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("auto") => Ok(None),
        Some("native") => Ok(Some(Encoding::Native)),
        Some("bulk") => Ok(Some(Encoding::Bulk)),
        Some(other) => Err(Error::config(format!(
            "{key}: table_values={other} is not a choice; use auto (the default), native or bulk"
        ))),
    }
}

pub fn tls_of(spec: &ConnectSpec, key: &str) -> Result<Tls> {
    let defaults = TlsDefaults::from_str(spec.option("tls_defaults").unwrap_or("dbflow"));
    let encrypt = explicit_encrypt(spec, key)?.unwrap_or(defaults.default_encrypt());
    let trust = flag(spec, "trust_server_certificate", key)?;
    let ca_file = spec.option("ca_file");
    if trust && ca_file.is_some() {
        return Err(Error::config(format!(
            "{key}: TrustServerCertificate=true and ca_file contradict each other; keep one"
        )));
    }
    let verify = match (encrypt, trust, ca_file) {
        (Encrypt::LoginOnly | Encrypt::Disabled, _, _) => Verify::Not { asked: false },
        (_, true, _) => Verify::Not { asked: true },
        (_, false, Some(path)) => Verify::CaFile(path.to_owned()),
        (_, false, None) if defaults == TlsDefaults::FreeTds => Verify::Not { asked: false },
        (_, false, None) => Verify::SystemRoots,
    };
    Ok(Tls {
        encrypt,
        verify,
        defaults,
    })
}

pub fn flag(spec: &ConnectSpec, option: &str, key: &str) -> Result<bool> {
    match spec
        .option(option)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("no") | Some("false") | Some("0") | Some("off") => Ok(false),
        Some("yes") | Some("true") | Some("1") | Some("on") => Ok(true),
        Some(other) => Err(Error::config(format!(
            "{key}: {option}='{other}' must be true or false"
        ))),
    }
}

#[cfg(test)]
mod tests;
