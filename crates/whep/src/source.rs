//! The WHEP source: keeps one stream flowing into the Hub from a chain of WHEP sessions.
//!
//! When to open and close sessions (on demand, idle grace, backoff, no-media stall,
//! rotation before `max_session`) is the pipeline's [`Supervisor`]; this task carries
//! it out with WHEP and WebRTC and adds what is WHEP's own. Rotation is
//! make-before-break: the next session's packets are dropped (and keyframes
//! requested) until the first one that starts a keyframe, and there the source
//! switches: [`StreamIngest::for_session`] keeps the output timeline running forward,
//! and the old session is DELETEd in the background. A session whose connection
//! drops is given an ICE restart first when its server takes PATCHes
//! ([`ICE_RESTART_GRACE`]), and replaced at once otherwise.

use std::time::{Duration, Instant};

use streamgate_pipeline::supervisor::{Output, SessionId, Supervisor, SupervisorConfig, Why};
use streamgate_pipeline::{Hub, SourceState, StreamIngest};
use streamgate_rtp::codec::starts_keyframe;
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::{MediaKind, TrackInfo};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::config::{redact_url, IceServer, TrickleMode, WhepConfig};
use crate::peer::Received;
use crate::session::{Session, SessionError};
use crate::signal::{SignalError, WhepClient};
use crate::status::WhepStatus;

/// Most often a keyframe is requested from a session we wait to switch to.
const SWITCH_PLI_INTERVAL: Duration = Duration::from_secs(1);
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
    #[error("the WHEP session ended before it could take over the stream")]
    EndedBeforeSwitch,
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
    /// The latest [`WhepSource::hold_until`].
    hold: watch::Sender<Option<Instant>>,
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
        let (hold, hold_rx) = watch::channel(None);
        let supervisor = Supervisor::new(
            SupervisorConfig {
                always_on: config.always_on,
                idle_grace: config.idle_grace,
                stall_timeout: config.no_media_timeout,
                rotation: config.rotation(),
            },
            Instant::now(),
        );
        let runner = Runner {
            ice_servers: config.ice_servers.clone(),
            server_trickles: false,
            config,
            client,
            subscribers: hub.watch_subscribers(),
            hub,
            ingest: None,
            supervisor,
            status: status_tx,
            stop: stop_rx,
            hold: hold_rx,
            closing: JoinSet::new(),
            opening: None,
            active: None,
            next: None,
            error: None,
        };
        Ok(WhepSource {
            status,
            stop,
            hold,
            task: Some(tokio::spawn(runner.run())),
        })
    }

    pub fn status(&self) -> WhepStatus {
        self.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<WhepStatus> {
        self.status.clone()
    }

    /// Keeps the source streaming until `until` even with nobody reading (the
    /// supervisor's [`hold_until`](Supervisor::hold_until)): it connects now if
    /// idle, and a later `until` extends a hold that runs.
    pub fn hold_until(&self, until: Instant) {
        self.hold
            .send_modify(|hold| *hold = Some(hold.map_or(until, |h| h.max(until))));
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

/// A session being opened; `next`: it is to take over at its switch point.
struct Opening {
    id: SessionId,
    next: bool,
    task: JoinHandle<Result<Session, SessionError>>,
}

/// An open session.
struct Live {
    id: SessionId,
    session: Session,
}

/// An open session waiting for its switch point.
struct Next {
    id: SessionId,
    session: Session,
    /// Its latest sender report per track, handed to the ingest at the switch so it
    /// can align the new session's tracks as they re-anchor.
    reports: Vec<Received>,
    last_pli: Option<Instant>,
}

/// What woke the task.
enum Event {
    Stop,
    Subscribers(usize),
    Hold(Instant),
    Active(SessionEvent),
    Next(SessionEvent),
    Opened(Result<Result<Session, SessionError>, JoinError>),
    KeyframeRequested,
    Tick,
}

struct Runner {
    config: WhepConfig,
    client: WhepClient,
    hub: Hub,
    ingest: Option<StreamIngest>,
    /// Configured servers plus those the WHEP server announced.
    ice_servers: Vec<IceServer>,
    /// The server's last session announced trickle ICE by PATCH (for [`TrickleMode::Auto`]).
    server_trickles: bool,
    supervisor: Supervisor,
    status: watch::Sender<WhepStatus>,
    /// The Hub's subscriber count, for on-demand start and idle stop.
    subscribers: watch::Receiver<usize>,
    stop: watch::Receiver<bool>,
    /// Holds asked for by [`WhepSource::hold_until`].
    hold: watch::Receiver<Option<Instant>>,
    /// Sessions being DELETEd in the background.
    closing: JoinSet<()>,
    opening: Option<Opening>,
    /// The session media comes from.
    active: Option<Live>,
    next: Option<Next>,
    /// A failure not yet shown: it goes out with the state it leads to, in one
    /// status update.
    error: Option<String>,
}

impl Runner {
    async fn run(mut self) {
        let count = *self.subscribers.borrow_and_update();
        self.supervisor.subscribers(Instant::now(), count);
        let hub = self.hub.clone();
        let mut stop = self.stop.clone();
        loop {
            let wake = self.carry_out();
            if self.supervisor.state() == SourceState::Stopped {
                break;
            }
            let event = tokio::select! {
                () = stopped(&mut stop) => Event::Stop,
                changed = self.subscribers.changed() => match changed {
                    Ok(()) => Event::Subscribers(*self.subscribers.borrow_and_update()),
                    Err(_) => Event::Stop,
                },
                Ok(()) = self.hold.changed() => match *self.hold.borrow_and_update() {
                    Some(until) => Event::Hold(until),
                    None => Event::Tick,
                },
                event = next_event(self.active.as_mut().map(|a| &mut a.session)) => Event::Active(event),
                event = next_event(self.next.as_mut().map(|n| &mut n.session)) => Event::Next(event),
                result = join(self.opening.as_mut().map(|o| &mut o.task)) => Event::Opened(result),
                () = hub.keyframe_requested() => Event::KeyframeRequested,
                () = sleep_until(wake) => Event::Tick,
            };
            let now = Instant::now();
            match event {
                Event::Stop => self.supervisor.stop(now),
                Event::Subscribers(count) => self.supervisor.subscribers(now, count),
                Event::Hold(until) => {
                    tracing::info!(stream = %self.hub.name(), hold = ?until.saturating_duration_since(now), "held: streaming with or without readers");
                    self.supervisor.hold_until(now, until);
                }
                Event::Active(event) => self.active_session_event(now, event),
                Event::Next(event) => self.next_session_event(now, event),
                Event::Opened(result) => self.opened(now, result),
                Event::KeyframeRequested => {
                    if let Some(active) = &self.active {
                        active.session.peer.request_keyframe();
                    }
                }
                Event::Tick => self.supervisor.tick(now),
            }
        }
        while self.closing.join_next().await.is_some() {}
        tracing::info!(stream = %self.hub.name(), "WHEP source stopped");
    }

    /// Does what the supervisor asks; returns when to wake it next.
    fn carry_out(&mut self) -> Option<Instant> {
        loop {
            match self.supervisor.poll_output() {
                Output::Connect { id, next } => {
                    if next {
                        tracing::debug!(stream = %self.hub.name(), "opening the next WHEP session");
                    }
                    let task = self.spawn_open();
                    self.opening = Some(Opening { id, next, task });
                }
                Output::Disconnect { id, why } => self.disconnect(id, why),
                Output::Status(state) => self.show(state),
                Output::Stalled { id } => {
                    let error = WhepError::NoMedia(self.config.no_media_timeout);
                    self.failed(Instant::now(), id, error);
                }
                Output::WaitUntil(at) => {
                    if self.error.is_some() {
                        self.show(self.supervisor.state());
                    }
                    return at;
                }
            }
        }
    }

    fn disconnect(&mut self, id: SessionId, why: Why) {
        if why == Why::Idle {
            tracing::info!(stream = %self.hub.name(), "nobody watching: WHEP session closed");
        }
        if let Some(active) = self.active.take_if(|a| a.id == id) {
            self.close_in_background(active.session);
        } else if let Some(next) = self.next.take_if(|n| n.id == id) {
            self.close_in_background(next.session);
        } else if let Some(opening) = self.opening.take_if(|o| o.id == id) {
            let client = self.client.clone();
            self.closing.spawn(async move {
                if let Ok(Ok(session)) = opening.task.await {
                    session.close(&client).await;
                }
            });
        }
    }

    /// Shows the supervisor's state, with the failure that led to it if any.
    fn show(&mut self, state: SourceState) {
        let error = self.error.take();
        self.status.send_modify(|s| {
            s.state = state;
            if matches!(
                state,
                SourceState::Idle | SourceState::Retrying { .. } | SourceState::Stopped
            ) {
                s.session = None;
            }
            if let Some(error) = error {
                s.last_error = Some(error);
                s.failures += 1;
            }
        });
    }

    /// Reports a failed session to the supervisor (and, with its state, the status).
    fn failed(&mut self, now: Instant, id: SessionId, error: WhepError) {
        self.error = Some(error.to_string());
        self.supervisor.failed(now, id, error.retry_after());
        match self.supervisor.state().retry_in() {
            Some(retry_in) => {
                tracing::warn!(stream = %self.hub.name(), %error, ?retry_in, "WHEP source failed")
            }
            None => tracing::warn!(stream = %self.hub.name(), %error, "WHEP session failed"),
        }
    }

    fn spawn_open(&self) -> JoinHandle<Result<Session, SessionError>> {
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

    /// Books a finished opening: counts it, learns the ICE servers it announced, and
    /// streams from it (or, if it is a next session, waits for its switch point).
    fn opened(&mut self, now: Instant, result: Result<Result<Session, SessionError>, JoinError>) {
        let Some(Opening { id, next, .. }) = self.opening.take() else {
            return;
        };
        let session = match result {
            Ok(Ok(session)) => session,
            Ok(Err(error)) => return self.failed(now, id, error.into()),
            Err(_) => return self.failed(now, id, WhepError::Panicked),
        };
        self.server_trickles = session.accepts_trickle;
        for server in &session.ice_servers {
            if !self.ice_servers.contains(server) {
                self.ice_servers.push(server.clone());
            }
        }
        self.status.send_modify(|s| s.sessions_opened += 1);
        tracing::info!(stream = %self.hub.name(), session = %redact_url(&session.url), "WHEP session connected");
        if next {
            self.next = Some(Next {
                id,
                session,
                reports: Vec::new(),
                last_pli: None,
            });
        } else {
            self.adopt(&session);
            self.active = Some(Live { id, session });
        }
        self.supervisor.opened(now, id);
    }

    fn active_session_event(&mut self, now: Instant, event: SessionEvent) {
        let Some(Live { id, session }) = &self.active else {
            return;
        };
        let id = *id;
        match event {
            SessionEvent::Media(received) => {
                if matches!(received, Received::Rtp { .. }) {
                    self.supervisor.media(now, id);
                }
                let tracks = session.tracks.clone();
                self.push(&tracks, received, now);
            }
            SessionEvent::State(state) if is_over(state) => {
                tracing::info!(stream = %self.hub.name(), %state, "WHEP session ended");
                self.supervisor.ended(now, id);
            }
            SessionEvent::State(RTCPeerConnectionState::Connected) => {
                self.supervisor.recovered(now, id)
            }
            // A server that takes PATCHes gets an ICE restart first (the session's ICE
            // task); the next session opens only if that has not helped soon.
            SessionEvent::State(_) if session.accepts_trickle => {
                self.supervisor.unwell(now, id, ICE_RESTART_GRACE)
            }
            SessionEvent::State(_) => self.supervisor.unwell(now, id, Duration::ZERO),
        }
    }

    /// Media from the next session is held back until its switch point.
    fn next_session_event(&mut self, now: Instant, event: SessionEvent) {
        let Some(next) = self.next.as_mut() else {
            return;
        };
        let id = next.id;
        let received = match event {
            SessionEvent::Media(received) => received,
            SessionEvent::State(state) if is_over(state) => {
                tracing::info!(stream = %self.hub.name(), %state, "next WHEP session ended before the switch");
                // With nothing streaming, it was the stream's last hope: a failure.
                return match self.active {
                    Some(_) => self.supervisor.ended(now, id),
                    None => self.failed(now, id, WhepError::EndedBeforeSwitch),
                };
            }
            SessionEvent::State(_) => return,
        };
        if matches!(received, Received::SenderReport { .. }) {
            next.reports.retain(|r| r.kind() != received.kind());
            next.reports.push(received);
            return;
        }
        if !is_switch_point(&next.session, &received) {
            if next
                .last_pli
                .is_none_or(|at| now.duration_since(at) >= SWITCH_PLI_INTERVAL)
                && next.session.peer.request_keyframe()
            {
                next.last_pli = Some(now);
            }
            return;
        }
        // The supervisor closes the session it replaces (and shows Playing).
        self.supervisor.switched(now, id);
        self.carry_out();
        let Some(Next {
            id,
            session,
            reports,
            ..
        }) = self.next.take()
        else {
            return;
        };
        self.adopt(&session);
        tracing::info!(stream = %self.hub.name(), session = %redact_url(&session.url), "switched to the next WHEP session");
        self.status.send_modify(|s| s.rotations += 1);
        let tracks = session.tracks.clone();
        self.active = Some(Live { id, session });
        for report in reports {
            self.push(&tracks, report, now);
        }
        self.push(&tracks, received, now);
    }

    /// Makes the ingest match `session`'s tracks and shows it as the source's session.
    fn adopt(&mut self, session: &Session) {
        self.ingest = Some(StreamIngest::for_session(
            self.ingest.take(),
            &self.hub,
            &session.tracks,
        ));
        let url = redact_url(&session.url);
        self.status.send_modify(|s| s.session = Some(url));
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
    opening: Option<&mut JoinHandle<Result<Session, SessionError>>>,
) -> Result<Result<Session, SessionError>, JoinError> {
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
