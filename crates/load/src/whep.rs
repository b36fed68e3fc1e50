//! WHEP readers: many WebRTC viewers in one process, each a str0m `Rtc` with
//! its own UDP socket, driven from one task per core.
//!
//! A viewer binds a socket on the address that routes to the server, offers
//! H.264 and Opus recvonly with that one host candidate (non-trickle: nothing
//! to gather later), POSTs the offer, and takes the answer. Sockets only read
//! datagrams into their driver's channel; a driver task owns its share of the
//! `Rtc`s, so the load tool's WebRTC work is one state machine per viewer and
//! no task per viewer beyond its socket read. One driver per core, because
//! decrypting SRTP for hundreds of viewers is more than one core does.
//!
//! str0m runs in RTP mode: each packet goes through the same [`TrackCheck`] as
//! the RTSP readers' (sequence gaps as loss, timestamps never back, the first
//! video frame a decodable keyframe: an IDR whose SPS and PPS are known), so
//! the two kinds of reader judge alike. Times are from the POST: answer, ICE
//! and DTLS connected, first RTP packet, first decodable keyframe. At the end
//! every session is DELETEd, as a well-behaved player does.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use str0m::change::SdpAnswer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, MediaKind as RtcKind, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use streamgate_rtp::{
    Codec, CodecParams, MediaKind, PayloadType, RtpPacket, RtpPacketBuilder, SeqNo, Ssrc, TrackId,
    TrackInfo,
};
use streamgate_webrtc::DtlsCert;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::checks::{FirstFrame, TrackCheck};
use crate::reader::LiveCounters;
use crate::summary::WhepSummary;

/// Largest datagram read: WebRTC media stays under the path MTU.
const MAX_DATAGRAM: usize = 2048;
/// Datagrams waiting for a driver from all its sockets together. A full
/// channel holds the socket reads back, so a driver that cannot keep up shows
/// as loss (the sockets' buffers overflow), never as memory.
const DATAGRAM_CHANNEL: usize = 8192;
/// How often the driver hands timeouts to the viewers whose time has come:
/// str0m's timers (STUN, DTLS retransmits, RTCP) need no finer grain.
const TICK: Duration = Duration::from_millis(5);
/// Longest the POST or the DELETE of one viewer may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct WhepArgs {
    /// http:// URL of a WHEP endpoint (`http://HOST:PORT/whep/NAME`); repeat
    /// for several (viewers are spread round-robin).
    #[arg(long = "url", required = true)]
    pub urls: Vec<url::Url>,
    /// Number of concurrent viewers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub viewers: u32,
    /// Seconds to watch for (from the start of the run).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Spread the viewers' POSTs over this many seconds.
    #[arg(long, default_value_t = 1.0)]
    pub ramp: f64,
    /// Largest acceptable packet loss, as a fraction (0.01 = 1%).
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
}

/// What one viewer saw. Times are milliseconds from its POST.
#[derive(Debug, Serialize)]
pub struct WhepReport {
    pub index: usize,
    pub url: String,
    /// Why the viewer failed or stopped early, if it did.
    pub error: Option<String>,
    pub answer_ms: Option<f64>,
    /// ICE and DTLS done.
    pub connected_ms: Option<f64>,
    pub first_rtp_ms: Option<f64>,
    /// The first video frame a decoder can start on, complete.
    pub first_keyframe_ms: Option<f64>,
    /// False when the first video frame was not a decodable keyframe.
    pub keyframe_first: Option<bool>,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub packets: u64,
    pub bytes: u64,
    pub expected: u64,
    pub lost: u64,
    pub backward_timestamps: u64,
    /// The session's DELETE was answered with success.
    pub deleted: bool,
}

impl WhepReport {
    fn failed(index: usize, url: &url::Url, error: String) -> WhepReport {
        WhepReport {
            index,
            url: streamgate_redact::redact_url(url),
            error: Some(error),
            answer_ms: None,
            connected_ms: None,
            first_rtp_ms: None,
            first_keyframe_ms: None,
            keyframe_first: None,
            video_frames: 0,
            audio_frames: 0,
            packets: 0,
            bytes: 0,
            expected: 0,
            lost: 0,
            backward_timestamps: 0,
            deleted: false,
        }
    }
}

/// One viewer's WebRTC state and checks (sans-IO: datagrams and time in,
/// datagrams out).
struct Viewer {
    index: usize,
    url: url::Url,
    /// The session URL from the answer's Location.
    session: url::Url,
    rtc: Rtc,
    local: SocketAddr,
    posted: Instant,
    posted_wall: SystemTime,
    answer_ms: f64,
    connected_ms: Option<f64>,
    first_rtp_ms: Option<f64>,
    /// One check per payload type received (the server sends one per track).
    tracks: Vec<(Pt, TrackCheck)>,
    next_timeout: Instant,
    error: Option<String>,
}

impl Viewer {
    fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
        live: &LiveCounters,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let receive = Receive {
            proto: Protocol::Udp,
            source,
            destination: self.local,
            contents,
        };
        self.input(now, Input::Receive(now, receive), live, out);
    }

    fn timeout(&mut self, now: Instant, live: &LiveCounters, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if now >= self.next_timeout {
            self.input(now, Input::Timeout(now), live, out);
        }
    }

    /// One input, then the output drained to its timeout (str0m's contract).
    fn input(
        &mut self,
        now: Instant,
        input: Input,
        live: &LiveCounters,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            self.fail(format!("WebRTC: {e}"), live);
            return;
        }
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.next_timeout = at;
                    return;
                }
                Ok(Output::Transmit(t)) => out.push((t.destination, t.contents.to_vec())),
                Ok(Output::Event(event)) => self.on_event(now, event, live),
                Err(e) => {
                    self.fail(format!("WebRTC: {e}"), live);
                    return;
                }
            }
        }
    }

    fn ms_since_post(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.posted).as_secs_f64() * 1000.0
    }

    fn on_event(&mut self, now: Instant, event: Event, live: &LiveCounters) {
        match event {
            Event::Connected => {
                self.connected_ms = Some(self.ms_since_post(now));
                live.playing.fetch_add(1, Ordering::Relaxed);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.fail("ICE disconnected".to_owned(), live);
            }
            Event::RtpPacket(packet) => {
                let arrived = self.ms_since_post(packet.timestamp);
                self.first_rtp_ms.get_or_insert(arrived);
                let pt = packet.header.payload_type;
                if !self.tracks.iter().any(|(p, _)| *p == pt) {
                    let Some(info) = track_info(&self.rtc, pt) else {
                        return;
                    };
                    self.tracks.push((pt, TrackCheck::new(info)));
                }
                let Some((_, check)) = self.tracks.iter_mut().find(|(p, _)| *p == pt) else {
                    return;
                };
                let wire_len = packet.header.header_len + packet.payload.len();
                let Some(parsed) = to_pipeline_packet(&packet) else {
                    return;
                };
                let lost_before = check.lost();
                // The wall clock at the packet's arrival, not at its handling:
                // a busy driver must not make the times look longer.
                let arrived_wall =
                    self.posted_wall + packet.timestamp.saturating_duration_since(self.posted);
                check.on_rtp(parsed, wire_len, arrived_wall);
                live.packets.fetch_add(1, Ordering::Relaxed);
                live.lost
                    .fetch_add(check.lost().saturating_sub(lost_before), Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn fail(&mut self, error: String, live: &LiveCounters) {
        if self.error.is_none() && self.connected_ms.is_some() {
            live.playing.fetch_sub(1, Ordering::Relaxed);
        }
        self.error.get_or_insert(error);
    }

    fn report(self, deleted: bool) -> WhepReport {
        let video = self
            .tracks
            .iter()
            .map(|(_, c)| c)
            .find(|c| c.info().kind() == MediaKind::Video);
        let sum = |f: fn(&TrackCheck) -> u64| self.tracks.iter().map(|(_, c)| f(c)).sum::<u64>();
        let frames = |kind: MediaKind| {
            self.tracks
                .iter()
                .filter(|(_, c)| c.info().kind() == kind)
                .map(|(_, c)| c.frames)
                .sum::<u64>()
        };
        let error = self.error.clone().or_else(|| {
            self.connected_ms
                .is_none()
                .then(|| "not connected (ICE and DTLS) by the end".to_owned())
        });
        WhepReport {
            index: self.index,
            url: streamgate_redact::redact_url(&self.url),
            error,
            answer_ms: Some(self.answer_ms),
            connected_ms: self.connected_ms,
            first_rtp_ms: self.first_rtp_ms,
            first_keyframe_ms: video
                .and_then(|v| v.first_keyframe_at)
                .and_then(|at| at.duration_since(self.posted_wall).ok())
                .map(|d| d.as_secs_f64() * 1000.0),
            keyframe_first: video
                .and_then(|v| v.first_frame)
                .map(|verdict| verdict == FirstFrame::Decodable),
            video_frames: frames(MediaKind::Video),
            audio_frames: frames(MediaKind::Audio),
            packets: sum(|c| c.received),
            bytes: sum(|c| c.bytes),
            expected: sum(TrackCheck::expected),
            lost: sum(TrackCheck::lost),
            backward_timestamps: sum(|c| c.backward_timestamps),
            deleted,
        }
    }
}

/// str0m's decrypted packet as the pipeline's, for [`TrackCheck`] (the header
/// fields it reads and the payload; extensions are not needed).
fn to_pipeline_packet(packet: &str0m::rtp::RtpPacket) -> Option<RtpPacket> {
    let header = &packet.header;
    RtpPacketBuilder {
        payload_type: PayloadType::new(*header.payload_type)?,
        marker: header.marker,
        sequence_number: SeqNo::new(header.sequence_number),
        timestamp: header.timestamp,
        ssrc: Ssrc::new(*header.ssrc),
        payload: Bytes::copy_from_slice(&packet.payload),
        ..Default::default()
    }
    .build()
    .and_then(RtpPacket::parse)
    .ok()
}

/// The pipeline's description of a negotiated payload type (codecs it checks only).
fn track_info(rtc: &Rtc, pt: Pt) -> Option<TrackInfo> {
    let spec = rtc.codec_config().find(|p| p.pt() == pt)?.spec();
    let codec = match spec.codec {
        RtcCodec::H264 => Codec::H264,
        RtcCodec::H265 => Codec::H265,
        RtcCodec::Opus => Codec::Opus,
        RtcCodec::PCMU => Codec::Pcmu,
        RtcCodec::PCMA => Codec::Pcma,
        _ => return None,
    };
    Some(TrackInfo {
        id: TrackId::new(0),
        codec,
        clock_rate: spec.clock_rate.get(),
        channels: spec.channels.map_or(1, u16::from),
        payload_type: PayloadType::new(*pt)?,
        params: CodecParams::default(),
    })
}

/// What the socket tasks and the signalling tasks hand the driver.
enum Message {
    Joined(Box<Viewer>, Arc<UdpSocket>),
    Failed(WhepReport),
    Datagram {
        index: usize,
        at: Instant,
        source: SocketAddr,
        data: Vec<u8>,
    },
}

/// The address this host sends to `server` from: the one host candidate.
fn local_ip_towards(server: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the route's source address.
    let probe = StdUdpSocket::bind(SocketAddr::new(
        match server {
            SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        },
        0,
    ))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

/// Binds the viewer's socket, POSTs its offer and applies the answer.
async fn signal(
    index: usize,
    url: &url::Url,
    cert: DtlsCert,
    client: &reqwest::Client,
) -> Result<(Viewer, Arc<UdpSocket>), String> {
    let server = url
        .socket_addrs(|| None)
        .map_err(|e| format!("{}: {e}", url.host_str().unwrap_or("")))?
        .into_iter()
        .next()
        .ok_or("the URL's host has no address")?;
    let ip = local_ip_towards(server).map_err(|e| format!("no route to {server}: {e}"))?;
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let local = socket.local_addr().map_err(|e| format!("bind: {e}"))?;
    let now = Instant::now();
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .set_dtls_cert(cert)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(now);
    let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
    rtc.add_local_candidate(candidate);
    let mut change = rtc.sdp_api();
    change.add_media(RtcKind::Video, Direction::RecvOnly, None, None, None);
    change.add_media(RtcKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().ok_or("empty offer")?;
    let posted_wall = SystemTime::now();
    let posted = Instant::now();
    let response = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(offer.to_sdp_string())
        .timeout(HTTP_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("POST: {}", e.without_url()))?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .text()
        .await
        .map_err(|e| format!("POST: {}", e.without_url()))?;
    if status != reqwest::StatusCode::CREATED {
        return Err(format!("POST: HTTP {status}: {}", body.trim()));
    }
    let answer_ms = posted.elapsed().as_secs_f64() * 1000.0;
    let session = location
        .ok_or("the answer has no Location")
        .and_then(|l| url.join(&l).map_err(|_| "the answer's Location is no URL"))?;
    let answer = SdpAnswer::from_sdp_string(&body).map_err(|e| format!("answer SDP: {e}"))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("answer: {e}"))?;
    let viewer = Viewer {
        index,
        url: url.clone(),
        session,
        rtc,
        local,
        posted,
        posted_wall,
        answer_ms,
        connected_ms: None,
        first_rtp_ms: None,
        tracks: Vec::new(),
        next_timeout: now,
        error: None,
    };
    Ok((viewer, Arc::new(socket)))
}

/// One viewer's signalling, then its socket's datagrams into the channel.
async fn join(
    index: usize,
    url: url::Url,
    cert: DtlsCert,
    client: reqwest::Client,
    start_at: tokio::time::Instant,
    tx: mpsc::Sender<Message>,
) {
    tokio::time::sleep_until(start_at).await;
    let (viewer, socket) = match signal(index, &url, cert, &client).await {
        Ok(joined) => joined,
        Err(e) => {
            let _ = tx
                .send(Message::Failed(WhepReport::failed(index, &url, e)))
                .await;
            return;
        }
    };
    if tx
        .send(Message::Joined(Box::new(viewer), Arc::clone(&socket)))
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0; MAX_DATAGRAM];
    while let Ok((len, source)) = socket.recv_from(&mut buf).await {
        let message = Message::Datagram {
            index,
            at: Instant::now(),
            source,
            data: buf[..len].to_vec(),
        };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

/// Watches with `args.viewers` viewers until the duration is over, DELETEs
/// every session and reports.
pub async fn run(args: &WhepArgs, live: Arc<LiveCounters>) -> WhepSummary {
    let duration = Duration::try_from_secs_f64(args.duration.max(0.0)).unwrap_or_default();
    let ramp = Duration::try_from_secs_f64(args.ramp.max(0.0)).unwrap_or_default();
    let started = tokio::time::Instant::now();
    let deadline = started + duration;
    let count = args.viewers as usize;
    let Some(cert) = streamgate_webrtc::process_certificate() else {
        let reports = (0..count)
            .map(|i| {
                let url = &args.urls[i % args.urls.len()];
                WhepReport::failed(i, url, "no DTLS certificate".to_owned())
            })
            .collect();
        return WhepSummary::new(reports, 0.0, args.max_loss);
    };
    let client = reqwest::Client::new();
    let drivers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(count);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..drivers)
        .map(|_| mpsc::channel(DATAGRAM_CHANNEL))
        .unzip();
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            let url = args.urls[index % args.urls.len()].clone();
            let start_at = started + ramp.mul_f64(index as f64 / count as f64);
            tokio::spawn(join(
                index,
                url,
                cert.clone(),
                client.clone(),
                start_at,
                senders[index % drivers].clone(),
            ))
        })
        .collect();
    drop(senders);
    let driven = receivers
        .into_iter()
        .map(|rx| tokio::spawn(drive(rx, count, deadline, Arc::clone(&live))));
    let (mut viewers, mut reports) = (Vec::new(), Vec::new());
    for (driven_viewers, failed) in futures::future::join_all(driven)
        .await
        .into_iter()
        .flatten()
    {
        viewers.extend(driven_viewers);
        reports.extend(failed);
    }
    for task in &tasks {
        task.abort();
    }
    let seconds = started.elapsed().as_secs_f64();
    let ended = futures::future::join_all(viewers.into_iter().map(|mut viewer| {
        let client = client.clone();
        let live = Arc::clone(&live);
        async move {
            if viewer.error.is_none() && viewer.connected_ms.is_some() {
                live.playing.fetch_sub(1, Ordering::Relaxed);
            }
            viewer.rtc.disconnect();
            let deleted = client
                .delete(viewer.session.clone())
                .timeout(HTTP_TIMEOUT)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            viewer.report(deleted)
        }
    }))
    .await;
    reports.extend(ended);
    // Viewers still signalling at the end (a ramp longer than the run) are failures too.
    let mut reported = vec![false; count];
    for report in &reports {
        reported[report.index] = true;
    }
    for (index, _) in reported.iter().enumerate().filter(|(_, r)| !**r) {
        let url = &args.urls[index % args.urls.len()];
        reports.push(WhepReport::failed(
            index,
            url,
            "no answer to the POST by the end".to_owned(),
        ));
    }
    reports.sort_by_key(|r| r.index);
    WhepSummary::new(reports, seconds, args.max_loss)
}

/// A task that drives its viewers' `Rtc`s (those whose messages come on
/// `rx`; `count` viewers in all): datagrams as they come, timeouts on a tick,
/// until `deadline`.
async fn drive(
    mut rx: mpsc::Receiver<Message>,
    count: usize,
    deadline: tokio::time::Instant,
    live: Arc<LiveCounters>,
) -> (Vec<Viewer>, Vec<WhepReport>) {
    let live = &*live;
    let mut slots: Vec<Option<(Box<Viewer>, Arc<UdpSocket>)>> = (0..count).map(|_| None).collect();
    let mut failed = Vec::new();
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let send = |socket: &UdpSocket, out: &mut Vec<(SocketAddr, Vec<u8>)>| {
        for (destination, datagram) in out.drain(..) {
            // A full socket buffer drops the datagram, as a real client's would.
            let _ = socket.try_send_to(&datagram, destination);
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            message = rx.recv() => match message {
                None => break,
                Some(Message::Joined(mut viewer, socket)) => {
                    let index = viewer.index;
                    viewer.timeout(Instant::now(), live, &mut out);
                    send(&socket, &mut out);
                    slots[index] = Some((viewer, socket));
                }
                Some(Message::Failed(report)) => failed.push(report),
                Some(Message::Datagram { index, at, source, data }) => {
                    if let Some((viewer, socket)) = slots.get_mut(index).and_then(Option::as_mut) {
                        viewer.receive(at, source, &data, live, &mut out);
                        send(socket, &mut out);
                    }
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                for (viewer, socket) in slots.iter_mut().flatten() {
                    viewer.timeout(now, live, &mut out);
                    send(socket, &mut out);
                }
            }
        }
    }
    let viewers = slots.into_iter().flatten().map(|(v, _)| *v).collect();
    (viewers, failed)
}
