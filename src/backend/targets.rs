//! Which of several servers a new connection goes to, written once for
//! every backend: libpq's rules for several hosts. Hosts are tried in
//! order (or shuffled, `load_balance_hosts=random`), each within
//! `CONNECT_TIMEOUT`; after login the session's role is checked against
//! `target_session_attrs`, and a host that fails or does not match is
//! skipped. SQL Server's failover partner is the second host of the list.

use std::fmt::Write as _;

use crate::config::url::{ConnectSpec, Endpoint};
use crate::error::{Error, Result};

/// `target_session_attrs`: what kind of session a connection must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

/// What the server said about a session after login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRole {
    /// `transaction_read_only` is on (a standby, or a read-only default).
    pub read_only: bool,
    /// The server is in recovery (a standby).
    pub standby: bool,
}

impl SessionAttrs {
    const NAMES: &'static str = "any, read-write, read-only, primary, standby, prefer-standby";

    fn parse(value: &str, key: &str) -> Result<Self> {
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            other => {
                return Err(Error::config(format!(
                    "{key}: target_session_attrs='{other}' is not one of {}",
                    Self::NAMES
                )))
            }
        })
    }

    /// Whether a session with `role` is acceptable in pass `strict` (the
    /// first pass of `prefer-standby` takes standbys only; its second, any).
    fn accepts(self, role: SessionRole, strict: bool) -> bool {
        match self {
            Self::Any => true,
            Self::ReadWrite => !role.read_only,
            Self::ReadOnly => role.read_only,
            Self::Primary => !role.standby,
            Self::Standby => role.standby,
            Self::PreferStandby => role.standby || !strict,
        }
    }

    /// Whether a session that turns read-only must be given up (the server
    /// was demoted after a failover): writes must go to the new primary.
    pub fn needs_writes(self) -> bool {
        matches!(self, Self::ReadWrite | Self::Primary)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Any => "a session",
            Self::ReadWrite => "a read-write session",
            Self::ReadOnly => "a read-only session",
            Self::Primary => "a session on a primary",
            Self::Standby | Self::PreferStandby => "a session on a standby",
        }
    }
}

/// The servers to try for one new connection, and what the session must be.
#[derive(Debug, Clone)]
pub struct Plan {
    pub endpoints: Vec<Endpoint>,
    pub attrs: SessionAttrs,
}

impl Plan {
    /// From a parsed connection string; `checkable`: the backend can tell
    /// a session's role (else only `any` is accepted).
    pub fn of(spec: &ConnectSpec, key: &str, checkable: bool) -> Result<Self> {
        let attrs = match spec.option("target_session_attrs") {
            Some(v) => SessionAttrs::parse(v, key)?,
            None => SessionAttrs::Any,
        };
        if attrs != SessionAttrs::Any && !checkable {
            return Err(Error::config(format!(
                "{key}: target_session_attrs is a PostgreSQL setting; this database type cannot \
                 check a session's role, so leave it out"
            )));
        }
        let mut endpoints = spec.endpoints();
        match spec
            .option("load_balance_hosts")
            .map(str::to_ascii_lowercase)
        {
            None => {}
            Some(v) if v == "disable" => {}
            Some(v) if v == "random" => fastrand::shuffle(&mut endpoints),
            Some(other) => {
                return Err(Error::config(format!(
                    "{key}: load_balance_hosts='{other}' is not one of disable, random"
                )))
            }
        }
        Ok(Plan { endpoints, attrs })
    }

    /// One server and any session: connect as written, nothing to choose.
    pub fn is_direct(&self) -> bool {
        self.endpoints.len() == 1 && self.attrs == SessionAttrs::Any
    }

    /// The passes over the host list: `prefer-standby` first looks for a
    /// standby, then takes any host.
    pub fn passes(&self) -> &'static [bool] {
        match self.attrs {
            SessionAttrs::PreferStandby => &[true, false],
            _ => &[true],
        }
    }

    pub fn accepts(&self, role: SessionRole, strict: bool) -> bool {
        self.attrs.accepts(role, strict)
    }
}

/// Why each server was passed over, said once when none would do.
#[derive(Default)]
pub struct Refusals {
    lines: Vec<String>,
    /// The most telling failure (authentication before a refused port), so
    /// the error keeps its kind and SQLSTATE.
    worst: Option<Error>,
}

impl Refusals {
    /// `e` names its server already ("cannot connect to ...").
    pub fn failed(&mut self, e: Error) {
        self.lines.push(e.message.clone());
        let telling = |e: &Error| e.sqlstate.is_some() || e.error_number.is_some();
        if self
            .worst
            .as_ref()
            .is_none_or(|w| !telling(w) && telling(&e))
        {
            self.worst = Some(e);
        }
    }

    pub fn mismatched(&mut self, endpoint: &Endpoint, role: SessionRole) {
        let what = match (role.standby, role.read_only) {
            (true, _) => "a standby (in recovery)",
            (false, true) => "read-only",
            (false, false) => "a read-write primary",
        };
        self.lines
            .push(format!("{endpoint}: the session is {what}"));
    }

    /// The error of a connection that found no server to its liking.
    pub fn into_error(self, plan: &Plan) -> Error {
        let mut message = format!(
            "none of the {} servers gave {} (target_session_attrs); ",
            plan.endpoints.len(),
            plan.attrs.describe()
        );
        for (i, line) in self.lines.iter().enumerate() {
            let _ = write!(message, "{}{line}", if i == 0 { "" } else { "; " });
        }
        message.push_str(
            "; check that the servers are up and, after a failover, that one has been promoted",
        );
        let mut e = self.worst.unwrap_or_else(|| Error::connection(""));
        e.kind = crate::error::ErrorKind::Connection;
        e.message = message;
        e.maybe_executed = false;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::url::parse_url;

    fn plan(url: &str) -> Result<Plan> {
        let kind = crate::backend::Kind::all().next().unwrap();
        Plan::of(&parse_url(url, kind, "K").unwrap(), "K", true)
    }

    const PRIMARY: SessionRole = SessionRole {
        read_only: false,
        standby: false,
    };
    const STANDBY: SessionRole = SessionRole {
        read_only: true,
        standby: true,
    };
    const READ_ONLY_PRIMARY: SessionRole = SessionRole {
        read_only: true,
        standby: false,
    };

    #[test]
    fn libpq_session_attrs() {
        use SessionAttrs::*;
        let table = [
            (Any, [true, true, true]),
            (ReadWrite, [true, false, false]),
            (ReadOnly, [false, true, true]),
            (Primary, [true, false, true]),
            (Standby, [false, true, false]),
        ];
        for (attrs, expected) in table {
            let got = [PRIMARY, STANDBY, READ_ONLY_PRIMARY].map(|r| attrs.accepts(r, true));
            assert_eq!(got, expected, "{attrs:?}");
        }
        assert!(!PreferStandby.accepts(PRIMARY, true));
        assert!(PreferStandby.accepts(PRIMARY, false));
        assert!(PreferStandby.accepts(STANDBY, true));
        assert!(
            ReadWrite.needs_writes() && Primary.needs_writes() && !PreferStandby.needs_writes()
        );
    }

    #[test]
    fn plans_from_urls() {
        let p = plan("postgresql://u@a:1,b:2/db").unwrap();
        assert!(!p.is_direct());
        assert_eq!(p.passes(), &[true]);
        let p = plan("postgresql://u@a:1/db?target_session_attrs=prefer-standby").unwrap();
        assert!(!p.is_direct());
        assert_eq!(p.passes(), &[true, false]);
        assert!(plan("postgresql://u@a:1/db").unwrap().is_direct());
        let e = plan("postgresql://u@a/db?target_session_attrs=writable").unwrap_err();
        assert!(
            e.message.contains("not one of any, read-write"),
            "{}",
            e.message
        );
        let e = plan("postgresql://u@a/db?load_balance_hosts=roundrobin").unwrap_err();
        assert!(e.message.contains("disable, random"), "{}", e.message);
        let kind = crate::backend::Kind::all().next().unwrap();
        let spec = parse_url("x://u@a/db?target_session_attrs=primary", kind, "K").unwrap();
        assert!(Plan::of(&spec, "K", false).is_err());
    }

    #[test]
    fn random_order_visits_every_host() {
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let p = plan("postgresql://u@a,b,c/db?load_balance_hosts=random").unwrap();
            assert_eq!(p.endpoints.len(), 3);
            firsts.insert(p.endpoints[0].host.clone());
        }
        assert_eq!(firsts.len(), 3, "every host comes first sometimes");
    }

    #[test]
    fn refusals_keep_the_telling_error() {
        let p = plan("postgresql://u@a:1,b:2/db?target_session_attrs=read-write").unwrap();
        let mut r = Refusals::default();
        r.failed(Error::connection("a:1: connection refused"));
        r.mismatched(&p.endpoints[1], STANDBY);
        let e = r.into_error(&p);
        assert_eq!(e.kind, crate::error::ErrorKind::Connection);
        assert!(e
            .message
            .contains("none of the 2 servers gave a read-write session"));
        assert!(e
            .message
            .contains("a:1: connection refused; b:2: the session is a standby"));
    }
}
