//! The process-wide table of pools: one per database configuration, shared
//! by every manager of that database; closed after its last user leaves and
//! a grace period passes (so sequential tasks reuse warm connections).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::Pool;
use crate::config::DatabaseConfig;
use crate::error::Result;

pub struct SharedPool {
    pub pool: Arc<Pool>,
    key: String,
    users: AtomicUsize,
    /// Changes on every attach, so a pending grace-period close can tell
    /// that the pool was used again meanwhile.
    generation: AtomicU64,
}

impl SharedPool {
    pub fn users(&self) -> usize {
        self.users.load(Ordering::Acquire)
    }
}

struct Registry {
    pid: u32,
    pools: HashMap<String, Arc<SharedPool>>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Mutex::new(Registry {
            pid: std::process::id(),
            pools: HashMap::new(),
        })
    })
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock cannot leave the map inconsistent
    // (single inserts/removes), so a poisoned lock is still usable.
    let mut guard = registry().lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if guard.pid != pid {
        // Forked child: the parent's connections are not ours to use or
        // close; forget them and start fresh pools.
        let old = std::mem::take(&mut guard.pools);
        std::mem::forget(old);
        guard.pid = pid;
    }
    guard
}

/// Join (or create) the pool for `config`; the caller becomes a user.
pub fn attach(config: Arc<DatabaseConfig>) -> Result<Arc<SharedPool>> {
    let key = config.pool_key();
    let mut reg = lock();
    let shared = match reg.pools.get(&key) {
        Some(existing) => existing.clone(),
        None => {
            let shared = Arc::new(SharedPool {
                pool: Pool::new(config.clone())?,
                key: key.clone(),
                users: AtomicUsize::new(0),
                generation: AtomicU64::new(0),
            });
            reg.pools.insert(key, shared.clone());
            drop(reg);
            crate::backend::Connection::announce(&config);
            shared
        }
    };
    shared.users.fetch_add(1, Ordering::AcqRel);
    shared.generation.fetch_add(1, Ordering::AcqRel);
    Ok(shared)
}

/// The caller stops using the pool. The last user starts the grace period.
pub fn release(shared: &Arc<SharedPool>) {
    if shared.pool.inherited() {
        return; // a forked child's copy of its parent's pool: not ours
    }
    let before = shared.users.fetch_sub(1, Ordering::AcqRel);
    if before != 1 {
        return;
    }
    let generation = shared.generation.load(Ordering::Acquire);
    let grace = shared.pool.config.pool.release_grace;
    let shared = shared.clone();
    let Some(runtime) = crate::runtime::runtime().ok() else {
        shared.pool.dispose();
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(grace).await;
        let mut reg = lock();
        if shared.users() == 0 && shared.generation.load(Ordering::Acquire) == generation {
            if reg
                .pools
                .get(&shared.key)
                .is_some_and(|p| Arc::ptr_eq(p, &shared))
            {
                reg.pools.remove(&shared.key);
            }
            drop(reg);
            shared.pool.dispose();
            tracing::debug!(database = %shared.pool.config.name, "closed an unused pool");
        }
    });
}

/// Close every pool now (interpreter exit, tests).
pub fn dispose_all() {
    let pools: Vec<Arc<SharedPool>> = lock().pools.drain().map(|(_, p)| p).collect();
    for shared in pools {
        shared.pool.dispose();
    }
}

/// Close one pool now and drop it from the table; later managers of the same
/// database get a fresh pool (SQLAlchemy's `engine.dispose()`).
pub fn dispose(shared: &Arc<SharedPool>) {
    let mut reg = lock();
    if reg
        .pools
        .get(&shared.key)
        .is_some_and(|p| Arc::ptr_eq(p, shared))
    {
        reg.pools.remove(&shared.key);
    }
    drop(reg);
    shared.pool.dispose();
}

/// Every open pool (for the pool metrics observers read).
pub fn open() -> Vec<Arc<SharedPool>> {
    lock().pools.values().cloned().collect()
}

/// How many pools are open (diagnostics and tests).
pub fn open_pools() -> usize {
    lock().pools.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::testing::{config, run};

    #[test]
    fn managers_of_one_database_share_a_pool_until_it_is_disposed() {
        run(async {
            let config = Arc::new(config("registry-share", &[]));
            let first = attach(config.clone()).unwrap();
            let second = attach(config.clone()).unwrap();
            assert!(Arc::ptr_eq(&first, &second));
            assert_eq!(first.users(), 2);
            release(&second);
            assert_eq!(first.users(), 1);
            // Other pool settings are another pool.
            let other = Arc::new(crate::backend::fake::testing::config(
                "registry-share",
                &[("APP_POOL_SIZE", "2")],
            ));
            let third = attach(other).unwrap();
            assert!(!Arc::ptr_eq(&first, &third));
            dispose(&first);
            let fresh = attach(config).unwrap();
            assert!(!Arc::ptr_eq(&first, &fresh));
            assert!(open_pools() >= 2);
            dispose(&fresh);
            dispose(&third);
        });
    }

    #[test]
    fn a_pool_released_by_its_last_user_is_kept_through_the_grace_period() {
        run(async {
            let config = Arc::new(config(
                "registry-grace",
                &[("APP_POOL_RELEASE_GRACE", "600")],
            ));
            let first = attach(config.clone()).unwrap();
            release(&first);
            assert_eq!(first.users(), 0);
            // Used again within the grace period: the same warm pool.
            let again = attach(config).unwrap();
            assert!(Arc::ptr_eq(&first, &again));
            assert_eq!(again.users(), 1);
            dispose(&again);
        });
    }
}
