//! Ring's per-client-id rate limit, sans-IO: a sliding one-second window of the
//! requests let through (the limit), and of every request seen (the statistic
//! clients are judged by: the most requests in any one-second window). Also the
//! storm fault (every API request refused for a while) and how well each client
//! honours the `Retry-After` it was given.

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
    /// 429 with `Retry-After: retry_after` (whole seconds); `storm` when the
    /// storm fault refused it rather than the rate.
    Refuse { retry_after: u64, storm: bool },
}

#[derive(Default)]
struct Window {
    accepted: VecDeque<Instant>,
    seen: VecDeque<Instant>,
    peak: usize,
    /// Until when the last 429's `Retry-After` asked this client to wait (API only).
    wait_until: Option<Instant>,
    /// API requests that arrived before `wait_until`.
    retry_after_violations: u64,
}

fn expire(queue: &mut VecDeque<Instant>, now: Instant) {
    while queue
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
    {
        queue.pop_front();
    }
}

/// The storm fault: every API request is refused until `until`.
#[derive(Clone, Copy)]
struct Storm {
    until: Instant,
    retry_after: u64,
}

/// Which requests a check is for: the `/v1` API or the token endpoint. Only
/// the API sees storms and is judged on `Retry-After` (the token endpoint is
/// Ring's other host, `oauth.ring.com`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    Api,
    Token,
}

/// Per-client windows. Clients are the configured client id and a bucket for
/// requests that name none, so the table stays small.
pub(crate) struct RateLimiter {
    /// Requests per second; 0 = unlimited.
    pub limit: u32,
    clients: HashMap<String, Window>,
    storm: Option<Storm>,
}

impl RateLimiter {
    pub fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit,
            clients: HashMap::new(),
            storm: None,
        }
    }

    /// From `now` for `length`, every API request gets 429 with `Retry-After:
    /// retry_after` whatever the rate (a zero `length` ends a storm).
    pub fn storm(&mut self, now: Instant, length: Duration, retry_after: u64) {
        self.storm = Some(Storm {
            until: now + length,
            retry_after,
        });
    }

    /// Counts one request of `client` at `now` and decides it.
    pub fn check(&mut self, client: &str, surface: Surface, now: Instant) -> Decision {
        let window = self.clients.entry(client.to_owned()).or_default();
        expire(&mut window.seen, now);
        expire(&mut window.accepted, now);
        if window.seen.len() < MAX_SEEN {
            window.seen.push_back(now);
        }
        window.peak = window.peak.max(window.seen.len());
        if surface == Surface::Token {
            return decide(self.limit, window, now);
        }
        if window.wait_until.is_some_and(|until| now < until) {
            window.retry_after_violations += 1;
        }
        let decision = match self.storm.filter(|storm| now < storm.until) {
            Some(storm) => Decision::Refuse {
                retry_after: storm.retry_after,
                storm: true,
            },
            None => decide(self.limit, window, now),
        };
        if let Decision::Refuse { retry_after, .. } = decision {
            window.wait_until = Some(now + Duration::from_secs(retry_after));
        }
        decision
    }

    /// The most requests each client sent within any one second.
    pub fn peaks(&self) -> BTreeMap<String, usize> {
        self.clients
            .iter()
            .map(|(client, window)| (client.clone(), window.peak))
            .collect()
    }

    /// Each client's API requests sent before the last `Retry-After` it got had passed.
    pub fn retry_after_violations(&self) -> BTreeMap<String, u64> {
        self.clients
            .iter()
            .map(|(client, window)| (client.clone(), window.retry_after_violations))
            .collect()
    }
}

/// The rate limit's verdict on a request already counted in `window.seen`.
fn decide(limit: u32, window: &mut Window, now: Instant) -> Decision {
    if limit == 0 {
        return Decision::Allow { remaining: None };
    }
    let limit = limit as usize;
    if window.accepted.len() >= limit {
        let oldest = window.accepted.front().copied().unwrap_or(now);
        let wait = WINDOW.saturating_sub(now.saturating_duration_since(oldest));
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Decision::Refuse {
            retry_after: retry_after.max(1),
            storm: false,
        };
    }
    window.accepted.push_back(now);
    Decision::Allow {
        remaining: Some((limit - window.accepted.len()) as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: Surface = Surface::Api;

    #[test]
    fn refuses_above_the_limit_until_the_window_moves() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(3);
        for remaining in [2, 1, 0] {
            assert_eq!(
                limiter.check("c", API, t0),
                Decision::Allow {
                    remaining: Some(remaining)
                }
            );
        }
        assert_eq!(
            limiter.check("c", API, t0 + Duration::from_millis(200)),
            Decision::Refuse {
                retry_after: 1,
                storm: false
            }
        );
        // Other clients have their own window.
        assert!(matches!(
            limiter.check("d", API, t0),
            Decision::Allow { .. }
        ));
        assert_eq!(
            limiter.check("c", API, t0 + WINDOW),
            Decision::Allow { remaining: Some(2) }
        );
        // Refused requests count in the peak: 5 arrivals within one second.
        assert_eq!(limiter.peaks()["c"], 4);
        assert_eq!(limiter.peaks()["d"], 1);
        // The retry came before Retry-After (1 s from the 429) had passed.
        assert_eq!(limiter.retry_after_violations()["c"], 1);
        assert_eq!(limiter.retry_after_violations()["d"], 0);
    }

    #[test]
    fn the_peak_is_over_any_sliding_second() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(0);
        // 10 requests spaced 150 ms: at most 7 fall within any one second.
        for i in 0..10 {
            assert_eq!(
                limiter.check("c", API, t0 + Duration::from_millis(150 * i)),
                Decision::Allow { remaining: None }
            );
        }
        assert_eq!(limiter.peaks()["c"], 7);
    }

    #[test]
    fn a_storm_refuses_api_requests_whatever_the_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(0);
        limiter.storm(t0, Duration::from_secs(10), 4);
        let storm = Decision::Refuse {
            retry_after: 4,
            storm: true,
        };
        assert_eq!(limiter.check("c", API, t0), storm);
        // The token endpoint is not in the storm, nor judged on Retry-After.
        assert_eq!(
            limiter.check("c", Surface::Token, t0),
            Decision::Allow { remaining: None }
        );
        // Too early (3 s of the 4): a violation, and refused again.
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(limiter.check("c", API, t3), storm);
        assert_eq!(limiter.retry_after_violations()["c"], 1);
        // On time after the last 429 (t3 + 4 s): no violation.
        let t7 = t3 + Duration::from_secs(4);
        assert_eq!(limiter.check("c", API, t7), storm);
        assert_eq!(limiter.retry_after_violations()["c"], 1);
        // After the storm, requests pass again; a wait still owed counts.
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(
            limiter.check("c", API, t10),
            Decision::Allow { remaining: None }
        );
        assert_eq!(limiter.retry_after_violations()["c"], 2);
        let t20 = t10 + Duration::from_secs(10);
        limiter.check("c", API, t20);
        assert_eq!(limiter.retry_after_violations()["c"], 2);
        // A zero-length storm ends one.
        limiter.storm(t20, Duration::from_secs(60), 1);
        limiter.storm(t20, Duration::ZERO, 1);
        assert!(matches!(
            limiter.check("d", API, t20),
            Decision::Allow { .. }
        ));
    }
}
