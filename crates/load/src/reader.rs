//! One RTSP reader: DESCRIBE, SETUP of every track, PLAY, then every packet
//! through the [`TrackCheck`]s until the deadline.
//!
//! The client is retina (the RTSP client the gateway itself uses for cameras):
//! it hands out each raw RTP packet with its stream index and each RTCP compound
//! packet, over TCP or UDP, and does keep-alives, so the load tool writes no RTSP
//! of its own. Its timestamp and sequence policies are set to accept whatever
//! arrives: judging it is this tool's job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use retina::client::{
    InitialSequenceNumberPolicy, InitialTimestampPolicy, PacketItem, PlayOptions, Session,
    SessionOptions, SetupOptions, Transport,
};
use serde::Serialize;
use streamgate_rtp::rtcp::{parse_compound, RtcpPacket};
use streamgate_rtp::{sdp, MediaKind, PayloadType, RtpPacket};
use tokio::time::Instant;

use crate::checks::{FirstFrame, TrackCheck};

const USER_AGENT: &str = concat!("streamgate-load/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderTransport {
    Tcp,
    Udp,
}

/// Counters shared by all readers for the progress line.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub playing: AtomicU64,
    pub packets: AtomicU64,
    pub lost: AtomicU64,
}

/// What one reader saw.
#[derive(Debug, Serialize)]
pub struct ReaderReport {
    pub index: usize,
    pub url: String,
    /// Why the reader stopped early, if it did.
    pub error: Option<String>,
    /// From connecting to the PLAY response.
    pub play_ms: Option<f64>,
    /// From connecting to the first video frame a decoder can start on.
    pub first_keyframe_ms: Option<f64>,
    /// False when the first video frame was not a decodable keyframe.
    pub keyframe_first: Option<bool>,
    pub packets: u64,
    pub bytes: u64,
    pub expected: u64,
    pub lost: u64,
    pub backward_timestamps: u64,
    pub bitrate_kbps: f64,
    #[serde(skip)]
    pub latency_ms: Vec<f64>,
}

/// Reads `url` until `deadline` and reports.
pub async fn read(
    index: usize,
    url: url::Url,
    transport: ReaderTransport,
    deadline: Instant,
    live: Arc<LiveCounters>,
) -> ReaderReport {
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut checks: Vec<Option<TrackCheck>> = Vec::new();
    let mut play_ms = None;
    let mut playing_since = None;
    let session = tokio::time::timeout_at(
        deadline,
        read_session(
            url.clone(),
            transport,
            &mut checks,
            &mut play_ms,
            &mut playing_since,
            &live,
        ),
    )
    .await;
    let error = match session {
        Ok(Ok(())) => Some("server ended the session".to_owned()),
        Ok(Err(e)) => Some(e),
        Err(_) => None, // ran to the deadline: the normal end
    };
    if playing_since.is_some() {
        live.playing.fetch_sub(1, Ordering::Relaxed);
    }
    let checks: Vec<TrackCheck> = checks.into_iter().flatten().collect();
    let sum = |f: fn(&TrackCheck) -> u64| checks.iter().map(f).sum::<u64>();
    let video = checks.iter().find(|c| c.info().kind() == MediaKind::Video);
    let bytes = sum(|c| c.bytes);
    let play_seconds = playing_since.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
    tracing::debug!(reader = index, seconds = started.elapsed().as_secs_f64(), error = ?error, "reader done");
    ReaderReport {
        index,
        url: streamgate_redact::redact_url(&url),
        error,
        play_ms,
        first_keyframe_ms: video
            .and_then(|v| v.first_keyframe_at)
            .and_then(|at| at.duration_since(started_wall).ok())
            .map(|d| d.as_secs_f64() * 1000.0),
        keyframe_first: video
            .and_then(|v| v.first_frame)
            .map(|verdict| verdict == FirstFrame::Decodable),
        packets: sum(|c| c.received),
        bytes,
        expected: sum(TrackCheck::expected),
        lost: sum(TrackCheck::lost),
        backward_timestamps: sum(|c| c.backward_timestamps),
        bitrate_kbps: if play_seconds > 0.0 {
            bytes as f64 * 8.0 / play_seconds / 1000.0
        } else {
            0.0
        },
        latency_ms: video.map(|v| v.latency_ms.clone()).unwrap_or_default(),
    }
}

async fn read_session(
    url: url::Url,
    transport: ReaderTransport,
    checks: &mut Vec<Option<TrackCheck>>,
    play_ms: &mut Option<f64>,
    playing_since: &mut Option<Instant>,
    live: &LiveCounters,
) -> Result<(), String> {
    let started = Instant::now();
    let text = |e: retina::Error| e.to_string();
    let options = SessionOptions::default().user_agent(USER_AGENT.to_owned());
    let mut session = Session::describe(url, options).await.map_err(text)?;
    let mut tracks = sdp::parse_tracks(session.sdp())
        .map_err(|e| format!("SDP: {e}"))?
        .into_iter();
    let retina_transport = match transport {
        ReaderTransport::Tcp => Transport::Tcp(Default::default()),
        ReaderTransport::Udp => Transport::Udp(Default::default()),
    };
    // Our SDP reading keeps usable media in order: pair them with retina's streams.
    let streams: Vec<(String, Option<PayloadType>)> = session
        .streams()
        .iter()
        .map(|s| (s.media().to_owned(), PayloadType::new(s.rtp_payload_type())))
        .collect();
    let mut pending = tracks.next();
    for (i, (media, payload_type)) in streams.into_iter().enumerate() {
        let matches = pending.as_ref().is_some_and(|t| {
            Some(t.info.payload_type) == payload_type
                && matches!(
                    (t.info.kind(), media.as_str()),
                    (MediaKind::Video, "video") | (MediaKind::Audio, "audio")
                )
        });
        if !matches {
            checks.push(None);
            continue;
        }
        session
            .setup(
                i,
                SetupOptions::default().transport(retina_transport.clone()),
            )
            .await
            .map_err(text)?;
        checks.push(pending.take().map(|t| TrackCheck::new(t.info)));
        pending = tracks.next();
    }
    if checks.iter().all(Option::is_none) {
        return Err("the SDP has no track this reader can check".to_owned());
    }
    let play = PlayOptions::default()
        .initial_timestamp(InitialTimestampPolicy::Ignore)
        .initial_seq(InitialSequenceNumberPolicy::Ignore);
    let mut session = session.play(play).await.map_err(text)?;
    *play_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    *playing_since = Some(Instant::now());
    let joined = SystemTime::now();
    for check in checks.iter_mut().flatten() {
        check.joined(joined);
    }
    live.playing.fetch_add(1, Ordering::Relaxed);
    while let Some(item) = session.next().await {
        match item.map_err(text)? {
            PacketItem::Rtp(packet) => {
                let Some(Some(check)) = checks.get_mut(packet.stream_id()) else {
                    continue;
                };
                let raw = bytes::Bytes::copy_from_slice(packet.raw());
                let wire_len = raw.len();
                let lost_before = check.lost();
                if let Ok(parsed) = RtpPacket::parse(raw) {
                    check.on_rtp(parsed, wire_len, SystemTime::now());
                }
                live.packets.fetch_add(1, Ordering::Relaxed);
                live.lost
                    .fetch_add(check.lost().saturating_sub(lost_before), Ordering::Relaxed);
            }
            PacketItem::Rtcp(compound) => {
                let Some(Some(check)) = checks.get_mut(compound.stream_id()) else {
                    continue;
                };
                for packet in parse_compound(compound.raw()).unwrap_or_default() {
                    if let RtcpPacket::SenderReport(report) = packet {
                        check.on_sender_report(&report);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
