//! Stream ingest: turns a source's RTP packets into [`Frame`]s on the [`Hub`].
//!
//! Per track: reorder buffer → depacketizer → in-band parameter sets → timeline →
//! decode order (B-frames' DTS, [`DecodeOrder`]) → `Frame`. This module dispatches
//! packets through the reorder buffer and depacketizer and publishes frames; each
//! other concern has its own module:
//! - `output_headers`: the output RTP header of every packet, written once so
//!   every output forwards the same bytes;
//! - `parameter_sets`: SPS/PPS (VPS) put in front of keyframes that lack them;
//! - `restart_gate`: video held back after a source restart until its keyframe;
//! - `sender_reports`: where the source's RTCP sender reports place each track.
//!
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

use streamgate_rtp::codec::decode_order::DecodeOrder;
use streamgate_rtp::codec::nal::is_delimiter;
use streamgate_rtp::codec::{self, AccessUnit, DepacketizeError, Depacketizer};
use streamgate_rtp::rtcp::SenderReport;
use streamgate_rtp::{AnchorHint, Frame, MediaKind, RtpPacket, Ssrc, Timeline, TrackId, TrackInfo};
use streamgate_rtp::{Pushed, Released, ReorderBuffer, ReorderConfig};

use self::output_headers::OutputHeaders;
use self::parameter_sets::with_parameter_sets;
use self::restart_gate::RestartGate;
use self::sender_reports::Report;
use crate::hub::{same_layout, Hub};
use crate::rate_limited_log::RateLimitedLog;

#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    #[error("stream {stream}: packet for unknown track {track}")]
    UnknownTrack { stream: String, track: TrackId },
    #[error("stream {stream} track {track}: {source}")]
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
    /// Bad input is logged at most once a second, with a count.
    error_log: RateLimitedLog,
}

#[derive(Debug)]
struct TrackIngest {
    info: TrackInfo,
    reorder: ReorderBuffer<RtpPacket>,
    /// `Err` when the track cannot be depacketized (reported on every packet).
    depacketizer: Result<Depacketizer, DepacketizeError>,
    timeline: Timeline,
    decode_order: DecodeOrder,
    source_ssrc: Option<Ssrc>,
    output: OutputHeaders,
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

/// A track's timeline: audio's timestamps are its decode times, so they only go forward.
fn timeline(info: &TrackInfo) -> Timeline {
    let timeline = Timeline::new(info.clock_rate);
    match info.kind() {
        MediaKind::Audio => timeline.forward_only(),
        _ => timeline,
    }
}

impl TrackIngest {
    fn new(info: TrackInfo, time_already_used: Duration) -> TrackIngest {
        let depacketizer = Depacketizer::new(&info);
        TrackIngest {
            reorder: ReorderBuffer::new(ReorderConfig::default()),
            depacketizer,
            timeline: timeline(&info).start_after(time_already_used),
            decode_order: DecodeOrder::new(info.codec, info.clock_rate),
            source_ssrc: None,
            output: OutputHeaders::new(info.payload_type),
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
                tracing::warn!(stream = %hub.name(), track = track.info.id.get(), %error, "track will be ignored");
            }
        }
        let origin = hub.origin();
        StreamIngest {
            hub,
            tracks,
            origin,
            stats: IngestStats::default(),
            error_log: RateLimitedLog::default(),
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
            tracing::info!(stream = %self.hub.name(), track = track.get(), "source SSRC changed: treating as a restart");
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
                if let Some(suppressed) = self.error_log.occurred(now) {
                    tracing::warn!(stream = %self.hub.name(), %error, suppressed, "dropping bad RTP input");
                }
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

    /// The ingest for a source's new session: `previous` carries on (consumers stay
    /// subscribed, time runs forward: [`source_restarted`](Self::source_restarted))
    /// when the session's tracks have the same layout; otherwise the stream starts
    /// over with a new ingest for the new tracks.
    pub fn for_session(
        previous: Option<StreamIngest>,
        hub: &Hub,
        tracks: &[TrackInfo],
    ) -> StreamIngest {
        match previous {
            Some(mut ingest) if same_layout(&ingest.hub.tracks(), tracks) => {
                ingest.source_restarted();
                ingest
            }
            _ => StreamIngest::new(hub.clone(), tracks.to_vec()),
        }
    }

    fn on_loss(&mut self, index: usize, count: u64) {
        self.stats.lost_packets = self.stats.lost_packets.saturating_add(count);
        let state = &mut self.tracks[index];
        tracing::debug!(stream = %self.hub.name(), track = state.info.id.get(), count, "RTP packets lost");
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
            tracing::debug!(stream = %self.hub.name(), track = info.id.get(), pts = mapped.pts, "timeline re-anchored");
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
            random_access_skipped,
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
                packets.push(state.output.packet(
                    delimiter.marker(),
                    timestamp,
                    delimiter.payload(),
                ));
            }
        }
        for parameter_set in parameter_sets {
            packets.push(state.output.packet(false, timestamp, parameter_set));
        }
        for packet in source_packets {
            packets.push(
                state
                    .output
                    .packet(packet.marker(), timestamp, packet.payload()),
            );
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
            random_access_skipped,
            units,
            packets,
        });
    }
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

mod output_headers;
mod parameter_sets;
mod restart_gate;
mod sender_reports;
#[cfg(test)]
mod tests;
