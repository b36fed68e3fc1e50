//! What the server refuses to do for a client, and how it keeps count: caps on
//! connections per client address and in total ([`Admission`]), and the
//! server-wide counters and log limiters of every limit a client ran into
//! ([`Limited`], kept in [`Readers`](super::Readers) so whoever reports the
//! readers reads them too, with [`Readers::limit_counts`](super::Readers::limit_counts)).
//!
//! Sans-IO: [`Admission`] is a table the accept loop consults under a lock; the
//! log limiters take the time from the caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use streamgate_pipeline::RateLimitedLog;

/// Connections the server holds open at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Connections one client address may hold open at once, by default (an NVR
/// opens one or two per camera; a few dozen cameras behind one NVR fit).
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// A limit a client ran into; each kind has its own counter and log limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// An interleaved frame on a channel no SETUP of the connection gave out
    /// (dropped; the session goes on).
    UnknownChannel,
    /// 413: a declared `Content-Length` over the request cap.
    BodyTooLarge,
    /// 400: a negative, non-numeric or conflicting `Content-Length`.
    BadContentLength,
    /// 408: a request not complete within the request timeout.
    RequestTimeout,
    /// 400: any other malformed or oversized request.
    BadRequest,
    /// 503: the client address already holds its cap of connections.
    RefusedPerClient,
    /// 503: the server already holds its cap of connections.
    RefusedTotal,
}

impl Limited {
    /// Every kind, in the order of [`LimitCounts::all`].
    pub const ALL: [Limited; 7] = [
        Limited::UnknownChannel,
        Limited::BodyTooLarge,
        Limited::BadContentLength,
        Limited::RequestTimeout,
        Limited::BadRequest,
        Limited::RefusedPerClient,
        Limited::RefusedTotal,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// A short stable name, e.g. for a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Limited::UnknownChannel => "unknown_channel",
            Limited::BodyTooLarge => "body_too_large",
            Limited::BadContentLength => "bad_content_length",
            Limited::RequestTimeout => "request_timeout",
            Limited::BadRequest => "bad_request",
            Limited::RefusedPerClient => "max_connections_per_client",
            Limited::RefusedTotal => "max_connections",
        }
    }
}

/// How often each limit was hit since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitCounts {
    /// Interleaved frames dropped because their channel was never set up.
    pub unknown_channel_frames: u64,
    /// Requests answered 413 (declared body over the cap).
    pub body_too_large: u64,
    /// Requests answered 400 for their `Content-Length`.
    pub bad_content_length: u64,
    /// Requests answered 408 (not complete in time).
    pub request_timeouts: u64,
    /// Requests answered 400 for anything else (malformed, head over the cap).
    pub bad_requests: u64,
    /// Connections refused (503) for the per-client cap.
    pub refused_per_client: u64,
    /// Connections refused (503) for the total cap.
    pub refused_total: u64,
}

impl LimitCounts {
    /// The count of one kind.
    pub fn get(&self, kind: Limited) -> u64 {
        match kind {
            Limited::UnknownChannel => self.unknown_channel_frames,
            Limited::BodyTooLarge => self.body_too_large,
            Limited::BadContentLength => self.bad_content_length,
            Limited::RequestTimeout => self.request_timeouts,
            Limited::BadRequest => self.bad_requests,
            Limited::RefusedPerClient => self.refused_per_client,
            Limited::RefusedTotal => self.refused_total,
        }
    }

    /// Every kind with its count (for a labelled counter family).
    pub fn all(&self) -> [(Limited, u64); Limited::ALL.len()] {
        Limited::ALL.map(|kind| (kind, self.get(kind)))
    }
}

/// The counters and log limiters behind [`LimitCounts`], shared by all connections.
#[derive(Debug, Default)]
pub(crate) struct LimitCounters {
    counts: [AtomicU64; Limited::ALL.len()],
    logs: [Mutex<RateLimitedLog>; Limited::ALL.len()],
}

impl LimitCounters {
    /// Counts one occurrence at `now`; `Some(left_out)` when a log line is due
    /// (one a second per kind, server-wide), with how many were not logged
    /// since the last line.
    pub(crate) fn hit(&self, kind: Limited, now: Instant) -> Option<u64> {
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.logs[kind.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .occurred(now)
    }

    pub(crate) fn counts(&self) -> LimitCounts {
        let get = |kind: Limited| self.counts[kind.index()].load(Ordering::Relaxed);
        LimitCounts {
            unknown_channel_frames: get(Limited::UnknownChannel),
            body_too_large: get(Limited::BodyTooLarge),
            bad_content_length: get(Limited::BadContentLength),
            request_timeouts: get(Limited::RequestTimeout),
            bad_requests: get(Limited::BadRequest),
            refused_per_client: get(Limited::RefusedPerClient),
            refused_total: get(Limited::RefusedTotal),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("client {client} already has {cap} connections (max_connections_per_client)")]
    PerClient { client: IpAddr, cap: usize },
    #[error("the server already has {cap} connections (max_connections)")]
    Total { cap: usize },
}

impl Refusal {
    pub fn kind(self) -> Limited {
        match self {
            Refusal::PerClient { .. } => Limited::RefusedPerClient,
            Refusal::Total { .. } => Limited::RefusedTotal,
        }
    }
}

/// The open connections, in total and per client address, against their caps.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_client: usize,
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        Admission {
            max_total,
            max_per_client,
            total: 0,
            per_client: HashMap::new(),
        }
    }

    /// Counts a new connection from `client` in, or says which cap it is over.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn admit(&mut self, client: IpAddr) -> Result<(), Refusal> {
        let client = client.to_canonical();
        let from_client = self.per_client.get(&client).copied().unwrap_or(0);
        if from_client >= self.max_per_client {
            return Err(Refusal::PerClient {
                client,
                cap: self.max_per_client,
            });
        }
        if self.total >= self.max_total {
            return Err(Refusal::Total {
                cap: self.max_total,
            });
        }
        self.total += 1;
        self.per_client.insert(client, from_client + 1);
        Ok(())
    }

    /// Counts a connection admitted from `client` out.
    pub fn release(&mut self, client: IpAddr) {
        let client = client.to_canonical();
        if let Some(n) = self.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&client);
            }
            self.total -= 1;
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total
    }

    /// Connections open now from `client`.
    pub fn open_from(&self, client: IpAddr) -> usize {
        self.per_client
            .get(&client.to_canonical())
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caps_per_client_and_in_total() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "2001:db8::3".parse().unwrap();
        let mut admission = Admission::new(3, 2);
        assert_eq!(admission.admit(a), Ok(()));
        assert_eq!(admission.admit(a_mapped), Ok(()));
        assert_eq!(
            admission.admit(a),
            Err(Refusal::PerClient { client: a, cap: 2 }),
            "the mapped address is the same client"
        );
        assert_eq!(admission.admit(b), Ok(()));
        assert_eq!(admission.admit(c), Err(Refusal::Total { cap: 3 }));
        assert_eq!((admission.open(), admission.open_from(a)), (3, 2));
        admission.release(a_mapped);
        assert_eq!(admission.admit(c), Ok(()));
        assert_eq!(admission.admit(a), Err(Refusal::Total { cap: 3 }));
        for client in [a, b, c] {
            admission.release(client);
        }
        assert_eq!(admission.open(), 0);
        assert!(admission.per_client.is_empty(), "no entry left behind");
        admission.release(b);
        assert_eq!(
            admission.open(),
            0,
            "releasing what was never admitted is a no-op"
        );
    }

    #[test]
    fn counts_every_hit_and_logs_once_a_second_per_kind() {
        let counters = LimitCounters::default();
        let t0 = Instant::now();
        assert_eq!(counters.hit(Limited::UnknownChannel, t0), Some(0));
        assert_eq!(counters.hit(Limited::UnknownChannel, t0), None);
        assert_eq!(counters.hit(Limited::UnknownChannel, t0), None);
        assert_eq!(
            counters.hit(Limited::BodyTooLarge, t0),
            Some(0),
            "own limiter"
        );
        assert_eq!(
            counters.hit(Limited::UnknownChannel, t0 + Duration::from_secs(1)),
            Some(2)
        );
        let counts = counters.counts();
        assert_eq!(counts.get(Limited::UnknownChannel), 4);
        assert_eq!(counts.body_too_large, 1);
        assert_eq!(counts.refused_total, 0);
        for kind in Limited::ALL {
            assert_eq!(Limited::ALL[kind.index()], kind);
        }
        let names: Vec<_> = counts.all().iter().map(|(k, n)| (k.name(), *n)).collect();
        assert_eq!(names[0], ("unknown_channel", 4));
        assert_eq!(names[1], ("body_too_large", 1));
        let unique: std::collections::HashSet<_> = names.iter().map(|(name, _)| name).collect();
        assert_eq!(unique.len(), Limited::ALL.len());
    }
}
