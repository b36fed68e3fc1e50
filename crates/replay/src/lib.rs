//! The pcap replay source: RTP captured as UDP datagrams, sent into a stream's
//! Hub again at the pace it was captured (or faster), looped with continuous
//! timestamps. The built-in `demo` stream is this replay of a bundled capture.
//!
//! Containers are read with `pcap-file` (pcap and pcapng from one slice-based
//! parser, so a capture is loaded once and every RTP packet stays a zero-copy
//! slice of that buffer) and frames with `etherparse` (Ethernet, Linux cooked,
//! BSD loopback and raw IP link layers, IPv4/IPv6, UDP). Each datagram goes to
//! the track whose SDP `m=` port it was sent to; when the SDP gives no distinct
//! ports (RTSP descriptions say 0) the RTP payload type picks the track instead.
//!
//! RTCP datagrams (packet types 200..=204 in the second byte, whatever the port:
//! a track's port + 1, or muxed on its port) have their sender reports kept for
//! the track whose RTP packets carry their SSRC, and fed to the ingest as the replay reaches them: they are
//! the source's own NTP↔RTP mapping, which puts a track that starts late (AAC
//! here, ~130 ms after the video) in step with the others when it anchors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etherparse::{SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::DataLink;

use streamgate_pipeline::Hub;
use streamgate_pipeline::StreamIngest;
use streamgate_rtp::rtcp::{self, RtcpPacket, SenderReport};
use streamgate_rtp::sdp::{self, SdpTrack};
use streamgate_rtp::RtpPacket;
use streamgate_rtp::MAX_JUMP;
use streamgate_rtp::{MediaKind, PayloadType, Ssrc, TrackId};

/// Largest capture file loaded (it is held in memory while the stream lives).
pub const MAX_CAPTURE_BYTES: u64 = 256 * 1024 * 1024;
/// Most RTP packets kept from one capture.
pub const MAX_PACKETS: usize = 1_000_000;
/// Most RTCP sender reports kept from one capture (sources send one every few
/// seconds per track); later ones are skipped.
pub const MAX_SENDER_REPORTS: usize = 100_000;
/// Pause between the last packet of one pass and the first of the next: one
/// video frame at 25 fps, so a loop looks like one more frame interval.
pub const LOOP_GAP: Duration = Duration::from_millis(40);
/// Largest SDP file read beside a capture.
const MAX_SDP_FILE_BYTES: u64 = sdp::MAX_SDP_LEN as u64;

/// The bundled capture behind the `demo` source: 10 s of 720p H.264 + AAC made by
/// `scripts/gen-fixtures`, compiled into the binary so it needs no files.
static DEMO_PCAP: &[u8] = include_bytes!("../../../fixtures/ffmpeg_h264_aac.pcap");
static DEMO_SDP: &[u8] = include_bytes!("../../../fixtures/ffmpeg_h264_aac.sdp");
const DEMO_NAME: &str = "bundled demo capture (fixtures/ffmpeg_h264_aac.pcap)";

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// pcapng's default timestamp resolution: microseconds (if_tsresol 6).
const PCAPNG_DEFAULT_TSRESOL: u8 = 6;

/// Why a capture cannot be loaded or replayed. `source_name` names the file.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum ReplayError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name}: {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        source_name: String,
        len: u64,
        max: u64,
    },
    #[error("{source_name}: {source}")]
    Sdp {
        source_name: String,
        source: sdp::SdpError,
    },
    #[error("{source_name}: the SDP describes no track this gateway can carry")]
    NoTracks { source_name: String },
    #[error("{source_name}: tracks cannot be told apart: their m= ports ({ports:?}) and payload types are not distinct")]
    AmbiguousTracks {
        source_name: String,
        ports: Vec<u16>,
    },
    #[error("{source_name}: not a pcap or pcapng file (starts with {magic:02x?})")]
    NotACapture { source_name: String, magic: Vec<u8> },
    #[error("{source_name}: bad capture at record {record}: {reason}")]
    BadCapture {
        source_name: String,
        record: usize,
        reason: String,
    },
    #[error("{source_name}: link type {link:?} is not supported (Ethernet, Linux cooked, loopback or raw IP)")]
    UnsupportedLinkType { source_name: String, link: DataLink },
    #[error("{source_name}: more than {max} RTP packets")]
    TooManyPackets { source_name: String, max: usize },
    #[error("{source_name}: no RTP packet was sent to any of the SDP's tracks")]
    NoPackets { source_name: String },
    #[error("replay speed {speed} must be a positive finite number")]
    BadSpeed { speed: f64 },
}

/// A capture loaded into memory, ready to replay any number of times.
#[derive(Debug, Clone)]
pub struct Capture {
    pub tracks: Vec<SdpTrack>,
    /// In capture order: arrival offset from the first kept packet, track, packet.
    /// Offsets never decrease.
    pub packets: Vec<(Duration, TrackId, RtpPacket)>,
    /// In capture order: the source's RTCP sender reports, each with its arrival
    /// offset (on the same clock as `packets`; zero for reports sent before the
    /// first RTP packet) and the track whose SSRC it reports on.
    pub sender_reports: Vec<(Duration, TrackId, SenderReport)>,
}

impl Capture {
    /// The capture with only its video tracks (numbered from 0 again), for
    /// measuring what video alone costs: audio packets change how a server's
    /// writes batch. Err when it has no video.
    pub fn video_only(self, source_name: &str) -> Result<Capture, ReplayError> {
        let kept: Vec<TrackId> = self
            .tracks
            .iter()
            .filter(|t| t.info.kind() == MediaKind::Video)
            .map(|t| t.info.id)
            .collect();
        if kept.is_empty() {
            return Err(ReplayError::NoTracks {
                source_name: source_name.to_owned(),
            });
        }
        let renumber = |id: TrackId| kept.iter().position(|k| *k == id).map(TrackId::new);
        Ok(Capture {
            tracks: self
                .tracks
                .into_iter()
                .filter_map(|mut track| {
                    track.info.id = renumber(track.info.id)?;
                    Some(track)
                })
                .collect(),
            packets: self
                .packets
                .into_iter()
                .filter_map(|(at, id, packet)| Some((at, renumber(id)?, packet)))
                .collect(),
            sender_reports: self
                .sender_reports
                .into_iter()
                .filter_map(|(at, id, report)| Some((at, renumber(id)?, report)))
                .collect(),
        })
    }

    /// Loads a pcap or pcapng file of RTP over UDP, described by an SDP file.
    pub fn load(pcap: &Path, sdp: &Path) -> Result<Capture, ReplayError> {
        let sdp_text = read_capped(sdp, MAX_SDP_FILE_BYTES)?;
        let capture = read_capped(pcap, MAX_CAPTURE_BYTES)?;
        Capture::parse(Bytes::from(capture), &sdp_text, &pcap.display().to_string()).map_err(
            |error| {
                // Problems with the description are the SDP file's: name that one.
                let source_name = sdp.display().to_string();
                match error {
                    ReplayError::Sdp { source, .. } => ReplayError::Sdp {
                        source_name,
                        source,
                    },
                    ReplayError::NoTracks { .. } => ReplayError::NoTracks { source_name },
                    other => other,
                }
            },
        )
    }

    /// Parses capture bytes; `source_name` names them in errors and logs.
    pub fn parse(
        capture: Bytes,
        sdp_text: &[u8],
        source_name: &str,
    ) -> Result<Capture, ReplayError> {
        Capture::parse_limited(capture, sdp_text, source_name, MAX_PACKETS)
    }

    fn parse_limited(
        capture: Bytes,
        sdp_text: &[u8],
        source_name: &str,
        max_packets: usize,
    ) -> Result<Capture, ReplayError> {
        let tracks = sdp::parse_tracks(sdp_text).map_err(|source| ReplayError::Sdp {
            source_name: source_name.to_owned(),
            source,
        })?;
        if tracks.is_empty() {
            return Err(ReplayError::NoTracks {
                source_name: source_name.to_owned(),
            });
        }
        let router = Router::new(&tracks, source_name)?;
        let mut collector = Collector {
            buffer: &capture,
            router,
            packets: Vec::new(),
            max_packets,
            sender_reports: Vec::new(),
            first: None,
            skipped: 0,
            source_name,
        };
        let magic = capture.get(..4).unwrap_or(&capture);
        if PCAP_MAGICS.iter().any(|m| m == magic) {
            read_pcap(&capture, &mut collector)?;
        } else if magic == PCAPNG_MAGIC {
            read_pcapng(&capture, &mut collector)?;
        } else {
            return Err(ReplayError::NotACapture {
                source_name: source_name.to_owned(),
                magic: magic.to_vec(),
            });
        }
        if collector.packets.is_empty() {
            return Err(ReplayError::NoPackets {
                source_name: source_name.to_owned(),
            });
        }
        tracing::debug!(
            capture = source_name,
            packets = collector.packets.len(),
            skipped = collector.skipped,
            "capture loaded"
        );
        let sender_reports = collector.routed_sender_reports();
        Ok(Capture {
            tracks,
            packets: collector.packets,
            sender_reports,
        })
    }

    /// Offset of the last packet: how long one pass takes at real-time speed.
    pub fn duration(&self) -> Duration {
        self.packets
            .last()
            .map_or(Duration::ZERO, |(offset, _, _)| *offset)
    }

    /// How far apart two passes of a looped replay start, in arrival time and
    /// in every track's timestamps: past the last packet's arrival and past the
    /// latest presentation time of every track (with B-frames the last packets
    /// sent are pictures shown before the last one), plus [`LOOP_GAP`], so the
    /// next pass's first picture comes after every picture of this one.
    pub fn pass_length(&self) -> Duration {
        let presented = self
            .tracks
            .iter()
            .map(|track| self.timestamp_span(track.info.id, track.info.clock_rate))
            .max()
            .unwrap_or(Duration::ZERO);
        self.duration().max(presented) + LOOP_GAP
    }

    /// From the earliest to the latest RTP timestamp of `track`'s packets,
    /// measured from its first packet (timestamps are modulo 2^32).
    fn timestamp_span(&self, track: TrackId, clock_rate: u32) -> Duration {
        let mut timestamps = self
            .packets
            .iter()
            .filter(|(_, id, _)| *id == track)
            .map(|(_, _, p)| p.timestamp());
        let Some(first) = timestamps.next() else {
            return Duration::ZERO;
        };
        let (earliest, latest) = timestamps.fold((0i64, 0i64), |(lo, hi), ts| {
            let from_first = i64::from(ts.wrapping_sub(first) as i32);
            (lo.min(from_first), hi.max(from_first))
        });
        let ticks = u64::try_from(latest - earliest).unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / f64::from(clock_rate.max(1)))
    }

    /// Number of packets of `track`.
    pub fn packet_count(&self, track: TrackId) -> usize {
        self.packets.iter().filter(|(_, t, _)| *t == track).count()
    }
}

/// The bundled H.264 + AAC capture (compiled in: no files needed at run time).
pub fn demo_capture() -> Result<Capture, ReplayError> {
    Capture::parse(Bytes::from_static(DEMO_PCAP), DEMO_SDP, DEMO_NAME)
}

/// Sends `capture` into `hub` through a [`StreamIngest`], each packet at its
/// captured offset divided by `speed` (1.0 = real time). Bad packets are counted
/// and logged by the ingest, not fatal. Without `looped` it returns after one
/// pass; with it, it runs until the future is dropped (aborted).
///
/// Loops continue the source's own timeline rather than restarting it: pass `k`
/// is sent with its RTP timestamps advanced by `k` pass lengths (in each track's
/// clock) and its sequence numbers by `k` times the track's sequence span, as if
/// the camera had simply kept sending. Every track then advances by exactly the
/// same time per pass, so audio and video stay in step however long the demo
/// runs (a restart re-anchors each track on its own arrival times, and tracks
/// whose packets carry several frames, like AAC here, would drift by a fraction
/// of a packet per pass). Passes after the first copy each packet once to
/// rewrite its header; the first pass sends the capture's buffers as they are.
pub async fn run(
    capture: Arc<Capture>,
    hub: Hub,
    speed: f64,
    looped: bool,
) -> Result<(), ReplayError> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(ReplayError::BadSpeed { speed });
    }
    let mut ingest =
        StreamIngest::new(hub, capture.tracks.iter().map(|t| t.info.clone()).collect());
    let pass_length = capture.pass_length();
    let shifts = PassShift::for_capture(&capture, pass_length);
    let mut pass_start = tokio::time::Instant::now() + lead_in(&capture).div_f64(speed);
    let mut pass: u32 = 0;
    loop {
        let mut sender_reports = capture.sender_reports.iter().peekable();
        for (offset, track, packet) in &capture.packets {
            let due = pass_start + offset.div_f64(speed);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            while let Some((_, report_track, report)) =
                sender_reports.next_if(|(at, _, _)| at <= offset)
            {
                if let Some(shift) = shifts.get(report_track) {
                    let now = tokio::time::Instant::now().into_std();
                    ingest.on_sender_report(*report_track, &shift.apply_report(report, pass), now);
                }
            }
            let Some(packet) = shifts.get(track).map(|s| s.apply(packet, pass)) else {
                continue;
            };
            // The ingest counts and rate-limits its own error logs.
            let _ = ingest.push_rtp(*track, packet, tokio::time::Instant::now().into_std());
        }
        if !looped {
            return Ok(());
        }
        pass_start += pass_length.div_f64(speed);
        pass = pass.wrapping_add(1);
    }
}

/// How long the first pass waits before its first packet: as long as the
/// source's sender reports say another track's first frame was stamped before
/// that packet's. Output time cannot go below zero, so without this wait a
/// track that the source stamped earlier but sent later (AAC behind H.264)
/// could not be placed where the reports put it when the replay starts with
/// its Hub. At most [`MAX_JUMP`], beyond which the ingest ignores the reports.
fn lead_in(capture: &Capture) -> Duration {
    const NANOS: i128 = 1_000_000_000;
    // Nanoseconds on the source's NTP clock at which it stamped a track's first packet.
    let first_stamped = |track: &SdpTrack| -> Option<i128> {
        let id = track.info.id;
        let (_, _, report) = capture.sender_reports.iter().find(|(_, t, _)| *t == id)?;
        let (_, _, first) = capture.packets.iter().find(|(_, t, _)| *t == id)?;
        let ticks = i128::from(first.timestamp().wrapping_sub(report.rtp_time) as i32);
        let rate = i128::from(track.info.clock_rate.max(1));
        Some(((i128::from(report.ntp_time) * NANOS) >> 32) + ticks * NANOS / rate)
    };
    let first_sent = capture
        .packets
        .first()
        .and_then(|(_, id, _)| capture.tracks.iter().find(|t| t.info.id == *id))
        .and_then(first_stamped);
    let earliest = capture.tracks.iter().filter_map(first_stamped).min();
    let (Some(first_sent), Some(earliest)) = (first_sent, earliest) else {
        return Duration::ZERO;
    };
    let ahead = u64::try_from(first_sent - earliest).unwrap_or(0);
    Duration::from_nanos(ahead).min(MAX_JUMP)
}

/// How far one pass moves a track's RTP timestamps and sequence numbers (and
/// its sender reports' NTP times, in 32.32 fixed point).
struct PassShift {
    timestamp: u32,
    sequence: u16,
    ntp: u64,
}

impl PassShift {
    /// One per track, by id.
    fn for_capture(capture: &Capture, pass_length: Duration) -> HashMap<TrackId, PassShift> {
        capture
            .tracks
            .iter()
            .map(|track| {
                let mut sequences = capture
                    .packets
                    .iter()
                    .filter(|(_, id, _)| *id == track.info.id)
                    .map(|(_, _, p)| p.sequence_number());
                let first = sequences.next().unwrap_or_default();
                let last = sequences.last().unwrap_or(first);
                let ticks =
                    pass_length.as_nanos() * u128::from(track.info.clock_rate) / 1_000_000_000;
                let shift = PassShift {
                    // RTP timestamps are modulo 2^32: truncation is the intent.
                    timestamp: ticks as u32,
                    sequence: last.wrapping_sub(first).wrapping_add(1),
                    // NTP times are modulo 2^64 too.
                    ntp: ((pass_length.as_nanos() << 32) / 1_000_000_000) as u64,
                };
                (track.info.id, shift)
            })
            .collect()
    }

    /// `report` as sent in pass `pass`: the same mapping, `pass` passes later.
    fn apply_report(&self, report: &SenderReport, pass: u32) -> SenderReport {
        SenderReport {
            ntp_time: report
                .ntp_time
                .wrapping_add(self.ntp.wrapping_mul(u64::from(pass))),
            rtp_time: report
                .rtp_time
                .wrapping_add(self.timestamp.wrapping_mul(pass)),
            ..report.clone()
        }
    }

    /// `packet` as sent in pass `pass`.
    fn apply(&self, packet: &RtpPacket, pass: u32) -> RtpPacket {
        if pass == 0 {
            return packet.clone();
        }
        let mut raw = bytes::BytesMut::from(packet.raw().as_ref());
        let sequence = packet
            .sequence_number()
            .wrapping_add(self.sequence.wrapping_mul(pass as u16));
        let timestamp = packet
            .timestamp()
            .wrapping_add(self.timestamp.wrapping_mul(pass));
        raw[2..4].copy_from_slice(&sequence.get().to_be_bytes());
        raw[4..8].copy_from_slice(&timestamp.to_be_bytes());
        // Only fixed-header fields changed, so the packet stays valid.
        RtpPacket::parse(raw.freeze()).unwrap_or_else(|_| packet.clone())
    }
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReplayError> {
    let io = |source| ReplayError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > max {
        return Err(ReplayError::TooLarge {
            source_name: path.display().to_string(),
            len,
            max,
        });
    }
    std::fs::read(path).map_err(io)
}

/// Decides which track a datagram belongs to.
enum Router {
    ByPort(HashMap<u16, TrackId>),
    ByPayloadType(HashMap<PayloadType, TrackId>),
}

impl Router {
    fn new(tracks: &[SdpTrack], source_name: &str) -> Result<Router, ReplayError> {
        let ports: HashMap<u16, TrackId> = tracks.iter().map(|t| (t.port, t.info.id)).collect();
        if ports.len() == tracks.len() && !ports.contains_key(&0) {
            return Ok(Router::ByPort(ports));
        }
        let payload_types: HashMap<PayloadType, TrackId> = tracks
            .iter()
            .map(|t| (t.info.payload_type, t.info.id))
            .collect();
        if payload_types.len() == tracks.len() {
            return Ok(Router::ByPayloadType(payload_types));
        }
        Err(ReplayError::AmbiguousTracks {
            source_name: source_name.to_owned(),
            ports: tracks.iter().map(|t| t.port).collect(),
        })
    }

    fn route(&self, destination_port: u16, packet: &RtpPacket) -> Option<TrackId> {
        match self {
            Router::ByPort(ports) => ports.get(&destination_port).copied(),
            Router::ByPayloadType(types) => types.get(&packet.payload_type()).copied(),
        }
    }
}

/// Turns captured frames into routed RTP packets.
struct Collector<'a> {
    buffer: &'a Bytes,
    router: Router,
    packets: Vec<(Duration, TrackId, RtpPacket)>,
    max_packets: usize,
    /// Sender reports with their capture timestamps, not yet given a track.
    sender_reports: Vec<(Duration, SenderReport)>,
    first: Option<Duration>,
    /// Frames not kept: other traffic, fragments, bad RTCP, reports over the cap.
    skipped: usize,
    source_name: &'a str,
}

impl Collector<'_> {
    fn bad(&self, record: usize, reason: impl Into<String>) -> ReplayError {
        ReplayError::BadCapture {
            source_name: self.source_name.to_owned(),
            record,
            reason: reason.into(),
        }
    }

    /// Handles one captured frame taken at `timestamp` (since the Unix epoch).
    fn frame(
        &mut self,
        link: DataLink,
        data: &[u8],
        timestamp: Duration,
    ) -> Result<(), ReplayError> {
        let sliced = match link {
            DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
            DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data),
            // BSD loopback: a 4-byte address family, then the IP packet.
            DataLink::NULL | DataLink::LOOP => {
                SlicedPacket::from_ip(data.get(4..).unwrap_or_default())
            }
            _ => {
                return Err(ReplayError::UnsupportedLinkType {
                    source_name: self.source_name.to_owned(),
                    link,
                });
            }
        };
        let Ok(SlicedPacket {
            transport: Some(TransportSlice::Udp(udp)),
            ..
        }) = sliced
        else {
            self.skipped += 1;
            return Ok(());
        };
        if is_rtcp(udp.payload()) {
            self.rtcp(udp.payload(), timestamp);
            return Ok(());
        }
        let Ok(packet) = RtpPacket::parse(share(self.buffer, udp.payload())) else {
            self.skipped += 1;
            return Ok(());
        };
        let Some(track) = self.router.route(udp.destination_port(), &packet) else {
            self.skipped += 1;
            return Ok(());
        };
        if self.packets.len() == self.max_packets {
            return Err(ReplayError::TooManyPackets {
                source_name: self.source_name.to_owned(),
                max: self.max_packets,
            });
        }
        let first = *self.first.get_or_insert(timestamp);
        let previous = self
            .packets
            .last()
            .map_or(Duration::ZERO, |(offset, _, _)| *offset);
        // Captures from several interfaces may be slightly out of order: never go back.
        let offset = timestamp.saturating_sub(first).max(previous);
        self.packets.push((offset, track, packet));
        Ok(())
    }

    /// Keeps the sender reports of an RTCP datagram captured at `timestamp`.
    fn rtcp(&mut self, datagram: &[u8], timestamp: Duration) {
        let Ok(packets) = rtcp::parse_compound(datagram) else {
            self.skipped += 1;
            return;
        };
        for packet in packets {
            if let RtcpPacket::SenderReport(report) = packet {
                if self.sender_reports.len() == MAX_SENDER_REPORTS {
                    self.skipped += 1;
                    return;
                }
                self.sender_reports.push((timestamp, report));
            }
        }
    }

    /// The sender reports on the SSRC of a kept track, with offsets on the
    /// packets' clock. Reports are matched by SSRC rather than port so that
    /// rtcp-mux and captures routed by payload type work alike, and other
    /// sessions' RTCP in the capture is ignored.
    fn routed_sender_reports(&mut self) -> Vec<(Duration, TrackId, SenderReport)> {
        let tracks_by_ssrc: HashMap<Ssrc, TrackId> = self
            .packets
            .iter()
            .map(|(_, track, packet)| (packet.ssrc(), *track))
            .collect();
        let first = self.first.unwrap_or(Duration::ZERO);
        let mut previous = Duration::ZERO;
        std::mem::take(&mut self.sender_reports)
            .into_iter()
            .filter_map(|(timestamp, report)| {
                let track = *tracks_by_ssrc.get(&report.ssrc)?;
                previous = timestamp.saturating_sub(first).max(previous);
                Some((previous, track, report))
            })
            .collect()
    }
}

/// RTCP rather than RTP (RFC 5761 section 4: packet types 200..=204 in the
/// second byte, which RTP payload types 72..=76 with the marker set never use).
fn is_rtcp(datagram: &[u8]) -> bool {
    datagram
        .get(1)
        .is_some_and(|packet_type| (200..=204).contains(packet_type))
}

/// A `Bytes` for `part`, which the parsers borrow from `buffer`: a refcounted
/// slice when it lies inside `buffer`, otherwise (never expected) a copy.
fn share(buffer: &Bytes, part: &[u8]) -> Bytes {
    let start = buffer.as_ptr() as usize;
    let part_start = part.as_ptr() as usize;
    if part_start >= start && part_start + part.len() <= start + buffer.len() {
        buffer.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

fn read_pcap(capture: &[u8], collector: &mut Collector<'_>) -> Result<(), ReplayError> {
    let (mut rest, parser) =
        PcapParser::new(capture).map_err(|e| collector.bad(0, format!("pcap header: {e}")))?;
    let link = parser.header().datalink;
    let mut record = 0;
    while !rest.is_empty() {
        record += 1;
        match parser.next_packet(rest) {
            Ok((next, packet)) => {
                collector.frame(link, &packet.data, packet.timestamp)?;
                rest = next;
            }
            Err(pcap_file::PcapError::IncompleteBuffer) => {
                tracing::warn!(
                    capture = collector.source_name,
                    record,
                    "capture ends in the middle of a record; ignoring it"
                );
                break;
            }
            Err(e) => return Err(collector.bad(record, e.to_string())),
        }
    }
    Ok(())
}

fn read_pcapng(capture: &[u8], collector: &mut Collector<'_>) -> Result<(), ReplayError> {
    let (mut rest, mut parser) = PcapNgParser::new(capture)
        .map_err(|e| collector.bad(0, format!("pcapng section header: {e}")))?;
    let mut record = 0;
    while !rest.is_empty() {
        record += 1;
        let block = match parser.next_block(rest) {
            Ok((next, block)) => {
                rest = next;
                block
            }
            Err(pcap_file::PcapError::IncompleteBuffer) => {
                tracing::warn!(
                    capture = collector.source_name,
                    record,
                    "capture ends in the middle of a block; ignoring it"
                );
                break;
            }
            Err(e) => return Err(collector.bad(record, e.to_string())),
        };
        match block {
            Block::EnhancedPacket(packet) => {
                let Some(interface) = parser.packet_interface(&packet) else {
                    return Err(collector.bad(
                        record,
                        format!("packet of undeclared interface {}", packet.interface_id),
                    ));
                };
                let tsresol = interface
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    })
                    .unwrap_or(PCAPNG_DEFAULT_TSRESOL);
                // pcap-file returns the raw timestamp units as nanoseconds; scale by if_tsresol.
                let timestamp = scale_pcapng_timestamp(packet.timestamp.as_nanos(), tsresol)
                    .ok_or_else(|| {
                        collector.bad(
                            record,
                            format!("timestamp out of range (if_tsresol {tsresol})"),
                        )
                    })?;
                collector.frame(interface.linktype, &packet.data, timestamp)?;
            }
            Block::SimplePacket(_) | Block::Packet(_) => {
                return Err(collector.bad(
                    record,
                    "simple/obsolete packet blocks carry no usable timestamp",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Converts `units` of pcapng resolution `tsresol` (bit 7 clear: 10^-n s, set: 2^-n s).
fn scale_pcapng_timestamp(units: u128, tsresol: u8) -> Option<Duration> {
    let exponent = u32::from(tsresol & 0x7f);
    let nanos = if tsresol & 0x80 == 0 {
        let per_second = 10u128.checked_pow(exponent)?;
        units.checked_mul(1_000_000_000)? / per_second
    } else {
        units.checked_mul(1_000_000_000)?.checked_shr(exponent)?
    };
    Some(Duration::from_nanos(u64::try_from(nanos).ok()?))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;

    use super::*;
    use streamgate_pipeline::HubConfig;
    use streamgate_rtp::Codec;
    use streamgate_rtp::SeqNo;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures")
            .join(name)
    }

    fn load(name: &str) -> Capture {
        Capture::load(
            &fixture(&format!("{name}.pcap")),
            &fixture(&format!("{name}.sdp")),
        )
        .unwrap()
    }

    #[test]
    fn video_only_keeps_the_video_track_and_its_packets() {
        let capture = load("ffmpeg_h264_aac");
        let video_packets = capture.packet_count(TrackId::new(0));
        let video = capture.video_only("ffmpeg_h264_aac").unwrap();
        assert_eq!(video.tracks.len(), 1);
        assert_eq!(video.tracks[0].info.codec, Codec::H264);
        assert_eq!(video.tracks[0].info.id, TrackId::new(0));
        assert_eq!(video.packets.len(), video_packets);
        assert!(video.sender_reports.iter().all(|(_, id, _)| id.get() == 0));
        let audio_only = load("ffmpeg_h264_aac");
        let audio = Capture {
            tracks: audio_only.tracks[1..].to_vec(),
            ..audio_only
        };
        assert!(matches!(
            audio.video_only("audio"),
            Err(ReplayError::NoTracks { .. })
        ));
    }

    /// Packet counts per track, as listed in each fixture's .txt summary.
    #[test]
    fn fixtures_load_with_the_expected_tracks_and_packet_counts() {
        let cases: &[(&str, &[(Codec, usize)])] = &[
            ("ffmpeg_h264_aac", &[(Codec::H264, 482), (Codec::Aac, 78)]),
            (
                "ffmpeg_h264_opus",
                &[(Codec::H264, 490), (Codec::Opus, 501)],
            ),
            ("ffmpeg_h265", &[(Codec::H265, 397)]),
            (
                "ffmpeg_h264_latm",
                &[(Codec::H264, 482), (Codec::AacLatm, 470)],
            ),
        ];
        for (name, expected) in cases {
            let capture = load(name);
            let got: Vec<_> = capture
                .tracks
                .iter()
                .map(|t| (t.info.codec, capture.packet_count(t.info.id)))
                .collect();
            assert_eq!(&got, expected, "{name}");
            assert!(
                capture.packets.windows(2).all(|w| w[0].0 <= w[1].0),
                "{name}: offsets go back"
            );
            assert_eq!(capture.packets[0].0, Duration::ZERO);
            let duration = capture.duration();
            assert!(
                duration > Duration::from_secs(9) && duration < Duration::from_secs(11),
                "{name}: {duration:?}"
            );
            // Every packet of a track carries that track's payload type, in sequence.
            for track in &capture.tracks {
                let seqs: Vec<SeqNo> = capture
                    .packets
                    .iter()
                    .filter(|(_, t, _)| *t == track.info.id)
                    .map(|(_, _, p)| {
                        assert_eq!(p.payload_type(), track.info.payload_type);
                        p.sequence_number()
                    })
                    .collect();
                assert!(
                    seqs.windows(2).all(|w| w[1] == w[0].next()),
                    "{name}: sequence gap"
                );
            }
        }
    }

    #[test]
    fn demo_capture_is_the_bundled_h264_aac_and_shares_its_buffer() {
        let demo = demo_capture().unwrap();
        let codecs: Vec<_> = demo.tracks.iter().map(|t| t.info.codec).collect();
        assert_eq!(codecs, [Codec::H264, Codec::Aac]);
        assert_eq!(demo.packets.len(), 482 + 78);
        let range = DEMO_PCAP.as_ptr_range();
        for (_, _, packet) in &demo.packets {
            assert!(
                range.contains(&packet.raw().as_ptr()),
                "packet was copied out of the capture"
            );
        }
    }

    /// Rewrites a classic pcap as pcapng with the given timestamp resolution.
    fn to_pcapng(pcap: &[u8], tsresol: Option<u8>) -> Vec<u8> {
        let (mut rest, parser) = PcapParser::new(pcap).unwrap();
        let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
        let mut interface = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535);
        if let Some(r) = tsresol {
            interface
                .options
                .push(InterfaceDescriptionOption::IfTsResol(r));
        }
        writer.write_pcapng_block(interface).unwrap();
        while !rest.is_empty() {
            let (next, packet) = parser.next_packet(rest).unwrap();
            rest = next;
            let units = match tsresol {
                Some(9) => packet.timestamp.as_nanos(),
                None => packet.timestamp.as_micros(),
                Some(other) => panic!("unhandled tsresol {other}"),
            };
            let block = EnhancedPacketBlock {
                interface_id: 0,
                // pcap-file writes the raw units it is given as "nanoseconds".
                timestamp: Duration::from_nanos(units as u64),
                original_len: packet.orig_len,
                data: Cow::Borrowed(&packet.data),
                options: vec![],
            };
            writer.write_pcapng_block(block).unwrap();
        }
        writer.into_inner()
    }

    #[test]
    fn pcapng_loads_like_pcap_at_any_timestamp_resolution() {
        let pcap = std::fs::read(fixture("ffmpeg_h264_opus.pcap")).unwrap();
        let sdp = std::fs::read(fixture("ffmpeg_h264_opus.sdp")).unwrap();
        let reference = Capture::parse(Bytes::from(pcap.clone()), &sdp, "pcap").unwrap();
        for tsresol in [None, Some(9)] {
            let ng =
                Capture::parse(Bytes::from(to_pcapng(&pcap, tsresol)), &sdp, "pcapng").unwrap();
            assert_eq!(ng.packets.len(), reference.packets.len());
            for ((a_off, a_track, a), (b_off, b_track, b)) in
                ng.packets.iter().zip(&reference.packets)
            {
                assert_eq!((a_track, a.raw()), (b_track, b.raw()));
                let diff = a_off.abs_diff(*b_off);
                assert!(
                    diff <= Duration::from_micros(1),
                    "tsresol {tsresol:?}: {a_off:?} vs {b_off:?}"
                );
            }
        }
    }

    #[test]
    fn pcapng_timestamp_scaling() {
        assert_eq!(
            scale_pcapng_timestamp(1_500_000, 6),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            scale_pcapng_timestamp(1_500, 3),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            scale_pcapng_timestamp(3 << 10, 0x80 | 10),
            Some(Duration::from_secs(3))
        );
        assert_eq!(scale_pcapng_timestamp(u128::MAX, 6), None);
        assert_eq!(scale_pcapng_timestamp(1, 0x7f), None);
        assert_eq!(scale_pcapng_timestamp(1, 0xff), Some(Duration::ZERO));
    }

    fn parse_with(capture: Vec<u8>, sdp: &[u8]) -> Result<Capture, ReplayError> {
        Capture::parse(Bytes::from(capture), sdp, "test.pcap")
    }

    #[test]
    fn bad_input_gives_clear_errors() {
        let pcap = std::fs::read(fixture("ffmpeg_h265.pcap")).unwrap();
        let sdp = std::fs::read(fixture("ffmpeg_h265.sdp")).unwrap();
        let expect = |result: Result<Capture, ReplayError>, text: &str| {
            let err = result.expect_err(text).to_string();
            assert!(err.contains(text), "expected {text:?} in {err:?}");
            assert!(
                err.starts_with("test.pcap") || err.contains("test.pcap"),
                "{err}"
            );
        };
        expect(
            parse_with(b"GIF89a...".to_vec(), &sdp),
            "not a pcap or pcapng file",
        );
        expect(parse_with(vec![], &sdp), "not a pcap or pcapng file");
        expect(
            parse_with(pcap[..20].to_vec(), &sdp),
            "bad capture at record 0",
        );

        let mut bad_link = pcap.clone();
        bad_link[20] = 147; // LINKTYPE_USER0
        expect(parse_with(bad_link, &sdp), "not supported");

        expect(
            parse_with(
                pcap.clone(),
                b"v=0\r\nm=video 5004 RTP/AVP 98\r\na=rtpmap:98 VP8/90000\r\n",
            ),
            "no track",
        );
        expect(parse_with(pcap.clone(), b"x=1"), "malformed SDP");
        let other_port = String::from_utf8(sdp.clone())
            .unwrap()
            .replace("m=video 5004", "m=video 6000");
        expect(
            parse_with(pcap.clone(), other_port.as_bytes()),
            "no RTP packet was sent",
        );
        let ambiguous = b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n";
        expect(parse_with(pcap.clone(), ambiguous), "cannot be told apart");

        let sdp_file = std::env::temp_dir().join(format!("replay-test-{}.sdp", std::process::id()));
        std::fs::write(
            &sdp_file,
            "v=0\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/0\r\n",
        )
        .unwrap();
        let err = Capture::load(&fixture("ffmpeg_h265.pcap"), &sdp_file)
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_file(&sdp_file);
        assert!(
            err.starts_with(&format!("{}: SDP media #0", sdp_file.display())),
            "{err}"
        );

        let missing = Capture::load(
            Path::new("/nonexistent/x.pcap"),
            &fixture("ffmpeg_h265.sdp"),
        )
        .unwrap_err();
        assert!(
            missing.to_string().starts_with("/nonexistent/x.pcap: "),
            "{missing}"
        );
    }

    #[test]
    fn loading_caps_give_clear_errors() {
        let pcap = std::fs::read(fixture("ffmpeg_h265.pcap")).unwrap();
        let sdp = std::fs::read(fixture("ffmpeg_h265.sdp")).unwrap();
        let err =
            Capture::parse_limited(Bytes::from(pcap.clone()), &sdp, "test.pcap", 396).unwrap_err();
        assert_eq!(err.to_string(), "test.pcap: more than 396 RTP packets");
        assert_eq!(
            Capture::parse_limited(Bytes::from(pcap), &sdp, "test.pcap", 397)
                .unwrap()
                .packets
                .len(),
            397
        );

        let path = fixture("ffmpeg_h265.pcap");
        let err = read_capped(&path, 1000).unwrap_err().to_string();
        assert!(
            err.ends_with("ffmpeg_h265.pcap: 368988 bytes exceeds the 1000-byte limit"),
            "{err}"
        );
    }

    #[test]
    fn truncated_last_record_is_dropped_not_fatal() {
        let pcap = std::fs::read(fixture("ffmpeg_h265.pcap")).unwrap();
        let sdp = std::fs::read(fixture("ffmpeg_h265.sdp")).unwrap();
        let full = parse_with(pcap.clone(), &sdp).unwrap();
        let cut = parse_with(pcap[..pcap.len() - 10].to_vec(), &sdp).unwrap();
        assert_eq!(cut.packets.len(), full.packets.len() - 1);
    }

    #[test]
    fn routes_by_payload_type_when_the_sdp_has_no_ports() {
        let pcap = std::fs::read(fixture("ffmpeg_h264_aac.pcap")).unwrap();
        let sdp = String::from_utf8(std::fs::read(fixture("ffmpeg_h264_aac.sdp")).unwrap())
            .unwrap()
            .replace("m=video 5004", "m=video 0")
            .replace("m=audio 5006", "m=audio 0");
        let capture = parse_with(pcap, sdp.as_bytes()).unwrap();
        assert_eq!(
            (
                capture.packet_count(TrackId::new(0)),
                capture.packet_count(TrackId::new(1))
            ),
            (482, 78)
        );
        // Sender reports are matched to tracks by SSRC, not port.
        assert_eq!(capture.sender_reports.len(), 4);
    }

    #[test]
    fn corrupted_captures_never_panic() {
        let pcap = std::fs::read(fixture("ffmpeg_h264_aac.pcap")).unwrap();
        let sdp = std::fs::read(fixture("ffmpeg_h264_aac.sdp")).unwrap();
        let ng = to_pcapng(&pcap, None);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for base in [&pcap, &ng] {
            for _ in 0..300 {
                let mut data = base[..base.len().min(40_000)].to_vec();
                for _ in 0..8 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let at = (seed as usize) % data.len();
                    data[at] = (seed >> 40) as u8;
                }
                match parse_with(data, &sdp) {
                    Ok(capture) => assert!(capture.packets.len() <= 482 + 78),
                    Err(e) => assert!(e.to_string().starts_with("test.pcap"), "{e}"),
                }
            }
        }
    }

    /// Frames a subscriber receives while `capture` is replayed `passes` times
    /// (in paused tokio time, so the test takes no real time).
    async fn replay_frames(
        capture: Capture,
        passes: u32,
    ) -> (Vec<Arc<streamgate_rtp::Frame>>, u64) {
        let capture = Arc::new(capture);
        let hub = Hub::new("replay-test", HubConfig::default());
        let mut subscription = hub.subscribe();
        // Paused tokio time stands still while the test sets up, the Hub's
        // std-clock origin does not: catch up, so that the replay starts at its
        // Hub's origin as it does in production.
        let behind = hub
            .origin()
            .0
            .saturating_duration_since(tokio::time::Instant::now().into_std());
        tokio::time::advance(behind).await;
        let pass = capture.pass_length();
        let end = tokio::time::Instant::now() + lead_in(&capture) + pass * passes - LOOP_GAP / 2;
        let replay = tokio::spawn(run(capture, hub.clone(), 1.0, true));
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = tokio::time::timeout_at(end, subscription.recv()).await {
            frames.push(frame);
        }
        replay.abort();
        (frames, subscription.dropped())
    }

    #[tokio::test(start_paused = true)]
    async fn looped_replay_keeps_time_running_forward() {
        let (frames, dropped) = replay_frames(load("ffmpeg_h264_aac"), 3).await;
        assert_eq!(dropped, 0);
        let video: Vec<_> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .collect();
        let audio: Vec<_> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Audio)
            .collect();
        // 250 pictures per pass; the AAC track's 78 packets carry ~469 frames.
        assert_eq!(video.len(), 3 * 250);
        assert!(audio.len() > 3 * 460, "{} audio frames", audio.len());
        assert_eq!(video.iter().filter(|f| f.keyframe).count(), 3 * 5);
        for track in [&video, &audio] {
            assert!(
                track.windows(2).all(|w| w[1].pts > w[0].pts),
                "pts must increase across loops"
            );
        }
        // Output RTP headers continue too: sequence numbers never restart.
        let seqs: Vec<SeqNo> = video
            .iter()
            .flat_map(|f| f.packets.iter().map(|p| p.sequence()))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].next()),
            "output sequence numbers jump"
        );
        // A pass is ~10 s: the third pass's first picture is ~20 s after the first's.
        // Each pass moves both tracks by exactly one pass length: audio and video
        // stay in step however many times the capture loops.
        let pass = load("ffmpeg_h264_aac").pass_length().as_secs_f64();
        let audio_per_pass = audio.len() / 3;
        for k in 1..3 {
            let video_step = (video[250 * k].pts - video[0].pts) as f64 / 90_000.0;
            let audio_step = (audio[audio_per_pass * k].pts - audio[0].pts) as f64 / 48_000.0;
            let expected = pass * k as f64;
            assert!(
                (video_step - expected).abs() < 1e-4,
                "pass {k}: video moved {video_step} s, not {expected}"
            );
            assert!(
                (audio_step - expected).abs() < 1e-4,
                "pass {k}: audio moved {audio_step} s, not {expected}"
            );
        }
        assert!(
            frames.iter().all(|f| !f.discontinuity),
            "a loop is not a discontinuity"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn looped_b_pyramid_shows_every_picture_of_a_pass_before_the_next() {
        let (frames, _) = replay_frames(load("ffmpeg_h265_bframes"), 2).await;
        let mut shown: Vec<u64> = frames.iter().map(|f| f.pts).collect();
        assert_eq!(shown.len(), 2 * 250);
        // Sent in decode order, the last pictures of a pass are B-frames shown
        // before its last P-frame: the next pass must start after that P-frame.
        let second_pass_first = shown[250];
        assert!(
            shown[..250].iter().all(|&pts| pts < second_pass_first),
            "pictures of the first pass are shown after the second pass's first"
        );
        // In presentation order the pictures are one frame (3600 ticks) apart,
        // the seam included.
        shown.sort_unstable();
        let steps: Vec<u64> = shown.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            steps.iter().all(|&step| step == 3600),
            "presentation steps: {steps:?}"
        );
    }

    /// Seconds the source's first sender report of `track` puts between the
    /// capture of its first RTP packet and an arbitrary common NTP epoch.
    fn source_seconds_of_first_packet(capture: &Capture, track: &SdpTrack) -> f64 {
        let id = track.info.id;
        let (_, _, report) = capture
            .sender_reports
            .iter()
            .find(|(_, t, _)| *t == id)
            .expect("a sender report per track");
        let (_, _, first) = capture.packets.iter().find(|(_, t, _)| *t == id).unwrap();
        let ticks = first.timestamp().wrapping_sub(report.rtp_time) as i32;
        report.ntp_time as f64 / 2f64.powi(32) + f64::from(ticks) / f64::from(track.info.clock_rate)
    }

    #[tokio::test(start_paused = true)]
    async fn replay_aligns_tracks_by_the_captures_sender_reports() {
        let capture = load("ffmpeg_h264_aac");
        let reported: Vec<_> = capture
            .sender_reports
            .iter()
            .map(|(_, track, _)| track.get())
            .collect();
        // ffmpeg sends one SR per track before its first packet, then every 5 s.
        assert_eq!(reported, [0, 1, 0, 1], "sender reports per track");
        let (video_track, audio_track) = (&capture.tracks[0], &capture.tracks[1]);
        // The AAC track's first packet was sent ~130 ms after the video's, but
        // the source stamped its first frame 21 ms *before* the first picture.
        let expected = source_seconds_of_first_packet(&capture, audio_track)
            - source_seconds_of_first_packet(&capture, video_track);
        let (frames, _) = replay_frames(capture, 1).await;
        let first_of = |kind| frames.iter().find(|f| f.kind == kind).unwrap();
        let (video, audio) = (first_of(MediaKind::Video), first_of(MediaKind::Audio));
        let published = match audio.wallclock.duration_since(video.wallclock) {
            Ok(later) => later.as_secs_f64(),
            Err(earlier) => -earlier.duration().as_secs_f64(),
        };
        let one_audio_frame = 1024.0 / 48_000.0;
        assert!(
            (published - expected).abs() < one_audio_frame,
            "first audio frame published {:.1} ms after the first video frame; the source's reports say {:.1} ms",
            published * 1000.0,
            expected * 1000.0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn single_pass_replay_ends_and_speed_is_checked() {
        let capture = Arc::new(load("ffmpeg_h265"));
        let hub = Hub::new("once", HubConfig::default());
        let start = tokio::time::Instant::now();
        run(capture.clone(), hub.clone(), 4.0, false).await.unwrap();
        let took = start.elapsed(); // virtual (paused) time: deterministic
        let expected = capture.duration().div_f64(4.0);
        assert!(
            took >= expected && took < expected + Duration::from_millis(50),
            "{took:?}"
        );
        assert_eq!(hub.stats().frames, 250);
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = run(capture.clone(), hub.clone(), speed, false)
                .await
                .unwrap_err();
            assert!(matches!(err, ReplayError::BadSpeed { .. }), "{err}");
        }
    }
}
