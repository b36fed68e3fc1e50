//! Stream ingest: turns a source's RTP packets into [`Frame`]s on the [`Hub`].
//!
//! Per track: reorder buffer → depacketizer → in-band parameter sets → timeline →
//! decode order (B-frames' DTS, [`DecodeOrder`]) → `Frame`. The output RTP
//! headers are written here, once per packet, so that every output forwards the
//! same bytes: a random SSRC per track that stays for the stream's life, a
//! continuous sequence number per track, the continuous timestamp (`pts`
//! truncated to 32 bits) and the track's output payload type.
//! Payloads stay slices of the received buffers.
//!
//! After packet loss the frame in progress is dropped (with any of its packets
//! still to come) and a keyframe is requested from the source through the Hub.
//! H.264/H.265 keyframes that arrive without their parameter sets in band get
//! them prepended (as units and as single-NAL packets with the frame's
//! timestamp): RTSP readers such as ffmpeg `-c copy` recorders need SPS/PPS
//! before every IDR, not only in the SDP.
//!
//! A source restart is not a discontinuity for the outputs: the timeline
//! re-anchors so output time keeps running forward (by the outage's length at
//! most), and viewers see one stream. Only a new picture format (a changed SPS)
//! marks `Frame::discontinuity`.
//!
//! After a source restart (explicit, new SSRC or renumbering) a video track
//! publishes nothing until the new session's first keyframe: a camera that
//! reconnects mid-GOP sends P-frames that reference pictures of the old session,
//! which decoders would report as missing references. The frames held back are
//! counted as dropped and a keyframe is requested once; audio keeps flowing.
//!
//! Wall-clock time is a pure function of output time: the Hub's origin (wall
//! time `W0` ↔ output time 0 in every track's clock) plus `pts / clock_rate`. The
//! NTP↔RTP mapping outputs derive from it (RTSP sender reports) is therefore one
//! straight line per stream that never jumps, across source restarts and
//! whether or not the source sends reports. The source's RTCP sender reports only
//! decide where each track's output starts in a source session (at its first
//! frames, or once when they come later), never step output time back:
//! - a frame that anchors a track is dated by the source's report instead of its
//!   arrival when the report shows the source's clock is ours and the frame was
//!   captured before it arrived: a server that sends its GOP cache at once on
//!   PLAY (another streamgate) would otherwise put output time, and the wall
//!   clock derived from it, ahead of real time by the cache's age;
//! - the tracks of one source session are put in step (audio and video captured
//!   together play together, as the source says): a track that (re-)anchors
//!   while another track of the session has a report starts where the reports
//!   place it ([`Timeline::map_aligned`]);
//! - reports that come after the tracks anchored on their own arrival (cameras
//!   send their first report a few seconds in, so after every reconnect) are
//!   compared once per session: the tracks that started early are delayed to the
//!   latest one ([`Timeline::delay`]: a gap, never a step back). Without this a
//!   reconnect would put each track wherever its first packet happened to arrive.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::hub::Hub;
use streamgate_rtp::codec::decode_order::DecodeOrder;
use streamgate_rtp::codec::nal::{NalSyntax, ParameterSet};
use streamgate_rtp::codec::{self, AccessUnit, DepacketizeError, Depacketizer};
use streamgate_rtp::rtcp::{ntp_from_system_time, SenderReport};
use streamgate_rtp::RtpPacket;
use streamgate_rtp::{AnchorHint, Timeline, MAX_JUMP};
use streamgate_rtp::{Codec, CodecParams, MediaKind, TrackId, TrackInfo};
use streamgate_rtp::{Frame, OutPacket};
use streamgate_rtp::{Pushed, Released, ReorderBuffer, ReorderConfig};

/// A sender report stamped within this of its arrival comes from a clock in step
/// with ours (the same host, or both NTP-synced): its capture times are ours. Small
/// against the GOP bursts it lets the ingest recognise, so trusting a clock that
/// is off by less moves the wall clock by less than that.
const CLOCK_AGREEMENT: Duration = Duration::from_millis(250);

/// Data-path errors are summarised in the log at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);

#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    #[error("stream {stream}: packet for unknown track {}", track.0)]
    UnknownTrack { stream: String, track: TrackId },
    #[error("stream {stream} track {}: {source}", track.0)]
    Depacketize {
        stream: String,
        track: TrackId,
        #[source]
        source: DepacketizeError,
    },
}

/// Counters since the ingest started (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestStats {
    pub packets: u64,
    /// Packets that never arrived (gaps declared lost by the reorder buffer).
    pub lost_packets: u64,
    /// Duplicates and packets that came after their gap was declared lost.
    pub discarded_packets: u64,
    /// Frames dropped because of loss, a malformed packet, or because they
    /// came after a source restart before its first video keyframe.
    pub dropped_frames: u64,
    pub depacketize_errors: u64,
    pub frames: u64,
}

/// One stream's ingest state; the source task owns it and feeds it packets.
#[derive(Debug)]
pub struct StreamIngest {
    hub: Hub,
    tracks: Vec<TrackIngest>,
    /// The stream's time zero ([`Hub::origin`]), shared by every track's
    /// timeline and the fallback wall clock: (instant, wall-clock time then).
    origin: (Instant, SystemTime),
    stats: IngestStats,
    error_log: ErrorLog,
}

#[derive(Debug)]
struct TrackIngest {
    info: TrackInfo,
    reorder: ReorderBuffer<RtpPacket>,
    /// `Err` when the track cannot be depacketized (reported on every packet).
    depacketizer: Result<Depacketizer, DepacketizeError>,
    timeline: Timeline,
    decode_order: DecodeOrder,
    source_ssrc: Option<u32>,
    output_ssrc: u32,
    next_output_sequence: u16,
    /// The source's latest RTCP sender report in this session.
    sender_report: Option<Report>,
    /// This session's line was compared with the other tracks' by their reports.
    in_step: bool,
    /// The last packet given to the depacketizer: (timestamp, marker).
    last_pushed: Option<(u32, bool)>,
    /// Timestamp of the access unit damaged by loss: its remaining packets are dropped.
    damaged_timestamp: Option<u32>,
    restart_gate: RestartGate,
}

/// A source's sender report as the ingest keeps it.
#[derive(Debug, Clone, Copy)]
struct Report {
    ntp: u64,
    rtp: u32,
    received: Instant,
}

/// Whether a video track may publish after its source restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestartGate {
    Open,
    /// Dropping frames until the new session's first keyframe; `requested` once
    /// a keyframe was asked of the source.
    AwaitingKeyframe {
        requested: bool,
    },
}

impl TrackIngest {
    fn new(info: TrackInfo, time_already_used: Duration) -> TrackIngest {
        let depacketizer = Depacketizer::new(&info);
        TrackIngest {
            reorder: ReorderBuffer::new(ReorderConfig::default()),
            depacketizer,
            timeline: Timeline::new(info.clock_rate).start_after(time_already_used),
            decode_order: DecodeOrder::new(info.codec, info.clock_rate),
            source_ssrc: None,
            output_ssrc: rand::random(),
            next_output_sequence: rand::random(),
            sender_report: None,
            in_step: false,
            last_pushed: None,
            damaged_timestamp: None,
            restart_gate: RestartGate::Open,
            info,
        }
    }

    /// Forgets the source session (new connection or SSRC), but keeps the
    /// output identity (SSRC, sequence, timeline) running.
    fn restart(&mut self) {
        self.reorder.reset();
        self.source_ssrc = None;
        self.new_session();
    }

    /// The source's numbering and clock start over (the reorder buffer already
    /// holds the new session's packets when it reports this itself).
    fn new_session(&mut self) {
        self.discard_partial();
        self.timeline.rebase();
        self.sender_report = None;
        self.in_step = false;
        self.last_pushed = None;
        if self.info.kind() == MediaKind::Video {
            self.restart_gate = RestartGate::AwaitingKeyframe { requested: false };
        }
    }

    fn discard_partial(&mut self) {
        if let Ok(depacketizer) = &mut self.depacketizer {
            depacketizer.discard_partial();
        }
        self.damaged_timestamp = None;
    }

    fn next_sequence(&mut self) -> u16 {
        let sequence = self.next_output_sequence;
        self.next_output_sequence = sequence.wrapping_add(1);
        sequence
    }

    fn out_packet(&mut self, marker: bool, timestamp: u32, payload: Bytes) -> OutPacket {
        let sequence = self.next_sequence();
        OutPacket::new(
            self.info.payload_type,
            marker,
            sequence,
            timestamp,
            self.output_ssrc,
            payload,
        )
    }
}

impl StreamIngest {
    /// Announces `tracks` on the Hub and prepares one pipeline per track. Output
    /// time continues after whatever an earlier ingest on this Hub published.
    pub fn new(hub: Hub, tracks: Vec<TrackInfo>) -> StreamIngest {
        hub.set_tracks(tracks.clone());
        let time_already_used = hub.output_time_high_water();
        let tracks: Vec<TrackIngest> = tracks
            .into_iter()
            .map(|t| TrackIngest::new(t, time_already_used))
            .collect();
        for track in &tracks {
            if let Err(error) = &track.depacketizer {
                tracing::warn!(stream = %hub.name(), track = track.info.id.0, %error, "track will be ignored");
            }
        }
        let origin = hub.origin();
        StreamIngest {
            hub,
            tracks,
            origin,
            stats: IngestStats::default(),
            error_log: ErrorLog::default(),
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// Takes one received packet of `track`; publishes the frames it completes.
    /// An error reports a bad packet (or a track that cannot be depacketized);
    /// the ingest stays usable either way.
    pub fn push_rtp(
        &mut self,
        track: TrackId,
        packet: RtpPacket,
        now: Instant,
    ) -> Result<(), IngestError> {
        let index = self
            .tracks
            .iter()
            .position(|t| t.info.id == track)
            .ok_or_else(|| IngestError::UnknownTrack {
                stream: self.hub.name().to_owned(),
                track,
            })?;
        let origin = self.origin;
        self.stats.packets += 1;
        let state = &mut self.tracks[index];
        if state.source_ssrc.is_some_and(|ssrc| ssrc != packet.ssrc()) {
            tracing::info!(stream = %self.hub.name(), track = track.0, "source SSRC changed: treating as a restart");
            state.restart();
        }
        state.source_ssrc = Some(packet.ssrc());
        match state.reorder.push(packet.sequence_number(), packet, now) {
            Pushed::Duplicate | Pushed::Late => self.stats.discarded_packets += 1,
            Pushed::Accepted | Pushed::Probation => {}
        }
        let mut first_error = None;
        while let Some(released) = self.tracks[index].reorder.pop(now) {
            let result = match released {
                Released::Packet { item, .. } => self.depacketize(index, item, now, origin),
                Released::Lost { count, .. } => {
                    self.on_loss(index, count);
                    Ok(())
                }
                Released::Restarted => {
                    self.tracks[index].new_session();
                    Ok(())
                }
            };
            if let Err(error) = result {
                self.error_log.record(self.hub.name(), &error, now);
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Records the source's RTP/NTP mapping for `track` (RTCP SR), used to put
    /// the session's tracks in step (see the module docs). A report about another
    /// SSRC than the track's packets (an earlier session) is ignored.
    pub fn on_sender_report(&mut self, track: TrackId, sr: &SenderReport, now: Instant) {
        let Some(state) = self.tracks.iter_mut().find(|t| t.info.id == track) else {
            return;
        };
        if state.source_ssrc.is_some_and(|ssrc| ssrc != sr.ssrc) {
            return;
        }
        state.sender_report = Some(Report {
            ntp: sr.ntp_time,
            rtp: sr.rtp_time,
            received: now,
        });
        self.put_tracks_in_step();
    }

    /// The source started a new session (reconnect, replay loop): forget its
    /// packet state, keep the output running forward.
    pub fn source_restarted(&mut self) {
        for track in &mut self.tracks {
            track.restart();
        }
    }

    fn on_loss(&mut self, index: usize, count: u64) {
        self.stats.lost_packets = self.stats.lost_packets.saturating_add(count);
        let state = &mut self.tracks[index];
        tracing::debug!(stream = %self.hub.name(), track = state.info.id.0, count, "RTP packets lost");
        // The packets before the gap belong to a frame that is now incomplete;
        // if the gap did not end it, its remaining packets share its timestamp.
        let damaged = state
            .last_pushed
            .filter(|(_, marker)| !marker)
            .map(|(timestamp, _)| timestamp);
        state.discard_partial();
        state.damaged_timestamp = damaged;
        self.stats.dropped_frames += 1;
        if state.info.kind() == MediaKind::Video {
            self.hub.request_keyframe();
        }
    }

    fn depacketize(
        &mut self,
        index: usize,
        packet: RtpPacket,
        now: Instant,
        origin: (Instant, SystemTime),
    ) -> Result<(), IngestError> {
        let state = &mut self.tracks[index];
        if state.damaged_timestamp == Some(packet.timestamp()) {
            return Ok(());
        }
        state.damaged_timestamp = None;
        state.last_pushed = Some((packet.timestamp(), packet.marker()));
        let depacketizer = match &mut state.depacketizer {
            Ok(depacketizer) => depacketizer,
            Err(unusable) => {
                let unusable = unusable.clone();
                return Err(self.depacketize_error(index, unusable));
            }
        };
        let pushed = depacketizer.push(packet);
        let mut units = Vec::new();
        while let Some(unit) = depacketizer.pull() {
            units.push(unit);
        }
        for unit in units {
            self.publish(index, unit, now, origin);
        }
        pushed.map_err(|error| {
            self.stats.dropped_frames += 1;
            if self.tracks[index].info.kind() == MediaKind::Video {
                self.hub.request_keyframe();
            }
            self.depacketize_error(index, error)
        })
    }

    fn depacketize_error(&mut self, index: usize, source: DepacketizeError) -> IngestError {
        self.stats.depacketize_errors += 1;
        IngestError::Depacketize {
            stream: self.hub.name().to_owned(),
            track: self.tracks[index].info.id,
            source,
        }
    }

    fn publish(
        &mut self,
        index: usize,
        unit: AccessUnit,
        now: Instant,
        origin: (Instant, SystemTime),
    ) {
        if self.held_for_keyframe(index, unit.keyframe) {
            return;
        }
        let hint = AnchorHint {
            captured: self.captured_by_sender_report(index, unit.rtp_timestamp, now, origin),
            aligned: self.aligned_by_sender_reports(index, unit.rtp_timestamp),
        };
        let state = &mut self.tracks[index];
        let info = &mut state.info;
        let previous_sps = info.params.sps.clone();
        let mut discontinuity = false;
        if codec::update_params(info.codec, &unit.units, &mut info.params) {
            // A new SPS (not the first one learned) means a new picture format.
            discontinuity = previous_sps.is_some() && previous_sps != info.params.sps;
            self.hub.update_params(info.id, info.params.clone());
        }
        let mapped = state
            .timeline
            .map_aligned(unit.rtp_timestamp, now, origin.0, hint);
        if mapped.reanchored {
            tracing::debug!(stream = %self.hub.name(), track = info.id.0, pts = mapped.pts, "timeline re-anchored");
        }
        if !state.in_step && state.sender_report.is_some() {
            self.put_tracks_in_step();
        }
        let state = &mut self.tracks[index];
        let pts = mapped.pts;
        let dts = state.decode_order.dts(&unit.units, &state.info.params, pts);
        let timestamp = pts as u32;
        let clock_rate = state.timeline.clock_rate();
        let wallclock = offset(origin.1, i64::try_from(pts).unwrap_or(i64::MAX), clock_rate);
        let kind = state.info.kind();
        let keyframe = unit.keyframe || kind == MediaKind::Audio;
        let AccessUnit {
            units,
            packets: source_packets,
            ..
        } = unit;
        let (units, parameter_sets) = match kind {
            MediaKind::Video if keyframe => {
                with_parameter_sets(state.info.codec, &state.info.params, units)
            }
            _ => (units, Vec::new()),
        };
        let mut packets = Vec::with_capacity(source_packets.len() + parameter_sets.len());
        let mut source_packets = source_packets.into_iter().peekable();
        // Keep a leading access unit delimiter first, as in the units.
        if !parameter_sets.is_empty() {
            if let Some(delimiter) =
                source_packets.next_if(|p| is_delimiter(state.info.codec, p.payload_slice()))
            {
                packets.push(state.out_packet(delimiter.marker(), timestamp, delimiter.payload()));
            }
        }
        for parameter_set in parameter_sets {
            packets.push(state.out_packet(false, timestamp, parameter_set));
        }
        for packet in source_packets {
            packets.push(state.out_packet(packet.marker(), timestamp, packet.payload()));
        }
        self.stats.frames += 1;
        self.hub.note_output_time(duration_of(pts, clock_rate));
        self.hub.publish(Frame {
            track: state.info.id,
            kind,
            pts,
            dts,
            wallclock,
            keyframe,
            discontinuity,
            units,
            packets,
        });
    }

    /// Whether track `index` drops this frame because its source restarted and
    /// the new session's first keyframe has not come yet (see the module docs).
    fn held_for_keyframe(&mut self, index: usize, keyframe: bool) -> bool {
        let state = &mut self.tracks[index];
        match state.restart_gate {
            RestartGate::Open => false,
            RestartGate::AwaitingKeyframe { .. } if keyframe => {
                state.restart_gate = RestartGate::Open;
                false
            }
            RestartGate::AwaitingKeyframe { requested } => {
                self.stats.dropped_frames += 1;
                if !requested {
                    tracing::debug!(stream = %self.hub.name(), track = state.info.id.0, "source restarted mid-GOP: dropping video until its first keyframe");
                    state.restart_gate = RestartGate::AwaitingKeyframe { requested: true };
                    self.hub.request_keyframe();
                }
                true
            }
        }
    }

    /// Once per session, when the tracks' lines and reports allow it: delays every
    /// track that started earlier than the reports say to the latest one, so the
    /// outputs keep the source's audio/video offset. Reports that disagree by more
    /// than [`MAX_JUMP`] are not trusted (nothing moves).
    fn put_tracks_in_step(&mut self) {
        let offsets: Vec<Option<i128>> = self.tracks.iter().map(line_minus_report).collect();
        let newly_reported = self
            .tracks
            .iter()
            .zip(&offsets)
            .any(|(track, offset)| offset.is_some() && !track.in_step);
        let Some(latest) = offsets.iter().flatten().max().copied() else {
            return;
        };
        if !newly_reported || offsets.iter().flatten().count() < 2 {
            return;
        }
        let trusted = offsets
            .iter()
            .flatten()
            .all(|offset| latest - offset <= MAX_JUMP.as_nanos() as i128);
        for (track, offset) in self.tracks.iter_mut().zip(&offsets) {
            let Some(offset) = offset else { continue };
            track.in_step = true;
            let behind = latest - offset;
            let ticks = behind * i128::from(track.timeline.clock_rate()) / NANOS;
            if trusted && ticks > 0 {
                tracing::debug!(stream = %self.hub.name(), track = track.info.id.0, behind_ms = behind / 1_000_000, "delaying track to keep the source's audio/video offset");
                track.timeline.delay(u64::try_from(ticks).unwrap_or(0));
            }
        }
        if !trusted {
            tracing::debug!(stream = %self.hub.name(), "sender reports disagree by more than {MAX_JUMP:?}: tracks left where they arrived");
        }
    }

    /// When the source captured `rtp_timestamp` of track `index`, if that was
    /// before it arrived (`now`) by at most [`MAX_JUMP`] and the source's clock
    /// is in step with ours: its report was stamped within [`CLOCK_AGREEMENT`] of
    /// its arrival. Then the frame is old news (a server's GOP cache sent at once
    /// on PLAY) and anchoring on its arrival would put output time ahead of real
    /// time by its age. A source whose clock is not ours gets `None`.
    fn captured_by_sender_report(
        &self,
        index: usize,
        rtp_timestamp: u32,
        now: Instant,
        origin: (Instant, SystemTime),
    ) -> Option<Instant> {
        let track = &self.tracks[index];
        let report = track.sender_report?;
        let wall_ntp = |at: Instant| {
            let wall = match at.checked_duration_since(origin.0) {
                Some(since) => origin.1.checked_add(since),
                None => origin.1.checked_sub(origin.0.duration_since(at)),
            };
            wall.map(|wall| i128::from(ntp_from_system_time(wall)))
        };
        let nanos_between = |from: i128, to: i128| ((to - from) * NANOS) >> 32;
        let report_age = nanos_between(i128::from(report.ntp), wall_ntp(report.received)?);
        if report_age.unsigned_abs() > CLOCK_AGREEMENT.as_nanos() {
            return None;
        }
        let since_report = i128::from(rtp_timestamp.wrapping_sub(report.rtp) as i32);
        let since_capture = nanos_between(i128::from(report.ntp), wall_ntp(now)?)
            - since_report * NANOS / i128::from(track.timeline.clock_rate());
        let age = u64::try_from(since_capture).ok()?;
        if u128::from(age) > MAX_JUMP.as_nanos() {
            return None;
        }
        now.checked_sub(Duration::from_nanos(age))
    }

    /// Where the source's sender reports put `rtp_timestamp` of track `index` on
    /// the output timeline: another track of the same session, with a report and
    /// a timeline on that session's line, gives the output time of the instant
    /// the source stamped it. `None` without such a pair of reports.
    fn aligned_by_sender_reports(&self, index: usize, rtp_timestamp: u32) -> Option<u64> {
        let track = &self.tracks[index];
        let Report {
            ntp,
            rtp: report_rtp,
            ..
        } = track.sender_report?;
        let rate = i128::from(track.timeline.clock_rate());
        let since_report = i128::from(rtp_timestamp.wrapping_sub(report_rtp) as i32);
        self.tracks
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .find_map(|(_, other)| {
                let Report {
                    ntp: other_ntp,
                    rtp: other_report_rtp,
                    ..
                } = other.sender_report?;
                let other_output = i128::from(other.timeline.output_of(other_report_rtp)?);
                let other_rate = i128::from(other.timeline.clock_rate());
                // NTP is 32.32 fixed point: nanoseconds from the other report to ours,
                // then on to the capture of this timestamp.
                let between_reports = ((i128::from(ntp) - i128::from(other_ntp)) * NANOS) >> 32;
                let nanos = between_reports + since_report * NANOS / rate;
                let other_ticks = other_output + nanos * other_rate / NANOS;
                u64::try_from(other_ticks * rate / other_rate).ok()
            })
    }
}

const NANOS: i128 = 1_000_000_000;

/// A track's output line minus the source's clock, in nanoseconds, at its latest
/// sender report: equal for tracks in step. `None` without a report and a line in
/// the current session.
fn line_minus_report(track: &TrackIngest) -> Option<i128> {
    let Report {
        ntp,
        rtp: report_rtp,
        ..
    } = track.sender_report?;
    let output = i128::from(track.timeline.output_of(report_rtp)?);
    let output_nanos = output * NANOS / i128::from(track.timeline.clock_rate());
    // NTP is 32.32 fixed point.
    let ntp_nanos = (i128::from(ntp) * NANOS) >> 32;
    Some(output_nanos - ntp_nanos)
}

/// `base` moved by `ticks` of a `clock_rate` clock (either direction).
fn offset(base: SystemTime, ticks: i64, clock_rate: u32) -> SystemTime {
    let delta = duration_of(ticks.unsigned_abs(), clock_rate);
    let moved = if ticks >= 0 {
        base.checked_add(delta)
    } else {
        base.checked_sub(delta)
    };
    moved.unwrap_or(base)
}

fn duration_of(ticks: u64, clock_rate: u32) -> Duration {
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(clock_rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn nal_type(codec: Codec, nal: &[u8]) -> Option<u8> {
    match codec {
        Codec::H264 if !nal.is_empty() => Some(codec::h264::Syntax::nal_type(nal)),
        Codec::H265 if nal.len() >= 2 => Some(codec::h265::Syntax::nal_type(nal)),
        _ => None,
    }
}

fn parameter_set(codec: Codec, nal: &[u8]) -> Option<ParameterSet> {
    let nal_type = nal_type(codec, nal)?;
    match codec {
        Codec::H264 => codec::h264::Syntax::parameter_set(nal_type),
        _ => codec::h265::Syntax::parameter_set(nal_type),
    }
}

/// An access unit delimiter NAL (H.264 type 9, H.265 type 35), which must stay first.
fn is_delimiter(codec: Codec, nal: &[u8]) -> bool {
    matches!(
        (codec, nal_type(codec, nal)),
        (Codec::H264, Some(9)) | (Codec::H265, Some(35))
    )
}

/// Puts the parameter sets in front of a keyframe's units (after a leading
/// delimiter) when it lacks any in band. Returns the new units and the prepended
/// sets. All sets go in, in decoding order (VPS, SPS, PPS), even if one came in
/// band: a PPS must follow its SPS, and `params` already holds the in-band ones.
fn with_parameter_sets(
    codec: Codec,
    params: &CodecParams,
    units: Vec<Bytes>,
) -> (Vec<Bytes>, Vec<Bytes>) {
    let has = |wanted: ParameterSet| {
        units
            .iter()
            .any(|u| parameter_set(codec, u) == Some(wanted))
    };
    let needed: &[(ParameterSet, &Option<Bytes>)] = match codec {
        Codec::H264 => &[
            (ParameterSet::Sps, &params.sps),
            (ParameterSet::Pps, &params.pps),
        ],
        Codec::H265 => &[
            (ParameterSet::Vps, &params.vps),
            (ParameterSet::Sps, &params.sps),
            (ParameterSet::Pps, &params.pps),
        ],
        _ => &[],
    };
    if needed.iter().all(|(kind, _)| has(*kind)) {
        return (units, Vec::new());
    }
    let sets: Vec<Bytes> = needed
        .iter()
        .filter_map(|(_, set)| set.as_ref().cloned())
        .collect();
    let at = usize::from(units.first().is_some_and(|u| is_delimiter(codec, u)));
    let mut out = Vec::with_capacity(units.len() + sets.len());
    out.extend_from_slice(&units[..at]);
    out.extend(sets.iter().cloned());
    out.extend_from_slice(&units[at..]);
    (out, sets)
}

/// Summarises data-path errors in the log at most once per [`ERROR_LOG_INTERVAL`].
#[derive(Debug, Default)]
struct ErrorLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn record(&mut self, stream: &str, error: &IngestError, now: Instant) {
        let due = self
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= ERROR_LOG_INTERVAL);
        if due {
            tracing::warn!(stream, %error, suppressed = self.suppressed, "dropping bad RTP input");
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine;

    use super::*;
    use crate::hub::{HubConfig, Subscription};
    use streamgate_rtp::RtpPacketBuilder;

    const VIDEO: TrackId = TrackId(0);
    const AUDIO: TrackId = TrackId(1);
    const SOURCE_SSRC: u32 = 0x1111_1111;
    const AUDIO_SSRC: u32 = 0x3333;

    /// The fixture capture's SPS/PPS (1280x720 constrained baseline).
    fn sdp_params() -> CodecParams {
        let b64 = base64::engine::general_purpose::STANDARD;
        CodecParams {
            sps: Some(Bytes::from(
                b64.decode("Z0LAH9oBQBbsBEAAAAMAQAAADIPGDKg=").expect("sps"),
            )),
            pps: Some(Bytes::from(b64.decode("aM48gA==").expect("pps"))),
            ..CodecParams::default()
        }
    }

    fn tracks() -> Vec<TrackInfo> {
        vec![
            TrackInfo {
                id: VIDEO,
                codec: Codec::H264,
                clock_rate: 90_000,
                channels: 1,
                payload_type: 100,
                params: sdp_params(),
            },
            TrackInfo {
                id: AUDIO,
                codec: Codec::Opus,
                clock_rate: 48_000,
                channels: 2,
                payload_type: 101,
                params: CodecParams::default(),
            },
        ]
    }

    fn setup() -> (StreamIngest, Subscription, Instant) {
        let hub = Hub::new("cam", HubConfig::default());
        let subscription = hub.subscribe();
        (
            StreamIngest::new(hub, tracks()),
            subscription,
            Instant::now(),
        )
    }

    fn packet(ssrc: u32, seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> RtpPacket {
        let raw = RtpPacketBuilder {
            payload_type: 96,
            marker,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            payload: Bytes::from(payload),
            ..Default::default()
        }
        .build()
        .expect("builds");
        RtpPacket::parse(raw).expect("parses")
    }

    /// An IDR slice sent as three FU-A fragments (seq, seq+1, seq+2).
    fn idr(seq: u16, ts: u32) -> Vec<RtpPacket> {
        idr_from(SOURCE_SSRC, seq, ts)
    }

    fn idr_from(ssrc: u32, seq: u16, ts: u32) -> Vec<RtpPacket> {
        vec![
            packet(ssrc, seq, ts, false, vec![0x7c, 0x85, 1, 2, 3]),
            packet(
                ssrc,
                seq.wrapping_add(1),
                ts,
                false,
                vec![0x7c, 0x05, 4, 5, 6],
            ),
            packet(
                ssrc,
                seq.wrapping_add(2),
                ts,
                true,
                vec![0x7c, 0x45, 7, 8, 9],
            ),
        ]
    }

    fn idr_nal() -> Bytes {
        Bytes::from_static(&[0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    }

    fn p_frame(ssrc: u32, seq: u16, ts: u32) -> RtpPacket {
        packet(ssrc, seq, ts, true, vec![0x41, 0x9a, seq as u8])
    }

    fn push_all(ingest: &mut StreamIngest, packets: Vec<RtpPacket>, now: Instant) {
        for p in packets {
            ingest.push_rtp(VIDEO, p, now).expect("valid packet");
        }
    }

    fn received(subscription: &mut Subscription) -> Vec<Arc<Frame>> {
        std::iter::from_fn(|| subscription.try_recv().ok().flatten()).collect()
    }

    #[test]
    fn keyframe_gets_parameter_sets_and_one_rewritten_header_per_packet() {
        let (mut ingest, mut sub, now) = setup();
        let source = idr(10, 1000);
        let source_payloads: Vec<Bytes> = source.iter().map(RtpPacket::payload).collect();
        push_all(&mut ingest, source, now);
        push_all(
            &mut ingest,
            vec![p_frame(SOURCE_SSRC, 13, 4000)],
            now + Duration::from_millis(33),
        );
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 2);

        let key = &frames[0];
        let params = sdp_params();
        assert!(key.keyframe);
        assert_eq!(
            key.units,
            vec![
                params.sps.clone().unwrap_or_default(),
                params.pps.clone().unwrap_or_default(),
                idr_nal()
            ]
        );
        assert_eq!(key.packets.len(), 5, "SPS + PPS + three FU-A packets");
        assert_eq!(key.packets[0].payload, key.units[0]);
        assert_eq!(key.packets[1].payload, key.units[1]);
        for (out, src) in key.packets[2..].iter().zip(&source_payloads) {
            assert_eq!(
                out.payload.as_ptr(),
                src.as_ptr(),
                "payload is the received buffer, not a copy"
            );
        }
        let ssrc = key.packets[0].ssrc();
        let first_seq = key.packets[0].sequence();
        let all: Vec<&OutPacket> = frames.iter().flat_map(|f| &f.packets).collect();
        for (i, out) in all.iter().enumerate() {
            assert_eq!(out.ssrc(), ssrc);
            assert_ne!(out.ssrc(), SOURCE_SSRC);
            assert_eq!(out.payload_type(), 100, "the track's output payload type");
            assert_eq!(out.sequence(), first_seq.wrapping_add(i as u16));
        }
        assert!(key.packets.iter().all(|p| p.timestamp() == key.pts as u32));
        assert_eq!(
            key.packets
                .iter()
                .map(OutPacket::marker)
                .collect::<Vec<_>>(),
            vec![false, false, false, false, true]
        );

        let p = &frames[1];
        assert!(!p.keyframe);
        assert_eq!(p.pts - key.pts, 3000, "source spacing kept");
        assert_eq!(p.packets[0].timestamp(), p.pts as u32);
    }

    #[test]
    fn in_band_parameter_sets_are_not_added_twice() {
        let (mut ingest, mut sub, now) = setup();
        let params = sdp_params();
        let (sps, pps) = (
            params.sps.unwrap_or_default(),
            params.pps.unwrap_or_default(),
        );
        let mut stap = vec![0x78];
        for nal in [&sps, &pps] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        let packets = vec![
            packet(SOURCE_SSRC, 1, 0, false, stap),
            packet(
                SOURCE_SSRC,
                2,
                0,
                true,
                vec![0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            ),
        ];
        push_all(&mut ingest, packets, now);
        let frames = received(&mut sub);
        assert_eq!(frames[0].units, vec![sps, pps, idr_nal()]);
        assert_eq!(frames[0].packets.len(), 2);
    }

    #[test]
    fn reordered_fragments_are_reassembled_in_order() {
        let (mut ingest, mut sub, now) = setup();
        let mut packets = idr(65534, 1000);
        packets.swap(1, 2);
        push_all(&mut ingest, packets, now);
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].units.last(), Some(&idr_nal()));
        assert_eq!(ingest.stats().lost_packets, 0);
    }

    #[test]
    fn loss_drops_the_frame_and_requests_a_keyframe() {
        let (mut ingest, mut sub, now) = setup();
        push_all(&mut ingest, idr(1, 0), now);
        let mut damaged = idr(4, 3000);
        damaged.remove(1);
        push_all(&mut ingest, damaged, now);
        assert_eq!(
            ingest.hub().stats().keyframe_requests,
            0,
            "still waiting for the gap"
        );
        // Well after the reorder buffer's wait: the gap is declared lost.
        let later = now + Duration::from_millis(200);
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 7, 6000)], later);
        let frames = received(&mut sub);
        assert_eq!(
            frames
                .iter()
                .map(|f| f.pts - frames[0].pts)
                .collect::<Vec<_>>(),
            vec![0, 6000]
        );
        assert_eq!(ingest.stats().lost_packets, 1);
        assert_eq!(
            ingest.stats().depacketize_errors,
            0,
            "the damaged frame's tail was dropped, not fed in"
        );
        assert_eq!(ingest.hub().stats().keyframe_requests, 1);
        let seqs: Vec<u16> = frames
            .iter()
            .flat_map(|f| &f.packets)
            .map(OutPacket::sequence)
            .collect();
        assert_eq!(
            seqs.last().copied(),
            Some(seqs[0].wrapping_add(5)),
            "output numbering has no hole"
        );
    }

    #[test]
    fn source_restart_keeps_output_running_forward() {
        let (mut ingest, mut sub, now) = setup();
        push_all(&mut ingest, idr(100, 5_000_000), now);
        push_all(
            &mut ingest,
            vec![p_frame(SOURCE_SSRC, 103, 5_003_000)],
            now + Duration::from_millis(33),
        );
        ingest.source_restarted();
        let restart = now + Duration::from_millis(33 + 2000);
        push_all(&mut ingest, idr(7, 12), restart);
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 3);
        let (before, after) = (&frames[1], &frames[2]);
        assert!(
            !after.discontinuity,
            "a restart keeps one continuous timeline"
        );
        assert_eq!(
            after.pts,
            before.pts + 2 * 90_000,
            "continues after the wall time that passed"
        );
        assert_eq!(after.packets[0].ssrc(), before.packets[0].ssrc());
        assert_eq!(
            after.packets[0].sequence(),
            before.packets[0].sequence().wrapping_add(1)
        );
    }

    #[test]
    fn a_new_ingest_on_the_same_hub_continues_time() {
        let (mut ingest, mut sub, now) = setup();
        let hub = ingest.hub().clone();
        push_all(&mut ingest, idr(1, 0), now);
        // The source's clock runs ahead of the wall clock: 4 s of timestamps in 1 s.
        push_all(
            &mut ingest,
            vec![p_frame(SOURCE_SSRC, 4, 4 * 90_000)],
            now + Duration::from_secs(1),
        );
        drop(ingest);
        // The source comes back (with other tracks, hence a new ingest) 1 s later.
        let mut ingest = StreamIngest::new(hub, tracks());
        push_all(&mut ingest, idr(900, 123), now + Duration::from_secs(2));
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 3);
        assert!(
            frames[2].pts > frames[1].pts,
            "{} after {}",
            frames[2].pts,
            frames[1].pts
        );
    }

    #[test]
    fn renumbered_source_is_a_restart() {
        let (mut ingest, mut sub, now) = setup();
        push_all(&mut ingest, idr(100, 5_000_000), now);
        let restart = now + Duration::from_secs(1);
        // Same SSRC, sequence numbers 30 000 further on: confirmed by the second packet.
        let mut renumbered = idr(30_000, 9);
        renumbered.push(p_frame(SOURCE_SSRC, 30_003, 3_009));
        push_all(&mut ingest, renumbered, restart);
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 3);
        assert!(!frames[1].discontinuity);
        assert_eq!(frames[1].pts, frames[0].pts + 90_000);
        assert_eq!(frames[2].pts, frames[1].pts + 3_000);
        assert_eq!(ingest.stats().lost_packets, 0);
    }

    #[test]
    fn new_source_ssrc_is_a_restart() {
        let (mut ingest, mut sub, now) = setup();
        push_all(&mut ingest, idr(100, 5_000_000), now);
        let restart = now + Duration::from_secs(1);
        // New SSRC, numbering and timestamps that would otherwise look like loss and a jump.
        push_all(&mut ingest, idr_from(0x2222_2222, 40_000, 77), restart);
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 2);
        assert!(!frames[1].discontinuity);
        assert_eq!(frames[1].pts, frames[0].pts + 90_000);
        assert_eq!(ingest.stats().lost_packets, 0);
    }

    /// Output frames of `kind` as (keyframe, pts).
    fn of_kind(frames: &[Arc<Frame>], kind: MediaKind) -> Vec<(bool, u64)> {
        frames
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| (f.keyframe, f.pts))
            .collect()
    }

    #[test]
    fn source_restart_drops_p_frames_until_the_new_sessions_keyframe() {
        let (mut ingest, mut sub, now) = setup();
        let at = |ms: u64| now + Duration::from_millis(ms);
        push_all(&mut ingest, idr(100, 5_000_000), at(0));
        push_all(
            &mut ingest,
            vec![p_frame(SOURCE_SSRC, 103, 5_003_000)],
            at(33),
        );
        ingest.source_restarted();
        // The camera reconnects mid-GOP: P-frames, audio, then its next IDR.
        push_all(
            &mut ingest,
            vec![
                p_frame(SOURCE_SSRC, 7, 3_000),
                p_frame(SOURCE_SSRC, 8, 6_000),
            ],
            at(1_000),
        );
        push_audio(&mut ingest, 60, 0, at(1_010));
        push_all(&mut ingest, idr(9, 9_000), at(1_066));
        push_all(
            &mut ingest,
            vec![p_frame(SOURCE_SSRC, 12, 12_000)],
            at(1_100),
        );
        let frames = received(&mut sub);
        let video = of_kind(&frames, MediaKind::Video);
        assert_eq!(
            video.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
            vec![true, false, true, false],
            "after the restart video resumes at the IDR"
        );
        assert!(frames.iter().any(|f| f.kind == MediaKind::Video
            && f.keyframe
            && !f.discontinuity
            && f.pts == video[2].1));
        assert_eq!(video[3].1, video[2].1 + 3_000);
        assert_eq!(
            of_kind(&frames, MediaKind::Audio).len(),
            1,
            "audio is not held back"
        );
        assert_eq!(ingest.stats().dropped_frames, 2);
        assert_eq!(ingest.hub().stats().keyframe_requests, 1, "requested once");
        let seqs: Vec<u16> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .flat_map(|f| &f.packets)
            .map(OutPacket::sequence)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "dropped frames leave no hole in the output numbering: {seqs:?}"
        );
    }

    #[test]
    fn new_source_ssrc_waits_for_its_keyframe() {
        let (mut ingest, mut sub, now) = setup();
        push_all(&mut ingest, idr(100, 5_000_000), now);
        let restart = now + Duration::from_secs(1);
        let mut packets = vec![p_frame(0x2222_2222, 40_000, 77)];
        packets.extend(idr_from(0x2222_2222, 40_001, 3_077));
        push_all(&mut ingest, packets, restart);
        let frames = received(&mut sub);
        assert_eq!(
            of_kind(&frames, MediaKind::Video)
                .iter()
                .map(|(key, _)| *key)
                .collect::<Vec<_>>(),
            vec![true, true]
        );
        assert!(!frames[1].discontinuity);
        assert_eq!(ingest.stats().dropped_frames, 1);
        assert_eq!(ingest.hub().stats().keyframe_requests, 1);
    }

    #[test]
    fn renumbered_source_waits_for_its_keyframe() {
        let (mut ingest, mut sub, now) = setup();
        push_all(&mut ingest, idr(100, 5_000_000), now);
        let restart = now + Duration::from_secs(1);
        let mut packets = vec![
            p_frame(SOURCE_SSRC, 30_000, 9),
            p_frame(SOURCE_SSRC, 30_001, 3_009),
        ];
        packets.extend(idr(30_002, 6_009));
        push_all(&mut ingest, packets, restart);
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 2);
        assert!(frames[1].keyframe && !frames[1].discontinuity);
        assert_eq!(ingest.stats().dropped_frames, 2);
        assert_eq!(ingest.hub().stats().keyframe_requests, 1);
    }

    fn sender_report(ntp_time: u64, rtp_time: u32) -> SenderReport {
        SenderReport {
            ssrc: SOURCE_SSRC,
            ntp_time,
            rtp_time,
            packet_count: 0,
            octet_count: 0,
            reports: Vec::new(),
        }
    }

    fn audio_report(ntp_time: u64, rtp_time: u32) -> SenderReport {
        SenderReport {
            ssrc: AUDIO_SSRC,
            ..sender_report(ntp_time, rtp_time)
        }
    }

    fn push_audio(ingest: &mut StreamIngest, seq: u16, ts: u32, now: Instant) {
        let p = packet(AUDIO_SSRC, seq, ts, true, vec![0xfc, 1, 2]);
        ingest.push_rtp(AUDIO, p, now).expect("opus");
    }

    fn ntp_at(unix_secs: u64) -> u64 {
        streamgate_rtp::rtcp::ntp_from_system_time(
            SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs),
        )
    }

    fn seconds(frame: &Frame) -> f64 {
        let rate = if frame.kind == MediaKind::Video {
            90_000.0
        } else {
            48_000.0
        };
        frame.pts as f64 / rate
    }

    #[test]
    fn wallclock_is_the_origin_plus_output_time_across_restarts_and_reports() {
        let (mut ingest, mut sub, now) = setup();
        let origin = ingest.hub().origin().1;
        let at = |ms: u64| now + Duration::from_millis(ms);
        push_all(&mut ingest, idr(1, 1000), at(0));
        push_audio(&mut ingest, 50, 0, at(5));
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 4, 4000)], at(33));
        push_audio(&mut ingest, 51, 960, at(25));
        // Reports arrive mid-stream, on a clock far from the ingest's.
        ingest.on_sender_report(VIDEO, &sender_report(ntp_at(1_600_000_000), 1000), now);
        ingest.on_sender_report(AUDIO, &sender_report(ntp_at(1_600_000_000), 0), now);
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 5, 7000)], at(66));
        push_audio(&mut ingest, 52, 1920, at(45));
        // The source restarts 2 s later with new timestamps and new reports.
        ingest.source_restarted();
        ingest.on_sender_report(VIDEO, &sender_report(ntp_at(1_700_000_000), 500), now);
        ingest.on_sender_report(AUDIO, &sender_report(ntp_at(1_700_000_000), 100), now);
        push_all(&mut ingest, idr(10, 500), at(2_000));
        push_audio(&mut ingest, 60, 100, at(2_010));
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 13, 3500)], at(2_033));
        ingest.on_sender_report(VIDEO, &sender_report(ntp_at(1_700_000_001), 90_500), now);
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 14, 6500)], at(2_066));
        push_audio(&mut ingest, 61, 1060, at(2_030));
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 11);
        for frame in &frames {
            let since_origin = frame
                .wallclock
                .duration_since(origin)
                .expect("wallclock after the origin")
                .as_secs_f64();
            assert!(
                (since_origin - seconds(frame)).abs() < 1e-6,
                "{:?} frame at {} s of output has wallclock origin + {since_origin} s",
                frame.kind,
                seconds(frame)
            );
        }
    }

    #[test]
    fn sender_reports_put_a_late_track_in_step_after_a_restart() {
        let (mut ingest, mut sub, now) = setup();
        let at = |ms: u64| now + Duration::from_millis(ms);
        push_all(&mut ingest, idr(1, 1000), at(0));
        push_audio(&mut ingest, 50, 0, at(0));
        ingest.source_restarted();
        // Both tracks restart captured at the same instant (their reports say so),
        // but the audio's first packet arrives 300 ms after the video's.
        let ntp = ntp_at(1_700_000_000);
        ingest.on_sender_report(VIDEO, &sender_report(ntp, 777_000), now);
        ingest.on_sender_report(AUDIO, &sender_report(ntp, 4_000), now);
        push_all(&mut ingest, idr(10, 777_000), at(1_000));
        push_audio(&mut ingest, 60, 4_000, at(1_300));
        push_audio(&mut ingest, 61, 4_960, at(1_310));
        let frames = received(&mut sub);
        let (video, audio) = (&frames[2], &frames[3]);
        assert_eq!(
            (video.kind, audio.kind),
            (MediaKind::Video, MediaKind::Audio)
        );
        assert!(!video.discontinuity && !audio.discontinuity);
        assert!(
            (seconds(audio) - seconds(video)).abs() < 0.001,
            "audio at {} s, video at {} s of output",
            seconds(audio),
            seconds(video)
        );
        assert_eq!(frames[4].pts, audio.pts + 960, "then the source's spacing");
    }

    #[test]
    fn reports_after_the_anchors_delay_the_early_track_once_per_session() {
        let (mut ingest, mut sub, now) = setup();
        let at = |ms: u64| now + Duration::from_millis(ms);
        push_all(&mut ingest, idr(1, 1000), at(0));
        push_audio(&mut ingest, 50, 0, at(0));
        ingest.source_restarted();
        // Both tracks restart captured at the same instant, but the audio's first
        // packet arrives 100 ms after the video's; the reports come later.
        push_all(&mut ingest, idr(10, 777_000), at(1_000));
        push_audio(&mut ingest, 60, 4_000, at(1_100));
        let ntp = ntp_at(1_700_000_000);
        ingest.on_sender_report(VIDEO, &sender_report(ntp, 777_000), now);
        ingest.on_sender_report(AUDIO, &audio_report(ntp, 4_000), now);
        push_all(
            &mut ingest,
            vec![p_frame(SOURCE_SSRC, 13, 780_000)],
            at(1_133),
        );
        // A later report that disagrees moves nothing: the session is in step.
        ingest.on_sender_report(AUDIO, &audio_report(ntp_at(1_700_000_001), 4_000), now);
        push_all(
            &mut ingest,
            vec![p_frame(SOURCE_SSRC, 14, 783_000)],
            at(1_166),
        );
        let frames = received(&mut sub);
        let video = of_kind(&frames[2..], MediaKind::Video);
        let audio = of_kind(&frames[2..], MediaKind::Audio);
        assert_eq!(video.len(), 3);
        let gap = video[1].1 - video[0].1 - 3_000;
        assert!(
            gap.abs_diff(9_000) <= 2,
            "a 100 ms gap in video: {gap} ticks"
        );
        assert_eq!(video[2].1, video[1].1 + 3_000, "delayed once");
        let video_at_capture = (video[0].1 + gap) as f64 / 90_000.0;
        let audio_at_capture = audio[0].1 as f64 / 48_000.0;
        assert!(
            (audio_at_capture - video_at_capture).abs() < 0.001,
            "audio at {audio_at_capture} s, video at {video_at_capture} s of output"
        );
    }

    /// Our wall clock at `at`, as NTP (the ingest's view: origin + elapsed).
    fn ntp_of(ingest: &StreamIngest, at: Instant) -> u64 {
        let (origin, wall) = ingest.hub().origin();
        streamgate_rtp::rtcp::ntp_from_system_time(wall + at.duration_since(origin))
    }

    /// A server sends its GOP cache at once on PLAY: 2 s of frames, the first
    /// captured 2 s ago, the last now. Its report (stamped now) says so.
    fn burst_wallclock_error(report_clock_error: Duration) -> Duration {
        let (mut ingest, mut sub, now) = setup();
        let at = |ms: u64| now + Duration::from_millis(ms);
        let live_edge = 2 * 90_000;
        let report = sender_report(ntp_of(&ingest, at(0) + report_clock_error), live_edge);
        ingest.on_sender_report(VIDEO, &report, at(0));
        push_all(&mut ingest, idr(1, 0), at(1));
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 4, 90_000)], at(2));
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 5, live_edge)], at(3));
        let frames = received(&mut sub);
        let arrival = ingest.hub().origin().1 + at(3).duration_since(ingest.hub().origin().0);
        frames[2]
            .wallclock
            .duration_since(arrival)
            .unwrap_or_else(|behind| behind.duration())
    }

    #[test]
    fn a_burst_of_old_frames_is_dated_by_a_report_from_a_clock_like_ours() {
        assert!(
            burst_wallclock_error(Duration::ZERO) < Duration::from_millis(5),
            "the live edge is dated its arrival"
        );
        // A source clock 1 s off ours is not trusted: the burst's first frame is
        // dated its arrival, and the live edge 2 s later.
        let untrusted = burst_wallclock_error(Duration::from_secs(1));
        assert!(untrusted > Duration::from_millis(1_990), "{untrusted:?}");
    }

    #[test]
    fn reports_from_another_ssrc_are_ignored() {
        let (mut ingest, mut sub, now) = setup();
        let at = |ms: u64| now + Duration::from_millis(ms);
        push_all(&mut ingest, idr(1, 1000), at(0));
        push_audio(&mut ingest, 50, 0, at(100));
        let ntp = ntp_at(1_700_000_000);
        ingest.on_sender_report(VIDEO, &sender_report(ntp, 1_000), now);
        ingest.on_sender_report(AUDIO, &sender_report(ntp, 0), now);
        push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 4, 4_000)], at(133));
        let frames = received(&mut sub);
        assert_eq!(frames[2].pts, frames[0].pts + 3_000, "no delay");
    }

    #[test]
    fn in_band_sps_change_updates_the_hub_and_marks_a_discontinuity() {
        let (mut ingest, mut sub, now) = setup();
        let hub = ingest.hub().clone();
        push_all(&mut ingest, idr(1, 0), now);
        let new_sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x28, 0xac]);
        let mut packets = vec![packet(SOURCE_SSRC, 4, 3000, false, new_sps.to_vec())];
        packets.extend(idr(5, 3000));
        push_all(&mut ingest, packets, now + Duration::from_millis(33));
        let frames = received(&mut sub);
        assert!(!frames[0].discontinuity);
        assert!(frames[1].discontinuity);
        assert_eq!(hub.tracks()[0].params.sps, Some(new_sps.clone()));
        assert_eq!(
            frames[1].units[0], new_sps,
            "in-band SPS kept, not replaced"
        );
    }

    #[test]
    fn bad_input_is_an_error_and_the_stream_goes_on() {
        let (mut ingest, mut sub, now) = setup();
        let unknown = ingest.push_rtp(TrackId(9), p_frame(SOURCE_SSRC, 1, 0), now);
        assert!(matches!(
            unknown,
            Err(IngestError::UnknownTrack {
                track: TrackId(9),
                ..
            })
        ));
        let truncated = ingest.push_rtp(VIDEO, packet(SOURCE_SSRC, 1, 0, true, vec![0x7c]), now);
        assert!(
            matches!(
                truncated,
                Err(IngestError::Depacketize { track: VIDEO, .. })
            ),
            "{truncated:?}"
        );
        push_all(&mut ingest, idr(2, 3000), now);
        assert_eq!(received(&mut sub).len(), 1);
        assert_eq!(ingest.stats().depacketize_errors, 1);
    }

    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        let (mut ingest, mut sub, now) = setup();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 24) as u32
        };
        let mut seq = 0u16;
        for i in 0..20_000u64 {
            let roll = next();
            seq = seq.wrapping_add((roll % 7) as u16).wrapping_sub(2);
            let len = (next() % 40) as usize;
            let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = payload.first_mut() {
                // Mostly plausible NAL/FU headers so the depacketizers go deep.
                *first = [0x7c, 0x78, 0x65, 0x41, 0x67, *first][(roll % 6) as usize];
            }
            let ssrc = if roll % 997 == 0 { next() } else { SOURCE_SSRC };
            let track = if roll % 3 == 0 { AUDIO } else { VIDEO };
            let packet = packet(ssrc, seq, next() % 4 * 3000, roll % 2 == 0, payload);
            let _ = ingest.push_rtp(track, packet, now + Duration::from_millis(i));
            if i % 1000 == 0 {
                ingest.source_restarted();
            }
            while sub.try_recv().ok().flatten().is_some() {}
        }
        for track in &ingest.tracks {
            assert!(track.reorder.held() <= ReorderConfig::default().window);
        }
        assert!(ingest.stats().packets == 20_000);
    }

    #[test]
    fn audio_frames_are_keyframes_with_their_own_numbering() {
        let (mut ingest, _video_sub, now) = setup();
        let hub = ingest.hub().clone();
        hub.set_tracks(vec![tracks().remove(1)]);
        let mut sub = hub.subscribe();
        for i in 0..3u16 {
            let p = packet(0x4444, 50 + i, 960 * u32::from(i), true, vec![0xfc, 1, 2]);
            ingest
                .push_rtp(AUDIO, p, now + Duration::from_millis(20 * u64::from(i)))
                .expect("opus");
        }
        let frames = received(&mut sub);
        assert_eq!(frames.len(), 3);
        assert!(frames
            .iter()
            .all(|f| f.keyframe && f.kind == MediaKind::Audio));
        assert_eq!(
            frames
                .iter()
                .map(|f| f.pts - frames[0].pts)
                .collect::<Vec<_>>(),
            vec![0, 960, 1920]
        );
        assert!(frames.iter().all(|f| f.packets[0].payload_type() == 101));
    }
}
