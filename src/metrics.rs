//! Per-pool counters and latency histograms, lock-free on the hot path.
//! Percentiles come from log-spaced buckets (four per power of two, about
//! ±10% resolution) — precise enough to tell 1 ms from 10 ms from 100 ms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ErrorKind;

const BUCKETS: usize = 160;

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let sub = ((micros >> (octave - 2)) & 3) as usize;
    (octave * 4 + sub).min(BUCKETS - 1)
}

/// The upper bound (µs) of a bucket, reported as its value.
fn bucket_bound(index: usize) -> u64 {
    if index < 4 {
        return index as u64;
    }
    let octave = index / 4;
    let sub = (index % 4) as u64;
    (4 + sub + 1) << (octave - 2)
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let micros = elapsed.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q`-quantile (0..=1) in milliseconds, None when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_bound(i) as f64 / 1000.0);
            }
        }
        None
    }
}

pub const ERROR_KINDS: [ErrorKind; 10] = [
    ErrorKind::Configuration,
    ErrorKind::Connection,
    ErrorKind::Query,
    ErrorKind::Integrity,
    ErrorKind::Parameter,
    ErrorKind::Timeout,
    ErrorKind::PoolTimeout,
    ErrorKind::Transaction,
    ErrorKind::Migration,
    ErrorKind::ChecksumMismatch,
];

pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Configuration => "configuration",
        ErrorKind::Connection => "connection",
        ErrorKind::Query => "query",
        ErrorKind::Integrity => "integrity",
        ErrorKind::Parameter => "parameter",
        ErrorKind::Timeout => "timeout",
        ErrorKind::PoolTimeout => "pool_timeout",
        ErrorKind::Transaction => "transaction",
        ErrorKind::Migration => "migration",
        ErrorKind::ChecksumMismatch => "checksum_mismatch",
        ErrorKind::MultipleResultSets => "query",
    }
}

#[derive(Default)]
pub struct Metrics {
    pub queries: AtomicU64,
    pub rows: AtomicU64,
    pub retries: AtomicU64,
    pub timeouts: AtomicU64,
    errors: [AtomicU64; 10],
    pub query_latency: Histogram,
    pub acquire_latency: Histogram,
}

impl Metrics {
    pub fn record_query(&self, elapsed: Duration, rows: u64) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.query_latency.record(elapsed);
    }

    pub fn record_error(&self, kind: ErrorKind) {
        // Several result sets where one was expected is a query error.
        let kind = match kind {
            ErrorKind::MultipleResultSets => ErrorKind::Query,
            other => other,
        };
        let i = ERROR_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
        if kind == ErrorKind::Timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        ERROR_KINDS
            .iter()
            .zip(&self.errors)
            .map(|(k, c)| (kind_name(*k), c.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for v in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 1234, 99_999, 10_000_000] {
            let b = bucket_of(v);
            assert!(b >= last, "{v}");
            assert!(bucket_bound(b) >= v, "{v} -> bound {}", bucket_bound(b));
            assert!(
                bucket_bound(b) as f64 <= (v.max(1) as f64) * 1.26 + 1.0,
                "{v}"
            );
            last = b;
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for _ in 0..90 {
            h.record(Duration::from_millis(1));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(100));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((1.0..1.3).contains(&p50), "{p50}");
        assert!((100.0..126.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
    }
}
