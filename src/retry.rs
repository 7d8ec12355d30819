//! Which failures may be retried, and how long to wait between attempts.
//! A statement that may have reached the server outside a transaction is
//! never re-run unless the caller says it is idempotent.

use std::time::Duration;

use crate::error::{Error, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// The original design's tenacity settings: 3 attempts, waits of 4-10 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            min_delay: Duration::from_secs(4),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Whether `e` may be retried. `idempotent`: the caller accepts a re-run
/// of a statement that may already have been executed.
pub fn is_transient(e: &Error, idempotent: bool) -> bool {
    if e.transient {
        return true;
    }
    match e.kind {
        ErrorKind::PoolTimeout => true,
        ErrorKind::Connection => !e.maybe_executed || idempotent,
        _ => false,
    }
}

impl RetryPolicy {
    /// Wait before attempt `attempt` (2, 3, ...): exponential from
    /// `min_delay`, capped at `max_delay`, with ±25% jitter so many workers
    /// do not retry in step.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(2).min(30);
        let base = self.min_delay.as_secs_f64() * 2f64.powi(exp as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * factor).min(self.max_delay.as_secs_f64()).max(0.0))
    }
}

/// A cheap jitter source without a dependency: nanoseconds of the clock.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 1000) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient(transient: bool) -> Error {
        let mut e = Error::query("x");
        e.transient = transient;
        e
    }

    #[test]
    fn classification() {
        assert!(is_transient(&transient(true), false));
        assert!(!is_transient(&transient(false), true));
        let mut sent = Error::connection("lost");
        sent.maybe_executed = true;
        assert!(
            !is_transient(&sent, false),
            "may have committed: never re-run blindly"
        );
        assert!(
            is_transient(&sent, true),
            "unless the caller says it is idempotent"
        );
        assert!(is_transient(&Error::connection("refused"), false));
        assert!(is_transient(
            &Error::new(ErrorKind::PoolTimeout, "full"),
            false
        ));
        assert!(!is_transient(&Error::new(ErrorKind::Timeout, "slow"), true));
    }

    #[test]
    fn delays_grow_and_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(4));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(8));
        assert_eq!(p.delay(4, 0.5), Duration::from_secs(10));
        assert!(p.delay(2, 0.0) >= Duration::from_secs(3));
        assert!(p.delay(9, 1.0) <= Duration::from_secs(10));
    }
}
