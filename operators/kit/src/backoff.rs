//! Capped exponential backoff per object, for the runner's error policy:
//! a broken object is retried after 5 s, 10 s, 20 s … up to 5 min, and
//! starts again from 5 s once it reconciles.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Per-key exponential backoff: `base * 2^(failures - 1)`, capped.
#[derive(Debug)]
pub struct ErrorBackoff<Key> {
    /// The first delay.
    base: Duration,
    /// The longest delay.
    cap: Duration,
    /// Consecutive failures per key, and when the last one happened.
    failures: Mutex<HashMap<Key, (u32, Instant)>>,
}

impl<Key: Hash + Eq + Clone> Default for ErrorBackoff<Key> {
    fn default() -> Self {
        Self::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

impl<Key: Hash + Eq + Clone> ErrorBackoff<Key> {
    /// Backoff from `base` doubling up to `cap`.
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before the
    /// next try.
    pub fn failed(&self, key: &Key) -> Duration {
        self.failed_at(key, Instant::now())
    }

    /// Forgets the failures of `key` (it reconciled).
    pub fn succeeded(&self, key: &Key) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(key);
    }

    /// How many failures in a row `key` has had.
    #[must_use]
    pub fn failures(&self, key: &Key) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.get(key).map_or(0, |(n, _)| *n)
    }

    fn failed_at(&self, key: &Key, now: Instant) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        // Objects deleted while failing never succeed; drop entries that
        // have not failed for longer than any delay we would hand out.
        let stale_after = self.cap * 2;
        failures.retain(|_, (_, at)| now.saturating_duration_since(*at) < stale_after);
        let entry = failures.entry(key.clone()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        self.delay(entry.0)
    }

    /// The delay after `n` consecutive failures (`n >= 1`).
    fn delay(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let b = ErrorBackoff::<&str>::default();
        let got: Vec<_> = (0..10).map(|_| b.failed(&"a").as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(b.failures(&"a"), 10);
    }

    #[test]
    fn success_resets() {
        let b = ErrorBackoff::<&str>::default();
        b.failed(&"a");
        b.failed(&"a");
        b.succeeded(&"a");
        assert_eq!(b.failures(&"a"), 0);
        assert_eq!(b.failed(&"a"), secs(5));
    }

    #[test]
    fn keys_are_independent() {
        let b = ErrorBackoff::<&str>::default();
        b.failed(&"a");
        b.failed(&"a");
        assert_eq!(b.failed(&"b"), secs(5));
        assert_eq!(b.failed(&"a"), secs(20));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let b = ErrorBackoff::<&str>::new(secs(5), secs(300));
        assert_eq!(b.delay(u32::MAX), secs(300));
        assert_eq!(b.delay(1), secs(5));
    }

    #[test]
    fn stale_entries_are_dropped() {
        let b = ErrorBackoff::new(secs(1), secs(10));
        let t0 = Instant::now();
        b.failed_at(&"gone", t0);
        b.failed_at(&"gone", t0);
        b.failed_at(&"other", t0 + secs(30));
        assert_eq!(b.failures(&"gone"), 0);
    }
}
