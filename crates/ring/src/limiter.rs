//! The client-side rate limit, sans-IO with the time as input: a sliding one-second
//! window, so no second-long window (wherever it starts) holds more than `limit`
//! requests. That is the measure Ring's per-client-id limit is stated in (100/s [doc]);
//! a token bucket would allow a burst of twice its rate across a window edge. One
//! limiter is shared by every account of the client id.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window the limit is counted over.
pub const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Limiter {
    limit: usize,
    /// When each request of the current window was let through, oldest first.
    sent: VecDeque<Instant>,
    /// Nothing is sent before this (after a 429's `Retry-After`).
    held_until: Option<Instant>,
}

impl Limiter {
    /// At most `per_second` requests in any one-second window (at least 1).
    pub fn new(per_second: u32) -> Limiter {
        let limit = usize::try_from(per_second.max(1)).unwrap_or(usize::MAX);
        Limiter {
            limit,
            sent: VecDeque::with_capacity(limit.min(1024)),
            held_until: None,
        }
    }

    /// Lets one request through at `now`, or says how long to wait before asking again.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.held_until {
            if now < until {
                return Err(until - now);
            }
            self.held_until = None;
        }
        while self
            .sent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= WINDOW)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.limit {
            let oldest = self.sent[0];
            return Err((oldest + WINDOW).saturating_duration_since(now));
        }
        self.sent.push_back(now);
        Ok(())
    }

    /// Sends nothing before `until` (Ring answered 429: every account backs off).
    pub fn hold_until(&mut self, until: Instant) {
        self.held_until = Some(self.held_until.map_or(until, |held| held.max(until)));
    }
}

/// What the request loop has done, for the API and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Requests sent (each try counts).
    pub sent: u64,
    /// Requests that waited for the limiter.
    pub delayed: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Tries after the first (429, 5xx, a failed GET).
    pub retries: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends as fast as the limiter allows for `seconds` of simulated time and
    /// returns when each request went out.
    fn run(limiter: &mut Limiter, start: Instant, seconds: u64) -> Vec<Instant> {
        let end = start + Duration::from_secs(seconds);
        let mut now = start;
        let mut sent = Vec::new();
        while now < end {
            match limiter.try_acquire(now) {
                Ok(()) => sent.push(now),
                Err(wait) => {
                    assert!(wait > Duration::ZERO);
                    now += wait;
                }
            }
        }
        sent
    }

    fn most_in_any_window(sent: &[Instant]) -> usize {
        (0..sent.len())
            .map(|i| {
                sent[i..]
                    .iter()
                    .take_while(|&&t| t - sent[i] < WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn no_one_second_window_holds_more_than_the_limit() {
        let start = Instant::now();
        let mut limiter = Limiter::new(90);
        let sent = run(&mut limiter, start, 10);
        assert_eq!(most_in_any_window(&sent), 90);
        // It does let the limit through: 90 a second over 10 s.
        assert_eq!(sent.len(), 900);
    }

    #[test]
    fn spread_requests_are_not_delayed_and_a_hold_stops_everything() {
        let start = Instant::now();
        let mut limiter = Limiter::new(2);
        let ms = |n| start + Duration::from_millis(n);
        assert!(limiter.try_acquire(ms(0)).is_ok());
        assert!(limiter.try_acquire(ms(400)).is_ok());
        assert_eq!(
            limiter.try_acquire(ms(500)),
            Err(Duration::from_millis(500))
        );
        assert!(limiter.try_acquire(ms(1000)).is_ok());
        limiter.hold_until(ms(3000));
        limiter.hold_until(ms(2000));
        assert_eq!(
            limiter.try_acquire(ms(2500)),
            Err(Duration::from_millis(500))
        );
        assert!(limiter.try_acquire(ms(3000)).is_ok());
        assert!(limiter.try_acquire(ms(3001)).is_ok());
        assert!(limiter.try_acquire(ms(3002)).is_err());
        assert!(Limiter::new(0).try_acquire(ms(0)).is_ok());
    }
}
