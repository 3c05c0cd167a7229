//! Jittered exponential backoff, one rule for every retry loop in deskgate (IMAP reconnects,
//! outgoing messages, event sinks): the wait after the n-th failure in a row is drawn from the
//! upper half of `base * 2^(n-1)`, capped at `max`, so that many retries failing together do
//! not retry together and none waits longer than `max`.

use std::time::Duration;

/// Bounds of a backoff; `max` is never below `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
        }
    }

    /// The wait after `failures` failures in a row (1 for the first; 0 counts as 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let window = self
            .base
            .saturating_mul(1 << failures.saturating_sub(1).min(20))
            .min(self.max);
        let half = window / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// A backoff with its own count of failures in a row, for a loop that reconnects.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    failures: u32,
}

impl Retries {
    pub fn new(backoff: Backoff) -> Retries {
        Retries {
            backoff,
            failures: 0,
        }
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.delay(self.failures)
    }

    /// After a try that worked, start again from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_within_their_bounds() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for failures in 0..40u32 {
            let window = Duration::from_millis(100)
                .saturating_mul(1 << failures.max(1).saturating_sub(1).min(20))
                .min(Duration::from_secs(2));
            let delay = backoff.delay(failures);
            assert!(
                delay >= window / 2 && delay <= window,
                "{failures}: {delay:?}"
            );
        }
    }

    #[test]
    fn retries_count_failures_and_reset() {
        let mut retries = Retries::new(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(1000),
        ));
        for window in [100, 200, 400, 800, 1000, 1000] {
            let delay = retries.next_delay();
            assert!(delay >= Duration::from_millis(window / 2), "{delay:?}");
            assert!(delay <= Duration::from_millis(window), "{delay:?}");
        }
        retries.reset();
        assert!(retries.next_delay() <= Duration::from_millis(100));
    }
}
