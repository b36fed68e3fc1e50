//! The source task: connects when consumers arrive (or always), feeds the camera's
//! packets and sender reports into the stream's ingest, reconnects with backoff, disconnects when idle.

use std::sync::Arc;
use std::time::SystemTime;

use streamgate_pipeline::{Backoff, Hub, RateLimitedLog, StreamIngest};
use streamgate_rtp::TrackInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

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
        let runner = Runner {
            subscribers: hub.watch_subscribers(),
            hub,
            config,
            url,
            status: status.clone(),
            backoff: Backoff::default(),
            ingest: None,
            udp_failed: false,
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

/// Why a playing session ended.
enum SessionEnd {
    /// No consumer for the idle grace period.
    Idle,
    Failed {
        error: SourceError,
        received_packets: bool,
    },
}

struct Runner {
    hub: Hub,
    subscribers: watch::Receiver<usize>,
    config: SourceConfig,
    url: CameraUrl,
    status: Arc<watch::Sender<SourceStatus>>,
    backoff: Backoff,
    /// Kept across sessions so timestamps run on through reconnects.
    ingest: Option<StreamIngest>,
    /// `auto` transport: UDP did not work with this camera, use TCP.
    udp_failed: bool,
}

impl Runner {
    async fn run(mut self) {
        loop {
            if !self.config.always_on {
                self.status.send_modify(|s| s.state = SourceState::Idle);
                if self.subscribers.wait_for(|&n| n > 0).await.is_err() {
                    return;
                }
            }
            let transport = self.transport();
            self.status.send_modify(|s| {
                s.state = SourceState::Connecting;
                s.transport = Some(match transport {
                    SessionTransport::Tcp => TransportMode::Tcp,
                    SessionTransport::Udp => TransportMode::Udp,
                });
            });
            tracing::debug!(stream = %self.hub.name(), url = %self.url, ?transport, "connecting to camera");
            let end =
                match CameraSession::connect(&self.url, transport, self.config.connect_timeout)
                    .await
                {
                    Ok(session) => self.play(session).await,
                    Err(error) => SessionEnd::Failed {
                        error,
                        received_packets: false,
                    },
                };
            match end {
                SessionEnd::Idle => {
                    self.backoff.on_session_closed();
                    tracing::info!(stream = %self.hub.name(), url = %self.url, "no consumers: disconnected from camera");
                }
                SessionEnd::Failed {
                    error,
                    received_packets,
                } => {
                    if self.config.transport == TransportMode::Auto
                        && transport == SessionTransport::Udp
                        && !received_packets
                    {
                        tracing::warn!(stream = %self.hub.name(), url = %self.url, %error, "UDP failed: using TCP");
                        self.record_error(&error, |s| s.state = SourceState::Connecting);
                        self.udp_failed = true;
                        continue;
                    }
                    let delay = self.backoff.on_failure(None);
                    let failures = self.backoff.failures();
                    tracing::warn!(stream = %self.hub.name(), url = %self.url, %error, failures, retry_in = ?delay, "camera session failed");
                    self.record_error(&error, |s| {
                        s.state = SourceState::Retrying { retry_in: delay };
                        s.consecutive_failures = failures;
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn transport(&self) -> SessionTransport {
        match self.config.transport {
            TransportMode::Tcp => SessionTransport::Tcp,
            TransportMode::Udp => SessionTransport::Udp,
            TransportMode::Auto if self.udp_failed => SessionTransport::Tcp,
            TransportMode::Auto => SessionTransport::Udp,
        }
    }

    /// Records a failed session together with the state it leaves the source in,
    /// in one status update, so no observer sees the error beside a stale state.
    fn record_error(&self, error: &SourceError, next: impl FnOnce(&mut SourceStatus)) {
        let message = error.to_string();
        self.status.send_modify(|s| {
            s.last_error = Some(message);
            s.last_error_at = Some(SystemTime::now());
            next(s);
        });
    }

    /// Feeds the session's packets to the ingest until it fails or goes idle.
    async fn play(&mut self, mut session: CameraSession) -> SessionEnd {
        let ingest = match self.ingest.take() {
            Some(mut ingest) if same_layout(&ingest.hub().tracks(), session.tracks()) => {
                ingest.source_restarted();
                ingest
            }
            _ => StreamIngest::new(self.hub.clone(), session.tracks().to_vec()),
        };
        let ingest = self.ingest.insert(ingest);
        tracing::info!(stream = %self.hub.name(), url = %self.url, tracks = session.tracks().len(), "camera session playing");
        self.status.send_modify(|s| {
            s.state = SourceState::Playing;
            s.sessions += 1;
        });

        let mut first_packet: Option<Instant> = None;
        let mut last_packet = Instant::now();
        let mut idle_since =
            (!self.config.always_on && *self.subscribers.borrow() == 0).then(Instant::now);
        let mut bad_packets = RateLimitedLog::default();
        let (stream, url) = (self.hub.name().to_owned(), &self.url);
        loop {
            let idle_deadline = idle_since.map(|t| t + self.config.idle_grace);
            tokio::select! {
                changed = self.subscribers.changed(), if !self.config.always_on => {
                    if changed.is_err() {
                        return SessionEnd::Idle;
                    }
                    let consumers = *self.subscribers.borrow_and_update();
                    idle_since = if consumers == 0 { idle_since.or(Some(Instant::now())) } else { None };
                }
                _ = sleep_until(idle_deadline.unwrap_or_else(Instant::now)), if idle_deadline.is_some() => {
                    return SessionEnd::Idle;
                }
                _ = sleep_until(last_packet + self.config.stall_timeout) => {
                    let error = SourceError::Stalled(self.config.stall_timeout);
                    return SessionEnd::Failed { error, received_packets: first_packet.is_some() };
                }
                event = session.next(|text| url.redact(text)) => match event {
                    Ok(Some(SessionEvent::Rtp(track, packet))) => {
                        let now = Instant::now();
                        last_packet = now;
                        first_packet.get_or_insert(now);
                        self.backoff.on_media(now.into_std());
                        // Bad packets are counted and logged (rate-limited) by the ingest itself.
                        let _ = ingest.push_rtp(track, packet, now.into_std());
                    }
                    Ok(Some(SessionEvent::SenderReport(track, report))) => {
                        ingest.on_sender_report(track, &report, Instant::now().into_std());
                    }
                    Ok(Some(SessionEvent::BadPacket(track, reason))) => {
                        if let Some(suppressed) = bad_packets.occurred(Instant::now().into_std()) {
                            tracing::warn!(stream, track = track.0, reason, suppressed, "unreadable packet from camera");
                        }
                    }
                    Ok(None) => {
                        return SessionEnd::Failed { error: SourceError::Closed, received_packets: first_packet.is_some() };
                    }
                    Err(error) => {
                        return SessionEnd::Failed { error, received_packets: first_packet.is_some() };
                    }
                },
            }
        }
    }
}

/// Same tracks in the same order (codec, clock, channels): the hub's consumers can
/// carry on. Parameter sets may differ; they are taken from the stream in band.
fn same_layout(current: &[TrackInfo], new: &[TrackInfo]) -> bool {
    current.len() == new.len()
        && current.iter().zip(new).all(|(a, b)| {
            (a.codec, a.clock_rate, a.channels) == (b.codec, b.clock_rate, b.channels)
        })
}
