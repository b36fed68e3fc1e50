//! The WHEP source: keeps one stream flowing into the Hub from a chain of WHEP sessions.
//!
//! Rotation is make-before-break: before the active session reaches `max_session` (or as
//! soon as it looks unwell, or the server ends it) the next session is opened; its
//! packets are dropped until the first one that starts a keyframe, and there the source
//! switches: [`StreamIngest::source_restarted`] keeps the output timeline running
//! forward, and the old session is DELETEd in the background. Failures (HTTP errors,
//! ICE/DTLS failure, no media) go through the stepped [`Backoff`].

use std::time::{Duration, Instant};

use streamgate_pipeline::Backoff;
use streamgate_pipeline::Hub;
use streamgate_pipeline::SourceState;
use streamgate_pipeline::StreamIngest;
use streamgate_rtp::codec::starts_keyframe;
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::{MediaKind, TrackInfo};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::config::{redact_url, IceServer, TrickleMode, WhepConfig};
use crate::peer::Received;
use crate::session::{Session, SessionError};
use crate::signal::{SignalError, WhepClient};
use crate::status::WhepStatus;

/// Most often a keyframe is requested from a session we wait to switch to.
const SWITCH_PLI_INTERVAL: Duration = Duration::from_secs(1);
/// Wait before retrying to open the next session while the active one still streams.
const ROTATION_RETRY: Duration = Duration::from_secs(1);
/// How long an ICE restart may take before the next session is opened instead.
const ICE_RESTART_GRACE: Duration = Duration::from_secs(2);

/// Why a chain of sessions stopped delivering.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("no media from the WHEP session for {0:?}")]
    NoMedia(Duration),
    #[error("opening a WHEP session panicked")]
    Panicked,
}

impl WhepError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            WhepError::Session(error) => error.retry_after(),
            _ => None,
        }
    }
}

/// A running WHEP source. Dropping it stops it too (sessions are still DELETEd).
pub struct WhepSource {
    status: watch::Receiver<WhepStatus>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl WhepSource {
    /// Starts pulling `config.endpoint` into `hub` (must be called within a tokio runtime).
    pub fn start(config: WhepConfig, hub: Hub) -> Result<WhepSource, SignalError> {
        let client = WhepClient::new(
            &config.endpoint,
            config.bearer_token.clone(),
            config.http_timeout,
        )?;
        let (status_tx, status) = watch::channel(WhepStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let runner = Runner {
            ice_servers: config.ice_servers.clone(),
            server_trickles: false,
            config,
            client,
            subscribers: hub.watch_subscribers(),
            hub,
            ingest: None,
            backoff: Backoff::new(),
            status: status_tx,
            stop: stop_rx,
            closing: JoinSet::new(),
        };
        Ok(WhepSource {
            status,
            stop,
            task: Some(tokio::spawn(runner.run())),
        })
    }

    pub fn status(&self) -> WhepStatus {
        self.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<WhepStatus> {
        self.status.clone()
    }

    /// Stops the source and waits until its sessions are DELETEd.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for WhepSource {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

enum Ended {
    Stopped,
    /// Nobody watched for the idle grace period (on-demand sources).
    Idle,
    Failed(WhepError),
}

type Opening = JoinHandle<Result<Session, SessionError>>;

struct Runner {
    config: WhepConfig,
    client: WhepClient,
    hub: Hub,
    ingest: Option<StreamIngest>,
    /// Configured servers plus those the WHEP server announced.
    ice_servers: Vec<IceServer>,
    /// The server's last session announced trickle ICE by PATCH (for [`TrickleMode::Auto`]).
    server_trickles: bool,
    backoff: Backoff,
    status: watch::Sender<WhepStatus>,
    /// The Hub's subscriber count, for on-demand start and idle stop.
    subscribers: watch::Receiver<usize>,
    stop: watch::Receiver<bool>,
    /// Sessions being DELETEd in the background.
    closing: JoinSet<()>,
}

impl Runner {
    async fn run(mut self) {
        loop {
            if !self.config.always_on && !self.until_watched().await {
                break;
            }
            self.set_state(SourceState::Connecting);
            let opening = self.spawn_open();
            let outcome = match self.until_stopped(opening).await {
                None => Ended::Stopped,
                Some(Ok(session)) => self.stream(session).await,
                Some(Err(error)) => Ended::Failed(error),
            };
            let error = match outcome {
                Ended::Stopped => break,
                Ended::Idle => {
                    self.backoff.on_session_closed();
                    tracing::info!(stream = %self.hub.name(), "nobody watching: WHEP session closed");
                    continue;
                }
                Ended::Failed(error) => error,
            };
            let delay = self.backoff.on_failure(error.retry_after());
            tracing::warn!(stream = %self.hub.name(), %error, retry_in = ?delay, "WHEP source failed");
            self.status.send_modify(|s| {
                s.last_error = Some(error.to_string());
                s.failures += 1;
                s.session = None;
                s.state = SourceState::Retrying { retry_in: delay };
            });
            let mut stop = self.stop.clone();
            if tokio::time::timeout(delay, stopped(&mut stop))
                .await
                .is_ok()
            {
                break;
            }
        }
        while self.closing.join_next().await.is_some() {}
        self.set_state(SourceState::Stopped);
        tracing::info!(stream = %self.hub.name(), "WHEP source stopped");
    }

    /// Waits (state `Idle`) until the Hub has a subscriber; false when stopped first.
    async fn until_watched(&mut self) -> bool {
        if *self.subscribers.borrow_and_update() == 0 {
            self.status.send_modify(|s| {
                s.state = SourceState::Idle;
                s.session = None;
            });
        }
        let mut stop = self.stop.clone();
        tokio::select! {
            watched = self.subscribers.wait_for(|n| *n > 0) => watched.is_ok(),
            _ = stopped(&mut stop) => false,
        }
    }

    /// Waits for a session being opened; on stop, lets it finish and DELETEs it.
    async fn until_stopped(&mut self, mut opening: Opening) -> Option<Result<Session, WhepError>> {
        let mut stop = self.stop.clone();
        tokio::select! {
            result = &mut opening => Some(self.opened(result)),
            _ = stopped(&mut stop) => {
                if let Ok(Ok(session)) = opening.await {
                    session.close(&self.client).await;
                }
                None
            }
        }
    }

    fn spawn_open(&self) -> Opening {
        let (client, mut config, ice_servers) = (
            self.client.clone(),
            self.config.clone(),
            self.ice_servers.clone(),
        );
        if config.trickle == TrickleMode::Auto && self.server_trickles {
            config.trickle = TrickleMode::On;
        }
        tokio::spawn(async move { Session::open(&client, &config, &ice_servers).await })
    }

    /// Books a finished opening: counts it and learns the ICE servers it announced.
    fn opened(
        &mut self,
        result: Result<Result<Session, SessionError>, tokio::task::JoinError>,
    ) -> Result<Session, WhepError> {
        let session = result.map_err(|_| WhepError::Panicked)??;
        self.server_trickles = session.accepts_trickle;
        for server in &session.ice_servers {
            if !self.ice_servers.contains(server) {
                self.ice_servers.push(server.clone());
            }
        }
        self.status.send_modify(|s| s.sessions_opened += 1);
        tracing::info!(stream = %self.hub.name(), session = %redact_url(&session.url), "WHEP session connected");
        Ok(session)
    }

    /// Streams from `first` and its successors until they fail or the source stops.
    async fn stream(&mut self, first: Session) -> Ended {
        self.adopt(&first);
        let mut active = Some(first);
        let mut next: Option<Session> = None;
        let mut opening: Option<Opening> = None;
        let mut rotate_at = self.rotation_deadline(active.as_ref());
        let mut last_media = Instant::now();
        let mut last_switch_pli: Option<Instant> = None;
        // The next session's latest sender report per track, handed to the ingest at
        // the switch so it can align the new session's tracks as they re-anchor.
        let mut next_reports: Vec<Received> = Vec::new();
        let mut stop = self.stop.clone();
        let mut subscribers = self.subscribers.clone();
        let mut idle_since = (*subscribers.borrow_and_update() == 0).then(Instant::now);
        let hub = self.hub.clone();
        let outcome = loop {
            let idle_at = idle_since
                .filter(|_| !self.config.always_on)
                .map(|t| t + self.config.idle_grace);
            let rotation_due = rotate_at.filter(|_| opening.is_none() && next.is_none());
            let no_media_at = last_media + self.config.no_media_timeout;
            tokio::select! {
                _ = stopped(&mut stop) => break Ended::Stopped,
                _ = subscribers.changed() => {
                    let watched = *subscribers.borrow_and_update() > 0;
                    idle_since = if watched { None } else { idle_since.or(Some(Instant::now())) };
                }
                _ = sleep_until(idle_at) => break Ended::Idle,
                event = next_event(active.as_mut()) => match event {
                    SessionEvent::Media(received) => {
                        let now = Instant::now();
                        if matches!(received, Received::Rtp { .. }) {
                            last_media = now;
                            self.backoff.on_media(now);
                        }
                        if let Some(session) = active.as_ref() {
                            let tracks = session.tracks.clone();
                            self.push(&tracks, received, now);
                        }
                    }
                    SessionEvent::State(state) => {
                        if is_over(state) {
                            tracing::info!(stream = %self.hub.name(), %state, "WHEP session ended");
                            if let Some(old) = active.take() {
                                self.close_in_background(old);
                            }
                        }
                        // A server that takes PATCHes gets an ICE restart first (the session's
                        // ICE task); the next session opens only if that has not helped soon.
                        let restarting = !is_over(state)
                            && active.as_ref().is_some_and(|s| s.accepts_trickle);
                        if state == RTCPeerConnectionState::Connected {
                            rotate_at = self.rotation_deadline(active.as_ref());
                        } else if restarting {
                            let grace = Instant::now() + ICE_RESTART_GRACE;
                            rotate_at = Some(rotate_at.map_or(grace, |at| at.min(grace)));
                        } else if opening.is_none() && next.is_none() {
                            opening = Some(self.spawn_open());
                        }
                    }
                },
                event = next_event(next.as_mut()) => {
                    let now = Instant::now();
                    let received = match event {
                        SessionEvent::Media(received) => received,
                        SessionEvent::State(state) => {
                            if is_over(state) {
                                tracing::info!(stream = %self.hub.name(), %state, "next WHEP session ended before the switch");
                                if let Some(failed) = next.take() {
                                    self.close_in_background(failed);
                                }
                                rotate_at = Some(now + ROTATION_RETRY);
                            }
                            continue;
                        }
                    };
                    let Some(candidate) = next.as_ref() else { continue };
                    if matches!(received, Received::SenderReport { .. }) {
                        next_reports.retain(|r| r.kind() != received.kind());
                        next_reports.push(received);
                        continue;
                    }
                    if !is_switch_point(candidate, &received) {
                        if last_switch_pli.is_none_or(|at| now.duration_since(at) >= SWITCH_PLI_INTERVAL)
                            && candidate.peer.request_keyframe()
                        {
                            last_switch_pli = Some(now);
                        }
                        continue;
                    }
                    let Some(new) = next.take() else { continue };
                    if let Some(old) = active.replace(new) {
                        self.close_in_background(old);
                    }
                    let Some(session) = active.as_ref() else { continue };
                    self.adopt(session);
                    let tracks = session.tracks.clone();
                    rotate_at = self.rotation_deadline(Some(session));
                    let url = redact_url(&session.url);
                    tracing::info!(stream = %self.hub.name(), session = %url, "switched to the next WHEP session");
                    self.status.send_modify(|s| {
                        s.rotations += 1;
                        s.session = Some(url);
                        s.state = SourceState::Playing;
                    });
                    last_media = now;
                    last_switch_pli = None;
                    for report in std::mem::take(&mut next_reports) {
                        self.push(&tracks, report, now);
                    }
                    self.push(&tracks, received, now);
                }
                result = join(opening.as_mut()) => {
                    opening = None;
                    match self.opened(result) {
                        Ok(session) => {
                            next_reports.clear();
                            next = Some(session);
                        }
                        Err(error) if active.is_some() => {
                            tracing::warn!(stream = %self.hub.name(), %error, "opening the next WHEP session failed");
                            self.status.send_modify(|s| {
                                s.last_error = Some(error.to_string());
                                s.failures += 1;
                            });
                            rotate_at = Some(Instant::now() + ROTATION_RETRY);
                        }
                        Err(error) => break Ended::Failed(error),
                    }
                }
                _ = sleep_until(rotation_due) => {
                    tracing::debug!(stream = %self.hub.name(), "opening the next WHEP session (rotation)");
                    self.set_state(SourceState::Rotating);
                    opening = Some(self.spawn_open());
                }
                _ = hub.keyframe_requested() => {
                    if let Some(session) = active.as_ref() {
                        session.peer.request_keyframe();
                    }
                }
                _ = tokio::time::sleep_until(no_media_at.into()) => {
                    break Ended::Failed(WhepError::NoMedia(self.config.no_media_timeout));
                }
            }
        };
        for session in [active, next].into_iter().flatten() {
            self.close_in_background(session);
        }
        if let Some(opening) = opening {
            let client = self.client.clone();
            self.closing.spawn(async move {
                if let Ok(Ok(session)) = opening.await {
                    session.close(&client).await;
                }
            });
        }
        outcome
    }

    /// When the next session must be opened for `session`, if sessions are capped.
    fn rotation_deadline(&self, session: Option<&Session>) -> Option<Instant> {
        Some(session?.opened + self.config.rotate_after()?)
    }

    /// Makes the ingest match `session`'s tracks: the same layout continues the
    /// timeline (a source restart), a different one starts over with new tracks.
    fn adopt(&mut self, session: &Session) {
        match &mut self.ingest {
            Some(ingest) if same_layout(&ingest.hub().tracks(), &session.tracks) => {
                ingest.source_restarted()
            }
            _ => self.ingest = Some(StreamIngest::new(self.hub.clone(), session.tracks.clone())),
        }
        let url = redact_url(&session.url);
        self.status.send_modify(|s| {
            s.session = Some(url);
            s.state = SourceState::Playing;
        });
    }

    fn push(&mut self, tracks: &[TrackInfo], received: Received, now: Instant) {
        let Some(track) = tracks.iter().find(|t| t.kind() == received.kind()) else {
            return;
        };
        let Some(ingest) = self.ingest.as_mut() else {
            return;
        };
        match received {
            Received::Rtp { packet, .. } => match RtpPacket::parse(packet) {
                // The ingest counts and logs (rate-limited) what it rejects.
                Ok(packet) => {
                    let _ = ingest.push_rtp(track.id, packet, now);
                }
                Err(error) => {
                    tracing::debug!(stream = %self.hub.name(), %error, "unparsable RTP from webrtc-rs")
                }
            },
            Received::SenderReport { report, .. } => {
                ingest.on_sender_report(track.id, &report, now)
            }
        }
    }

    fn close_in_background(&mut self, session: Session) {
        let client = self.client.clone();
        self.closing
            .spawn(async move { session.close(&client).await });
    }

    fn set_state(&self, state: SourceState) {
        self.status.send_modify(|s| s.state = state);
    }
}

/// The new session's packet where the switch happens: a keyframe start when the
/// session has video, its first packet otherwise.
fn is_switch_point(session: &Session, received: &Received) -> bool {
    let Some(video) = session.track_of(MediaKind::Video) else {
        return true;
    };
    match received {
        Received::Rtp {
            kind: MediaKind::Video,
            packet,
        } => RtpPacket::parse(packet.clone())
            .is_ok_and(|p| starts_keyframe(video.codec, p.payload_slice())),
        _ => false,
    }
}

fn same_layout(current: &[TrackInfo], next: &[TrackInfo]) -> bool {
    current.len() == next.len()
        && current.iter().zip(next).all(|(a, b)| {
            (a.id, a.codec, a.clock_rate, a.channels) == (b.id, b.codec, b.clock_rate, b.channels)
        })
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

enum SessionEvent {
    Media(Received),
    State(RTCPeerConnectionState),
}

fn is_over(state: RTCPeerConnectionState) -> bool {
    matches!(
        state,
        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
    )
}

/// A session's next packet or connection state change; pending forever without a session.
async fn next_event(session: Option<&mut Session>) -> SessionEvent {
    let Some(session) = session else {
        return std::future::pending().await;
    };
    let changed = tokio::select! {
        Some(received) = session.rtp.recv() => return SessionEvent::Media(received),
        changed = session.peer.state.changed() => changed,
    };
    SessionEvent::State(match changed {
        Ok(()) => *session.peer.state.borrow_and_update(),
        Err(_) => RTCPeerConnectionState::Closed,
    })
}

async fn join(
    opening: Option<&mut Opening>,
) -> Result<Result<Session, SessionError>, tokio::task::JoinError> {
    match opening {
        Some(opening) => opening.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
