//! Sender-report alignment: the source's RTCP sender reports decide where each
//! track's output starts in a source session (see the ingest's module docs), never
//! step output time back.

use std::time::{Duration, Instant, SystemTime};

use streamgate_rtp::rtcp::ntp_from_system_time;
use streamgate_rtp::MAX_JUMP;

use super::{StreamIngest, TrackIngest};

/// A sender report stamped within this of its arrival comes from a clock in step
/// with ours (the same host, or both NTP-synced): its capture times are ours. Small
/// against the GOP bursts it lets the ingest recognise, so trusting a clock that
/// is off by less moves the wall clock by less than that.
const CLOCK_AGREEMENT: Duration = Duration::from_millis(250);

/// A source's sender report as the ingest keeps it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Report {
    pub(super) ntp: u64,
    pub(super) rtp: u32,
    pub(super) received: Instant,
}

impl StreamIngest {
    /// Once per session, when the tracks' lines and reports allow it: delays every
    /// track that started earlier than the reports say to the latest one, so the
    /// outputs keep the source's audio/video offset. Reports that disagree by more
    /// than [`MAX_JUMP`] are not trusted (nothing moves).
    pub(super) fn put_tracks_in_step(&mut self) {
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
                tracing::debug!(stream = %self.hub.name(), track = track.info.id.get(), behind_ms = behind / 1_000_000, "delaying track to keep the source's audio/video offset");
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
    pub(super) fn captured_by_sender_report(
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
    pub(super) fn aligned_by_sender_reports(
        &self,
        index: usize,
        rtp_timestamp: u32,
    ) -> Option<u64> {
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
