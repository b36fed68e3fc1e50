//! Stepped reconnect backoff shared by every network source (RTSP camera, WHEP):
//! quick retries for a blip, slower ones for a peer that is really down, and a
//! fresh start once a session has delivered media for a minute.
//!
//! Sans-IO: the caller passes the time, so the schedule is tested without waiting.

use std::time::{Duration, Instant};

/// `(delay, attempts)` steps; after the last step every retry waits [`FINAL_DELAY`].
const STEPS: [(Duration, u32); 3] = [
    (Duration::from_secs(1), 5),
    (Duration::from_secs(5), 5),
    (Duration::from_secs(10), 10),
];
const FINAL_DELAY: Duration = Duration::from_secs(60);

/// A session that delivered media for this long makes the next failure start over.
pub const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// Counts consecutive failures and turns them into delays.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    /// First and latest media of the current session (cleared by each failure).
    media: Option<(Instant, Instant)>,
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure and returns how long to wait before the next attempt. A
    /// session that delivered media for [`HEALTHY_RESET`] resets the schedule first;
    /// a server's `Retry-After` lengthens the wait, never shortens it.
    pub fn on_failure(&mut self, retry_after: Option<Duration>) -> Duration {
        self.end_session();
        let delay = step_delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay.max(retry_after.unwrap_or_default())
    }

    /// Records that media arrived at `now` (call it for every packet: it only
    /// stores the time).
    pub fn on_media(&mut self, now: Instant) {
        match &mut self.media {
            Some((_, latest)) => *latest = now,
            None => self.media = Some((now, now)),
        }
    }

    /// Records that a session ended without failing (nobody watched): a healthy
    /// one resets the schedule, and the next session's media counts afresh.
    pub fn on_session_closed(&mut self) {
        self.end_session();
    }

    fn end_session(&mut self) {
        if self
            .media
            .take()
            .is_some_and(|(first, latest)| latest.duration_since(first) >= HEALTHY_RESET)
        {
            self.failures = 0;
        }
    }

    /// Consecutive failures so far (since the last healthy session).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

fn step_delay(failures: u32) -> Duration {
    let mut remaining = failures;
    for (delay, attempts) in STEPS {
        if remaining < attempts {
            return delay;
        }
        remaining -= attempts;
    }
    FINAL_DELAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_through_the_schedule_then_stays_at_a_minute() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..23)
            .map(|_| backoff.on_failure(None).as_secs())
            .collect();
        let mut expected = vec![1; 5];
        expected.extend([5; 5]);
        expected.extend([10; 10]);
        expected.extend([60; 3]);
        assert_eq!(delays, expected);
        assert_eq!(backoff.failures(), 23);
    }

    #[test]
    fn a_minute_of_media_resets_and_a_shorter_session_does_not() {
        let mut backoff = Backoff::new();
        let t0 = Instant::now();
        for _ in 0..7 {
            backoff.on_failure(None);
        }
        backoff.on_media(t0);
        backoff.on_media(t0 + Duration::from_secs(59));
        assert_eq!(backoff.on_failure(None), Duration::from_secs(5));

        backoff.on_media(t0 + Duration::from_secs(100));
        backoff.on_media(t0 + Duration::from_secs(160));
        assert_eq!(backoff.on_failure(None), Duration::from_secs(1));
        assert_eq!(backoff.failures(), 1);
    }

    #[test]
    fn media_long_ago_does_not_reset_a_later_short_session() {
        let mut backoff = Backoff::new();
        let t0 = Instant::now();
        for _ in 0..6 {
            backoff.on_failure(None);
        }
        // One packet, then a failure much later (a stalled session): not healthy.
        backoff.on_media(t0);
        assert_eq!(backoff.on_failure(None), Duration::from_secs(5));
    }

    #[test]
    fn a_closed_session_is_judged_alone() {
        let mut backoff = Backoff::new();
        let t0 = Instant::now();
        for _ in 0..6 {
            backoff.on_failure(None);
        }
        // A short session closes (idle); a later short one fails: no reset.
        backoff.on_media(t0);
        backoff.on_session_closed();
        backoff.on_media(t0 + Duration::from_secs(100));
        backoff.on_media(t0 + Duration::from_secs(110));
        assert_eq!(backoff.on_failure(None), Duration::from_secs(5));

        // A healthy session that closes resets the schedule.
        backoff.on_media(t0 + Duration::from_secs(200));
        backoff.on_media(t0 + Duration::from_secs(260));
        backoff.on_session_closed();
        assert_eq!(backoff.on_failure(None), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_only_lengthens() {
        let mut backoff = Backoff::new();
        assert_eq!(
            backoff.on_failure(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff.on_failure(Some(Duration::from_millis(10))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff {
            failures: u32::MAX - 1,
            media: None,
        };
        assert_eq!(backoff.on_failure(None), FINAL_DELAY);
        assert_eq!(backoff.on_failure(None), FINAL_DELAY);
        assert_eq!(backoff.failures(), u32::MAX);
    }
}
