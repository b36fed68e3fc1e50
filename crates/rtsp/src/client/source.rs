//! The source task: a thin loop around the [`Supervisor`] (on demand, idle grace,
//! backoff, stall) that opens camera sessions when it asks, feeds their packets and
//! sender reports into the stream's ingest, and reports what happens back to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use streamgate_pipeline::supervisor::{Output, SessionId, Supervisor, SupervisorConfig, Why};
use streamgate_pipeline::{Hub, RateLimitedLog, StreamIngest};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::session::{CameraSession, SessionEvent, SessionTransport};
use super::{CameraUrl, SourceConfig, SourceError, SourceState, SourceStatus, TransportMode};

/// A running RTSP camera source feeding one [`Hub`]. Dropping it stops the task.
pub struct RtspSource {
    status: Arc<watch::Sender<SourceStatus>>,
    task: JoinHandle<()>,
}

impl RtspSource {
    /// Starts the source task. Fails only on a URL that can never work.
    pub fn spawn(hub: Hub, config: SourceConfig) -> Result<RtspSource, SourceError> {
        let url = CameraUrl::parse(&config.url)?;
        let status = Arc::new(watch::Sender::new(SourceStatus::new(url.to_string())));
        let supervisor = Supervisor::new(
            SupervisorConfig {
                always_on: config.always_on,
                idle_grace: config.idle_grace,
                stall_timeout: config.stall_timeout,
                rotation: None,
            },
            Instant::now(),
        );
        let runner = Runner {
            subscribers: hub.watch_subscribers(),
            hub,
            config,
            url,
            status: status.clone(),
            supervisor,
            ingest: None,
            udp_failed: false,
            opening: None,
            playing: None,
            error: None,
        };
        let task = tokio::spawn(runner.run());
        Ok(RtspSource { status, task })
    }

    pub fn status(&self) -> SourceStatus {
        self.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<SourceStatus> {
        self.status.subscribe()
    }

    /// Stops the task and closes the camera session (retina sends TEARDOWN in the background).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.status.send_modify(|s| {
            s.state = SourceState::Stopped;
        });
    }
}

impl Drop for RtspSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<CameraSession, SourceError>> + Send>>;

/// A session the supervisor asked for, being set up.
struct Opening {
    id: SessionId,
    transport: SessionTransport,
    connect: Connecting,
}

/// A session in PLAY.
struct Playing {
    id: SessionId,
    transport: SessionTransport,
    session: CameraSession,
    received_packets: bool,
    bad_packets: RateLimitedLog,
}

/// What woke the task.
enum Event {
    Subscribers(Option<usize>),
    Opened(Result<CameraSession, SourceError>),
    Session(Result<Option<SessionEvent>, SourceError>),
    Tick,
}

struct Runner {
    hub: Hub,
    subscribers: watch::Receiver<usize>,
    config: SourceConfig,
    url: CameraUrl,
    status: Arc<watch::Sender<SourceStatus>>,
    supervisor: Supervisor,
    /// Kept across sessions so timestamps run on through reconnects.
    ingest: Option<StreamIngest>,
    /// `auto` transport: UDP did not work with this camera, use TCP.
    udp_failed: bool,
    /// RTSP has one session at a time: being opened, or playing.
    opening: Option<Opening>,
    playing: Option<Playing>,
    /// A failure not yet shown: it goes out with the state it leads to, in one
    /// status update, so no observer sees the error beside a stale state.
    error: Option<String>,
}

impl Runner {
    async fn run(mut self) {
        let count = *self.subscribers.borrow_and_update();
        self.supervisor.subscribers(Instant::now(), count);
        loop {
            let wake = self.carry_out();
            let event = tokio::select! {
                changed = self.subscribers.changed() => {
                    Event::Subscribers(changed.ok().map(|()| *self.subscribers.borrow_and_update()))
                }
                result = connect(self.opening.as_mut()) => Event::Opened(result),
                event = next_event(self.playing.as_mut(), &self.url) => Event::Session(event),
                () = sleep_until(wake) => Event::Tick,
            };
            let now = Instant::now();
            match event {
                // The Hub is gone: nothing to feed.
                Event::Subscribers(None) => return,
                Event::Subscribers(Some(count)) => self.supervisor.subscribers(now, count),
                Event::Opened(result) => self.opened(now, result),
                Event::Session(event) => self.session_event(now, event),
                Event::Tick => self.supervisor.tick(now),
            }
        }
    }

    /// Does what the supervisor asks; returns when to wake it next.
    fn carry_out(&mut self) -> Option<Instant> {
        loop {
            match self.supervisor.poll_output() {
                // RTSP sessions have no cap and never end but by failing, so the
                // supervisor never asks for a `next` one.
                Output::Connect { id, .. } => self.connect(id),
                Output::Disconnect { id, why } => self.disconnect(id, why),
                Output::Status(state) => self.show(state),
                Output::Stalled { id } => {
                    let Some(playing) = self.playing.as_ref().filter(|p| p.id == id) else {
                        continue;
                    };
                    let (transport, received) = (playing.transport, playing.received_packets);
                    let error = SourceError::Stalled(self.config.stall_timeout);
                    self.failed(Instant::now(), id, transport, received, error);
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

    fn connect(&mut self, id: SessionId) {
        let transport = match self.config.transport {
            // RTSPS interleaves on its TLS connection.
            _ if self.url.is_tls() => SessionTransport::Tcp,
            TransportMode::Tcp => SessionTransport::Tcp,
            TransportMode::Udp => SessionTransport::Udp,
            TransportMode::Auto if self.udp_failed => SessionTransport::Tcp,
            TransportMode::Auto => SessionTransport::Udp,
        };
        self.status.send_modify(|s| {
            s.transport = Some(match transport {
                SessionTransport::Tcp => TransportMode::Tcp,
                SessionTransport::Udp => TransportMode::Udp,
            });
        });
        tracing::debug!(stream = %self.hub.name(), url = %self.url, ?transport, "connecting to camera");
        let (url, timeout) = (self.url.clone(), self.config.connect_timeout);
        let tls = self.config.tls.clone();
        self.opening = Some(Opening {
            id,
            transport,
            connect: Box::pin(async move {
                CameraSession::connect(&url, transport, &tls, timeout).await
            }),
        });
    }

    fn disconnect(&mut self, id: SessionId, why: Why) {
        // Dropping a retina session sends TEARDOWN in the background.
        self.opening.take_if(|o| o.id == id);
        if self.playing.take_if(|p| p.id == id).is_some() && why == Why::Idle {
            tracing::info!(stream = %self.hub.name(), url = %self.url, "no consumers: disconnected from camera");
        }
    }

    fn show(&mut self, state: SourceState) {
        let error = self.error.take();
        let failures = self.supervisor.failures();
        self.status.send_modify(|s| {
            s.state = state;
            s.consecutive_failures = failures;
            if let Some(message) = error {
                s.last_error = Some(message);
                s.last_error_at = Some(SystemTime::now());
            }
        });
    }

    fn opened(&mut self, now: Instant, result: Result<CameraSession, SourceError>) {
        let Some(Opening { id, transport, .. }) = self.opening.take() else {
            return;
        };
        let session = match result {
            Ok(session) => session,
            Err(error) => return self.failed(now, id, transport, false, error),
        };
        let ingest = StreamIngest::for_session(self.ingest.take(), &self.hub, session.tracks());
        self.ingest = Some(ingest);
        tracing::info!(stream = %self.hub.name(), url = %self.url, tracks = session.tracks().len(), "camera session playing");
        self.status.send_modify(|s| s.sessions += 1);
        self.playing = Some(Playing {
            id,
            transport,
            session,
            received_packets: false,
            bad_packets: RateLimitedLog::default(),
        });
        self.supervisor.opened(now, id);
    }

    fn session_event(&mut self, now: Instant, event: Result<Option<SessionEvent>, SourceError>) {
        let (Some(playing), Some(ingest)) = (self.playing.as_mut(), self.ingest.as_mut()) else {
            return;
        };
        let error = match event {
            Ok(Some(SessionEvent::Rtp(track, packet))) => {
                playing.received_packets = true;
                self.supervisor.media(now, playing.id);
                // Bad packets are counted and logged (rate-limited) by the ingest itself.
                let _ = ingest.push_rtp(track, packet, now);
                return;
            }
            Ok(Some(SessionEvent::SenderReport(track, report))) => {
                return ingest.on_sender_report(track, &report, now);
            }
            Ok(Some(SessionEvent::BadPacket(track, reason))) => {
                if let Some(suppressed) = playing.bad_packets.occurred(now) {
                    let stream = self.hub.name();
                    tracing::warn!(
                        stream,
                        track = track.get(),
                        reason,
                        suppressed,
                        "unreadable packet from camera"
                    );
                }
                return;
            }
            Ok(None) => SourceError::Closed,
            Err(error) => error,
        };
        let (id, transport, received) = (playing.id, playing.transport, playing.received_packets);
        self.failed(now, id, transport, received, error);
    }

    /// Reports a failed session: `auto` gives up on UDP at once when it brought no
    /// packet; anything else backs off.
    fn failed(
        &mut self,
        now: Instant,
        id: SessionId,
        transport: SessionTransport,
        received_packets: bool,
        error: SourceError,
    ) {
        self.error = Some(error.to_string());
        if self.config.transport == TransportMode::Auto
            && transport == SessionTransport::Udp
            && !received_packets
        {
            tracing::warn!(stream = %self.hub.name(), url = %self.url, %error, "UDP failed: using TCP");
            self.udp_failed = true;
            return self.supervisor.retry_now(now, id);
        }
        self.supervisor.failed(now, id, None);
        let (failures, retry_in) = (
            self.supervisor.failures(),
            self.supervisor.state().retry_in(),
        );
        tracing::warn!(stream = %self.hub.name(), url = %self.url, %error, failures, ?retry_in, "camera session failed");
    }
}

async fn connect(opening: Option<&mut Opening>) -> Result<CameraSession, SourceError> {
    match opening {
        Some(opening) => opening.connect.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn next_event(
    playing: Option<&mut Playing>,
    url: &CameraUrl,
) -> Result<Option<SessionEvent>, SourceError> {
    match playing {
        Some(playing) => playing.session.next(|text| url.redact(text)).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
