//! The RTSP method handlers of one connection: OPTIONS, DESCRIBE, SETUP, PLAY,
//! PAUSE, TEARDOWN, GET/SET_PARAMETER, with authentication and the `Session`;
//! and for publishers (streams with a [`PublishPoint`]) ANNOUNCE, SETUP with
//! `mode=record` and RECORD, with the stream's publish credentials, into a
//! [`Recording`].
//!
//! One connection carries at most one session (what every NVR and player does);
//! a request naming another session gets 454. The handlers await only bounded
//! things (the Hub's `wait_ready`, binding UDP ports); everything they decide is
//! returned as a [`Reply`] for the connection task to carry out.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rtsp_types::{headers, Method, Request, Version};
use streamgate_pipeline::Subscription;
use streamgate_rtp::{sdp, Frame, Ssrc, TrackId, TrackInfo};
use tokio::sync::watch;

use super::auth::{Authenticator, Credentials};
use super::describe::{session_description, track_control};
use super::interleaved::{TrackOutput, AUDIO_BATCHING_FROM_READERS};
use super::publish::{PublishPoint, PublishRefused};
use super::readers::{ReaderGuard, ReaderTransport};
use super::record::Recording;
use super::response::{Response, Status};
use super::sender_report::SenderReports;
use super::target::{content_base, redirect_location, Target};
use super::transport::{self, TransportRequest};
use super::udp::{UdpBindError, UdpTrack};
use super::udp_record::{Receiving, UdpRecordTrack};
use super::{ServerConfig, StreamDirectory, StreamEntry};

const PUBLIC_METHODS: &str =
    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, PAUSE, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// What a stream that takes no publisher allows (the 405 to an ANNOUNCE).
const READ_METHODS: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// How a stream is used on this connection: credentials are checked per use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Publish,
}

/// How long PLAY waits for a first frame of each set-up track to fill RTP-Info.
const RTP_INFO_WAIT: Duration = Duration::from_millis(500);

/// What the connection task does after a request.
#[derive(Debug)]
pub struct Reply {
    pub response: Response,
    /// Start sending (PLAY).
    pub play: Option<Player>,
    /// Stop sending (PAUSE, TEARDOWN).
    pub stop: bool,
}

impl Reply {
    fn respond(response: Response) -> Self {
        Reply {
            response,
            play: None,
            stop: false,
        }
    }
}

/// How one set-up track is delivered.
#[derive(Debug)]
pub struct TrackDelivery {
    pub output: TrackOutput,
    pub rtcp_channel: u8,
    pub udp: Option<Arc<UdpTrack>>,
    pub reports: SenderReports,
}

/// A playing session: its subscription and per-track delivery.
#[derive(Debug)]
pub struct Player {
    pub subscription: Subscription,
    /// Frames taken from the subscription to fill RTP-Info, sent first.
    pub pending: VecDeque<Arc<Frame>>,
    /// The tracks the client set up, by id.
    pub tracks: BTreeMap<TrackId, TrackDelivery>,
    /// Lists the session among the server's readers while it plays.
    pub reader: ReaderGuard,
    /// The stream's subscriber count, read again only when it changes.
    subscribers: watch::Receiver<usize>,
    large_fan_out: bool,
}

impl Player {
    fn new(
        subscription: Subscription,
        pending: VecDeque<Arc<Frame>>,
        tracks: BTreeMap<TrackId, TrackDelivery>,
        reader: ReaderGuard,
    ) -> Player {
        let subscribers = subscription.hub().watch_subscribers();
        let large_fan_out = *subscribers.borrow() >= AUDIO_BATCHING_FROM_READERS;
        Player {
            subscription,
            pending,
            tracks,
            reader,
            subscribers,
            large_fan_out,
        }
    }

    /// Whether the stream has [`AUDIO_BATCHING_FROM_READERS`] readers, so its
    /// audio may wait for video to share a write. Asked per frame: costs one
    /// atomic load unless the count changed.
    pub fn large_fan_out(&mut self) -> bool {
        if self.subscribers.has_changed().unwrap_or(false) {
            self.large_fan_out =
                *self.subscribers.borrow_and_update() >= AUDIO_BATCHING_FROM_READERS;
        }
        self.large_fan_out
    }

    /// The next frame (cancel-safe); `None` once the stream is closed.
    pub async fn next_frame(&mut self) -> Option<Arc<Frame>> {
        match self.pending.pop_front() {
            Some(frame) => Some(frame),
            None => self.subscription.recv().await,
        }
    }

    /// The first sender report of every set-up track, from the newest frame of
    /// each taken for RTP-Info (the GOP cache, sent at once): its wall clock is
    /// about now, so the report is stamped with its sending time as RFC 3550 asks,
    /// and a reader (another gateway) can tell the older frames that follow are
    /// a backlog, not live.
    pub fn first_reports(&mut self, now: Instant) -> Vec<(TrackId, Bytes)> {
        let mut reports = Vec::new();
        for (&id, delivery) in &mut self.tracks {
            let newest = self
                .pending
                .iter()
                .rfind(|f| f.track == id && !f.packets.is_empty());
            if let Some(report) = newest.and_then(|frame| delivery.reports.first_report(frame, now))
            {
                reports.push((id, report));
            }
        }
        reports
    }

    /// A frame already waiting, if any.
    pub fn try_next_frame(&mut self) -> Option<Arc<Frame>> {
        self.pending
            .pop_front()
            .or_else(|| self.subscription.try_recv().ok().flatten())
    }
}

#[derive(Debug)]
struct SetupTrack {
    transport: TransportRequest,
    ssrc: Ssrc,
    udp: Option<Arc<UdpTrack>>,
}

#[derive(Debug)]
struct Session {
    id: String,
    stream: String,
    entry: StreamEntry,
    base: String,
    tracks: BTreeMap<TrackId, SetupTrack>,
}

/// Per-connection protocol state.
pub struct ConnectionState {
    config: Arc<ServerConfig>,
    directory: Arc<dyn StreamDirectory>,
    auth: Authenticator,
    /// Stream and use this connection has proved credentials for.
    authorized: Option<(String, Access)>,
    session: Option<Session>,
    /// A publisher's session (after ANNOUNCE).
    pub recording: Option<Recording>,
    peer: SocketAddr,
    peer_ip: IpAddr,
    local_ip: IpAddr,
    /// Shared with UDP RTCP readers: last client activity, ms since `epoch`.
    pub activity: Arc<AtomicU64>,
    pub epoch: Instant,
}

impl ConnectionState {
    pub fn new(
        config: Arc<ServerConfig>,
        directory: Arc<dyn StreamDirectory>,
        peer: SocketAddr,
        local_ip: IpAddr,
    ) -> Self {
        ConnectionState {
            config,
            directory,
            auth: Authenticator::new(),
            authorized: None,
            session: None,
            recording: None,
            peer,
            peer_ip: peer.ip(),
            local_ip,
            activity: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// The session's stream name, for logs.
    pub fn stream(&self) -> Option<&str> {
        match (&self.session, &self.recording) {
            (Some(s), _) => Some(s.stream.as_str()),
            (None, Some(r)) => Some(r.stream.as_str()),
            (None, None) => None,
        }
    }

    /// Whether a SETUP of this connection gave out interleaved `channel` (for
    /// a track's RTP or RTCP): frames on other channels are dropped and counted.
    pub fn has_channel(&self, channel: u8) -> bool {
        if self
            .recording
            .as_ref()
            .is_some_and(|r| r.has_channel(channel))
        {
            return true;
        }
        self.session.as_ref().is_some_and(|session| {
            session.tracks.values().any(|t| {
                interleaved_rtp(t.transport) == Some(channel)
                    || interleaved_rtcp(t.transport) == Some(channel)
            })
        })
    }

    pub async fn handle(&mut self, request: &Request<Vec<u8>>) -> Reply {
        let version = match request.version() {
            Version::V2_0 => Version::V2_0,
            _ => Version::V1_0,
        };
        let cseq = request
            .header(&headers::CSEQ)
            .map(|v| v.as_str().trim().to_string());
        let ok = || Response::new(Status::Ok, version, cseq.as_deref());
        let status = |s: Status| Response::new(s, version, cseq.as_deref());

        if let Some(reply) = self.check_session_header(request, status(Status::SessionNotFound)) {
            return Reply::respond(reply);
        }
        match request.method() {
            Method::Options => Reply::respond(ok().header("Public", PUBLIC_METHODS)),
            Method::GetParameter | Method::SetParameter => Reply::respond(self.with_session(ok())),
            Method::Describe => Reply::respond(self.describe(request, ok, status).await),
            Method::Setup if self.recording.is_some() => {
                Reply::respond(self.setup_record(request, ok, status).await)
            }
            Method::Setup => Reply::respond(self.setup(request, ok, status).await),
            Method::Announce => Reply::respond(self.announce(request, ok, status)),
            Method::Record => Reply::respond(self.record(request, ok, status)),
            Method::Play => self.play(ok, status).await,
            Method::Pause => match &self.session {
                Some(_) => Reply {
                    response: self.with_session(ok()),
                    play: None,
                    stop: true,
                },
                None => Reply::respond(status(Status::SessionNotFound)),
            },
            Method::Teardown => {
                let response = self.with_session(ok());
                self.session = None;
                self.recording = None;
                Reply {
                    response,
                    play: None,
                    stop: true,
                }
            }
            _ => Reply::respond(status(Status::NotImplemented)),
        }
    }

    /// 454 when the request names a session this connection does not have.
    fn check_session_header(
        &self,
        request: &Request<Vec<u8>>,
        not_found: Response,
    ) -> Option<Response> {
        let header = request.header(&headers::SESSION)?;
        let id = header.as_str().split(';').next().unwrap_or("").trim();
        match (&self.session, &self.recording) {
            (Some(session), _) if session.id == id => None,
            (_, Some(recording)) if recording.id == id => None,
            _ => Some(not_found),
        }
    }

    fn with_session(&self, response: Response) -> Response {
        let id = match (&self.session, &self.recording) {
            (Some(session), _) => &session.id,
            (None, Some(recording)) => &recording.id,
            (None, None) => return response,
        };
        response.header("Session", self.session_header(id))
    }

    fn session_header(&self, id: &str) -> String {
        format!("{id};timeout={}", self.config.session_timeout.as_secs())
    }

    /// Finds the stream and checks credentials: Err is the answer to send.
    fn authorize(
        &mut self,
        request: &Request<Vec<u8>>,
        stream: &str,
        status: &dyn Fn(Status) -> Response,
    ) -> Result<StreamEntry, Response> {
        let entry = self.directory.lookup(stream);
        let required: Option<&Credentials> = match &entry {
            Some(e) => e.credentials.as_ref().or(self.config.credentials.as_ref()),
            // Unknown stream: with server-wide credentials, answer 401 first so
            // an anonymous client cannot probe which stream names exist.
            None => self.config.credentials.as_ref(),
        };
        self.check_credentials(request, stream, Access::Read, required.cloned(), status)?;
        entry.ok_or_else(|| match self.directory.elsewhere(stream) {
            Some(base) => {
                let location = redirect_location(&base, request.request_uri());
                tracing::debug!(stream, %location, "redirecting the reader to the stream's server");
                status(Status::Found).header("Location", location)
            }
            None => status(Status::NotFound),
        })
    }

    /// 401 with challenges unless the request proves `expected` (or this
    /// connection already did for `stream` and `access`).
    fn check_credentials(
        &mut self,
        request: &Request<Vec<u8>>,
        stream: &str,
        access: Access,
        expected: Option<Credentials>,
        status: &dyn Fn(Status) -> Response,
    ) -> Result<(), Response> {
        if let Some(expected) = &expected {
            let proved_before = self
                .authorized
                .as_ref()
                .is_some_and(|(s, a)| s == stream && *a == access);
            if !proved_before {
                let method: &str = request.method().into();
                let proved = request
                    .header(&headers::AUTHORIZATION)
                    .is_some_and(|h| self.auth.verify(expected, h.as_str(), method));
                if !proved {
                    tracing::info!(stream, peer = %self.peer_ip, ?access, "RTSP authentication failed or missing");
                    let mut response = status(Status::Unauthorized);
                    for challenge in self.auth.challenges() {
                        response = response.header("WWW-Authenticate", challenge);
                    }
                    return Err(response);
                }
                self.authorized = Some((stream.to_string(), access));
            }
        }
        Ok(())
    }

    async fn describe(
        &mut self,
        request: &Request<Vec<u8>>,
        ok: impl Fn() -> Response,
        status: impl Fn(Status) -> Response,
    ) -> Response {
        let (Some(target), Some(url)) =
            (Target::parse(request.request_uri()), request.request_uri())
        else {
            return status(Status::BadRequest);
        };
        let entry = match self.authorize(request, &target.stream, &status) {
            Ok(entry) => entry,
            Err(response) => return response,
        };
        // Holding a subscription while waiting starts an on-demand source.
        let warm_up = entry.hub.subscribe();
        let tracks = entry.hub.wait_ready(self.config.describe_timeout).await;
        drop(warm_up);
        let Some(tracks) = tracks else {
            tracing::warn!(stream = %target.stream, "DESCRIBE: stream has no decodable tracks yet");
            return status(Status::ServiceUnavailable);
        };
        let sdp = session_description(&target.stream, rand::rng().random::<u32>().into(), &tracks);
        ok().header("Content-Base", content_base(url, &target.stream))
            .body("application/sdp", sdp)
    }

    async fn setup(
        &mut self,
        request: &Request<Vec<u8>>,
        ok: impl Fn() -> Response,
        status: impl Fn(Status) -> Response,
    ) -> Response {
        let (Some(target), Some(url)) =
            (Target::parse(request.request_uri()), request.request_uri())
        else {
            return status(Status::BadRequest);
        };
        if let Some(session) = &self.session {
            if session.stream != target.stream {
                // Aggregating tracks of different streams is not supported.
                return status(Status::MethodNotValidInThisState);
            }
        }
        let entry = match self.authorize(request, &target.stream, &status) {
            Ok(entry) => entry,
            Err(response) => return response,
        };
        let Some(tracks) = entry.hub.wait_ready(self.config.describe_timeout).await else {
            return status(Status::ServiceUnavailable);
        };
        let track = match (target.track, &tracks[..]) {
            (Some(id), _) if tracks.iter().any(|t| t.id == id) => id,
            (None, [only]) => only.id,
            _ => return status(Status::NotFound),
        };
        let next_channel = self
            .session
            .as_ref()
            .and_then(|s| {
                s.tracks
                    .values()
                    .filter_map(|t| interleaved_rtcp(t.transport))
                    .max()
            })
            .map_or(0, |c| c.saturating_add(1));
        let chosen = match transport::negotiate(request, next_channel) {
            Ok(chosen) => chosen,
            Err(e) => {
                tracing::debug!(stream = %target.stream, error = %e, "SETUP: unsupported transport");
                return status(Status::UnsupportedTransport);
            }
        };
        let udp = match chosen {
            TransportRequest::Udp {
                rtp_port,
                rtcp_port,
            } => {
                match UdpTrack::bind(
                    self.local_ip,
                    self.config.udp_ports,
                    self.peer_ip,
                    (rtp_port, rtcp_port),
                    Arc::clone(&self.activity),
                    self.epoch,
                )
                .await
                {
                    Ok(udp) => Some(Arc::new(udp)),
                    Err(e @ UdpBindError::RangeExhausted(_)) => {
                        tracing::warn!(stream = %target.stream, error = %e, "SETUP refused (453): widen [rtsp] udp_ports");
                        return status(Status::NotEnoughBandwidth);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SETUP: cannot bind UDP ports");
                        return status(Status::ServiceUnavailable);
                    }
                }
            }
            TransportRequest::Interleaved { .. } => None,
        };
        let server_ports = udp.as_ref().and_then(|u| u.server_ports().ok());
        let ssrc = Ssrc::new(rand::rng().random::<u32>());
        let session = self.session.get_or_insert_with(|| Session {
            id: format!("{:016X}", rand::rng().random::<u64>()),
            stream: target.stream.clone(),
            entry,
            base: content_base(url, &target.stream),
            tracks: BTreeMap::new(),
        });
        session.tracks.insert(
            track,
            SetupTrack {
                transport: chosen,
                ssrc,
                udp,
            },
        );
        let session_header = format!(
            "{};timeout={}",
            session.id,
            self.config.session_timeout.as_secs()
        );
        ok().header("Transport", transport::reply(chosen, server_ports, ssrc))
            .header("Session", session_header)
    }

    /// The stream a publisher addresses, with its credentials checked: Err is
    /// the answer (404 unknown, 405 not a publish stream, 401). `Ok(None)`: a
    /// path no stream has, open to publishers (created once the SDP is good).
    fn authorize_publish(
        &mut self,
        request: &Request<Vec<u8>>,
        stream: &str,
        status: &dyn Fn(Status) -> Response,
    ) -> Result<Option<PublishPoint>, Response> {
        let entry = self.directory.lookup(stream);
        let open = entry
            .is_none()
            .then(|| self.directory.open_publish())
            .flatten();
        let expected = match (&entry, &open) {
            (
                Some(StreamEntry {
                    publish: Some(point),
                    ..
                }),
                _,
            ) => point.config().credentials.clone(),
            (None, Some(open)) => open.clone(),
            _ => self.config.credentials.clone(),
        };
        self.check_credentials(request, stream, Access::Publish, expected, status)?;
        match (entry, open) {
            (
                Some(StreamEntry {
                    publish: Some(point),
                    ..
                }),
                _,
            ) => Ok(Some(point)),
            (Some(_), _) => {
                tracing::info!(stream, peer = %self.peer, "ANNOUNCE to a stream that is not `source = \"publish\"`");
                Err(status(Status::MethodNotAllowed).header("Allow", READ_METHODS))
            }
            (None, Some(_)) => Ok(None),
            (None, None) => Err(status(Status::NotFound)),
        }
    }

    /// ANNOUNCE: the publisher's SDP (any codec the pipeline reads), then the
    /// stream is its own until it leaves (or another replaces it).
    fn announce(
        &mut self,
        request: &Request<Vec<u8>>,
        ok: impl Fn() -> Response,
        status: impl Fn(Status) -> Response,
    ) -> Response {
        let Some(target) = Target::parse(request.request_uri()) else {
            return status(Status::BadRequest);
        };
        if self.session.is_some() || self.recording.is_some() {
            return status(Status::MethodNotValidInThisState);
        }
        let point = match self.authorize_publish(request, &target.stream, &status) {
            Ok(point) => point,
            Err(response) => return response,
        };
        let refuse = |code: Status, reason: String| {
            tracing::info!(stream = %target.stream, peer = %self.peer, %reason, "ANNOUNCE refused ({})", code.code());
            status(code).body("text/plain", format!("{reason}\r\n"))
        };
        let content_type = request.header(&headers::CONTENT_TYPE).map(|v| {
            v.as_str()
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        if content_type.as_deref() != Some("application/sdp") {
            return refuse(
                Status::UnsupportedMediaType,
                format!("ANNOUNCE needs Content-Type application/sdp, got {content_type:?}"),
            );
        }
        let tracks = match sdp::parse_tracks(request.body()) {
            Ok(tracks) if !tracks.is_empty() => tracks,
            Ok(_) => {
                return refuse(
                    Status::UnsupportedMediaType,
                    "the SDP has no track this gateway carries".into(),
                )
            }
            Err(e) => return refuse(Status::BadRequest, format!("bad SDP: {e}")),
        };
        let point = match point.or_else(|| {
            self.directory
                .create_publish(&target.stream)
                .and_then(|entry| entry.publish)
        }) {
            Some(point) => point,
            None => return refuse(Status::NotFound, "no such stream".into()),
        };
        let publisher = match point.claim(self.peer) {
            Ok(publisher) => publisher,
            Err(e @ PublishRefused::Busy) => {
                return refuse(Status::ServiceUnavailable, e.to_string())
            }
            Err(e) => return refuse(Status::NotFound, e.to_string()),
        };
        tracing::info!(stream = %target.stream, peer = %self.peer, tracks = tracks.len(), "RTSP publisher announced");
        let id = format!("{:016X}", rand::rng().random::<u64>());
        let ssrc = Ssrc::new(rand::rng().random::<u32>());
        self.recording = Some(Recording::new(id, target.stream, publisher, tracks, ssrc));
        ok()
    }

    /// SETUP of a publisher: the announced track its URL names, over TCP
    /// interleaved or UDP (server ports that take packets only from this peer).
    async fn setup_record(
        &mut self,
        request: &Request<Vec<u8>>,
        ok: impl Fn() -> Response,
        status: impl Fn(Status) -> Response,
    ) -> Response {
        let Some(recording) = self.recording.as_ref() else {
            return status(Status::MethodNotValidInThisState);
        };
        let Some(track) = request
            .request_uri()
            .and_then(|url| recording.track_for(url))
        else {
            return status(Status::NotFound);
        };
        let chosen = match transport::negotiate(request, recording.next_channel()) {
            Ok(chosen) => chosen,
            Err(e) => {
                tracing::debug!(stream = %recording.stream, error = %e, "SETUP (record): unsupported transport");
                return status(Status::UnsupportedTransport);
            }
        };
        let udp = match chosen {
            TransportRequest::Udp {
                rtp_port,
                rtcp_port,
            } => {
                let receiving = Receiving {
                    track,
                    publisher: self.peer_ip,
                    queue: recording.datagram_queue(),
                    point: recording.point().clone(),
                    activity: Arc::clone(&self.activity),
                    epoch: self.epoch,
                };
                match UdpRecordTrack::bind(
                    self.local_ip,
                    self.config.udp_ports,
                    (rtp_port, rtcp_port),
                    receiving,
                )
                .await
                {
                    Ok(udp) => Some(udp),
                    Err(e) => {
                        tracing::warn!(stream = %recording.stream, error = %e, "SETUP (record): cannot bind UDP ports");
                        return status(Status::ServiceUnavailable);
                    }
                }
            }
            TransportRequest::Interleaved { .. } => None,
        };
        let server_ports = udp.as_ref().map(UdpRecordTrack::server_ports);
        let Some(recording) = self.recording.as_mut() else {
            return status(Status::MethodNotValidInThisState);
        };
        recording.add_track(track, chosen, udp);
        self.with_session(ok())
            .header("Transport", transport::record_reply(chosen, server_ports))
    }

    /// RECORD: 455 before ANNOUNCE and SETUP (405 on a stream that takes no publisher).
    fn record(
        &mut self,
        request: &Request<Vec<u8>>,
        ok: impl Fn() -> Response,
        status: impl Fn(Status) -> Response,
    ) -> Response {
        let Some(recording) = self.recording.as_mut() else {
            let stream = Target::parse(request.request_uri()).map(|t| t.stream);
            let entry = stream.and_then(|s| self.directory.lookup(&s));
            return match entry {
                Some(entry) if entry.publish.is_none() => {
                    status(Status::MethodNotAllowed).header("Allow", READ_METHODS)
                }
                _ => status(Status::MethodNotValidInThisState),
            };
        };
        if !recording.record() {
            return status(Status::MethodNotValidInThisState);
        }
        tracing::info!(stream = %recording.stream, peer = %self.peer, "RTSP publisher recording");
        self.with_session(ok())
    }

    async fn play(
        &mut self,
        ok: impl Fn() -> Response,
        status: impl Fn(Status) -> Response,
    ) -> Reply {
        let Some(session) = &self.session else {
            return Reply::respond(status(Status::SessionNotFound));
        };
        if session.tracks.is_empty() {
            return Reply::respond(status(Status::MethodNotValidInThisState));
        }
        let mut subscription = session.entry.hub.subscribe();
        let tracks_info = session.entry.hub.tracks();
        let pending = first_frames(&mut subscription, &session.tracks).await;
        let rtp_info = rtp_info(&session.base, &tracks_info, &session.tracks, &pending);
        let tracks = session
            .tracks
            .iter()
            .map(|(&id, t)| {
                let delivery = TrackDelivery {
                    output: TrackOutput {
                        channel: interleaved_rtp(t.transport).unwrap_or(0),
                        ssrc: t.ssrc,
                    },
                    rtcp_channel: interleaved_rtcp(t.transport).unwrap_or(1),
                    udp: t.udp.clone(),
                    reports: SenderReports::new(t.ssrc),
                };
                (id, delivery)
            })
            .collect();
        let transport = if session.tracks.values().any(|t| t.udp.is_some()) {
            ReaderTransport::Udp
        } else {
            ReaderTransport::Tcp
        };
        let reader = self
            .config
            .readers
            .register(&session.stream, self.peer, transport);
        let mut response = self.with_session(ok()).header("Range", "npt=now-");
        if !rtp_info.is_empty() {
            response = response.header("RTP-Info", rtp_info);
        }
        Reply {
            response,
            play: Some(Player::new(subscription, pending, tracks, reader)),
            stop: false,
        }
    }
}

fn interleaved_rtp(t: TransportRequest) -> Option<u8> {
    match t {
        TransportRequest::Interleaved { rtp_channel, .. } => Some(rtp_channel),
        TransportRequest::Udp { .. } => None,
    }
}

fn interleaved_rtcp(t: TransportRequest) -> Option<u8> {
    match t {
        TransportRequest::Interleaved { rtcp_channel, .. } => Some(rtcp_channel),
        TransportRequest::Udp { .. } => None,
    }
}

/// Takes frames from a fresh subscription (the GOP cache first) until every
/// set-up track has one or a short bound passes: they tell RTP-Info where each
/// track starts, and are sent first.
async fn first_frames(
    subscription: &mut Subscription,
    setup: &BTreeMap<TrackId, SetupTrack>,
) -> VecDeque<Arc<Frame>> {
    let mut pending = VecDeque::new();
    let deadline = tokio::time::Instant::now() + RTP_INFO_WAIT;
    let has_all = |pending: &VecDeque<Arc<Frame>>| {
        setup.keys().all(|t| {
            pending
                .iter()
                .any(|f| f.track == *t && !f.packets.is_empty())
        })
    };
    while let Ok(Some(frame)) = subscription.try_recv() {
        pending.push_back(frame);
    }
    while !has_all(&pending) {
        match tokio::time::timeout_at(deadline, subscription.recv()).await {
            Ok(Some(frame)) => pending.push_back(frame),
            Ok(None) | Err(_) => break,
        }
    }
    pending
}

/// `url=…/trackID=0;seq=…;rtptime=…,url=…` for the tracks whose first packet is known.
fn rtp_info(
    base: &str,
    tracks: &[TrackInfo],
    setup: &BTreeMap<TrackId, SetupTrack>,
    pending: &VecDeque<Arc<Frame>>,
) -> String {
    setup
        .keys()
        .filter_map(|&t| {
            let info = tracks.iter().find(|info| info.id == t)?;
            let first = pending
                .iter()
                .filter(|f| f.track == t)
                .find_map(|f| f.packets.first())?;
            Some(format!(
                "url={base}{};seq={};rtptime={}",
                track_control(info),
                first.sequence(),
                first.timestamp()
            ))
        })
        .collect::<Vec<_>>()
        .join(",")
}
