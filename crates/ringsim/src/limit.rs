//! Ring's per-client-id rate limit, sans-IO: a sliding one-second window of the
//! requests let through (the limit), and of every request seen (the statistic
//! clients are judged by: the most requests in any one-second window).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);
/// Most arrivals remembered per client for the peak statistic: beyond it the
/// window's count saturates (a flood is a flood).
const MAX_SEEN: usize = 1 << 20;

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Let through; `remaining` for `X-RateLimit-Remaining` (None: no limit set).
    Allow { remaining: Option<u32> },
    /// 429 with `Retry-After: retry_after` (whole seconds, at least 1).
    Refuse { retry_after: u64 },
}

#[derive(Default)]
struct Window {
    accepted: VecDeque<Instant>,
    seen: VecDeque<Instant>,
    peak: usize,
}

fn expire(queue: &mut VecDeque<Instant>, now: Instant) {
    while queue
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
    {
        queue.pop_front();
    }
}

/// Per-client windows. Clients are the configured client id and a bucket for
/// requests that name none, so the table stays small.
pub(crate) struct RateLimiter {
    /// Requests per second; 0 = unlimited.
    pub limit: u32,
    clients: HashMap<String, Window>,
}

impl RateLimiter {
    pub fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit,
            clients: HashMap::new(),
        }
    }

    /// Counts one request of `client` at `now` and decides it.
    pub fn check(&mut self, client: &str, now: Instant) -> Decision {
        let window = self.clients.entry(client.to_owned()).or_default();
        expire(&mut window.seen, now);
        expire(&mut window.accepted, now);
        if window.seen.len() < MAX_SEEN {
            window.seen.push_back(now);
        }
        window.peak = window.peak.max(window.seen.len());
        if self.limit == 0 {
            return Decision::Allow { remaining: None };
        }
        let limit = self.limit as usize;
        if window.accepted.len() >= limit {
            let oldest = window.accepted.front().copied().unwrap_or(now);
            let wait = WINDOW.saturating_sub(now.saturating_duration_since(oldest));
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Decision::Refuse {
                retry_after: retry_after.max(1),
            };
        }
        window.accepted.push_back(now);
        Decision::Allow {
            remaining: Some((limit - window.accepted.len()) as u32),
        }
    }

    /// The most requests each client sent within any one second.
    pub fn peaks(&self) -> BTreeMap<String, usize> {
        self.clients
            .iter()
            .map(|(client, window)| (client.clone(), window.peak))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_above_the_limit_until_the_window_moves() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(3);
        for remaining in [2, 1, 0] {
            assert_eq!(
                limiter.check("c", t0),
                Decision::Allow {
                    remaining: Some(remaining)
                }
            );
        }
        assert_eq!(
            limiter.check("c", t0 + Duration::from_millis(200)),
            Decision::Refuse { retry_after: 1 }
        );
        // Other clients have their own window.
        assert!(matches!(limiter.check("d", t0), Decision::Allow { .. }));
        assert_eq!(
            limiter.check("c", t0 + WINDOW),
            Decision::Allow { remaining: Some(2) }
        );
        // Refused requests count in the peak: 5 arrivals within one second.
        assert_eq!(limiter.peaks()["c"], 4);
        assert_eq!(limiter.peaks()["d"], 1);
    }

    #[test]
    fn the_peak_is_over_any_sliding_second() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(0);
        // 10 requests spaced 150 ms: at most 7 fall within any one second.
        for i in 0..10 {
            assert_eq!(
                limiter.check("c", t0 + Duration::from_millis(150 * i)),
                Decision::Allow { remaining: None }
            );
        }
        assert_eq!(limiter.peaks()["c"], 7);
    }
}
