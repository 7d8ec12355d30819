//! QueuePool's rules on the fake backend: limits under concurrent load,
//! overflow reaped after its idle time, the pool timeout, LIFO reuse,
//! broken connections discarded, dispose. The clock is paused: time moves
//! only when every task waits, so nothing depends on the machine's speed.

use std::sync::Arc;
use std::time::Duration;

use super::Pool;
use crate::backend::fake::testing::{config, database, run, settle, sql};
use crate::backend::fake::{server, Fault};
use crate::error::ErrorKind;
use crate::value::Value;

fn pool(host: &str, settings: &[(&str, &str)]) -> Arc<Pool> {
    Pool::new(Arc::new(config(host, settings))).unwrap()
}

/// Which server session a checked-out connection is.
async fn session(conn: &mut super::PooledConnection) -> i64 {
    match conn
        .query(&sql("SELECT fake_session()"))
        .await
        .unwrap()
        .values[0]
    {
        Value::Int(id) => id,
        ref other => panic!("not a session id: {other:?}"),
    }
}

#[test]
fn limit_and_overflow_are_never_exceeded_under_concurrent_load() {
    run(async {
        let host = "pool-limits";
        let pool = pool(host, &[("APP_POOL_SIZE", "2"), ("APP_MAX_OVERFLOW", "1")]);
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut conn = pool.get().await.unwrap();
                    // Each holds its connection for a while of (paused) time.
                    let ms = 50 + 10 * (i % 3);
                    conn.query(&sql(&format!("SELECT sleep({ms})")))
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (_, most) = server(host).sessions();
        assert_eq!(most, 3, "pool_size 2 + max_overflow 1");
        let status = pool.status();
        assert_eq!(status.checked_out, 0);
        assert!(status.checked_in <= 3);
    });
}

#[test]
fn overflow_is_closed_once_idle_for_its_timeout_and_not_before() {
    run(async {
        let host = "pool-reaper";
        let pool = pool(
            host,
            &[
                ("APP_POOL_SIZE", "1"),
                ("APP_MAX_OVERFLOW", "2"),
                ("APP_OVERFLOW_IDLE_TIMEOUT", "2"),
            ],
        );
        let server = server(host);
        let held: Vec<_> = [pool.get().await, pool.get().await, pool.get().await]
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(pool.status().overflow, 2);
        drop(held);
        assert_eq!(server.sessions().0, 3);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(server.sessions().0, 3, "still within the idle timeout");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(settle(|| server.sessions().0 == 1).await);
        let status = pool.status();
        assert_eq!((status.checked_in, status.overflow), (1, 0));
        assert_eq!(
            pool.counters
                .overflow_closed
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    });
}

#[test]
fn overflow_is_closed_on_return_when_its_idle_timeout_is_zero() {
    run(async {
        let host = "pool-queuepool";
        let pool = pool(
            host,
            &[
                ("APP_POOL_SIZE", "1"),
                ("APP_MAX_OVERFLOW", "1"),
                ("APP_OVERFLOW_IDLE_TIMEOUT", "0"),
            ],
        );
        let a = pool.get().await.unwrap();
        let b = pool.get().await.unwrap();
        drop(a);
        drop(b);
        assert!(settle(|| server(host).sessions().0 == 1).await);
    });
}

#[test]
fn a_checkout_waits_pool_timeout_then_fails() {
    run(async {
        let pool = pool(
            "pool-timeout",
            &[
                ("APP_POOL_SIZE", "1"),
                ("APP_MAX_OVERFLOW", "0"),
                ("APP_POOL_TIMEOUT", "5"),
            ],
        );
        let held = pool.get().await.unwrap();
        let started = tokio::time::Instant::now();
        let e = pool.get().await.map(|_| ()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PoolTimeout);
        assert!(
            e.message.contains("pool_size=1 + max_overflow=0"),
            "{}",
            e.message
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // A connection returned in time is handed to the waiting checkout.
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                pool.get().await.map(|_| started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        let waited = waiter.await.unwrap().unwrap();
        assert_eq!(waited, Duration::from_secs(1));
        assert_eq!(
            pool.counters
                .timeouts
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    });
}

#[test]
fn the_most_recently_returned_connection_is_reused_first() {
    run(async {
        let pool = pool("pool-lifo", &[("APP_POOL_SIZE", "3")]);
        let mut a = pool.get().await.unwrap();
        let mut b = pool.get().await.unwrap();
        let mut c = pool.get().await.unwrap();
        let ids = [
            session(&mut a).await,
            session(&mut b).await,
            session(&mut c).await,
        ];
        drop(a);
        drop(c);
        drop(b);
        let mut next = pool.get().await.unwrap();
        assert_eq!(session(&mut next).await, ids[1]);
        let mut after = pool.get().await.unwrap();
        assert_eq!(session(&mut after).await, ids[2]);
    });
}

#[test]
fn a_broken_connection_is_discarded_not_reused() {
    run(async {
        let host = "pool-broken";
        let pool = pool(host, &[("APP_POOL_SIZE", "2")]);
        let server = server(host);
        let mut conn = pool.get().await.unwrap();
        let first = session(&mut conn).await;
        server.arm("SELECT 2", Fault::ResetAfterRun, 1);
        conn.query(&sql("SELECT 2 AS two")).await.unwrap_err();
        assert!(conn.broken);
        drop(conn);
        assert_eq!(pool.status().invalid, 1);
        let mut conn = pool.get().await.unwrap();
        assert_ne!(session(&mut conn).await, first);
        assert!(settle(|| server.sessions().0 == 1).await);
        // One left in a transaction is discarded too.
        conn.begin().await.unwrap();
        drop(conn);
        assert_eq!(pool.status().invalid, 2);
    });
}

#[test]
fn an_idle_connection_is_pinged_before_reuse_and_replaced_when_dead() {
    run(async {
        let host = "pool-preping";
        let pool = pool(host, &[("APP_POOL_SIZE", "1")]);
        let server = server(host);
        let mut conn = pool.get().await.unwrap();
        let first = session(&mut conn).await;
        drop(conn);
        // Idle past the pre-ping threshold, and killed by the server meanwhile.
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.kill_sessions();
        let mut conn = pool.get().await.unwrap();
        assert_ne!(session(&mut conn).await, first);
        assert_eq!(server.executed("AS ping"), 0, "the dead ping never left");
        drop(conn);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _conn = pool.get().await.unwrap();
        assert_eq!(server.executed("AS ping"), 1);
    });
}

#[test]
fn dispose_closes_idle_connections_and_those_in_use_when_returned() {
    run(async {
        let host = "pool-dispose";
        let (db, server) = database(host, &[("APP_POOL_SIZE", "3")]);
        let shared = db.shared();
        let in_use = shared.pool.get().await.unwrap();
        // A second connection, back in the pool once the query is done.
        db.query(&sql("SELECT 1 AS x")).await.unwrap();
        assert_eq!(server.sessions().0, 2);
        db.dispose();
        assert!(settle(|| server.sessions().0 == 1).await);
        drop(in_use);
        assert!(settle(|| server.sessions().0 == 0).await);
        assert_eq!(shared.pool.status().opened, 2);
    });
}

#[test]
fn a_refused_connection_is_a_connection_error() {
    run(async {
        let host = "pool-refused";
        let pool = pool(host, &[]);
        server(host).fail_connects(1);
        let e = pool.get().await.map(|_| ()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connection);
        pool.get().await.unwrap();
    });
}

#[test]
fn recycle_ages_are_spread_so_connections_opened_together_expire_apart() {
    run(async {
        let host = "pool-recycle-jitter";
        let pool = pool(host, &[("APP_POOL_SIZE", "8"), ("APP_POOL_RECYCLE", "100")]);
        let held: Vec<_> = futures_util::future::join_all((0..8).map(|_| pool.get()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let lifetimes: Vec<Duration> = held.iter().map(|c| c.lifetime.unwrap()).collect();
        for lifetime in &lifetimes {
            assert!(
                (Duration::from_secs(90)..=Duration::from_secs(110)).contains(lifetime),
                "{lifetime:?} is not within 100 s ± 10%"
            );
        }
        let mut distinct = lifetimes.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 1, "every connection got {lifetimes:?}");
    });
}
