//! Stepped reconnect backoff: 1 s ×5, 5 s ×5, 10 s ×10, then 60 s; a session that
//! stayed healthy for a minute resets it. Sans-IO: the caller passes the time.

use std::time::{Duration, Instant};

/// (delay, how many attempts use it); the last step repeats forever.
const STEPS: [(Duration, u32); 4] = [
    (Duration::from_secs(1), 5),
    (Duration::from_secs(5), 5),
    (Duration::from_secs(10), 10),
    (Duration::from_secs(60), u32::MAX),
];

/// How long a session must stream before the backoff forgets earlier failures.
pub const HEALTHY_RESET: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    healthy_since: Option<Instant>,
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure and returns how long to wait before the next attempt; a server's
    /// `Retry-After` lengthens the wait, never shortens it.
    pub fn on_failure(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        if self
            .healthy_since
            .take()
            .is_some_and(|since| now.duration_since(since) >= HEALTHY_RESET)
        {
            self.failures = 0;
        }
        let delay = step_delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay.max(retry_after.unwrap_or_default())
    }

    /// Records that media flows; after [`HEALTHY_RESET`] of it the next failure starts over.
    pub fn on_healthy(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

fn step_delay(failures: u32) -> Duration {
    let mut remaining = failures;
    for (delay, count) in STEPS {
        if remaining < count {
            return delay;
        }
        remaining -= count;
    }
    STEPS[STEPS.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_through_the_schedule() {
        let mut backoff = Backoff::new();
        let now = Instant::now();
        let delays: Vec<u64> = (0..22)
            .map(|_| backoff.on_failure(now, None).as_secs())
            .collect();
        let mut expected = vec![1; 5];
        expected.extend([5; 5]);
        expected.extend([10; 10]);
        expected.extend([60; 2]);
        assert_eq!(delays, expected);
    }

    #[test]
    fn a_healthy_minute_resets_and_a_short_one_does_not() {
        let mut backoff = Backoff::new();
        let t0 = Instant::now();
        for _ in 0..7 {
            backoff.on_failure(t0, None);
        }
        backoff.on_healthy(t0);
        assert_eq!(
            backoff.on_failure(t0 + Duration::from_secs(30), None),
            Duration::from_secs(5)
        );
        backoff.on_healthy(t0 + Duration::from_secs(30));
        assert_eq!(
            backoff.on_failure(t0 + Duration::from_secs(91), None),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_after_only_lengthens() {
        let mut backoff = Backoff::new();
        let now = Instant::now();
        assert_eq!(
            backoff.on_failure(now, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff.on_failure(now, Some(Duration::from_millis(10))),
            Duration::from_secs(1)
        );
    }
}
