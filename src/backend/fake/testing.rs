//! What the tests above the seam share: a database configured as a user
//! would (`ConfigManager` over a process environment of its own) whose
//! connection string is `fake://<host>/app`, and the fake server behind it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{server, Server};
use crate::backend::Statement;
use crate::config::{ConfigManager, DatabaseConfig, ProcessEnv};
use crate::engine::Database;
use crate::value::Value;

/// The configuration of database `app` on fake host `host`; `settings` are
/// keys after `TEST_GLOBAL_` (e.g. `("APP_POOL_SIZE", "2")`). Start-up
/// migrations are off unless a setting turns them on.
pub fn config(host: &str, settings: &[(&str, &str)]) -> DatabaseConfig {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert(
        "TEST_GLOBAL_APP_CONNECTION_STRING".into(),
        format!("fake://tester:s3cret@{host}/app"),
    );
    env.insert("TEST_GLOBAL_APP_AUTO_MIGRATE".into(), "off".into());
    for (key, value) in settings {
        env.insert(format!("TEST_GLOBAL_{key}"), (*value).to_owned());
    }
    ConfigManager::with_env(
        Some("test"),
        None,
        Some(std::path::Path::new("/nonexistent-dbflow-envs")),
        ProcessEnv::from_pairs(env),
    )
    .expect("no env file is not an error")
    .database_config("app")
    .expect("a fake database configures")
}

/// A database as the bindings open it (`Database::open`), and its server.
pub fn database(host: &str, settings: &[(&str, &str)]) -> (Database, Arc<Server>) {
    let config = config(host, settings);
    let db = Database::open(config, None).expect("the fake database opens");
    (db, server(host))
}

/// A statement of `sql` (`:name` parameters) with its values in order.
pub fn statement(sql: &str, values: Vec<Value>) -> Statement {
    Statement {
        sql: crate::sql::parse(sql, &super::LEXICON),
        values,
    }
}

/// A statement without parameters.
pub fn sql(text: &str) -> Statement {
    statement(text, Vec::new())
}

/// Let tasks spawned in the background (connection closes, the reaper)
/// run until `done` holds; bounded, and no clock moves.
pub async fn settle(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if done() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    done()
}

/// Run a test body on a current-thread runtime whose clock starts paused
/// (time moves only when every task waits), on a thread with a stack as
/// deep as the runtime's workers have: the engine's futures, with every
/// backend's inside, overflow a test thread's 2 MiB in debug builds.
pub fn run<F: std::future::Future<Output = ()> + Send>(test: F) {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(32 * 1024 * 1024)
            .spawn_scoped(scope, || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .start_paused(true)
                    .build()
                    .expect("a test runtime")
                    .block_on(test)
            })
            .expect("a test thread")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A fresh directory of migration files for one test.
pub struct Dir(PathBuf);

impl Dir {
    pub fn new(name: &str, files: &[(&str, &str)]) -> Dir {
        let path = std::env::temp_dir().join(format!("dbflow-fake-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let dir = Dir(path);
        for (file, text) in files {
            dir.write(file, text);
        }
        dir
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.0.join(file)).unwrap();
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

/// A database on its own fake host whose migrations are in `dir`.
pub fn migrating(host: &str, dir: &Dir, settings: &[(&str, &str)]) -> (Database, Arc<Server>) {
    let path = dir.path().display().to_string();
    let mut all = vec![("APP_MIGRATIONS_DIR", path.as_str())];
    all.extend_from_slice(settings);
    database(host, &all)
}
