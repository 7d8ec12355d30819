//! Whether a waiting caller checks for its answer before sleeping.

use std::cell::Cell;

/// Answers expected within this are checked for before sleeping.
#[cfg(unix)]
pub(super) const SPIN_CEILING: std::time::Duration = std::time::Duration::from_micros(50);
#[cfg(unix)]
pub(super) const SPIN_FLOOR: std::time::Duration = std::time::Duration::from_micros(10);

thread_local! {
    /// How long this thread's recent waits for an answer took (a moving
    /// average; starting at the floor, so the first waits check first).
    #[cfg(unix)]
    pub(super) static RECENT_WAIT: Cell<std::time::Duration> = const { Cell::new(SPIN_FLOOR) };
}

thread_local! {
    #[cfg(unix)]
    pub(super) static SPIN_RECORD: Cell<SpinRecord> = const { Cell::new(SpinRecord::FRESH) };
}

/// Whether this thread's checks before sleeping have been catching answers.
///
/// A check that misses is worse than none on a busy machine: the thread
/// used its share of the core spinning, so when it then sleeps and the
/// answer wakes it, the scheduler lets a CPU-bound neighbour finish its
/// slice first (milliseconds; measured with `perf sched timehist`, issue
/// #29). So checking stops once more than about one in ten misses, and is
/// tried again only now and then (one wait in [`SpinRecord::RETRY_EVERY`]),
/// a rare enough miss to stay out of the 99th percentile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SpinRecord {
    /// Moving hit rate, out of [`SpinRecord::FULL`].
    hits: u16,
    /// Waits since checking stopped.
    skipped: u16,
}

impl SpinRecord {
    const FULL: u16 = 1024;
    /// Check while the hit rate is at least ~90%.
    const THRESHOLD: u16 = 922;
    const RETRY_EVERY: u16 = 512;
    const FRESH: SpinRecord = SpinRecord {
        hits: SpinRecord::FULL,
        skipped: 0,
    };

    /// Whether to check before sleeping this time.
    pub(super) fn worth_trying(self) -> bool {
        self.hits >= Self::THRESHOLD || self.skipped >= Self::RETRY_EVERY
    }

    /// The record after a check before sleeping: `caught` whether it
    /// caught the answer.
    pub(super) fn after(self, caught: bool) -> SpinRecord {
        if self.hits < Self::THRESHOLD && caught {
            // A retry that caught it: start believing again.
            return SpinRecord::FRESH;
        }
        let hits = self.hits - self.hits / 16 + if caught { Self::FULL / 16 } else { 0 };
        SpinRecord {
            hits: hits.min(Self::FULL),
            skipped: 0,
        }
    }

    /// The record after a wait that did not check.
    pub(super) fn skipped(self) -> SpinRecord {
        SpinRecord {
            skipped: self.skipped.saturating_add(1),
            ..self
        }
    }
}

#[cfg(unix)]
pub(super) fn remember(waited: std::time::Duration) {
    RECENT_WAIT.with(|r| r.set((r.get() * 3 + waited) / 4));
}

/// Threads checking without sleeping right now: at most one fewer than the
/// cores, so a core is always left for the rest of the process.
#[cfg(unix)]
pub(super) static SPINNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(unix)]
pub(super) fn spin_slot() -> bool {
    static ALLOWED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let allowed = *ALLOWED.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
    });
    if SPINNING.fetch_add(1, std::sync::atomic::Ordering::AcqRel) < allowed {
        true
    } else {
        SPINNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checking_before_sleeping_stops_when_it_misses_and_is_retried_rarely() {
        let mut record = SpinRecord::FRESH;
        for _ in 0..100 {
            record = record.after(true);
        }
        assert!(record.worth_trying(), "every check caught its answer");
        // One miss in twenty keeps it on; a run of misses turns it off.
        for i in 0..200 {
            record = record.after(i % 20 != 0);
        }
        assert!(record.worth_trying(), "95% caught: {record:?}");
        let mut misses = 0;
        while record.worth_trying() {
            record = record.after(false);
            misses += 1;
        }
        assert!(misses <= 3, "stopped after {misses} misses in a row");
        // Off: skipped waits count up to one retry.
        for _ in 0..SpinRecord::RETRY_EVERY {
            assert!(!record.worth_trying());
            record = record.skipped();
        }
        assert!(
            record.worth_trying(),
            "retried after {} waits",
            SpinRecord::RETRY_EVERY
        );
        // A retry that misses waits another round; one that catches resumes.
        let missed = record.after(false);
        assert!(!missed.worth_trying());
        assert_eq!(record.after(true), SpinRecord::FRESH);
    }
}
