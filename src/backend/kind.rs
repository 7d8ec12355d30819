//! What dbflow knows of a database before connecting to it: its names, the
//! connection strings it reads and its SQL. Each backend describes itself
//! in a [`KindInfo`] and registers it once (`backend::KINDS`); everything
//! above the seam asks a [`Kind`] instead of naming a database.

use std::fmt;

use super::DialectSql;
use crate::config::{ConnectSpec, StringForm};
use crate::error::Result;
use crate::sql::Dialect;

/// One backend's description of itself.
pub struct KindInfo {
    /// What `database_type` reports and `<DB>_TYPE` accepts.
    pub name: &'static str,
    /// Other spellings `<DB>_TYPE` accepts.
    pub aliases: &'static [&'static str],
    /// The scheme shown in redacted connection targets.
    pub scheme: &'static str,
    /// A URL to show people who wrote something else.
    pub example_url: &'static str,
    /// The form of `conn` if it is this backend's connection string.
    pub detect: fn(conn: &str) -> Option<StringForm>,
    /// Parse one of this backend's connection strings; `key` names the
    /// setting it came from, for messages.
    pub parse: fn(conn: &str, form: StringForm, key: &str) -> Result<ConnectSpec>,
    /// Its SQL for the parts written above the seam.
    pub sql: &'static DialectSql,
}

/// A registered backend, by reference to its [`KindInfo`].
#[derive(Clone, Copy)]
pub struct Kind(pub(crate) &'static KindInfo);

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Kind {}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl Kind {
    /// Every registered backend, in registration order.
    pub fn all() -> impl Iterator<Item = Kind> {
        super::KINDS.iter().map(|info| Kind(info))
    }

    /// The kind a `<DB>_TYPE` value names (any registered spelling, any case).
    pub fn named(value: &str) -> Option<Kind> {
        let value = value.trim().to_ascii_lowercase();
        Kind::all().find(|k| k.0.name == value || k.0.aliases.contains(&value.as_str()))
    }

    /// The kind and form of a connection string, without parsing it fully.
    pub fn detect(conn: &str) -> Option<(Kind, StringForm)> {
        Kind::all().find_map(|k| (k.0.detect)(conn).map(|form| (k, form)))
    }

    /// The registered names, for messages ("postgresql or sqlserver").
    pub fn names() -> String {
        let names: Vec<&str> = Kind::all().map(Kind::as_str).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// Example URLs of every backend, for messages.
    pub fn examples() -> String {
        Kind::all()
            .map(|k| k.0.example_url)
            .collect::<Vec<_>>()
            .join(" or ")
    }

    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    pub fn scheme(self) -> &'static str {
        self.0.scheme
    }

    pub fn example_url(self) -> &'static str {
        self.0.example_url
    }

    pub fn parse(self, conn: &str, form: StringForm, key: &str) -> Result<ConnectSpec> {
        (self.0.parse)(conn, form, key)
    }

    pub fn sql(self) -> &'static DialectSql {
        self.0.sql
    }

    pub fn dialect(self) -> Dialect {
        self.0.sql.dialect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_backend_is_found_by_name_and_by_connection_string() {
        let pg = Kind::named(" PG ").unwrap();
        assert_eq!(pg.as_str(), "postgresql");
        assert_eq!(Kind::named("mssql").map(Kind::as_str), Some("sqlserver"));
        assert_eq!(Kind::named("oracle"), None);
        let (fake, form) = Kind::detect("fake://host/db").unwrap();
        assert_eq!((fake.as_str(), form), ("fake", StringForm::Url));
        assert_eq!(fake.scheme(), "fake");
        assert_eq!(fake.dialect().placeholder_prefix, "$");
        let spec = fake.parse("fake://u:p@host/db", form, "KEY").unwrap();
        assert_eq!(spec.host.as_deref(), Some("host"));
        assert_eq!(Kind::detect("postgresql://h/db").unwrap().0, pg);
        assert_eq!(Kind::detect("mysql://h/db"), None);
    }

    #[test]
    fn names_and_examples_list_every_backend_in_registration_order() {
        // The fake is registered only in test builds, after the real ones.
        assert_eq!(Kind::names(), "postgresql, sqlserver or fake");
        assert!(Kind::examples().starts_with(Kind::all().next().unwrap().example_url()));
        assert_eq!(format!("{:?}", Kind::all().last().unwrap()), "fake");
    }
}
