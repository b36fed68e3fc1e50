//! Timestamp continuity: a track's 32-bit RTP timestamps become one continuous
//! 64-bit output timeline that never goes backwards and never leaps ahead of the
//! wall clock, across wraparound, source restarts and timestamp jumps.
//!
//! Sans-IO: the caller passes the arrival time (`now`) with every timestamp.
//!
//! Between anchors the output is the source's timestamp plus a constant offset
//! (readers such as ffmpeg need the source's own spacing, never arrival-time
//! re-stamping). An anchor is set:
//! - at the first timestamp: output = wall time elapsed since the stream's
//!   `origin` (shared by all its tracks), so every track's output divided by its
//!   clock rate is on one common time base (what HLS needs to keep A/V in step);
//! - after [`Timeline::rebase`] (the source restarted) or when the source's
//!   timestamps jump further than [`MAX_JUMP`] away from what the elapsed wall
//!   time predicts: output = highest output so far + the wall time elapsed since
//!   the track's previous timestamp (at least one tick);
//! - on a [`Timeline::forward_only`] track (audio, whose timestamps are decode
//!   times), when a timestamp would put the output behind what was output.
//!
//! The caller may offer hints from the source's RTCP sender reports
//! ([`Timeline::map_aligned`], [`AnchorHint`]), used only when anchoring:
//! - `captured`: when the source captured the timestamp, if its clock is in step
//!   with ours and that was before it arrived: it replaces the arrival time, so a
//!   server that sends old frames at once on PLAY (its GOP cache) does not put
//!   output time (and the wall clock derived from it) ahead of real time;
//! - `aligned`: where the reports put the timestamp relative to another track of
//!   the same session. It replaces the arrival-based anchor when it is within
//!   [`MAX_JUMP`] of it and keeps time running forward, so a track that starts
//!   late or early by the network's doing is put back in step with the others.
//!
//! [`Timeline::delay`] moves a session's line later (a gap, never a step back)
//! when reports that came after the anchor show the track started early.
//!
//! Each track measures that elapsed time from its own previous arrival rather
//! than from one stream-wide instant: a track's previous output corresponds to its
//! own previous arrival, so advancing every track by its own gap keeps their
//! outputs on the same wall-clock line, where one shared gap would shift the
//! tracks apart by however far their last packets were apart.

use std::time::{Duration, Instant};

/// A timestamp that differs from the wall-clock prediction by more than this is a
/// break in the source's timing (source restart, encoder reset), not jitter.
pub const MAX_JUMP: Duration = Duration::from_secs(5);

/// One track's mapping from RTP timestamps to continuous output time.
#[derive(Debug, Clone)]
pub struct Timeline {
    clock_rate: u32,
    anchored: Option<Anchored>,
    rebase_pending: bool,
    /// The first output is at least this (time an earlier ingest already used).
    first_output_floor: u64,
    /// Timestamps are decode times too (no reordering): one that would put the
    /// output behind what was output is a break, re-anchored like a jump.
    forward_only: bool,
}

#[derive(Debug, Clone)]
struct Anchored {
    last_rtp: u32,
    /// Extended (unwrapped) source timestamp of the last input.
    last_extended: i64,
    /// output = extended + offset.
    offset: i64,
    /// Highest output given so far: re-anchors continue after it.
    max_output: u64,
    last_arrival: Instant,
}

/// What the source's sender reports say about a timestamp that (re-)anchors a
/// timeline (ignored otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnchorHint {
    /// When the source captured it, on our monotonic clock (before its arrival).
    pub captured: Option<Instant>,
    /// The output time that puts it in step with another track of the session.
    pub aligned: Option<u64>,
}

/// Result of mapping one timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// Continuous output timestamp in the track's clock.
    pub pts: u64,
    /// The timeline re-anchored at this timestamp (after a restart or jump).
    /// Output time still runs forward from the last output, so this is not a
    /// discontinuity for the outputs.
    pub reanchored: bool,
}

impl Timeline {
    /// `clock_rate` in Hz (0 is treated as 1 so a bad SDP cannot divide by zero).
    pub fn new(clock_rate: u32) -> Timeline {
        Timeline {
            clock_rate: clock_rate.max(1),
            anchored: None,
            rebase_pending: false,
            first_output_floor: 0,
            forward_only: false,
        }
    }

    /// For a track whose timestamps are also its decode times (audio: no
    /// reordering): a timestamp that steps back from the highest output (a
    /// source whose packets overlap, or whose clock stepped back a little,
    /// within [`MAX_JUMP`]) re-anchors after it instead of going back, since
    /// consumers take these outputs as decode times. Video keeps backward steps
    /// (B-frames present out of decode order).
    pub fn forward_only(mut self) -> Timeline {
        self.forward_only = true;
        self
    }

    /// Makes the first output come strictly after `already_used` (the stream's
    /// output time so far, from an earlier ingest): a source's clock may have run
    /// ahead of the wall clock, so wall time since the origin alone could be a
    /// little behind what readers have seen.
    pub fn start_after(mut self, already_used: Duration) -> Timeline {
        if already_used > Duration::ZERO {
            self.first_output_floor = ticks(already_used, self.clock_rate).saturating_add(1);
        }
        self
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The source restarted: the next timestamp re-anchors after the current
    /// output instead of being compared with the old session's timestamps.
    pub fn rebase(&mut self) {
        if self.anchored.is_some() {
            self.rebase_pending = true;
        }
    }

    /// Maps `rtp_timestamp`, arrived at `now`, to output time. `origin` is the
    /// stream's start instant (the same for all its tracks); it only matters for
    /// the track's first timestamp.
    pub fn map(&mut self, rtp_timestamp: u32, now: Instant, origin: Instant) -> Mapped {
        self.map_aligned(rtp_timestamp, now, origin, AnchorHint::default())
    }

    /// [`Timeline::map`] with what the source's sender reports say about this
    /// timestamp; `hint` is used only if it (re-)anchors the timeline: `captured`
    /// (no later than `now`) stands for the arrival time, and `aligned` is taken
    /// when within [`MAX_JUMP`] of the anchor that gives.
    pub fn map_aligned(
        &mut self,
        rtp_timestamp: u32,
        now: Instant,
        origin: Instant,
        hint: AnchorHint,
    ) -> Mapped {
        let max_jump = ticks(MAX_JUMP, self.clock_rate);
        let prefer_aligned = |arrival: u64| {
            hint.aligned
                .filter(|a| a.abs_diff(arrival) <= max_jump)
                .unwrap_or(arrival)
        };
        let captured = hint.captured.map_or(now, |at| at.min(now));
        let Some(state) = self.anchored.as_mut() else {
            let arrival = ticks(captured.saturating_duration_since(origin), self.clock_rate);
            let pts = prefer_aligned(arrival).max(self.first_output_floor);
            self.anchored = Some(Anchored {
                last_rtp: rtp_timestamp,
                last_extended: 0,
                offset: pts as i64,
                max_output: pts,
                last_arrival: now,
            });
            return Mapped {
                pts,
                reanchored: false,
            };
        };
        let elapsed = ticks(
            now.saturating_duration_since(state.last_arrival),
            self.clock_rate,
        );
        let step = i64::from(rtp_timestamp.wrapping_sub(state.last_rtp) as i32);
        let extended = state.last_extended.saturating_add(step);
        let deviation = step.saturating_sub(elapsed as i64).unsigned_abs();
        let jumped = deviation > max_jump;
        let stepped_back = self.forward_only
            && extended.saturating_add(state.offset)
                < i64::try_from(state.max_output).unwrap_or(i64::MAX);
        let reanchored = self.rebase_pending || jumped || stepped_back;
        if reanchored {
            let since_last = ticks(
                captured.saturating_duration_since(state.last_arrival),
                self.clock_rate,
            );
            let arrival = state.max_output.saturating_add(since_last.max(1));
            let target = prefer_aligned(arrival).max(state.max_output.saturating_add(1));
            state.offset = (target as i64).saturating_sub(extended);
            self.rebase_pending = false;
        }
        state.last_rtp = rtp_timestamp;
        state.last_extended = extended;
        state.last_arrival = now;
        let pts = extended.saturating_add(state.offset).max(0) as u64;
        state.max_output = state.max_output.max(pts);
        Mapped { pts, reanchored }
    }

    /// Moves the current session's line `ticks` later: a gap in this track's
    /// output, never a step back. Used once per session to put the track in step
    /// with another when the source's sender reports (which often come a few
    /// seconds after the first packets) show it started early.
    pub fn delay(&mut self, ticks: u64) {
        if let Some(state) = self.anchored.as_mut() {
            let ticks = i64::try_from(ticks).unwrap_or(i64::MAX);
            state.offset = state.offset.saturating_add(ticks);
        }
    }

    /// The output time of the source timestamp `rtp_timestamp` on the current
    /// session's line (`None` before the first timestamp or after a rebase, until
    /// the new session's first one). May be negative or beyond what was output.
    pub fn output_of(&self, rtp_timestamp: u32) -> Option<i64> {
        let state = self.anchored.as_ref().filter(|_| !self.rebase_pending)?;
        let step = i64::from(rtp_timestamp.wrapping_sub(state.last_rtp) as i32);
        Some(
            state
                .last_extended
                .saturating_add(step)
                .saturating_add(state.offset),
        )
    }
}

/// Whole clock ticks in `duration`, saturating far beyond any real stream's life.
fn ticks(duration: Duration, clock_rate: u32) -> u64 {
    let ticks = duration.as_nanos().saturating_mul(u128::from(clock_rate)) / 1_000_000_000;
    u64::try_from(ticks)
        .unwrap_or(u64::MAX)
        .min(i64::MAX as u64 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 90_000;

    /// Found by the `ingest` fuzz target (crates/pipeline/tests/fuzz_regressions.rs):
    /// an audio source whose next timestamp is 512 ticks behind the last.
    #[test]
    fn a_forward_only_track_reanchors_after_a_small_step_back() {
        let origin = Instant::now();
        let mut timeline = Timeline::new(48_000).forward_only();
        let first = timeline.map(303_064, origin, origin).pts;
        let later = origin + Duration::from_millis(21);
        let back = timeline.map(303_064 - 512, later, origin);
        assert!(back.reanchored && back.pts > first, "{first} then {back:?}");
        // The source's own spacing resumes from the new anchor.
        let next = timeline.map(303_064 + 512, later + Duration::from_millis(21), origin);
        assert_eq!(next.pts, back.pts + 1024);
        // Without the rule (video), the step back is kept.
        let mut video = Timeline::new(RATE);
        let first = video.map(9000, origin + Duration::from_secs(1), origin).pts;
        let later = origin + Duration::from_millis(1021);
        assert_eq!(video.map(6000, later, origin).pts, first - 3000);
    }

    fn aligned(output: u64) -> AnchorHint {
        AnchorHint {
            aligned: Some(output),
            ..AnchorHint::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds 30 fps frames starting at `first_rtp`, one every 33 ms of wall time,
    /// and returns the outputs.
    fn run(
        tl: &mut Timeline,
        origin: Instant,
        start: Instant,
        first_rtp: u32,
        frames: u32,
    ) -> Vec<Mapped> {
        (0..frames)
            .map(|i| {
                tl.map(
                    first_rtp.wrapping_add(i * 3000),
                    start + ms(u64::from(i) * 33),
                    origin,
                )
            })
            .collect()
    }

    #[test]
    fn b_frames_stepping_back_keep_the_sources_spacing() {
        // Decode order I0 P3 B1 B2 P6 B4 B5 …, one frame arriving every 40 ms, with
        // the RTP clock wrapping in the middle: every backward step is the
        // source's own timing, not a jump.
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let first_rtp = u32::MAX - 20 * 3600;
        let positions = (0..60u32).map(|n| match n {
            0 => 0,
            n if (n - 1) % 3 == 0 => n + 2,
            n => n - 1,
        });
        let mut offset = None;
        for (n, position) in positions.enumerate() {
            let rtp = first_rtp.wrapping_add(position * 3600);
            let now = origin + ms(40 * n as u64);
            let mapped = tl.map(rtp, now, origin);
            assert!(!mapped.reanchored, "frame {n}");
            let shift = mapped.pts as i64 - i64::from(position) * 3600;
            assert_eq!(*offset.get_or_insert(shift), shift, "frame {n}");
        }
    }

    #[test]
    fn first_output_is_wall_time_since_stream_origin() {
        let origin = Instant::now();
        let mut video = Timeline::new(90_000);
        let mut audio = Timeline::new(48_000);
        assert_eq!(video.map(123_456, origin + ms(100), origin).pts, 9_000);
        assert_eq!(audio.map(987, origin + ms(120), origin).pts, 5_760);
    }

    #[test]
    fn a_later_timeline_starts_after_the_time_already_used() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE).start_after(Duration::from_secs(10));
        // Arrives 9 s after the origin, but readers already saw 10 s.
        assert_eq!(
            tl.map(0, origin + Duration::from_secs(9), origin).pts,
            900_001
        );
        let mut late = Timeline::new(RATE).start_after(Duration::from_secs(10));
        assert_eq!(
            late.map(0, origin + Duration::from_secs(11), origin).pts,
            990_000
        );
    }

    #[test]
    fn follows_source_spacing_across_wraparound() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let out = run(&mut tl, origin, origin, u32::MAX - 4_000, 5);
        let pts: Vec<u64> = out.iter().map(|m| m.pts).collect();
        assert_eq!(pts, vec![0, 3000, 6000, 9000, 12000]);
        assert!(out.iter().all(|m| !m.reanchored));
    }

    #[test]
    fn small_reordering_is_passed_through() {
        // B-frame style: a timestamp slightly behind the previous one is the source's
        // own order, not a re-anchor.
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let a = tl.map(10_000, origin, origin);
        let b = tl.map(16_000, origin + ms(33), origin);
        let c = tl.map(13_000, origin + ms(66), origin);
        assert_eq!((a.pts, b.pts, c.pts), (0, 6_000, 3_000));
        assert!(!c.reanchored);
    }

    #[test]
    fn backwards_jump_reanchors_forward() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let before = run(&mut tl, origin, origin, 50_000_000, 10);
        let last = before.last().map(|m| m.pts).unwrap_or_default();
        // The source's timestamps go back 100 s, 40 ms after its last frame.
        let after = tl.map(50_000_000 - 9_000_000, origin + ms(9 * 33 + 40), origin);
        assert!(after.reanchored);
        assert_eq!(after.pts, last + 3_600);
        let next = tl.map(
            50_000_000 - 9_000_000 + 3_000,
            origin + ms(9 * 33 + 73),
            origin,
        );
        assert_eq!(next.pts, last + 6_600);
        assert!(!next.reanchored);
    }

    #[test]
    fn huge_forward_jump_reanchors_without_gap() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let before = run(&mut tl, origin, origin, 0, 3);
        let last = before[2].pts;
        let after = tl.map(1_000_000_000, origin + ms(99), origin);
        assert!(after.reanchored);
        assert_eq!(after.pts, last + 2_970);
    }

    #[test]
    fn timestamps_consistent_with_a_long_stall_are_kept() {
        // No packets for 20 s, and the source's clock advanced 20 s: real time.
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        tl.map(0, origin, origin);
        let after = tl.map(20 * RATE, origin + Duration::from_secs(20), origin);
        assert!(!after.reanchored);
        assert_eq!(after.pts, 20 * u64::from(RATE));
    }

    #[test]
    fn rebase_after_restart_keeps_running_forward() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let before = run(&mut tl, origin, origin, 7_000_000, 30);
        let last = before.last().map(|m| m.pts).unwrap_or_default();
        // The new session starts 2 s later with a timestamp that happens to be only
        // slightly ahead of the old one: without rebase it would look continuous.
        tl.rebase();
        let restart_at = origin + ms(29 * 33) + Duration::from_secs(2);
        let first = tl.map(7_000_000 + 30 * 3000, restart_at, origin);
        assert!(first.reanchored);
        assert_eq!(first.pts, last + 2 * u64::from(RATE));
        let second = tl.map(7_000_000 + 31 * 3000, restart_at + ms(33), origin);
        assert_eq!(second.pts, first.pts + 3000);
        assert!(!second.reanchored);
    }

    #[test]
    fn rebase_with_no_elapsed_time_still_moves_forward() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let a = tl.map(5, origin, origin);
        tl.rebase();
        let b = tl.map(5, origin, origin);
        assert!(b.pts > a.pts);
    }

    #[test]
    fn tracks_stay_in_step_across_a_restart() {
        // Video and audio restart with unrelated new timestamps; each output in
        // seconds stays equal to its arrival time since the origin.
        let origin = Instant::now();
        let mut video = Timeline::new(90_000);
        let mut audio = Timeline::new(48_000);
        for i in 0..10u32 {
            video.map(1_000 + i * 3_600, origin + ms(u64::from(i) * 40), origin);
            audio.map(77 + i * 960, origin + ms(u64::from(i) * 20), origin);
        }
        video.rebase();
        audio.rebase();
        let v = video.map(42, origin + ms(3_000), origin);
        let a = audio.map(4_242_424, origin + ms(3_010), origin);
        assert_eq!(v.pts, 270_000);
        assert_eq!(a.pts, 144_480);
    }

    #[test]
    fn an_aligned_anchor_replaces_the_arrival_time_within_bounds() {
        let origin = Instant::now();
        let mut first = Timeline::new(RATE);
        // Arrived 1 s after the origin, but sender reports place it at 0.7 s.
        assert_eq!(
            first
                .map_aligned(5, origin + ms(1_000), origin, aligned(63_000))
                .pts,
            63_000
        );
        assert_eq!(first.output_of(3_005), Some(66_000));
        let mut absurd = Timeline::new(RATE);
        let far = aligned(ticks(MAX_JUMP, RATE) + 90_001);
        assert_eq!(
            absurd.map_aligned(5, origin + ms(1_000), origin, far).pts,
            90_000,
            "reports further off than MAX_JUMP are not trusted"
        );
    }

    #[test]
    fn a_capture_time_before_arrival_stands_for_it_when_anchoring() {
        let origin = Instant::now();
        let captured = |at: Instant| AnchorHint {
            captured: Some(at),
            ..AnchorHint::default()
        };
        let mut tl = Timeline::new(RATE);
        // A 2 s GOP arrives at once, 3 s after the origin: its first frame was
        // captured at 1 s, the rest follow the source's spacing.
        let burst_at = origin + ms(3_000);
        let first = tl.map_aligned(0, burst_at, origin, captured(origin + ms(1_000)));
        assert_eq!(first.pts, 90_000);
        assert_eq!(
            tl.map(180_000, burst_at, origin).pts,
            270_000,
            "live edge at 3 s"
        );
        // The source restarts and bursts again: 1 s since the last arrival, its
        // first frame captured 0.5 s after that.
        tl.rebase();
        let again = origin + ms(4_000);
        let restarted = tl.map_aligned(7, again, origin, captured(origin + ms(3_500)));
        assert_eq!(restarted.pts, 270_000 + 45_000);
        // A capture time after the arrival is the arrival.
        let mut late = Timeline::new(RATE);
        let at = origin + ms(1_000);
        assert_eq!(
            late.map_aligned(0, at, origin, captured(at + ms(500))).pts,
            90_000
        );
    }

    #[test]
    fn a_delay_leaves_a_gap_and_keeps_the_source_spacing() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let last = run(&mut tl, origin, origin, 0, 3)[2].pts;
        tl.delay(9_000);
        assert_eq!(tl.output_of(9_000), Some(last as i64 + 12_000));
        let next = tl.map(9_000, origin + ms(99), origin);
        assert_eq!(next.pts, last + 12_000);
        assert!(!next.reanchored);
        assert_eq!(tl.map(12_000, origin + ms(132), origin).pts, last + 15_000);
    }

    #[test]
    fn an_aligned_re_anchor_never_goes_back_and_is_used_only_when_anchoring() {
        let origin = Instant::now();
        let mut tl = Timeline::new(RATE);
        let last = run(&mut tl, origin, origin, 0, 10)[9].pts;
        let steady = tl.map_aligned(30_000, origin + ms(330), origin, aligned(1));
        assert_eq!(steady.pts, last + 3_000, "anchored: the hint is ignored");
        tl.rebase();
        assert_eq!(tl.output_of(33_000), None, "no line until the new session");
        let behind = tl.map_aligned(9, origin + ms(400), origin, aligned(last));
        assert_eq!(behind.pts, last + 3_001, "after the highest output");
        tl.rebase();
        let ahead = tl.map_aligned(9, origin + ms(500), origin, aligned(last + 20_000));
        assert!(ahead.reanchored);
        assert_eq!(ahead.pts, last + 20_000);
    }
}
