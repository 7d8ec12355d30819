//! SQL Server connection strings in every form flows use — SQLAlchemy URLs
//! (`mssql+pyodbc://`, `mssql+pymssql://`, `mssql://`), JDBC
//! (`sqlserver://host:1433;databaseName=db`) and ADO.NET
//! (`Server=tcp:host,1433;Database=db;User Id=u;Password=p`) — into one
//! [`ConnectSpec`] with normalized option names:
//! `encrypt`, `trust_server_certificate`, `ca_file`, `application_name`,
//! `connect_timeout`, `instance`.

use super::url::{parse_url, ConnectSpec, DatabaseType, StringForm};
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
            Some("only SQL Server logins (user and password) are supported")
        }
        _ => None,
    }
}

fn set_option(spec: &mut ConnectSpec, raw_key: &str, value: String, key: &str) -> Result<()> {
    if let Some(why) = refused(raw_key) {
        return Err(Error::config(format!(
            "{key}: option '{raw_key}' is not supported: {why}"
        )));
    }
    let Ok(name) = normalize(raw_key) else {
        return Err(Error::config(format!(
            "{key}: unknown option '{raw_key}'; SQL Server connection strings accept encrypt, \
             TrustServerCertificate, ca_file, ApplicationName, ConnectTimeout, instance \
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

fn empty_spec() -> ConnectSpec {
    ConnectSpec {
        database_type: DatabaseType::SqlServer,
        host: None,
        port: None,
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
    let mut spec = match form {
        StringForm::Url => {
            let mut url = parse_url(conn, DatabaseType::SqlServer, key)?;
            let options = std::mem::take(&mut url.options);
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
    spec.database_type = DatabaseType::SqlServer;
    Ok(spec)
}

/// How the connection should be encrypted, from the `encrypt` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypt {
    /// No TLS at all (`encrypt=disable`): for servers without TLS support.
    Disabled,
    /// TLS for the login only (`encrypt=off/no/false`, ODBC 17's default).
    LoginOnly,
    /// TLS when the server offers it (`encrypt=on/yes/true/optional`; the default).
    Preferred,
    /// TLS or fail (`encrypt=required/mandatory/strict`).
    Required,
}

pub fn encrypt_of(spec: &ConnectSpec, key: &str) -> Result<Encrypt> {
    Ok(match spec.option("encrypt").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("on") | Some("yes") | Some("true") | Some("optional") => Encrypt::Preferred,
        Some("off") | Some("no") | Some("false") => Encrypt::LoginOnly,
        Some("disable") | Some("disabled") | Some("not_supported") | Some("notsupported") => Encrypt::Disabled,
        Some("required") | Some("mandatory") | Some("strict") => Encrypt::Required,
        Some(other) => {
            return Err(Error::config(format!(
                "{key}: encrypt='{other}' is not one of off, on, required (or disable for servers without TLS)"
            )))
        }
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
mod tests {
    use super::*;

    fn url(s: &str) -> ConnectSpec {
        parse(s, StringForm::Url, "K").unwrap()
    }

    #[test]
    fn sqlalchemy_pyodbc_url_ignores_driver() {
        let s = url("mssql+pyodbc://user:p%40ss@survey-server:1433/survey_hub?driver=ODBC+Driver+17+for+SQL+Server&TrustServerCertificate=yes&Encrypt=no");
        assert_eq!(s.host.as_deref(), Some("survey-server"));
        assert_eq!(s.port, Some(1433));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.database.as_deref(), Some("survey_hub"));
        assert!(flag(&s, "trust_server_certificate", "K").unwrap());
        assert_eq!(encrypt_of(&s, "K").unwrap(), Encrypt::LoginOnly);
        assert!(s.option("driver").is_none());
    }

    #[test]
    fn named_instance_in_url() {
        let s = url("mssql://u:p@db%5CSQLEXPRESS/x");
        assert_eq!(s.host.as_deref(), Some("db"));
        assert_eq!(s.option("instance"), Some("SQLEXPRESS"));
    }

    #[test]
    fn jdbc_form() {
        let s = parse(
            "jdbc:sqlserver://db.example\\inst:1444;databaseName=hub;user=sa;password={p;w};encrypt=true;trustServerCertificate=true",
            StringForm::Jdbc,
            "K",
        )
        .unwrap();
        assert_eq!(s.host.as_deref(), Some("db.example"));
        assert_eq!(s.port, Some(1444));
        assert_eq!(s.option("instance"), Some("inst"));
        assert_eq!(s.database.as_deref(), Some("hub"));
        assert_eq!(s.password.as_deref(), Some("p;w"));
        assert_eq!(encrypt_of(&s, "K").unwrap(), Encrypt::Preferred);
    }

    #[test]
    fn ado_net_form() {
        let s = parse(
            "Server=tcp:host,1433;Initial Catalog=db;User Id=u;Password='it''s';Encrypt=True;TrustServerCertificate=False;Application Name=rpa1",
            StringForm::AdoNet,
            "K",
        )
        .unwrap();
        assert_eq!((s.host.as_deref(), s.port), (Some("host"), Some(1433)));
        assert_eq!(s.password.as_deref(), Some("it's"));
        assert_eq!(s.option("application_name"), Some("rpa1"));
        assert!(!flag(&s, "trust_server_certificate", "K").unwrap());
        assert!(!format!("{s:?}").contains("it's"));
    }

    #[test]
    fn unknown_refused_and_conflicting_options_are_errors() {
        let unknown = parse(
            "mssql://h/db?colour=blue",
            StringForm::Url,
            "X_CONNECTION_STRING",
        )
        .unwrap_err();
        assert!(
            unknown.message.contains("colour") && unknown.message.contains("X_CONNECTION_STRING")
        );
        let refused =
            parse("Server=h;Integrated Security=SSPI", StringForm::AdoNet, "K").unwrap_err();
        assert!(
            refused.message.contains("Integrated Security"),
            "{}",
            refused.message
        );
        let pool = parse("Server=h;Max Pool Size=5", StringForm::AdoNet, "K").unwrap_err();
        assert!(pool.message.contains("POOL_SIZE"));
        let conflict =
            parse("mssql://h/db?encrypt=yes&Encrypt=no", StringForm::Url, "K").unwrap_err();
        assert!(conflict.message.contains("twice"), "{}", conflict.message);
        let bad = parse("mssql://h/db?encrypt=maybe", StringForm::Url, "K").unwrap();
        assert!(encrypt_of(&bad, "K").is_err());
    }

    #[test]
    fn missing_server_is_an_error() {
        assert!(parse("Database=x;User Id=u", StringForm::AdoNet, "K").is_err());
    }

    #[test]
    fn local_aliases() {
        let s = parse("Server=(local);Database=x", StringForm::AdoNet, "K").unwrap();
        assert_eq!(s.host.as_deref(), Some("localhost"));
    }
}
