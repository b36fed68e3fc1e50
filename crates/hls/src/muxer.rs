//! One muxer per stream, shared by every viewer: a tokio task that subscribes to
//! the stream's Hub, feeds the segmenter and wakes requests waiting for a part.
//!
//! Started by the first playlist request, it stops once no request has touched it
//! for the idle grace (dropping its Hub subscription, so an on-demand source can
//! stop too). When the stream is replaced (a new Hub under the same name: API PUT,
//! config reload), it lets the old Hub go within a second (at once when the old one
//! closes) and continues the same playlist from the new Hub after an
//! `EXT-X-DISCONTINUITY`, so players keep playing without a reload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use streamgate_pipeline::Hub;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::HlsConfig;
use crate::segmenter::{Segmenter, SegmenterConfig};

/// Finds a stream's Hub by name (the binary's stream registry).
pub trait HubLookup: Send + Sync + 'static {
    fn hub(&self, name: &str) -> Option<Hub>;
}

impl<F: Fn(&str) -> Option<Hub> + Send + Sync + 'static> HubLookup for F {
    fn hub(&self, name: &str) -> Option<Hub> {
        self(name)
    }
}

/// What a stream's muxer can serve right now.
pub enum MuxerState {
    /// Waiting for the source's codec parameters or its first keyframe.
    Starting,
    Running(Box<Segmenter>),
    /// The stream could not be muxed (no tracks in time, unsupported codecs…).
    Failed(String),
}

/// A running muxer, shared by the HTTP handlers.
pub struct Muxer {
    name: String,
    state: Mutex<MuxerState>,
    /// Bumped after every completed part; waiters re-check the state.
    progress: watch::Sender<u64>,
    last_request: Mutex<Instant>,
}

impl Muxer {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state, locked briefly (never across an await).
    pub fn state(&self) -> MutexGuard<'_, MuxerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn watch_progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Records viewer activity; the muxer stops after `idle_grace` without any.
    pub fn touch(&self) {
        *self.last_request.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    fn set_state(&self, state: MuxerState) {
        *self.state() = state;
        self.progress.send_modify(|n| *n += 1);
    }
}

/// The running muxers by stream name.
pub struct Muxers {
    lookup: Box<dyn HubLookup>,
    config: HlsConfig,
    running: Mutex<HashMap<String, Arc<Muxer>>>,
}

impl Muxers {
    pub fn new(lookup: impl HubLookup, config: HlsConfig) -> Arc<Muxers> {
        Arc::new(Muxers {
            lookup: Box::new(lookup),
            config,
            running: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, Arc<Muxer>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream's muxer, started if needed; `None` for an unknown stream.
    pub fn get_or_start(self: &Arc<Self>, name: &str) -> Option<Arc<Muxer>> {
        let hub = self.lookup.hub(name)?;
        let mut running = self.running();
        if let Some(muxer) = running.get(name) {
            muxer.touch();
            return Some(muxer.clone());
        }
        let muxer = Arc::new(Muxer {
            name: name.to_owned(),
            state: Mutex::new(MuxerState::Starting),
            progress: watch::Sender::new(0),
            last_request: Mutex::new(Instant::now()),
        });
        running.insert(name.to_owned(), muxer.clone());
        info!(stream = name, "HLS muxer starting");
        tokio::spawn(run(Arc::downgrade(self), muxer.clone(), hub));
        Some(muxer)
    }

    /// The stream's muxer if one is running (media requests never start one).
    pub fn get(&self, name: &str) -> Option<Arc<Muxer>> {
        let muxer = self.running().get(name).cloned()?;
        muxer.touch();
        Some(muxer)
    }

    fn remove(&self, muxer: &Arc<Muxer>) {
        let mut running = self.running();
        if running
            .get(&muxer.name)
            .is_some_and(|m| Arc::ptr_eq(m, muxer))
        {
            running.remove(&muxer.name);
        }
    }
}

/// Media sequence numbers continue from wall-clock seconds so that a restarted
/// muxer never reuses a URI a cache may still hold.
fn first_sequence_number() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why muxing one Hub ended.
enum End {
    /// The muxer stops (idle, stream gone, failed); the reason is logged.
    Stop(&'static str),
    /// The registry holds a new Hub under the stream's name (the stream was
    /// replaced): the muxer follows it, and the old Hub is let go.
    Replaced(Hub),
}

async fn run(muxers: Weak<Muxers>, muxer: Arc<Muxer>, mut hub: Hub) {
    let Some(config) = muxers.upgrade().map(|m| m.config.clone()) else {
        return;
    };
    let reason = loop {
        match mux(&muxers, &muxer, &hub, &config).await {
            End::Stop(reason) => break reason,
            End::Replaced(new) => {
                info!(
                    stream = muxer.name(),
                    "stream replaced: HLS follows its new source"
                );
                hub = new;
            }
        }
    };
    info!(stream = muxer.name(), reason, "HLS muxer stopped");
    if let Some(muxers) = muxers.upgrade() {
        muxers.remove(&muxer);
    }
    // Requests still holding this muxer stop waiting and get an error, not a hang.
    let failed = matches!(*muxer.state(), MuxerState::Failed(_));
    if !failed {
        muxer.set_state(MuxerState::Failed(format!("muxer stopped: {reason}")));
    }
}

/// Whether the registry still holds `hub` under the muxer's name.
fn follow_registry(muxers: &Weak<Muxers>, name: &str, hub: &Hub) -> Option<End> {
    let Some(muxers) = muxers.upgrade() else {
        return Some(End::Stop("HLS routes dropped"));
    };
    match muxers.lookup.hub(name) {
        None => Some(End::Stop("stream removed")),
        Some(current) if current.same_as(hub) => None,
        Some(current) => Some(End::Replaced(current)),
    }
}

/// The periodic check: no viewer for the idle grace, or the stream gone or replaced.
fn check(muxers: &Weak<Muxers>, muxer: &Muxer, hub: &Hub, idle_grace: Duration) -> Option<End> {
    if muxer.idle_for() > idle_grace {
        return Some(End::Stop("idle"));
    }
    follow_registry(muxers, muxer.name(), hub)
}

/// Muxes `hub` until the stream ends, fails, goes idle or is replaced.
///
/// A segmenter replacing one that serves viewers continues its playlist after a
/// discontinuity, and goes live only once it has a segment: until then viewers
/// keep the old playlist rather than a 503.
async fn mux(muxers: &Weak<Muxers>, muxer: &Muxer, hub: &Hub, config: &HlsConfig) -> End {
    // Subscribe first: the subscriber count is what starts an on-demand source.
    let mut subscription = hub.subscribe();
    let idle_grace = config.idle_grace();
    let mut checks = tokio::time::interval(idle_grace.min(Duration::from_secs(1)));
    let ready = hub.wait_ready(config.ready_timeout());
    tokio::pin!(ready);
    let tracks = loop {
        tokio::select! {
            tracks = &mut ready => break tracks,
            _ = checks.tick() => {
                if let Some(end) = check(muxers, muxer, hub, idle_grace) {
                    return end;
                }
            }
        }
    };
    let Some(tracks) = tracks else {
        muxer.set_state(MuxerState::Failed(
            "the source sent no usable tracks in time".into(),
        ));
        return End::Stop("no tracks");
    };
    let follows = match &*muxer.state() {
        MuxerState::Running(previous) => Some(previous.continuation()),
        _ => None,
    };
    let segmenter_config = SegmenterConfig {
        first_msn: first_sequence_number(),
        follows,
        ..config.segmenter()
    };
    // Not yet serving: it replaces a segmenter that still does.
    let mut unpublished = match Segmenter::new(segmenter_config, &tracks) {
        Ok(segmenter) if follows.is_some() => Some(Box::new(segmenter)),
        Ok(segmenter) => {
            muxer.set_state(MuxerState::Running(Box::new(segmenter)));
            None
        }
        Err(err) => {
            warn!(stream = muxer.name(), %err, "stream cannot be muxed to HLS");
            muxer.set_state(MuxerState::Failed(err.to_string()));
            return End::Stop("unsupported stream");
        }
    };
    let mut track_updates = hub.watch_tracks();
    let mut errors = 0u64;
    loop {
        tokio::select! {
            frame = subscription.recv() => {
                let Some(frame) = frame else {
                    return follow_registry(muxers, muxer.name(), hub)
                        .unwrap_or(End::Stop("stream closed"));
                };
                let result = match &mut unpublished {
                    Some(segmenter) => segmenter.push(&frame),
                    None => match &mut *muxer.state() {
                        MuxerState::Running(segmenter) => segmenter.push(&frame),
                        _ => return End::Stop("stopped"),
                    },
                };
                match result {
                    Ok(true) => {
                        if let Some(segmenter) = unpublished.take_if(|s| !s.segments().is_empty()) {
                            muxer.set_state(MuxerState::Running(segmenter));
                        } else if unpublished.is_none() {
                            muxer.progress.send_modify(|n| *n += 1);
                        }
                    }
                    Ok(false) => {}
                    Err(err) => {
                        errors += 1;
                        if errors.is_power_of_two() {
                            warn!(stream = muxer.name(), %err, errors, "HLS fragment failed");
                        }
                    }
                }
            }
            changed = track_updates.changed() => {
                if changed.is_err() {
                    return End::Stop("stream closed");
                }
                let tracks = track_updates.borrow_and_update().clone();
                let updated = match &mut unpublished {
                    Some(segmenter) => segmenter.update_tracks(&tracks),
                    None => match &mut *muxer.state() {
                        MuxerState::Running(segmenter) => segmenter.update_tracks(&tracks),
                        _ => Ok(()),
                    },
                };
                if let Err(err) = updated {
                    warn!(stream = muxer.name(), %err, "new codec parameters cannot be muxed");
                }
            }
            _ = checks.tick() => {
                if let Some(end) = check(muxers, muxer, hub, idle_grace) {
                    debug!(stream = muxer.name(), dropped = subscription.dropped(), "HLS muxer leaves its Hub");
                    return end;
                }
            }
        }
    }
}
