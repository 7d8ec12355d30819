//! Connection pools with SQLAlchemy QueuePool limits on top of deadpool:
//! `pool_size` connections are kept, up to `max_overflow` more are opened
//! under load and closed once idle for `overflow_idle_timeout` (zero: when
//! returned, QueuePool's rule), a checkout waits `pool_timeout` and then
//! fails with `PoolTimeout`. Every checkout looks at the socket (no round
//! trip) and discards a connection the server closed; one idle for a while
//! is also pinged (`pool_pre_ping`).

pub mod registry;

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, Object, RecycleError, RecycleResult};

use crate::backend::liveness::Liveness;
use crate::backend::Connection;
use crate::config::DatabaseConfig;
use crate::error::{Error, ErrorKind, Result};

/// A connection used this recently skips the pre-ping: it was fine a moment
/// ago and the ping would cost a round trip on every query.
const PRE_PING_AFTER_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct PoolCounters {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub invalidated: AtomicU64,
    pub overflow_closed: AtomicU64,
    pub timeouts: AtomicU64,
}

pub struct ConnectionManager {
    config: Arc<DatabaseConfig>,
    counters: Arc<PoolCounters>,
    /// One permit per server session, `pool_size + max_overflow` in all. A
    /// slot deadpool frees when a connection leaves the pool is free at
    /// once, but the connection may still be closing: its permit keeps the
    /// replacement from opening until it is gone, so the server never sees
    /// more sessions than the limit.
    sessions: Arc<tokio::sync::Semaphore>,
}

impl managed::Manager for ConnectionManager {
    type Type = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection> {
        let permit = tokio::time::timeout(
            self.config.pool.timeout,
            self.sessions.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::PoolTimeout,
                format!(
                    "connections leaving the pool did not finish closing within pool_timeout={:?}",
                    self.config.pool.timeout
                ),
            )
        })?
        .map_err(|_| Error::connection("the pool is closed"))?;
        let connecting = std::time::Instant::now();
        // Boxed: a connect (TLS, login, several hosts) is a deep future,
        // and it would sit inside every operation's that may open one.
        let mut conn = Box::pin(Connection::connect(&self.config)).await?;
        crate::telemetry::connection_created(connecting);
        conn.session = Some(permit);
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(database = %self.config.name, "opened a connection");
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut Connection, metrics: &Metrics) -> RecycleResult<Error> {
        if conn.broken || conn.in_transaction {
            self.counters.invalidated.fetch_add(1, Ordering::Relaxed);
            return Err(RecycleError::message(
                "connection was left in an unknown state",
            ));
        }
        if let Some(max_age) = conn.lifetime {
            if metrics.age() > max_age {
                return Err(RecycleError::message("connection reached pool_recycle age"));
            }
        }
        let ping = match conn.liveness() {
            Liveness::Closed => {
                self.counters.invalidated.fetch_add(1, Ordering::Relaxed);
                tracing::info!(database = %self.config.name, "the server closed an idle connection; replacing it");
                return Err(RecycleError::message("the server closed the connection"));
            }
            // Bytes nobody asked for: a notice, or a farewell not yet
            // followed by the close. Only the server can say.
            Liveness::Unsure => true,
            Liveness::Open => {
                self.config.pool.pre_ping && conn.last_used.elapsed() > PRE_PING_AFTER_IDLE
            }
        };
        if ping {
            if let Err(e) = conn.ping().await {
                self.counters.invalidated.fetch_add(1, Ordering::Relaxed);
                tracing::info!(database = %self.config.name, "pre-ping found a dead connection; replacing it");
                return Err(RecycleError::Backend(e));
            }
        }
        Ok(())
    }

    fn detach(&self, _conn: &mut Connection) {
        self.counters.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// One database's pool, shared by every manager of that database in the
/// process.
pub struct Pool {
    pub config: Arc<DatabaseConfig>,
    inner: managed::Pool<ConnectionManager>,
    pub counters: Arc<PoolCounters>,
    /// Bumped by `dispose()`: connections checked out before it are closed
    /// when returned instead of going back to the pool.
    epoch: AtomicUsize,
    /// The start-up migration step (`<DB>_AUTO_MIGRATE`), done once per pool.
    pub startup: tokio::sync::OnceCell<()>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The process that opened this pool's connections. In a forked child
    /// they belong to the parent: the child must never write to them.
    pub pid: u32,
    /// Held while a returned connection is kept or closed, and while idle
    /// overflow is reaped: connections returned at once each see the others,
    /// so the pool never keeps more than it should.
    returning: Mutex<()>,
    /// A task is closing overflow connections as they pass their idle time.
    reaper_running: AtomicBool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatus {
    pub pool_size: usize,
    pub max_overflow: usize,
    pub checked_in: usize,
    pub checked_out: usize,
    pub overflow: usize,
    pub invalid: u64,
    pub waiting: usize,
    pub opened: u64,
    pub closed: u64,
}

impl Pool {
    pub fn new(config: Arc<DatabaseConfig>) -> Result<Arc<Self>> {
        let counters = Arc::new(PoolCounters::default());
        let manager = ConnectionManager {
            config: config.clone(),
            counters: counters.clone(),
            sessions: Arc::new(tokio::sync::Semaphore::new(config.pool.max_connections())),
        };
        let inner = managed::Pool::builder(manager)
            .max_size(config.pool.max_connections())
            // The most recently returned connection is reused first, so the
            // ones a burst opened go idle and can be closed.
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .wait_timeout(Some(config.pool.timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config(format!("cannot build the pool: {e}")))?;
        Ok(Arc::new(Pool {
            config,
            inner,
            counters,
            epoch: AtomicUsize::new(0),
            startup: tokio::sync::OnceCell::new(),
            metrics: Arc::new(crate::metrics::Metrics::default()),
            pid: crate::runtime::pid(),
            returning: Mutex::new(()),
            reaper_running: AtomicBool::new(false),
        }))
    }

    pub async fn get(self: &Arc<Self>) -> Result<PooledConnection> {
        let started = Instant::now();
        let got = self.inner.get().await;
        self.metrics.acquire_latency.record(started.elapsed());
        match got {
            Ok(object) => Ok(PooledConnection {
                object: Some(object),
                pool: self.clone(),
                epoch: self.epoch.load(Ordering::Acquire),
                waited: started.elapsed(),
            }),
            Err(managed::PoolError::Timeout(_)) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                let p = &self.config.pool;
                Err(Error::new(
                    ErrorKind::PoolTimeout,
                    format!(
                        "no connection free within pool_timeout={:?}: all {} connections \
                         (pool_size={} + max_overflow={}) are in use; raise {}_POOL_SIZE / _MAX_OVERFLOW, \
                         release connections sooner, or raise _POOL_TIMEOUT",
                        p.timeout,
                        p.max_connections(),
                        p.size,
                        p.max_overflow,
                        crate::config::key_part(&self.config.name)
                    ),
                ))
            }
            Err(managed::PoolError::Backend(e)) => Err(e),
            Err(managed::PoolError::Closed) => Err(Error::connection("the pool is closed")),
            Err(e) => Err(Error::connection(e.to_string())),
        }
    }

    pub fn status(&self) -> PoolStatus {
        let s = self.inner.status();
        let checked_out = s.size - s.available;
        PoolStatus {
            pool_size: self.config.pool.size,
            max_overflow: self.config.pool.max_overflow,
            checked_in: s.available,
            checked_out,
            overflow: s.size.saturating_sub(self.config.pool.size),
            invalid: self.counters.invalidated.load(Ordering::Relaxed),
            waiting: s.waiting,
            opened: self.counters.opened.load(Ordering::Relaxed),
            closed: self.counters.closed.load(Ordering::Relaxed),
        }
    }

    /// Whether this pool was opened by another process (we are a fork).
    pub fn inherited(&self) -> bool {
        self.pid != crate::runtime::pid()
    }

    /// Close idle connections now; in-use ones close when returned.
    pub fn dispose(&self) {
        if self.inherited() {
            // The parent's connections: closing them politely would end the
            // parent's sessions. Leave them to the parent.
            std::mem::forget(self.inner.retain(|_, _| false));
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // `retain` counts each removed connection as closed (`detach`).
        let removed = self.inner.retain(|_, _| false);
        for conn in removed.removed {
            close_in_background(conn);
        }
    }
}

fn close_in_background(conn: Connection) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(conn.close());
    } else if let Some(rt) = crate::runtime::get() {
        rt.spawn(conn.close());
    }
}

/// A checked-out connection. Returning it applies QueuePool rules: broken
/// connections and connections beyond `pool_size` are closed.
pub struct PooledConnection {
    object: Option<Object<ConnectionManager>>,
    pool: Arc<Pool>,
    epoch: usize,
    pub waited: Duration,
}

impl PooledConnection {
    /// The metrics of the pool this connection belongs to.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.pool.metrics
    }
}

impl Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.object.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        self.object.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        let pool = self.pool.clone();
        let settings = &pool.config.pool;
        let disposed = pool.epoch.load(Ordering::Acquire) != self.epoch;
        // A connection dropped mid-operation (a deadline, a cancelled task)
        // may still have a reply on the wire: never hand it out again.
        let unusable = object.broken || object.in_transaction || object.in_flight;
        let _returning = pool.returning.lock().unwrap_or_else(|e| e.into_inner());
        let status = pool.inner.status();
        let beyond_size = status.size > settings.size;
        // QueuePool's rule when overflow is not kept idle: a returned
        // connection is closed when the pool already keeps `pool_size` idle
        // ones (a waiting checkout counts against them and takes this one).
        let close_now = beyond_size
            && settings.overflow_idle_timeout.is_zero()
            && status.available >= settings.size;
        if unusable || disposed || close_now {
            if unusable {
                pool.counters.invalidated.fetch_add(1, Ordering::Relaxed);
            } else if close_now {
                pool.counters
                    .overflow_closed
                    .fetch_add(1, Ordering::Relaxed);
            }
            let conn = Object::take(object);
            if pool.inherited() {
                std::mem::forget(conn);
            } else {
                close_in_background(conn);
            }
            return;
        }
        // Back into the pool while the lock is held, so the next returned
        // connection counts this one as idle.
        drop(object);
        if beyond_size && !pool.inherited() {
            Pool::reap_later(&pool);
        }
    }
}

impl Pool {
    /// Start the task that closes overflow connections once they have been
    /// idle for `overflow_idle_timeout`; it ends when none is left.
    fn reap_later(pool: &Arc<Pool>) {
        if pool.reaper_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Pool> = Arc::downgrade(pool);
        let every = (pool.config.pool.overflow_idle_timeout / 4).max(Duration::from_millis(10));
        let reaper = async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = weak.upgrade() else { return };
                if !pool.reap_idle_overflow() {
                    return;
                }
            }
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(reaper);
        } else if let Some(rt) = crate::runtime::get() {
            rt.spawn(reaper);
        } else {
            pool.reaper_running.store(false, Ordering::Release);
        }
    }

    /// Close idle connections beyond `pool_size` that have been unused for
    /// `overflow_idle_timeout`, longest idle first. Whether overflow remains.
    fn reap_idle_overflow(&self) -> bool {
        let _returning = self.returning.lock().unwrap_or_else(|e| e.into_inner());
        let settings = &self.config.pool;
        let mut excess = self.inner.status().size.saturating_sub(settings.size);
        if excess > 0 {
            // Idle connections sit oldest-returned first (LIFO reuse).
            let removed = self.inner.retain(|conn, _| {
                let expired =
                    excess > 0 && conn.last_used.elapsed() >= settings.overflow_idle_timeout;
                if expired {
                    excess -= 1;
                }
                !expired
            });
            let n = removed.removed.len() as u64;
            self.counters
                .overflow_closed
                .fetch_add(n, Ordering::Relaxed);
            for conn in removed.removed {
                close_in_background(conn);
            }
        }
        let remaining = self.inner.status().size > settings.size;
        if !remaining {
            self.reaper_running.store(false, Ordering::Release);
        }
        remaining
    }
}

#[cfg(test)]
mod tests;
