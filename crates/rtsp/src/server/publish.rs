//! The stream side of RTSP publishing (ANNOUNCE/RECORD): a [`PublishPoint`]
//! per `source = "publish"` stream says who may publish, holds the one
//! publisher at a time, and keeps the stream's ingest between publishers so a
//! publisher that comes back within the grace continues the timeline (the
//! ingest's own restart handling: readers see time run on).
//!
//! The decisions (claim, replace, leave, grace expiry) are the sans-IO
//! [`Slot`]; the point only adds a lock, the Hub and one timer task per leave.
//! A publisher gone for longer than the grace ends the readers' subscriptions
//! ([`Hub::end_subscriptions`]): RTSP readers get an RTCP BYE and are closed,
//! and the stream waits for the next publisher.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use streamgate_pipeline::{Hub, StreamIngest};
use streamgate_rtp::TrackInfo;
use tokio::sync::Notify;

use super::auth::Credentials;

/// A publish stream's settings (`publish_username`, `publish_password`,
/// `publish_replace`, `publish_grace`).
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Required to ANNOUNCE, SETUP and RECORD; separate from the read credentials.
    /// `None`: anyone who reaches the server may publish.
    pub credentials: Option<Credentials>,
    /// A second publisher replaces the first instead of being refused.
    pub replace: bool,
    /// How long readers wait for a publisher that left to come back.
    pub grace: Duration,
}

impl PublishConfig {
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
}

/// Who publishes a stream (sans-IO; time is an input).
#[derive(Debug, Default)]
pub struct Slot {
    last_id: u64,
    current: Option<u64>,
    /// When readers are cut off, unless a publisher comes back first.
    cut_off_at: Option<Instant>,
}

/// The answer to a publisher asking for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Granted {
        id: u64,
        replaced: Option<u64>,
    },
    /// Another publisher holds the stream and replacing is off.
    Busy,
}

impl Slot {
    pub fn claim(&mut self, replace: bool) -> Claim {
        if self.current.is_some() && !replace {
            return Claim::Busy;
        }
        self.last_id += 1;
        let id = self.last_id;
        self.cut_off_at = None;
        Claim::Granted {
            id,
            replaced: self.current.replace(id),
        }
    }

    /// Publisher `id` left; returns when to cut readers off (`None` when it had
    /// been replaced already).
    pub fn leave(&mut self, id: u64, now: Instant, grace: Duration) -> Option<Instant> {
        if self.current != Some(id) {
            return None;
        }
        self.current = None;
        self.cut_off_at = Some(now + grace);
        self.cut_off_at
    }

    /// Whether readers must be cut off now (once per leave).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.cut_off_at {
            Some(at) if self.current.is_none() && now >= at => {
                self.cut_off_at = None;
                true
            }
            _ => false,
        }
    }

    pub fn publishing(&self) -> bool {
        self.current.is_some()
    }
}

/// What was dropped from publishers, for the API and logs.
#[derive(Debug, Default)]
pub struct PublishCounts {
    /// Publisher sessions granted.
    pub sessions: AtomicU64,
    /// RTP/RTCP that did not parse or did not fit the announced tracks.
    pub bad_packets: AtomicU64,
    /// UDP datagrams from another address than the publisher's.
    pub foreign_packets: AtomicU64,
    /// UDP datagrams dropped because the session's queue was full.
    pub overflow_packets: AtomicU64,
}

/// A snapshot of a point, for the source's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishStatus {
    pub publisher: Option<SocketAddr>,
    pub sessions: u64,
    pub bad_packets: u64,
    pub foreign_packets: u64,
    pub overflow_packets: u64,
}

/// One publish stream, shared by the binary's source and the RTSP server.
#[derive(Clone, Debug)]
pub struct PublishPoint {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    config: PublishConfig,
    state: Mutex<State>,
    counts: PublishCounts,
    /// Raised when a grace ran out with no publisher (for [`PublishPoint::abandoned`]).
    abandoned: Notify,
}

#[derive(Debug, Default)]
struct State {
    slot: Slot,
    /// Between publishers: the timeline the next one continues.
    ingest: Option<StreamIngest>,
    /// The current publisher's address and its "you are replaced" signal.
    current: Option<(SocketAddr, Arc<Notify>)>,
    /// The stream was stopped: no more publishers.
    closed: bool,
}

/// Why a publisher was not let in.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    #[error("the stream already has a publisher (publish_replace is off)")]
    Busy,
    #[error("the stream is stopping")]
    Closed,
}

impl PublishPoint {
    pub fn new(hub: Hub, config: PublishConfig) -> PublishPoint {
        PublishPoint {
            inner: Arc::new(Inner {
                hub,
                config,
                state: Mutex::default(),
                counts: PublishCounts::default(),
                abandoned: Notify::new(),
            }),
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn config(&self) -> &PublishConfig {
        &self.inner.config
    }

    pub fn counts(&self) -> &PublishCounts {
        &self.inner.counts
    }

    pub fn status(&self) -> PublishStatus {
        let publisher = self.state().current.as_ref().map(|(peer, _)| *peer);
        let counts = &self.inner.counts;
        PublishStatus {
            publisher,
            sessions: counts.sessions.load(Ordering::Relaxed),
            bad_packets: counts.bad_packets.load(Ordering::Relaxed),
            foreign_packets: counts.foreign_packets.load(Ordering::Relaxed),
            overflow_packets: counts.overflow_packets.load(Ordering::Relaxed),
        }
    }

    /// Lets `peer` publish (replacing the current publisher when configured).
    pub fn claim(&self, peer: SocketAddr) -> Result<Publisher, PublishRefused> {
        let mut state = self.state();
        if state.closed {
            return Err(PublishRefused::Closed);
        }
        let Claim::Granted { id, replaced } = state.slot.claim(self.inner.config.replace) else {
            return Err(PublishRefused::Busy);
        };
        let kicked = Arc::new(Notify::new());
        if let Some((old, signal)) = state.current.replace((peer, Arc::clone(&kicked))) {
            tracing::info!(stream = %self.hub().name(), %peer, %old, ?replaced, "RTSP publisher replaced");
            signal.notify_one();
        }
        self.inner.counts.sessions.fetch_add(1, Ordering::Relaxed);
        Ok(Publisher {
            point: self.clone(),
            id,
            kicked,
            ingest: None,
        })
    }

    /// Ends the current publisher's session and refuses new ones (the stream
    /// was removed or replaced).
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        if let Some((_, signal)) = state.current.take() {
            signal.notify_one();
        }
    }

    fn leave(&self, id: u64, ingest: Option<StreamIngest>) {
        let grace = self.inner.config.grace;
        let cut_off_at = {
            let mut state = self.state();
            let cut_off_at = state.slot.leave(id, Instant::now(), grace);
            if cut_off_at.is_some() {
                state.current = None;
                if ingest.is_some() {
                    state.ingest = ingest;
                }
            }
            cut_off_at
        };
        let Some(at) = cut_off_at else { return };
        tracing::info!(stream = %self.hub().name(), ?grace, "RTSP publisher left: readers wait for it");
        let point = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                point.expire(Instant::now());
            });
        }
    }

    fn expire(&self, now: Instant) {
        let cut_off = {
            let mut state = self.state();
            let cut_off = state.slot.handle_timeout(now);
            if cut_off {
                state.ingest = None;
            }
            cut_off
        };
        if cut_off {
            tracing::info!(stream = %self.hub().name(), "no publisher within the grace: readers closed");
            self.hub().end_subscriptions();
            self.inner.abandoned.notify_one();
        }
    }

    /// Resolves after a publisher left and none came back within the grace
    /// (the readers were cut off): the owner of a stream that exists only for
    /// its publisher removes it then. Check [`status`](Self::status) after: a
    /// publisher may have arrived since.
    pub async fn abandoned(&self) {
        self.inner.abandoned.notified().await;
    }

    /// Whether `other` is this very point (not another stream's of the same name).
    pub fn same(&self, other: &PublishPoint) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn take_ingest(&self) -> Option<StreamIngest> {
        self.state().ingest.take()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one publisher of a stream; dropping it leaves the stream (the grace starts).
#[derive(Debug)]
pub struct Publisher {
    point: PublishPoint,
    id: u64,
    kicked: Arc<Notify>,
    ingest: Option<StreamIngest>,
}

impl Publisher {
    pub fn point(&self) -> &PublishPoint {
        &self.point
    }

    /// Starts feeding the stream with the announced `tracks` (RECORD): the
    /// timeline of the previous publisher carries on when the layout matches.
    pub fn start(&mut self, tracks: &[TrackInfo]) -> &mut StreamIngest {
        let previous = self.ingest.take().or_else(|| self.point.take_ingest());
        self.ingest.insert(StreamIngest::for_session(
            previous,
            self.point.hub(),
            tracks,
        ))
    }

    /// The ingest once [`start`](Self::start) ran.
    pub fn ingest(&mut self) -> Option<&mut StreamIngest> {
        self.ingest.as_mut()
    }

    /// Whether this publisher still holds the stream (not replaced, the stream
    /// not stopped): a session the caller drives from a loop of its own (WHIP)
    /// checks this instead of awaiting [`kicked`](Self::kicked).
    pub fn is_current(&self) -> bool {
        let state = self.point.state();
        !state.closed && state.slot.current == Some(self.id)
    }

    /// Resolves when another publisher replaced this one or the stream stopped.
    pub async fn kicked(&self) {
        self.kicked.notified().await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.point.leave(self.id, self.ingest.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    #[test]
    fn one_publisher_unless_replacing() {
        let mut slot = Slot::default();
        let Claim::Granted { id: first, .. } = slot.claim(false) else {
            panic!("first refused")
        };
        assert_eq!(slot.claim(false), Claim::Busy);
        let Claim::Granted { id, replaced } = slot.claim(true) else {
            panic!("replace refused")
        };
        assert_eq!(replaced, Some(first));
        // The replaced one leaving changes nothing.
        assert_eq!(slot.leave(first, Instant::now(), GRACE), None);
        assert!(slot.publishing());
        assert!(slot.leave(id, Instant::now(), GRACE).is_some());
        assert!(!slot.publishing());
    }

    #[test]
    fn readers_are_cut_off_only_after_the_grace_without_a_return() {
        let t0 = Instant::now();
        let mut slot = Slot::default();
        let Claim::Granted { id, .. } = slot.claim(false) else {
            panic!()
        };
        let at = slot.leave(id, t0, GRACE).expect("deadline");
        assert_eq!(at, t0 + GRACE);
        assert!(!slot.handle_timeout(t0 + GRACE / 2));
        assert!(slot.handle_timeout(at));
        assert!(!slot.handle_timeout(at), "once per leave");

        // Back within the grace: the old deadline does nothing.
        let Claim::Granted { id, .. } = slot.claim(false) else {
            panic!()
        };
        let at = slot.leave(id, t0, GRACE).expect("deadline");
        assert!(matches!(slot.claim(false), Claim::Granted { .. }));
        assert!(!slot.handle_timeout(at + GRACE));
    }
}
