//! Rate limits per key (an API key, a site), with the `governor` crate's GCRA limiter
//! (generic cell rate algorithm: a sustained rate with a burst allowance).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Checks between sweeps of keys that have been idle long enough to be forgotten.
const SWEEP_EVERY: u64 = 10_000;

/// A keyed rate limit; a rate of 0 means unlimited.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    inner: Option<DefaultKeyedRateLimiter<K>>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `per_second` units per second sustained, bursts of up to `burst` units (at least
    /// `per_second`); `per_second = 0` disables the limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let inner = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        KeyedLimiter {
            inner,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes `n` units for `key`.
    ///
    /// # Errors
    /// How long to wait before retrying, when the key is over its limit (or `n` exceeds the
    /// burst, which waiting cannot cure: then one second is suggested).
    pub fn check(&self, key: &K, n: u32) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            Err(_) => Err(Duration::from_secs(1)),
        }
    }
}

/// Seconds for a `Retry-After` header: the wait rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_key() {
        let l = KeyedLimiter::new(1, 3);
        assert!(
            (0..3).all(|_| l.check(&"a", 1).is_ok()),
            "the burst of 3 passes"
        );
        let wait = l.check(&"a", 1).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.check(&"b", 1).is_ok(), "other keys are not affected");
        assert!(l.check(&"b", 5).is_err(), "more than the burst at once");
        assert!(
            KeyedLimiter::new(0, 0).check(&"a", 1000).is_ok(),
            "0 is unlimited"
        );
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
