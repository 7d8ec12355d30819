//! Connection strings as every backend writes them: the URL form parsed
//! into a backend-neutral [`ConnectSpec`] (each backend's own forms and
//! detection live in its module). The password is kept only inside the
//! spec; everything printable is the redacted form.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::backend::Kind;
use crate::error::{Error, Result};

/// Which form a connection string was written in; decides the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringForm {
    Url,
    Jdbc,
    AdoNet,
}

/// The scheme of a URL-form connection string, lower-cased, without a
/// `jdbc:` prefix or a `+driver` suffix (`mssql+pyodbc` → `mssql`).
pub fn scheme_of(conn: &str) -> Option<String> {
    let lower = conn.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix("jdbc:").unwrap_or(&lower);
    let (scheme, _) = lower.split_once("://")?;
    Some(scheme.split('+').next().unwrap_or(scheme).to_owned())
}

/// One server a connection string names (`port: None`: the backend's default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: Option<u16>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// A parsed connection target. `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct ConnectSpec {
    pub database_type: Kind,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Servers to try after `host`/`port`, in order: the further hosts of a
    /// PostgreSQL URL, SQL Server's failover partner ([`crate::backend::targets`]).
    pub fallbacks: Vec<Endpoint>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    /// Remaining options, keys lower-cased, in the order written.
    pub options: Vec<(String, String)>,
}

impl ConnectSpec {
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every server this names, in the order written.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let first = Endpoint {
            host: self.host.clone().unwrap_or_else(|| "localhost".to_owned()),
            port: self.port,
        };
        std::iter::once(first)
            .chain(self.fallbacks.iter().cloned())
            .collect()
    }

    /// This target narrowed to one of its servers.
    pub fn at(&self, endpoint: &Endpoint) -> ConnectSpec {
        ConnectSpec {
            host: Some(endpoint.host.clone()),
            port: endpoint.port,
            fallbacks: Vec::new(),
            ..self.clone()
        }
    }

    /// `scheme://user:***@host:port/db?opts` with any secret masked.
    pub fn redacted(&self) -> String {
        let scheme = self.database_type.scheme();
        let mut out = format!("{scheme}://");
        if let Some(user) = &self.user {
            out.push_str(user);
            if self.password.is_some() {
                out.push_str(":***");
            }
            out.push('@');
        }
        if let Some(host) = &self.host {
            if host.contains(':') && !host.starts_with('[') {
                out.push_str(&format!("[{host}]"));
            } else {
                out.push_str(host);
            }
        }
        if let Some(port) = self.port {
            out.push_str(&format!(":{port}"));
        }
        for endpoint in &self.fallbacks {
            out.push_str(&format!(",{endpoint}"));
        }
        out.push('/');
        if let Some(db) = &self.database {
            out.push_str(db);
        }
        // Internal options (how the string was written) are not the user's.
        let shown = self.options.iter().filter(|(k, _)| k != "tls_defaults");
        for (i, (k, v)) in shown.enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            let shown = if is_secret_option(k) {
                "***"
            } else {
                v.as_str()
            };
            out.push_str(&format!("{k}={shown}"));
        }
        out
    }
}

fn is_secret_option(key: &str) -> bool {
    matches!(key, "password" | "pwd" | "sslpassword")
}

impl fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectSpec({})", self.redacted())
    }
}

impl fmt::Display for ConnectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn decode(part: &str, what: &str, key: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Error::config(format!(
                "{key}: the {what} is not valid percent-encoded UTF-8"
            ))
        })
}

/// Parse a URL-form connection string (`scheme://user:pass@host:port/db?k=v`).
/// `key` names the configuration key for error messages. A password may hold
/// unescaped `@`, `/` or `:` (the last `@` before the path ends the user info),
/// so strings assembled from `${PASSWORD}` still parse.
pub fn parse_url(conn: &str, database_type: Kind, key: &str) -> Result<ConnectSpec> {
    let conn = conn.trim();
    let conn = conn.strip_prefix("jdbc:").unwrap_or(conn);
    let (_, rest) = conn.split_once("://").ok_or_else(|| {
        Error::config(format!(
            "{key}: expected a URL such as {}",
            database_type.example_url()
        ))
    })?;
    let (main, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let (userinfo, hostpath) = match main.rfind('@') {
        Some(at) => (Some(&main[..at]), &main[at + 1..]),
        None => (None, main),
    };
    let (hostport, path) = match hostpath.find('/') {
        Some(s) => (&hostpath[..s], Some(&hostpath[s + 1..])),
        None => (hostpath, None),
    };
    let mut spec = ConnectSpec {
        database_type,
        host: None,
        port: None,
        fallbacks: Vec::new(),
        user: None,
        password: None,
        database: None,
        options: Vec::new(),
    };
    if let Some(info) = userinfo {
        let (user, password) = match info.find(':') {
            Some(c) => (&info[..c], Some(&info[c + 1..])),
            None => (info, None),
        };
        if !user.is_empty() {
            spec.user = Some(decode(user, "user name", key)?);
        }
        if let Some(pw) = password {
            spec.password = Some(decode(pw, "password", key)?);
        }
    }
    let mut hosts = parse_hosts(hostport, key)?;
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        spec.database = Some(decode(path, "database name", key)?);
    }
    let mut ports = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k, "option name", key)?.to_ascii_lowercase();
        let v = decode(&v.replace('+', " "), "option value", key)?;
        match k.as_str() {
            "user" | "username" => spec.user = Some(v),
            "password" => spec.password = Some(v),
            "dbname" | "database" => spec.database = Some(v),
            "port" => ports = Some(v),
            // libpq's `?host=h1,h2`: a list of hosts, as in the authority.
            "host" if v.contains(',') => {
                hosts = v
                    .split(',')
                    .map(|h| Endpoint {
                        host: h.trim().to_owned(),
                        port: None,
                    })
                    .collect()
            }
            _ => spec.options.push((k, v)),
        }
    }
    if let Some(ports) = ports {
        assign_ports(&mut hosts, &ports, key)?;
    }
    let mut hosts = hosts.into_iter();
    if let Some(first) = hosts.next() {
        spec.host = (!first.host.is_empty()).then_some(first.host);
        spec.port = first.port;
    }
    spec.fallbacks = hosts.collect();
    if spec.fallbacks.iter().any(|e| e.host.is_empty()) {
        return Err(Error::config(format!(
            "{key}: an empty host in the list of hosts; write host1:port1,host2:port2"
        )));
    }
    Ok(spec)
}

/// libpq's rule for `?port=`: one port for every host, or one per host.
fn assign_ports(hosts: &mut Vec<Endpoint>, ports: &str, key: &str) -> Result<()> {
    let ports = ports
        .split(',')
        .map(|p| match p.trim() {
            "" => Ok(None),
            p => parse_port(p, key).map(Some),
        })
        .collect::<Result<Vec<_>>>()?;
    if hosts.is_empty() {
        hosts.push(Endpoint {
            host: String::new(),
            port: None,
        });
    }
    match (ports.len(), hosts.len()) {
        (1, _) => hosts.iter_mut().for_each(|h| h.port = ports[0]),
        (p, h) if p == h => hosts.iter_mut().zip(ports).for_each(|(h, p)| h.port = p),
        (p, h) => {
            return Err(Error::config(format!(
                "{key}: {p} ports for {h} hosts; give one port for all hosts or one per host"
            )))
        }
    }
    Ok(())
}

fn parse_port(value: &str, key: &str) -> Result<u16> {
    value.parse::<u16>().map_err(|_| {
        Error::config(format!(
            "{key}: port '{value}' is not a number between 1 and 65535"
        ))
    })
}

/// The authority's servers: `host[:port]` items separated by commas, an
/// IPv6 address in brackets.
fn parse_hosts(hostport: &str, key: &str) -> Result<Vec<Endpoint>> {
    if hostport.is_empty() {
        return Ok(Vec::new());
    }
    hostport
        .split(',')
        .map(|item| parse_host_port(item, key))
        .collect()
}

fn parse_host_port(hostport: &str, key: &str) -> Result<Endpoint> {
    if let Some(inner) = hostport.strip_prefix('[') {
        let end = inner
            .find(']')
            .ok_or_else(|| Error::config(format!("{key}: unterminated '[' in an IPv6 host")))?;
        let port = match inner[end + 1..].strip_prefix(':') {
            Some(port) => Some(parse_port(port, key)?),
            None => None,
        };
        return Ok(Endpoint {
            host: inner[..end].to_owned(),
            port,
        });
    }
    Ok(match hostport.rsplit_once(':') {
        Some((host, port)) => Endpoint {
            host: decode(host, "host", key)?,
            port: Some(parse_port(port, key)?),
        },
        None => Endpoint {
            host: decode(hostport, "host", key)?,
            port: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL form is the same for every backend.
    fn any() -> Kind {
        Kind::all().next().expect("a registered backend")
    }

    #[test]
    fn parses_url_with_unescaped_password() {
        let spec = parse_url(
            "postgresql+psycopg2://app:p@ss/w:rd@db.example:5433/rpa_db?sslmode=require&application_name=flow",
            any(),
            "K",
        )
        .unwrap();
        assert_eq!(spec.user.as_deref(), Some("app"));
        assert_eq!(spec.password.as_deref(), Some("p@ss/w:rd"));
        assert_eq!(spec.host.as_deref(), Some("db.example"));
        assert_eq!(spec.port, Some(5433));
        assert_eq!(spec.database.as_deref(), Some("rpa_db"));
        assert_eq!(spec.option("sslmode"), Some("require"));
    }

    #[test]
    fn socket_host_option_and_percent_encoding() {
        let spec = parse_url(
            "postgresql:///rpa_db?host=%2Fvar%2Frun%2Fpostgresql&user=me&password=s%40cret",
            any(),
            "K",
        )
        .unwrap();
        assert_eq!(spec.host, None);
        assert_eq!(spec.option("host"), Some("/var/run/postgresql"));
        assert_eq!(spec.password.as_deref(), Some("s@cret"));
        assert_eq!(spec.user.as_deref(), Some("me"));
    }

    #[test]
    fn redacted_never_shows_password() {
        let spec = parse_url(
            "postgresql://u:topsecret@h:5432/db?sslpassword=alsosecret",
            any(),
            "K",
        )
        .unwrap();
        let shown = format!("{spec} {spec:?} {}", spec.redacted());
        assert!(
            !shown.contains("topsecret") && !shown.contains("alsosecret"),
            "{shown}"
        );
        assert!(shown.contains("u:***@h:5432/db"));
    }

    #[test]
    fn bad_port_is_a_config_error() {
        let err =
            parse_url("postgresql://h:99999/db", any(), "RPA_DB_CONNECTION_STRING").unwrap_err();
        assert!(err.message.contains("RPA_DB_CONNECTION_STRING"));
    }

    #[test]
    fn several_hosts_in_the_authority_or_the_query() {
        let spec = parse_url(
            "postgresql://u:pw@h1:5432,[::1]:5433,h3/db?target_session_attrs=read-write",
            any(),
            "K",
        )
        .unwrap();
        let shown: Vec<String> = spec.endpoints().iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["h1:5432", "[::1]:5433", "h3"]);
        assert_eq!(
            spec.redacted(),
            "postgresql://u:***@h1:5432,[::1]:5433,h3/db?target_session_attrs=read-write"
        );
        let second = spec.at(&spec.endpoints()[1]);
        assert_eq!(
            (second.host.as_deref(), second.port),
            (Some("::1"), Some(5433))
        );
        assert!(second.fallbacks.is_empty());

        let spec = parse_url("postgresql:///db?host=a,b&port=1,2", any(), "K").unwrap();
        let shown: Vec<String> = spec.endpoints().iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["a:1", "b:2"]);
        let spec = parse_url("postgresql:///db?host=a,b&port=7", any(), "K").unwrap();
        assert_eq!(spec.endpoints()[1].port, Some(7));
        let err = parse_url("postgresql:///db?host=a,b,c&port=1,2", any(), "K").unwrap_err();
        assert!(
            err.message.contains("2 ports for 3 hosts"),
            "{}",
            err.message
        );
        let err = parse_url("postgresql://a,,b/db", any(), "K").unwrap_err();
        assert!(err.message.contains("empty host"), "{}", err.message);
    }

    #[test]
    fn ipv6_host() {
        let spec = parse_url("postgresql://u@[::1]:5432/db", any(), "K").unwrap();
        assert_eq!(spec.host.as_deref(), Some("::1"));
        assert_eq!(spec.port, Some(5432));
    }
}
