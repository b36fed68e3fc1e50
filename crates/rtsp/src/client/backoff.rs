//! Stepped reconnect backoff: quick retries for a blip, slower ones for a camera
//! that is really down, and a fresh start once a session has been healthy.

use std::time::Duration;

/// `(delay, attempts)` steps; after the last step every retry waits [`FINAL_DELAY`].
const STEPS: &[(Duration, u32)] = &[
    (Duration::from_secs(1), 5),
    (Duration::from_secs(5), 5),
    (Duration::from_secs(10), 10),
];
const FINAL_DELAY: Duration = Duration::from_secs(60);

/// A session that delivered packets for this long resets the schedule.
pub const HEALTHY_PERIOD: Duration = Duration::from_secs(60);

/// Counts consecutive failures and turns them into delays.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt, counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let mut remaining = self.failures;
        self.failures = self.failures.saturating_add(1);
        for &(delay, attempts) in STEPS {
            if remaining < attempts {
                return delay;
            }
            remaining -= attempts;
        }
        FINAL_DELAY
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over at the first step (after a healthy session).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_through_the_schedule_then_stays_at_a_minute() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..23).map(|_| backoff.next_delay().as_secs()).collect();
        let mut expected = vec![1; 5];
        expected.extend([5; 5]);
        expected.extend([10; 10]);
        expected.extend([60; 3]);
        assert_eq!(delays, expected);
        assert_eq!(backoff.failures(), 23);
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..12 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), Duration::from_secs(10));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff {
            failures: u32::MAX - 1,
        };
        assert_eq!(backoff.next_delay(), FINAL_DELAY);
        assert_eq!(backoff.next_delay(), FINAL_DELAY);
        assert_eq!(backoff.failures(), u32::MAX);
    }
}
