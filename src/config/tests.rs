use super::*;
use std::io::Write;

fn manager(file: &str, env: &[(&str, &str)], flow: Option<&str>) -> (ConfigManager, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let mut f = std::fs::File::create(dir.path().join(".env.development")).unwrap();
    f.write_all(file.as_bytes()).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let m =
        ConfigManager::with_env(None, flow, Some(dir.path()), ProcessEnv::from_pairs(env)).unwrap();
    (m, dir)
}

mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    pub struct Dir(PathBuf);
    static N: AtomicUsize = AtomicUsize::new(0);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "dbflow-cfg-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const FILE: &str =
    "DEVELOPMENT_GLOBAL_RPA_DB_CONNECTION_STRING=postgresql://u:${PW}@h:5432/rpa_db\n\
                    DEVELOPMENT_GLOBAL_RPA_DB_POOL_SIZE=7\n\
                    DEVELOPMENT_GLOBAL_CONNECTION_POOL_SIZE=3\n\
                    DEVELOPMENT_GLOBAL_DATABASE_TIMEOUT=45\n\
                    DEVELOPMENT_RPA1_RPA_DB_MAX_OVERFLOW=2\n";

#[test]
fn resolves_file_interpolation_and_defaults() {
    let (m, _d) = manager(FILE, &[("PW", "s3cret")], None);
    let c = m.database_config("rpa_db").unwrap();
    assert_eq!(c.database_type.as_str(), "postgresql");
    assert_eq!(c.spec.password.as_deref(), Some("s3cret"));
    assert_eq!(c.pool.size, 7);
    assert_eq!(c.pool.max_overflow, 10);
    assert_eq!(c.database_timeout, Duration::from_secs(45));
    assert!(c.pool.pre_ping);
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn flow_key_beats_global_and_env_beats_file() {
    let (m, _d) = manager(
        FILE,
        &[("PW", "x"), ("DEVELOPMENT_GLOBAL_RPA_DB_POOL_SIZE", "9")],
        Some("rpa1"),
    );
    let c = m.database_config("rpa_db").unwrap();
    assert_eq!(c.pool.max_overflow, 2, "flow-specific key wins");
    assert_eq!(c.pool.size, 9, "process environment beats the file");
}

#[test]
fn global_pool_size_is_the_fallback() {
    let file = "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\n\
                DEVELOPMENT_GLOBAL_CONNECTION_POOL_SIZE=3\n";
    let (m, _d) = manager(file, &[], None);
    assert_eq!(m.database_config("x").unwrap().pool.size, 3);
}

#[test]
fn missing_connection_string_names_key_and_files() {
    let (m, _d) = manager("", &[], Some("rpa1"));
    let err = m.database_config("SurveyHub").unwrap_err();
    assert!(
        err.message
            .contains("DEVELOPMENT_GLOBAL_SURVEYHUB_CONNECTION_STRING"),
        "{}",
        err.message
    );
    assert!(err
        .message
        .contains("DEVELOPMENT_RPA1_SURVEYHUB_CONNECTION_STRING"));
    assert!(err.message.contains(".env.development"));
}

#[test]
fn contradictory_type_is_an_error_naming_the_key() {
    let file = "DEVELOPMENT_GLOBAL_X_TYPE=sqlserver\nDEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\n";
    let (m, _d) = manager(file, &[], None);
    let err = m.database_config("x").unwrap_err();
    assert!(
        err.message.contains("DEVELOPMENT_GLOBAL_X_TYPE"),
        "{}",
        err.message
    );
}

#[test]
fn bad_number_names_the_key() {
    let file = "DEVELOPMENT_GLOBAL_X_CONNECTION_STRING=postgresql://h/x\nDEVELOPMENT_GLOBAL_X_POOL_SIZE=many\n";
    let (m, _d) = manager(file, &[], None);
    let err = m.database_config("x").unwrap_err();
    assert!(
        err.message.contains("DEVELOPMENT_GLOBAL_X_POOL_SIZE"),
        "{}",
        err.message
    );
}

#[test]
fn environment_selection_order() {
    let env: HashMap<String, String> = [("PREFECT_ENVIRONMENT", "Staging")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let m = ConfigManager::with_env(
        None,
        None,
        Some(Path::new("/nonexistent")),
        ProcessEnv::from_pairs(env),
    )
    .unwrap();
    assert_eq!(m.environment(), "staging");
    let env2: HashMap<String, String> = [
        ("PREFECT_ENVIRONMENT", "staging"),
        ("DBFLOW_ENVIRONMENT", "test"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let m = ConfigManager::with_env(
        None,
        None,
        Some(Path::new("/nonexistent")),
        ProcessEnv::from_pairs(env2),
    )
    .unwrap();
    assert_eq!(m.environment(), "test");
}

#[test]
fn overrides_beat_environment_and_file() {
    let (m, _d) = manager(FILE, &[("PW", "x")], Some("rpa1"));
    let m = m.with_overrides([
        (
            "rpa_db_connection_string".to_string(),
            "postgresql://block@h/rpa_db".to_string(),
        ),
        ("RPA_DB_POOL_SIZE".to_string(), "2".to_string()),
    ]);
    let c = m.database_config("rpa_db").unwrap();
    assert_eq!(c.spec.user.as_deref(), Some("block"));
    assert_eq!(c.pool.size, 2);
    assert_eq!(
        c.pool.max_overflow, 2,
        "other settings still come from the file"
    );
}

#[test]
fn prefixed_settings_and_the_typo_scan_read_the_given_environment() {
    let (m, _d) = manager(
        "DEVELOPMENT_GLOBAL_SHOP_PLACEHOLDER_SCHEMA=from_file\n\
         DEVELOPMENT_GLOBAL_SHOP_PLACEHOLDER_OWNER=file_owner\n",
        &[
            ("DEVELOPMENT_GLOBAL_SHOP_PLACEHOLDER_SCHEMA", "from_env"),
            ("DEVELOPMENT_RPA1_SHOP_PLACEHOLDER_REGION", "eu"),
            ("DEVELOPMENT_GLOBAL_SHOP_POOL_SIZ", "4"),
        ],
        Some("rpa1"),
    );
    let found = m.with_prefix("SHOP_PLACEHOLDER_").unwrap();
    assert_eq!(
        found,
        vec![
            ("OWNER".to_owned(), "file_owner".to_owned()),
            ("REGION".to_owned(), "eu".to_owned()),
            ("SCHEMA".to_owned(), "from_env".to_owned()),
        ]
    );
    let suspects: Vec<String> = m.suspect_keys().into_iter().map(|s| s.key).collect();
    assert_eq!(
        suspects,
        vec!["DEVELOPMENT_GLOBAL_SHOP_POOL_SIZ".to_owned()]
    );
}

#[test]
fn key_part_normalizes() {
    assert_eq!(key_part("SurveyHub"), "SURVEYHUB");
    assert_eq!(key_part("rpa-db.x"), "RPA_DB_X");
}

#[test]
fn login_sources_are_read_and_contradictions_refused() {
    let url = "DEVELOPMENT_GLOBAL_R_CONNECTION_STRING=postgresql://app@h/db?sslmode=require\n";
    let (m, _d) = manager(
        &format!("{url}DEVELOPMENT_GLOBAL_R_PASSWORD_COMMAND=vault read pw\n"),
        &[],
        None,
    );
    let c = m.database_config("r").unwrap();
    assert_eq!(
        c.credentials.origin(),
        Some("DEVELOPMENT_GLOBAL_R_PASSWORD_COMMAND")
    );
    assert!(
        !c.pool_key().contains("vault"),
        "the command is fingerprinted"
    );
    let (m, _d) = manager(
        &format!(
            "{url}DEVELOPMENT_GLOBAL_R_AUTH=rds-iam\nDEVELOPMENT_GLOBAL_R_AUTH_REGION=eu-west-1\n"
        ),
        &[],
        None,
    );
    let c = m.database_config("r").unwrap();
    assert_eq!(
        c.auth,
        credentials::Auth::RdsIam {
            region: Some("eu-west-1".into())
        }
    );
    let (m, _d) = manager(
        "DEVELOPMENT_GLOBAL_R_CONNECTION_STRING=postgresql://app:pw@h/db\n\
         DEVELOPMENT_GLOBAL_R_PASSWORD_COMMAND=echo x\n",
        &[],
        None,
    );
    let e = m.database_config("r").unwrap_err();
    assert!(e.message.contains("has a password and"), "{}", e.message);
    let (m, _d) = manager(
        &format!("{url}DEVELOPMENT_GLOBAL_R_AUTH=kerberos\n"),
        &[],
        None,
    );
    let e = m.database_config("r").unwrap_err();
    assert!(
        e.message.contains("use password, rds-iam or entra"),
        "{}",
        e.message
    );
}
