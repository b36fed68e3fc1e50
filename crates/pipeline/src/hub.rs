//! The Hub: one per stream, fanning `Arc<Frame>` out from the source to every
//! consumer (RTSP sessions, the HLS muxer, …).
//!
//! - **Fan-out** is a `tokio::sync::broadcast` ring of `Arc<Frame>`: publishing is
//!   one `Arc` clone into a shared bounded ring, O(1) and never waiting for any
//!   subscriber. No payload byte is copied per subscriber; every subscriber reads
//!   the same `Arc<Frame>`.
//! - **Bounds**: the ring's capacity ([`HubConfig::queue_len`], in frames) is each
//!   subscriber's queue bound: a subscriber more than that many frames behind
//!   loses the oldest ones. Memory is bounded globally, not per subscriber: the
//!   ring holds at most `queue_len` frames however many subscribers stall, plus
//!   the GOP cache (capped in bytes and frames).
//! - **Slow subscribers** are told how many frames they missed (counted in
//!   [`Subscription::dropped`] and [`HubStats::drops`]) and are skipped forward to
//!   the next video keyframe (in an audio-only stream, the next frame), so they
//!   resume with something decodable.
//! - **GOP cache**: the frames of every track since the latest video keyframe, so
//!   a new subscriber starts with a picture at once. Over its cap, or at a
//!   discontinuity (a frame marked so: a new picture format), it is emptied until the
//!   next keyframe, and subscribers joining meanwhile start at that keyframe. `publish` and `subscribe` take the same short lock around
//!   "update cache + send" and "copy cache + join the ring", so a subscriber gets
//!   the cache and then the live frames with no gap and no duplicate.
//! - **Source control**: tracks and the subscriber count are `watch` channels
//!   (RTSP DESCRIBE waits for parameter sets; sources start on the first
//!   subscriber and stop when idle); keyframe requests are a `Notify`, so requests
//!   made while the source is busy coalesce into one and are never lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::{watch, Notify};

use streamgate_rtp::Frame;
use streamgate_rtp::{CodecParams, MediaKind, TrackId, TrackInfo};

/// How far the stream's time zero lies before the Hub was made: a source's first
/// frames may have been captured earlier (a server that sends its GOP cache on
/// PLAY), and output time, which counts from the origin, cannot go below zero.
pub const ORIGIN_HEADROOM: Duration = Duration::from_secs(5);

/// Now on both clocks, moved `by` into the past (now itself on a clock too young
/// for that).
fn before_now(by: Duration) -> (Instant, SystemTime) {
    let (instant, wallclock) = (Instant::now(), SystemTime::now());
    match (instant.checked_sub(by), wallclock.checked_sub(by)) {
        (Some(instant), Some(wallclock)) => (instant, wallclock),
        _ => (instant, wallclock),
    }
}

/// Largest ring a config may ask for (the broadcast ring is allocated up front).
const MAX_QUEUE_LEN: usize = 1 << 16;

/// Sizes of the Hub's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Frames a subscriber may fall behind before it is skipped forward; also the
    /// most frames the ring holds. 512 is ~6 s of 30 fps video with 50 fps audio.
    pub queue_len: usize,
    /// GOP cache cap in payload bytes (16 MiB: a 10 s GOP at ~12 Mbit/s).
    pub gop_max_bytes: usize,
    /// GOP cache cap in frames (all tracks).
    pub gop_max_frames: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_len: 512,
            gop_max_bytes: 16 << 20,
            gop_max_frames: 1024,
        }
    }
}

/// Counters since the Hub was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    pub frames: u64,
    pub packets: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Frames skipped by slow subscribers, all subscribers together.
    pub drops: u64,
    pub subscribers: usize,
    pub keyframe_requests: u64,
}

/// [`Subscription::try_recv`] after the Hub was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream's hub is closed")]
pub struct Closed;

/// One stream's fan-out point. Cheap to clone (shared inner state).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: HubConfig,
    fanout: Mutex<Fanout>,
    tracks: watch::Sender<Arc<[TrackInfo]>>,
    /// Whether the stream has a video track, deciding what a subscriber resyncs on.
    has_video: AtomicBool,
    subscribers: watch::Sender<usize>,
    keyframe_request: Notify,
    counters: Counters,
    /// The stream's time zero: output timestamps count from here (see
    /// [`Hub::origin`]).
    origin: (Instant, SystemTime),
    /// Highest output time any track reached, in microseconds since `origin`.
    output_high_water_micros: AtomicU64,
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    drops: AtomicU64,
    keyframe_requests: AtomicU64,
}

/// The state `publish` and `subscribe` must see atomically.
struct Fanout {
    /// `None` once closed.
    sender: Option<broadcast::Sender<Arc<Frame>>>,
    gop: GopCache,
}

#[derive(Default)]
struct GopCache {
    /// Empty, or starting at the latest video keyframe.
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
}

impl GopCache {
    fn push(&mut self, frame: &Arc<Frame>, starts_gop: bool, config: &HubConfig) {
        if starts_gop {
            self.clear();
        } else if self.frames.is_empty() {
            return; // no keyframe yet, or over the cap: wait for the next keyframe
        } else if frame.discontinuity {
            // The source restarted: what follows does not decode from the cached
            // keyframe, so new subscribers wait for the next one.
            self.clear();
            return;
        }
        let bytes = self.bytes.saturating_add(frame.payload_len());
        if self.frames.len() >= config.gop_max_frames || bytes > config.gop_max_bytes {
            self.clear();
            return;
        }
        self.bytes = bytes;
        self.frames.push_back(Arc::clone(frame));
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

/// Where a subscriber may start (or resume) decoding: a video keyframe, or any
/// frame of an audio-only stream.
fn is_sync_point(frame: &Frame, stream_has_video: bool) -> bool {
    frame.keyframe && (frame.kind == MediaKind::Video || !stream_has_video)
}

impl Hub {
    pub fn new(name: impl Into<String>, config: HubConfig) -> Hub {
        let config = HubConfig {
            queue_len: config.queue_len.clamp(1, MAX_QUEUE_LEN),
            ..config
        };
        let (sender, _) = broadcast::channel(config.queue_len);
        Hub {
            inner: Arc::new(Inner {
                name: name.into(),
                config,
                fanout: Mutex::new(Fanout {
                    sender: Some(sender),
                    gop: GopCache::default(),
                }),
                tracks: watch::Sender::new(Arc::from(Vec::new())),
                has_video: AtomicBool::new(false),
                subscribers: watch::Sender::new(0),
                keyframe_request: Notify::new(),
                counters: Counters::default(),
                origin: before_now(ORIGIN_HEADROOM),
                output_high_water_micros: AtomicU64::new(0),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// True when both handles are the same stream (clones of one Hub): a stream
    /// replaced under the same name gets a new Hub, and outputs compare to notice.
    pub fn same_as(&self, other: &Hub) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn config(&self) -> HubConfig {
        self.inner.config
    }

    /// The stream's time zero (monotonic and wall clock), fixed when the Hub is
    /// made, [`ORIGIN_HEADROOM`] before then. Every ingest feeding this Hub anchors output time to it, so a new
    /// ingest (a source that came back with other tracks) continues the time of
    /// the previous one instead of starting again at zero.
    pub fn origin(&self) -> (Instant, SystemTime) {
        self.inner.origin
    }

    /// Records that output time reached `since_origin` (ingest calls this).
    pub fn note_output_time(&self, since_origin: Duration) {
        // Rounded up, so a later start computed from it is strictly after.
        let micros = u64::try_from(since_origin.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
        self.inner
            .output_high_water_micros
            .fetch_max(micros, Ordering::Relaxed);
    }

    /// The highest output time reached so far: a new ingest starts after it.
    pub fn output_time_high_water(&self) -> Duration {
        Duration::from_micros(self.inner.output_high_water_micros.load(Ordering::Relaxed))
    }

    fn fanout(&self) -> MutexGuard<'_, Fanout> {
        // The lock guards plain data updated without panicking paths; a poisoned
        // lock still holds a consistent cache and sender.
        self.inner
            .fanout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    // ----- source side -----

    /// Announces the stream's tracks. When they differ from the previous ones
    /// (a new source with other codecs), the GOP cache no longer applies.
    pub fn set_tracks(&self, tracks: Vec<TrackInfo>) {
        let has_video = tracks.iter().any(|t| t.kind() == MediaKind::Video);
        if !same_layout(&self.inner.tracks.borrow(), &tracks) {
            self.fanout().gop.clear();
        }
        self.inner.has_video.store(has_video, Ordering::Relaxed);
        self.inner.tracks.send_replace(Arc::from(tracks));
    }

    /// New codec parameters for one track (in-band SPS/PPS, …); watchers are
    /// woken only when they really changed.
    pub fn update_params(&self, track: TrackId, params: CodecParams) {
        self.inner.tracks.send_if_modified(|tracks| {
            let Some(index) = tracks.iter().position(|t| t.id == track) else {
                return false;
            };
            if tracks[index].params == params {
                return false;
            }
            let mut updated = tracks.to_vec();
            updated[index].params = params;
            *tracks = Arc::from(updated);
            true
        });
    }

    /// Hands `frame` to every subscriber. Never blocks, never copies payload.
    pub fn publish(&self, frame: Frame) {
        let frame = Arc::new(frame);
        let starts_gop = frame.keyframe && frame.kind == MediaKind::Video;
        let mut fanout = self.fanout();
        let Fanout { sender, gop } = &mut *fanout;
        let Some(sender) = sender else { return };
        let counters = &self.inner.counters;
        counters.frames.fetch_add(1, Ordering::Relaxed);
        counters
            .packets
            .fetch_add(frame.packets.len() as u64, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(frame.payload_len() as u64, Ordering::Relaxed);
        gop.push(&frame, starts_gop, &self.inner.config);
        // Err only means nobody is subscribed right now.
        let _ = sender.send(frame);
    }

    /// Resolves when a consumer asked for a keyframe (since the last time this
    /// resolved); the source then sends PLI/FIR upstream.
    pub async fn keyframe_requested(&self) {
        self.inner.keyframe_request.notified().await;
    }

    // ----- consumer side -----

    pub fn tracks(&self) -> Arc<[TrackInfo]> {
        self.inner.tracks.borrow().clone()
    }

    pub fn watch_tracks(&self) -> watch::Receiver<Arc<[TrackInfo]>> {
        self.inner.tracks.subscribe()
    }

    /// Waits until the stream has tracks and every one can be described to a
    /// client ([`TrackInfo::is_ready`]); `None` after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Option<Arc<[TrackInfo]>> {
        let mut tracks = self.watch_tracks();
        let ready = |t: &Arc<[TrackInfo]>| !t.is_empty() && t.iter().all(TrackInfo::is_ready);
        let result = match tokio::time::timeout(timeout, tracks.wait_for(ready)).await {
            Ok(Ok(tracks)) => Some(tracks.clone()),
            _ => None,
        };
        result
    }

    /// The GOP cache's keyframe (the latest video keyframe while the cache holds
    /// its GOP): what a still picture of the stream is decoded from.
    pub fn latest_keyframe(&self) -> Option<Arc<Frame>> {
        self.fanout().gop.frames.front().cloned()
    }

    /// Joins the stream: the first frames are the GOP cache (from the latest
    /// video keyframe), then live frames. With an empty cache (no keyframe yet, or
    /// over its cap) the subscription starts at the next keyframe.
    pub fn subscribe(&self) -> Subscription {
        let (pending, receiver) = {
            let fanout = self.fanout();
            match &fanout.sender {
                // The cache starts at its keyframe, where this subscriber starts
                // decoding: that keyframe's skipped leading pictures are left out.
                Some(sender) => (
                    fanout
                        .gop
                        .frames
                        .iter()
                        .filter(|frame| !frame.random_access_skipped)
                        .cloned()
                        .collect(),
                    Some(sender.subscribe()),
                ),
                None => (VecDeque::new(), None),
            }
        };
        self.inner.subscribers.send_modify(|count| *count += 1);
        let resync = if pending.is_empty() {
            Resync::AtStart
        } else {
            Resync::Synced
        };
        Subscription {
            hub: self.clone(),
            pending,
            receiver,
            resync,
            skipping_leading: true,
            dropped: 0,
        }
    }

    pub fn request_keyframe(&self) {
        self.inner
            .counters
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
        self.inner.keyframe_request.notify_one();
    }

    pub fn subscriber_count(&self) -> usize {
        *self.inner.subscribers.borrow()
    }

    pub fn watch_subscribers(&self) -> watch::Receiver<usize> {
        self.inner.subscribers.subscribe()
    }

    pub fn stats(&self) -> HubStats {
        let c = &self.inner.counters;
        HubStats {
            frames: c.frames.load(Ordering::Relaxed),
            packets: c.packets.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            drops: c.drops.load(Ordering::Relaxed),
            subscribers: self.subscriber_count(),
            keyframe_requests: c.keyframe_requests.load(Ordering::Relaxed),
        }
    }

    /// Ends the stream: subscribers receive what was already published, then
    /// `recv()` returns `None`; later publishes are ignored.
    pub fn close(&self) {
        let mut fanout = self.fanout();
        fanout.sender = None;
        fanout.gop.clear();
    }

    /// Ends every current subscription (each `recv()` returns `None` once
    /// drained) and forgets the tracks and GOP cache, but stays open: a later
    /// source publishes to new subscribers. A publisher that left for good does
    /// this, so its readers close (RTSP readers get an RTCP BYE).
    pub fn end_subscriptions(&self) {
        {
            let mut fanout = self.fanout();
            if fanout.sender.is_some() {
                fanout.sender = Some(broadcast::channel(self.inner.config.queue_len).0);
            }
            fanout.gop.clear();
        }
        self.inner.tracks.send_replace(Arc::from(Vec::new()));
    }

    fn stream_has_video(&self) -> bool {
        self.inner.has_video.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("name", &self.inner.name)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Whether a subscription is waiting for a point where decoding can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    Synced,
    /// Joined with an empty GOP cache: waiting for the first keyframe.
    AtStart,
    /// Missed frames: skipping (and counting) until the next keyframe.
    AfterLag,
}

/// One consumer's view of a Hub. Dropping it unsubscribes.
pub struct Subscription {
    hub: Hub,
    /// The GOP cache as it was when subscribing, delivered before live frames.
    pending: VecDeque<Arc<Frame>>,
    /// `None` once the Hub is closed and drained.
    receiver: Option<broadcast::Receiver<Arc<Frame>>>,
    resync: Resync,
    /// Decoding started at the latest video keyframe this subscriber got:
    /// the leading pictures that keyframe cannot decode are skipped.
    skipping_leading: bool,
    dropped: u64,
}

impl Subscription {
    /// The next frame; `None` once the Hub is closed and everything published
    /// before was delivered. Cancel-safe (usable in `select!`).
    pub async fn recv(&mut self) -> Option<Arc<Frame>> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        loop {
            let receiver = self.receiver.as_mut()?;
            match receiver.recv().await {
                Ok(frame) => {
                    if let Some(frame) = self.admit(frame) {
                        return Some(frame);
                    }
                }
                Err(RecvError::Lagged(missed)) => self.lagged(missed),
                Err(RecvError::Closed) => {
                    self.receiver = None;
                    return None;
                }
            }
        }
    }

    /// The next frame if one is waiting: `Ok(None)` when none is.
    pub fn try_recv(&mut self) -> Result<Option<Arc<Frame>>, Closed> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Some(frame));
        }
        loop {
            let receiver = self.receiver.as_mut().ok_or(Closed)?;
            match receiver.try_recv() {
                Ok(frame) => {
                    if let Some(frame) = self.admit(frame) {
                        return Ok(Some(frame));
                    }
                }
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Lagged(missed)) => self.lagged(missed),
                Err(TryRecvError::Closed) => {
                    self.receiver = None;
                    return Err(Closed);
                }
            }
        }
    }

    /// Frames skipped because this subscriber fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn request_keyframe(&self) {
        self.hub.request_keyframe();
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn admit(&mut self, frame: Arc<Frame>) -> Option<Arc<Frame>> {
        match self.resync {
            Resync::Synced => {
                if frame.keyframe && frame.kind == MediaKind::Video {
                    self.skipping_leading = false;
                } else if self.skipping_leading && frame.random_access_skipped {
                    return None;
                }
                Some(frame)
            }
            _ if is_sync_point(&frame, self.hub.stream_has_video()) => {
                self.resync = Resync::Synced;
                self.skipping_leading = true;
                Some(frame)
            }
            Resync::AfterLag => {
                self.count_dropped(1);
                None
            }
            Resync::AtStart => None,
        }
    }

    fn lagged(&mut self, missed: u64) {
        tracing::debug!(stream = %self.hub.name(), missed, "slow subscriber skipped forward to the next keyframe");
        self.count_dropped(missed);
        self.resync = Resync::AfterLag;
    }

    fn count_dropped(&mut self, frames: u64) {
        self.dropped = self.dropped.saturating_add(frames);
        self.hub
            .inner
            .counters
            .drops
            .fetch_add(frames, Ordering::Relaxed);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .inner
            .subscribers
            .send_modify(|count| *count = count.saturating_sub(1));
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("hub", &self.hub.name())
            .field("pending", &self.pending.len())
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// Same tracks in the same order: ids, codecs, clocks and channels. A new source
/// session with the same layout continues the stream (its ingest carries on, the GOP
/// cache still applies). Ids count because packets, frames and outputs address
/// tracks by id: an ingest cannot route a session whose ids differ (`push_rtp` finds
/// tracks by id). Parameter sets and payload types may differ: parameter sets come
/// in band, and the ingest writes its own payload types.
pub(crate) fn same_layout(current: &[TrackInfo], new: &[TrackInfo]) -> bool {
    current.len() == new.len()
        && current.iter().zip(new).all(|(a, b)| {
            (a.id, a.codec, a.clock_rate, a.channels) == (b.id, b.codec, b.clock_rate, b.channels)
        })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::SystemTime;

    use bytes::Bytes;

    use super::*;
    use streamgate_rtp::Codec;
    use streamgate_rtp::{OutPacket, PayloadType, SeqNo, Ssrc};

    const VIDEO: TrackId = TrackId::new(0);
    const AUDIO: TrackId = TrackId::new(1);

    fn track(id: TrackId, codec: Codec) -> TrackInfo {
        TrackInfo {
            id,
            codec,
            clock_rate: codec.fixed_clock_rate().unwrap_or(48_000),
            channels: 1,
            payload_type: PayloadType::new(96 + id.get() as u8).unwrap(),
            params: CodecParams::default(),
        }
    }

    fn hub_with(config: HubConfig, codecs: &[Codec]) -> Hub {
        let hub = Hub::new("test", config);
        hub.set_tracks(
            codecs
                .iter()
                .enumerate()
                .map(|(i, c)| track(TrackId::new(i), *c))
                .collect(),
        );
        hub
    }

    fn frame(track: TrackId, pts: u64, keyframe: bool, payload: Bytes) -> Frame {
        let kind = if track == VIDEO {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        Frame {
            track,
            kind,
            pts,
            dts: pts,
            wallclock: SystemTime::UNIX_EPOCH,
            keyframe,
            discontinuity: false,
            random_access_skipped: false,
            packets: vec![OutPacket::new(
                PayloadType::new(96).unwrap(),
                true,
                SeqNo::new(pts as u16),
                pts as u32,
                Ssrc::new(1),
                payload.clone(),
            )],
            units: vec![payload],
        }
    }

    fn video(pts: u64, keyframe: bool) -> Frame {
        frame(
            VIDEO,
            pts,
            keyframe,
            Bytes::from(pts.to_be_bytes().to_vec()),
        )
    }

    fn drain(sub: &mut Subscription) -> Vec<Arc<Frame>> {
        std::iter::from_fn(|| sub.try_recv().ok().flatten()).collect()
    }

    fn pts_of(frames: &[Arc<Frame>]) -> Vec<u64> {
        frames.iter().map(|f| f.pts).collect()
    }

    #[test]
    fn hundred_subscribers_share_every_frame_without_copies() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264]);
        let mut subs: Vec<Subscription> = (0..100).map(|_| hub.subscribe()).collect();
        let payloads: Vec<Bytes> = (0..20u8).map(|i| Bytes::from(vec![i; 1200])).collect();
        for (i, payload) in payloads.iter().enumerate() {
            hub.publish(frame(VIDEO, i as u64, i % 10 == 0, payload.clone()));
        }
        let received: Vec<Vec<Arc<Frame>>> = subs.iter_mut().map(drain).collect();
        for frames in &received {
            assert_eq!(frames.len(), payloads.len());
            for ((frame, first), payload) in frames.iter().zip(&received[0]).zip(&payloads) {
                assert!(
                    Arc::ptr_eq(frame, first),
                    "every subscriber holds the same Arc<Frame>"
                );
                assert_eq!(
                    frame.units[0].as_ptr(),
                    payload.as_ptr(),
                    "unit bytes are the published buffer"
                );
                assert_eq!(
                    frame.packets[0].payload.as_ptr(),
                    payload.as_ptr(),
                    "packet bytes too"
                );
            }
        }
        assert_eq!(hub.stats().drops, 0);
        assert_eq!(hub.stats().subscribers, 100);
    }

    /// Counts payload buffers still alive, to measure what the Hub retains.
    struct Tracked(Arc<AtomicUsize>, [u8; 64]);

    impl Tracked {
        fn bytes(live: &Arc<AtomicUsize>) -> Bytes {
            live.fetch_add(1, Ordering::SeqCst);
            Bytes::from_owner(Tracked(Arc::clone(live), [7; 64]))
        }
    }

    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.1
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn stalled_subscriber_does_not_hold_back_others_and_stays_bounded() {
        const QUEUE: usize = 16;
        const GOP: u64 = 10;
        let hub = hub_with(
            HubConfig {
                queue_len: QUEUE,
                ..HubConfig::default()
            },
            &[Codec::H264],
        );
        let live = Arc::new(AtomicUsize::new(0));
        let mut stalled = hub.subscribe();
        let mut fast = hub.subscribe();
        let mut fast_got = Vec::new();
        for pts in 0..1000 {
            hub.publish(frame(VIDEO, pts, pts % GOP == 0, Tracked::bytes(&live)));
            fast_got.extend(drain(&mut fast).iter().map(|f| f.pts));
            // Retained: at most the ring plus the GOP cache, whatever the stalled one does.
            let retained = live.load(Ordering::SeqCst);
            assert!(
                retained <= QUEUE + GOP as usize,
                "retained {retained} buffers"
            );
        }
        // The fast subscriber got everything, in order.
        assert_eq!(fast_got, (0..1000).collect::<Vec<_>>());
        assert_eq!(fast.dropped(), 0);

        // The stalled one resumes at a keyframe with its losses counted.
        let resumed = drain(&mut stalled);
        assert!(resumed[0].keyframe, "resumes at a keyframe");
        assert!(stalled.dropped() >= 1000 - QUEUE as u64 - GOP);
        assert_eq!(stalled.dropped() + resumed.len() as u64, 1000);
        assert_eq!(hub.stats().drops, stalled.dropped());
    }

    #[test]
    fn late_subscriber_starts_at_latest_keyframe_then_live() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264, Codec::Opus]);
        hub.publish(video(0, true));
        hub.publish(video(1, false));
        hub.publish(video(2, true));
        hub.publish(frame(AUDIO, 3, true, Bytes::from_static(b"a")));
        hub.publish(video(4, false));
        let mut late = hub.subscribe();
        hub.publish(video(5, false));
        hub.publish(video(6, true));
        let got = drain(&mut late);
        assert_eq!(pts_of(&got), vec![2, 3, 4, 5, 6]);
        assert!(got[0].keyframe);
    }

    /// An H.265 RASL picture: it follows a CRA and cannot be decoded from it.
    fn leading(pts: u64) -> Frame {
        Frame {
            random_access_skipped: true,
            ..video(pts, false)
        }
    }

    #[test]
    fn subscribers_skip_the_leading_pictures_of_the_keyframe_they_start_at() {
        let hub = hub_with(HubConfig::default(), &[Codec::H265]);
        let mut from_start = hub.subscribe();
        hub.publish(video(0, true));
        hub.publish(leading(1));
        hub.publish(video(2, false));
        let mut from_cache = hub.subscribe();
        hub.publish(leading(3));
        hub.publish(video(4, true));
        hub.publish(leading(5));
        hub.publish(video(6, false));
        // Both started at the keyframe at 0: its leading pictures (1, 3) are
        // skipped; those of the next keyframe decode, as it had the pictures before.
        assert_eq!(pts_of(&drain(&mut from_start)), vec![0, 2, 4, 5, 6]);
        assert_eq!(pts_of(&drain(&mut from_cache)), vec![0, 2, 4, 5, 6]);
        assert_eq!(from_cache.dropped(), 0, "skipped pictures are not losses");
        // One joining at the keyframe at 4 skips 5.
        let mut late = hub.subscribe();
        assert_eq!(pts_of(&drain(&mut late)), vec![4, 6]);
    }

    #[test]
    fn over_cap_gop_makes_new_subscribers_wait_for_a_keyframe() {
        let config = HubConfig {
            gop_max_frames: 3,
            ..HubConfig::default()
        };
        let hub = hub_with(config, &[Codec::H264, Codec::Opus]);
        for pts in 0..5 {
            hub.publish(video(pts, pts == 0));
        }
        let mut late = hub.subscribe();
        hub.publish(frame(AUDIO, 5, true, Bytes::from_static(b"a")));
        hub.publish(video(6, false));
        hub.publish(video(7, true));
        hub.publish(video(8, false));
        assert_eq!(pts_of(&drain(&mut late)), vec![7, 8]);
        assert_eq!(
            late.dropped(),
            0,
            "waiting for the first keyframe is not a drop"
        );
    }

    #[test]
    fn discontinuity_empties_the_gop_cache() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264]);
        hub.publish(video(0, true));
        hub.publish(video(1, false));
        hub.publish(Frame {
            discontinuity: true,
            ..video(2, false)
        });
        let mut late = hub.subscribe();
        hub.publish(video(3, false));
        hub.publish(Frame {
            discontinuity: true,
            ..video(4, true)
        });
        hub.publish(video(5, false));
        assert_eq!(pts_of(&drain(&mut late)), vec![4, 5]);
        assert_eq!(pts_of(&drain(&mut hub.subscribe())), vec![4, 5]);
    }

    #[test]
    fn latest_keyframe_is_the_gop_caches_first_frame() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264]);
        assert!(hub.latest_keyframe().is_none());
        hub.publish(video(0, false));
        assert!(hub.latest_keyframe().is_none());
        hub.publish(video(1, true));
        hub.publish(video(2, false));
        assert_eq!(hub.latest_keyframe().map(|f| f.pts), Some(1));
        hub.publish(video(3, true));
        assert_eq!(hub.latest_keyframe().map(|f| f.pts), Some(3));
        hub.close();
        assert!(hub.latest_keyframe().is_none());
    }

    #[test]
    fn gop_byte_cap_applies() {
        let config = HubConfig {
            gop_max_bytes: 20,
            ..HubConfig::default()
        };
        let hub = hub_with(config, &[Codec::H264]);
        hub.publish(frame(VIDEO, 0, true, Bytes::from(vec![0; 15])));
        assert_eq!(pts_of(&drain(&mut hub.subscribe())), vec![0]);
        hub.publish(frame(VIDEO, 1, false, Bytes::from(vec![0; 15])));
        assert!(drain(&mut hub.subscribe()).is_empty());
    }

    #[test]
    fn lagging_subscriber_skips_to_next_video_keyframe() {
        let hub = hub_with(
            HubConfig {
                queue_len: 4,
                ..HubConfig::default()
            },
            &[Codec::H264, Codec::Opus],
        );
        let mut sub = hub.subscribe();
        hub.publish(video(0, true));
        for pts in 1..8 {
            hub.publish(video(pts, false));
        }
        // The ring (4 frames) ends up holding 7..=10: frames 0..7 are gone.
        hub.publish(frame(AUDIO, 8, true, Bytes::from_static(b"a")));
        hub.publish(video(9, true));
        hub.publish(video(10, false));
        assert_eq!(pts_of(&drain(&mut sub)), vec![9, 10]);
        assert_eq!(sub.dropped(), 9);
    }

    #[test]
    fn audio_only_lag_resumes_at_next_frame() {
        let hub = hub_with(
            HubConfig {
                queue_len: 4,
                ..HubConfig::default()
            },
            &[Codec::Opus],
        );
        let mut sub = hub.subscribe();
        for pts in 0..10 {
            hub.publish(frame(TrackId::new(0), pts, true, Bytes::from_static(b"a")));
        }
        assert_eq!(pts_of(&drain(&mut sub)), vec![6, 7, 8, 9]);
        assert_eq!(sub.dropped(), 6);
    }

    #[test]
    fn concurrent_subscribe_sees_no_gap_or_duplicate() {
        const FRAMES: u64 = 20_000;
        let hub = hub_with(
            HubConfig {
                queue_len: 1 << 15,
                ..HubConfig::default()
            },
            &[Codec::H264],
        );
        let start = Arc::new(std::sync::Barrier::new(2));
        let (subscribed, all_subscribed) = std::sync::mpsc::channel::<()>();
        let publisher = {
            let (hub, start) = (hub.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for pts in 0..FRAMES {
                    hub.publish(video(pts, pts % 30 == 0));
                }
                // Close only after every subscribe happened, so each sees an end.
                let _ = all_subscribed.recv();
                hub.close();
            })
        };
        start.wait();
        let subscribers: Vec<Subscription> = (0..50)
            .map(|_| {
                std::thread::yield_now();
                hub.subscribe()
            })
            .collect();
        subscribed.send(()).expect("publisher alive");
        publisher.join().expect("publisher thread");
        for mut sub in subscribers {
            let got = drain(&mut sub);
            let first = got.first().expect("cache or live frames");
            assert!(first.keyframe);
            assert_eq!(pts_of(&got), (first.pts..FRAMES).collect::<Vec<_>>());
            assert!(matches!(sub.try_recv(), Err(Closed)));
        }
    }

    #[tokio::test]
    async fn waiting_readers_get_everything_while_one_subscriber_stalls() {
        const FRAMES: u64 = 5_000;
        let hub = hub_with(
            HubConfig {
                queue_len: 64,
                ..HubConfig::default()
            },
            &[Codec::H264],
        );
        let mut stalled = hub.subscribe();
        let readers: Vec<_> = (0..10)
            .map(|_| {
                let mut sub = hub.subscribe();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(frame) = sub.recv().await {
                        got.push(frame.pts);
                    }
                    (got, sub.dropped())
                })
            })
            .collect();
        for pts in 0..FRAMES {
            hub.publish(video(pts, pts % 25 == 0));
            // Lets the readers run; the stalled subscriber is never polled.
            tokio::task::yield_now().await;
        }
        hub.close();
        for reader in readers {
            let (got, dropped) = reader.await.expect("reader task");
            assert_eq!(got, (0..FRAMES).collect::<Vec<_>>());
            assert_eq!(dropped, 0);
        }
        let first = stalled.recv().await.expect("resumes");
        assert!(first.keyframe);
        assert_eq!(stalled.dropped(), first.pts);
        assert!(first.pts >= FRAMES - 64 - 25);
    }

    #[tokio::test]
    async fn close_ends_subscriptions_after_draining() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264]);
        let mut sub = hub.subscribe();
        hub.publish(video(0, true));
        hub.close();
        hub.publish(video(1, false));
        assert_eq!(sub.recv().await.map(|f| f.pts), Some(0));
        assert!(sub.recv().await.is_none());
        assert!(hub.subscribe().recv().await.is_none());
        assert_eq!(hub.stats().frames, 1);
    }

    #[tokio::test]
    async fn ended_subscriptions_close_but_the_hub_serves_new_ones() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264]);
        let mut old = hub.subscribe();
        hub.publish(video(0, true));
        hub.end_subscriptions();
        assert!(hub.tracks().is_empty());
        assert_eq!(old.recv().await.map(|f| f.pts), Some(0));
        assert!(old.recv().await.is_none());
        let mut new = hub.subscribe();
        hub.publish(video(1, true));
        assert_eq!(new.recv().await.map(|f| f.pts), Some(1));
    }

    #[tokio::test]
    async fn subscriber_count_follows_subscriptions() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264]);
        let mut count = hub.watch_subscribers();
        let a = hub.subscribe();
        let b = hub.subscribe();
        assert_eq!(*count.borrow_and_update(), 2);
        drop(a);
        count.changed().await.expect("hub alive");
        assert_eq!(*count.borrow_and_update(), 1);
        drop(b);
        assert_eq!(hub.subscriber_count(), 0);
    }

    #[tokio::test]
    async fn keyframe_request_reaches_the_source() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264]);
        let sub = hub.subscribe();
        sub.request_keyframe();
        sub.request_keyframe();
        // Requested before the source waited: not lost, and the two coalesce.
        hub.keyframe_requested().await;
        assert_eq!(hub.stats().keyframe_requests, 2);
        let waiting = tokio::spawn({
            let hub = hub.clone();
            async move { hub.keyframe_requested().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        sub.request_keyframe();
        waiting.await.expect("request delivered");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_ready_waits_for_parameter_sets() {
        let hub = hub_with(HubConfig::default(), &[Codec::H264, Codec::Opus]);
        assert!(hub.wait_ready(Duration::from_secs(1)).await.is_none());
        let params = CodecParams {
            sps: Some(Bytes::from_static(&[0x67, 0x42])),
            pps: Some(Bytes::from_static(&[0x68])),
            ..CodecParams::default()
        };
        let waiter = tokio::spawn({
            let hub = hub.clone();
            async move { hub.wait_ready(Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        hub.update_params(VIDEO, params.clone());
        let tracks = waiter
            .await
            .expect("waiter")
            .expect("ready before the timeout");
        assert_eq!(tracks[0].params, params);
        assert_eq!(hub.tracks()[0].params, params);
    }

    #[test]
    fn a_layout_is_ids_codecs_clocks_and_channels_not_parameters() {
        let layout = [
            track(TrackId::new(0), Codec::H264),
            track(TrackId::new(1), Codec::Opus),
        ];
        let mut with_params = layout.clone();
        with_params[0].params.sps = Some(Bytes::from_static(&[0x67]));
        with_params[1].payload_type = PayloadType::new(97).unwrap();
        assert!(same_layout(&layout, &with_params));
        let mut other_ids = layout.clone();
        other_ids[1].id = TrackId::new(2);
        assert!(
            !same_layout(&layout, &other_ids),
            "packets are routed by id"
        );
        let mut other_clock = layout.clone();
        other_clock[1].clock_rate = 16_000;
        assert!(!same_layout(&layout, &other_clock));
        assert!(!same_layout(&layout, &layout[..1]));
    }
}
