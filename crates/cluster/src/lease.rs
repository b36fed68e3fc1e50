//! When a node must stop its sources because it could not renew its lease.
//!
//! etcd starts a lease's time-to-live when it receives the grant or
//! keep-alive, which is after the node sent it: so the lease lasts at least
//! until `sent + ttl`, whatever the network did. The node stops its sources a
//! margin before that instant, so they are down before the lease can expire
//! and another node claims the streams: a camera never has two sessions from
//! the cluster, even when etcd is unreachable from this node only.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LeaseClock {
    ttl: Duration,
    /// The earliest instant the lease can expire; `None`: no lease.
    valid_until: Option<Instant>,
}

impl LeaseClock {
    /// For a lease of `ttl` (the configured `lease_ttl`).
    pub fn new(ttl: Duration) -> LeaseClock {
        LeaseClock {
            ttl,
            valid_until: None,
        }
    }

    /// How often keep-alives go out: a quarter of the TTL, so two can fail
    /// before [`stop_by`](Self::stop_by) is reached.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 4
    }

    /// The time left to stop sources (and to wait for one etcd call), a
    /// third of the TTL.
    pub fn margin(&self) -> Duration {
        self.ttl / 3
    }

    /// etcd answered a grant or keep-alive sent at `sent` with `ttl` left.
    pub fn renewed(&mut self, sent: Instant, ttl: Duration) {
        let until = sent + ttl;
        self.valid_until = Some(self.valid_until.map_or(until, |v| v.max(until)));
    }

    /// etcd said the lease is gone (a keep-alive answered with no TTL).
    pub fn expired(&mut self) {
        self.valid_until = None;
    }

    /// When sources must be stopped if no renewal comes first; `None`: now.
    pub fn stop_by(&self) -> Option<Instant> {
        self.valid_until.and_then(|v| v.checked_sub(self.margin()))
    }

    /// Whether sources must not run at `now`.
    pub fn must_stop(&self, now: Instant) -> bool {
        self.stop_by().is_none_or(|by| now >= by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(6);

    #[test]
    fn without_a_lease_sources_stop() {
        assert!(LeaseClock::new(TTL).must_stop(Instant::now()));
    }

    #[test]
    fn sources_stop_a_margin_before_the_lease_can_expire() {
        let start = Instant::now();
        let mut clock = LeaseClock::new(TTL);
        clock.renewed(start, TTL);
        assert!(!clock.must_stop(start + Duration::from_secs(3)));
        // 6 s TTL, 2 s margin: stop at 4 s, before etcd could expire it at 6 s.
        assert_eq!(clock.stop_by(), Some(start + Duration::from_secs(4)));
        assert!(clock.must_stop(start + Duration::from_secs(4)));
        assert!(clock.stop_by().unwrap() < start + TTL);
    }

    #[test]
    fn renewals_move_the_deadline_and_two_can_be_missed() {
        let start = Instant::now();
        let mut clock = LeaseClock::new(TTL);
        clock.renewed(start, TTL);
        // The next two keep-alives (at 1.5 s and 3 s) are lost; the one at
        // 4.5 s would come too late, so the deadline is after 3 s.
        assert!(clock.stop_by().unwrap() > start + 2 * clock.renew_every());
        let later = start + Duration::from_secs(3);
        clock.renewed(later, TTL);
        assert_eq!(clock.stop_by(), Some(later + Duration::from_secs(4)));
    }

    #[test]
    fn a_late_answer_to_an_old_keep_alive_does_not_move_it_back() {
        let start = Instant::now();
        let mut clock = LeaseClock::new(TTL);
        clock.renewed(start + Duration::from_secs(2), TTL);
        clock.renewed(start, TTL);
        assert_eq!(clock.stop_by(), Some(start + Duration::from_secs(6)));
    }

    #[test]
    fn an_expired_lease_stops_sources_at_once() {
        let start = Instant::now();
        let mut clock = LeaseClock::new(TTL);
        clock.renewed(start, TTL);
        clock.expired();
        assert!(clock.must_stop(start));
    }
}
