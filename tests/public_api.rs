//! The core's public Rust API, used as a Rust caller would, without Python
//! and without a server.

use std::collections::HashMap;

use dbflow::backend::Kind;
use dbflow::config::{ConfigManager, ProcessEnv};
use dbflow::error::ErrorKind;
use dbflow::sql;

fn config_from(pairs: &[(&str, &str)]) -> ConfigManager {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ConfigManager::with_env(
        Some("production"),
        Some("rpa2"),
        Some(std::path::Path::new("/nonexistent-dbflow-envs")),
        ProcessEnv::from_pairs(env),
    )
    .expect("no env file is not an error")
}

#[test]
fn process_environment_alone_configures_a_database() {
    let cfg = config_from(&[
        (
            "PRODUCTION_GLOBAL_RPA_DB_CONNECTION_STRING",
            "postgresql://app:${PW}@db:5432/rpa_db",
        ),
        ("PW", "s3cr3t"),
        ("PRODUCTION_RPA2_RPA_DB_POOL_SIZE", "12"),
    ]);
    let db = cfg.database_config("rpa_db").unwrap();
    assert_eq!(db.database_type, Kind::named("postgresql").unwrap());
    assert_eq!(db.pool.size, 12);
    assert_eq!(db.spec.redacted(), "postgresql://app:***@db:5432/rpa_db");
    assert!(!format!("{db:?}").contains("s3cr3t"));
}

#[test]
fn errors_are_configuration_errors_naming_keys() {
    let cfg = config_from(&[]);
    let err = cfg.database_config("rpa_db").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Configuration);
    assert!(err
        .message
        .contains("PRODUCTION_GLOBAL_RPA_DB_CONNECTION_STRING"));
    assert!(err
        .message
        .contains("PRODUCTION_RPA2_RPA_DB_CONNECTION_STRING"));
}

#[test]
fn rewriting_is_stable_for_both_dialects() {
    let dialect = |name| Kind::named(name).unwrap().dialect();
    let parsed = sql::parse(
        "UPDATE t SET a = :a WHERE id = :id AND a <> :a",
        dialect("postgresql"),
    );
    assert_eq!(
        parsed.render(dialect("postgresql")),
        "UPDATE t SET a = $1 WHERE id = $2 AND a <> $1"
    );
    assert_eq!(
        parsed.render(dialect("sqlserver")),
        "UPDATE t SET a = @P1 WHERE id = @P2 AND a <> @P1"
    );
}

#[test]
fn every_registered_backend_is_detected_from_its_connection_strings() {
    let cases = [
        ("postgresql://u:p@h/db", "postgresql"),
        ("postgres://h/db", "postgresql"),
        ("postgresql+psycopg2://u@h:5433/db", "postgresql"),
        (
            "mssql+pyodbc://u:p@h:1433/db?driver=ODBC+Driver+17+for+SQL+Server",
            "sqlserver",
        ),
        ("mssql+pymssql://u:p@h/db", "sqlserver"),
        ("mssql://u:p@h/db", "sqlserver"),
        ("sqlserver://h:1433;databaseName=db", "sqlserver"),
        ("jdbc:sqlserver://h\\inst;databaseName=db", "sqlserver"),
        (
            "Server=tcp:h,1433;Database=db;User Id=u;Password=p",
            "sqlserver",
        ),
    ];
    for (conn, expected) in cases {
        assert_eq!(
            Kind::detect(conn).map(|(kind, _)| kind.as_str()),
            Some(expected),
            "{conn}"
        );
    }
    assert!(Kind::detect("mysql://h/db").is_none());
    assert!(Kind::detect("just text").is_none());
    assert_eq!(Kind::names(), "postgresql or sqlserver");
    for alias in ["PG", " postgres ", "mssql", "SQL Server"] {
        assert!(Kind::named(alias).is_some(), "{alias}");
    }
}
