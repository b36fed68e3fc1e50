//! Sans-IO segmenter: frames in, parts and segments out, kept in a sliding window
//! with a hard byte cap.
//!
//! Timing: the lead track (first video track, else the first track) decides every
//! boundary. A segment starts at a lead keyframe once the previous one reached the
//! target duration; parts close just before they would exceed the part target.
//! Other tracks' samples go into the part whose time range they start in (or the
//! next one when they arrive late), so audio and video stay interleaved per part.
//!
//! Each track's output decode time is its own continuous timestamp minus an offset
//! chosen from the frames' wall clocks, so tracks with unrelated RTP clocks start
//! in sync. Program-date-time is derived from media time, anchored at the first
//! frame and again at each discontinuity, so it is continuous between them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use streamgate_rtp::{Codec, Frame, MediaKind, TrackInfo};

use crate::codecs::{codec_string, is_muxable};
use crate::fmp4::{fragment, init_segment, Sample, TrackRun};
use crate::MuxError;

/// Segment and window sizes.
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    /// Segments are cut at the first lead keyframe at or after this duration.
    pub segment_target: Duration,
    /// Parts never exceed this (unless the source's frame interval does).
    pub part_target: Duration,
    /// Finished segments kept.
    pub window: usize,
    /// Hard cap on the bytes held (finished segments, the one in progress and queued samples).
    pub max_bytes: usize,
    /// Media sequence number (and init version) of the first segment, unless it
    /// `follows` another playlist.
    pub first_msn: u64,
    /// The playlist this one continues (the one of a stream's previous source): the
    /// first segment takes the next sequence number and is marked a discontinuity,
    /// so a player follows the new source without reloading.
    pub follows: Option<Continuation>,
}

/// Where a playlist left off, for the one that continues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuation {
    /// The first sequence number (and init version) no segment of it used.
    pub next_msn: u64,
    /// The discontinuity sequence number of its last segment.
    pub discontinuity_sequence: u64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            segment_target: Duration::from_secs(2),
            part_target: Duration::from_millis(200),
            window: 7,
            max_bytes: 64 * 1024 * 1024,
            first_msn: 0,
            follows: None,
        }
    }
}

/// A segment longer than this many targets is cut even without a keyframe, so a
/// source that never sends one cannot grow a segment without bound.
const MAX_SEGMENT_TARGETS: u32 = 3;

/// A partial segment: one `moof` + `mdat`.
#[derive(Debug)]
pub struct Part {
    pub duration: f64,
    /// Starts with a lead-track keyframe.
    pub independent: bool,
    pub data: Bytes,
}

/// A media segment: its parts in order (the segment's bytes are their concatenation).
#[derive(Debug, Clone)]
pub struct Segment {
    pub msn: u64,
    pub parts: Vec<Arc<Part>>,
    /// Seconds; set when the segment is finished.
    pub duration: f64,
    pub program_date_time: SystemTime,
    /// The source's timeline broke just before this segment.
    pub discontinuity: bool,
    /// Which init segment (`init_N.mp4`) its fragments need.
    pub init_version: u64,
}

impl Segment {
    pub fn byte_len(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }
}

/// The init segment a group of segments uses, and the codec strings it declares.
#[derive(Debug, Clone)]
pub struct Init {
    pub data: Bytes,
    pub codecs: Vec<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug)]
struct PendingFrame {
    dts: u64,
    composition_offset: i32,
    keyframe: bool,
    units: Vec<Bytes>,
}

#[derive(Debug)]
struct MuxTrack {
    info: TrackInfo,
    /// Output decode time = source dts − offset; set at the track's first frame.
    offset: Option<i64>,
    /// The latest frame: its duration is known once the next one arrives.
    pending: Option<PendingFrame>,
    ready: VecDeque<Sample>,
    ready_bytes: usize,
    last_duration: u32,
}

impl MuxTrack {
    fn video(&self) -> bool {
        self.info.kind() == MediaKind::Video
    }

    /// Turns the pending frame into a sample now that the next decode time is known.
    fn complete_pending(&mut self, next_dts: u64) {
        if let Some(p) = self.pending.take() {
            let duration = match next_dts.checked_sub(p.dts) {
                Some(d) if d > 0 => u32::try_from(d).unwrap_or(u32::MAX),
                _ => self.last_duration.max(1),
            };
            self.last_duration = duration;
            let sample = Sample {
                dts: p.dts,
                duration,
                composition_offset: p.composition_offset,
                keyframe: p.keyframe,
                units: p.units,
                video: self.video(),
            };
            self.ready_bytes += sample.size();
            self.ready.push_back(sample);
        }
    }

    /// Removes the ready samples that start before `boundary` (in `boundary_scale` ticks).
    fn take_before(&mut self, boundary: u64, boundary_scale: u32) -> Vec<Sample> {
        let scale = self.info.clock_rate.max(1) as u128;
        let count = self
            .ready
            .iter()
            .take_while(|s| (s.dts as u128) * (boundary_scale as u128) < (boundary as u128) * scale)
            .count();
        let taken: Vec<Sample> = self.ready.drain(..count).collect();
        self.ready_bytes -= taken.iter().map(Sample::size).sum::<usize>();
        taken
    }
}

/// Counters a stream's stats and logs report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterStats {
    pub frames: u64,
    /// Frames dropped: before the first keyframe, going backwards, or over the byte cap.
    pub dropped_frames: u64,
    pub parts: u64,
    pub segments: u64,
    pub evicted_segments: u64,
}

/// Cuts one stream's frames into LL-HLS parts and segments.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    tracks: Vec<MuxTrack>,
    lead: usize,
    inits: BTreeMap<u64, Init>,
    init_version: u64,
    /// A newer init (changed parameter sets) waiting for the next segment start.
    next_init: Option<Init>,
    segments: VecDeque<Segment>,
    current: Option<Segment>,
    next_msn: u64,
    discontinuity_sequence: u64,
    max_segment_duration: f64,
    origin_wallclock: Option<SystemTime>,
    pdt_anchor: (SystemTime, u64),
    segment_start: u64,
    part_start: u64,
    discontinuity_pending: bool,
    /// Lead ticks where the last discontinuity segment started.
    last_break: Option<u64>,
    fragment_sequence: u32,
    stored_bytes: usize,
    stats: SegmenterStats,
}

fn secs_to_ticks(d: Duration, scale: u32) -> u64 {
    (d.as_secs_f64() * scale as f64).round() as u64
}

/// Presentation minus decode time (non-zero with B-frames), as `trun` writes it.
fn composition_offset(frame: &Frame) -> i32 {
    i32::try_from(frame.pts as i64 - frame.dts as i64).unwrap_or(0)
}

fn signed_secs_between(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Parameter sets and access unit delimiters are dropped from samples: `avc1` and
/// `hvc1` carry parameter sets in the init segment.
fn is_sample_nal(codec: Codec, nal: &[u8]) -> bool {
    let Some(&header) = nal.first() else {
        return false;
    };
    match codec {
        Codec::H264 => !matches!(header & 0x1f, 7..=9),
        Codec::H265 => !matches!((header >> 1) & 0x3f, 32..=35),
        _ => true,
    }
}

fn make_init(tracks: &[MuxTrack]) -> Result<Init, MuxError> {
    let infos: Vec<TrackInfo> = tracks.iter().map(|t| t.info.clone()).collect();
    let video = infos.iter().find(|t| t.kind() == MediaKind::Video);
    Ok(Init {
        data: init_segment(&infos)?,
        codecs: infos.iter().map(codec_string).collect::<Result<_, _>>()?,
        width: video.and_then(|t| t.params.width),
        height: video.and_then(|t| t.params.height),
    })
}

impl Segmenter {
    /// Takes the stream's tracks (all must be ready); tracks HLS cannot carry are left out.
    pub fn new(config: SegmenterConfig, tracks: &[TrackInfo]) -> Result<Segmenter, MuxError> {
        let tracks: Vec<MuxTrack> = tracks
            .iter()
            .filter(|t| is_muxable(t.codec))
            .map(|info| MuxTrack {
                info: info.clone(),
                offset: None,
                pending: None,
                ready: VecDeque::new(),
                ready_bytes: 0,
                last_duration: 0,
            })
            .collect();
        if tracks.is_empty() {
            return Err(MuxError::NoMuxableTrack);
        }
        let lead = tracks.iter().position(MuxTrack::video).unwrap_or(0);
        let init = make_init(&tracks)?;
        let (first_msn, discontinuity_sequence) = match config.follows {
            Some(previous) => (previous.next_msn, previous.discontinuity_sequence),
            None => (config.first_msn, 0),
        };
        Ok(Segmenter {
            config: config.clone(),
            tracks,
            lead,
            inits: BTreeMap::from([(first_msn, init)]),
            init_version: first_msn,
            next_init: None,
            segments: VecDeque::new(),
            current: None,
            next_msn: first_msn,
            discontinuity_sequence,
            max_segment_duration: 0.0,
            origin_wallclock: None,
            pdt_anchor: (SystemTime::UNIX_EPOCH, 0),
            segment_start: 0,
            part_start: 0,
            discontinuity_pending: false,
            last_break: None,
            fragment_sequence: 0,
            stored_bytes: 0,
            stats: SegmenterStats::default(),
        })
    }

    /// New codec parameters (e.g. a changed SPS): the next segment gets a new init segment.
    pub fn update_tracks(&mut self, tracks: &[TrackInfo]) -> Result<(), MuxError> {
        let mut changed = false;
        for track in &mut self.tracks {
            if let Some(new) = tracks.iter().find(|t| t.id == track.info.id) {
                if new.params != track.info.params && new.is_ready() {
                    track.info.params = new.params.clone();
                    changed = true;
                }
            }
        }
        if changed {
            self.next_init = Some(make_init(&self.tracks)?);
        }
        Ok(())
    }

    /// Feeds one frame. Returns true when a part (and maybe a segment) was completed.
    pub fn push(&mut self, frame: &Frame) -> Result<bool, MuxError> {
        self.stats.frames += 1;
        let Some(index) = self.tracks.iter().position(|t| t.info.id == frame.track) else {
            return Ok(false);
        };
        if frame.discontinuity && self.origin_wallclock.is_some() && !self.is_known_break(index) {
            self.discontinuity_pending = true;
        }
        let Some(origin) = self.origin_wallclock else {
            if index != self.lead || !frame.keyframe {
                self.stats.dropped_frames += 1;
                return Ok(false);
            }
            self.start(frame);
            return Ok(false);
        };

        let track = &mut self.tracks[index];
        let offset = *track.offset.get_or_insert_with(|| {
            let since_origin = signed_secs_between(frame.wallclock, origin);
            frame.dts as i64 - (since_origin * track.info.clock_rate as f64).round() as i64
        });
        let dts = match u64::try_from(frame.dts as i64 - offset) {
            Ok(dts) if track.pending.as_ref().is_none_or(|p| dts >= p.dts) => dts,
            // Before the stream's origin, or time going backwards: not muxable.
            _ => {
                self.stats.dropped_frames += 1;
                return Ok(false);
            }
        };
        let units: Vec<Bytes> = frame
            .units
            .iter()
            .filter(|u| is_sample_nal(track.info.codec, u))
            .cloned()
            .collect();
        if units.is_empty() {
            return Ok(false);
        }
        track.complete_pending(dts);
        let pending = PendingFrame {
            dts,
            composition_offset: composition_offset(frame),
            keyframe: frame.keyframe,
            units,
        };

        let mut progressed = false;
        if index == self.lead {
            progressed = self.cut_if_due(dts, frame)?;
            self.tracks[index].pending = Some(pending);
        } else {
            track.pending = Some(pending);
            self.bound_queue(index);
        }
        Ok(progressed)
    }

    /// A source break reaches each track's first frame after it; a non-lead track
    /// flagging it within a segment target of the last cut reports that same break.
    fn is_known_break(&self, index: usize) -> bool {
        let Some(last_break) = self.last_break else {
            return false;
        };
        let lead_now = self.tracks[self.lead]
            .pending
            .as_ref()
            .map_or(self.part_start, |p| p.dts);
        index != self.lead
            && lead_now.saturating_sub(last_break)
                < secs_to_ticks(self.config.segment_target, self.lead_scale())
    }

    /// The first lead keyframe: fixes the stream's time origin and opens segment 0.
    fn start(&mut self, frame: &Frame) {
        let lead = &mut self.tracks[self.lead];
        lead.offset = Some(frame.dts as i64);
        let units: Vec<Bytes> = frame
            .units
            .iter()
            .filter(|u| is_sample_nal(lead.info.codec, u))
            .cloned()
            .collect();
        lead.pending = Some(PendingFrame {
            dts: 0,
            composition_offset: composition_offset(frame),
            keyframe: true,
            units,
        });
        // Output time 0 is this frame's decode time, which is before its
        // presentation (its wall clock) when B-frames reorder: the other tracks
        // are placed on the same line, so they keep in step with the pictures.
        let reorder = Duration::from_secs_f64(
            f64::from(composition_offset(frame).max(0)) / f64::from(lead.info.clock_rate.max(1)),
        );
        self.origin_wallclock = Some(
            frame
                .wallclock
                .checked_sub(reorder)
                .unwrap_or(frame.wallclock),
        );
        self.pdt_anchor = (frame.wallclock, 0);
        self.open_segment(0, self.config.follows.is_some());
    }

    fn lead_scale(&self) -> u32 {
        self.tracks[self.lead].info.clock_rate.max(1)
    }

    /// Decides, on a new lead frame at `dts`, whether the current part and segment end here.
    fn cut_if_due(&mut self, dts: u64, frame: &Frame) -> Result<bool, MuxError> {
        let scale = self.lead_scale();
        let since_segment = dts.saturating_sub(self.segment_start);
        let since_part = dts.saturating_sub(self.part_start);
        let segment_target = secs_to_ticks(self.config.segment_target, scale);
        let wants_new_segment = since_segment >= segment_target
            || self.discontinuity_pending
            || self.next_init.is_some();
        let current_bytes = self.current.as_ref().map_or(0, Segment::byte_len);
        let forced = since_segment >= segment_target * MAX_SEGMENT_TARGETS as u64
            || current_bytes > self.config.max_bytes / 2;
        if (frame.keyframe && wants_new_segment) || forced {
            self.close_part(dts)?;
            self.close_segment(dts, frame.wallclock);
            return Ok(true);
        }
        let next_interval = self.tracks[self.lead].last_duration as u64;
        if since_part + next_interval > secs_to_ticks(self.config.part_target, scale) {
            self.close_part(dts)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes every track's samples that start before `boundary` (lead ticks) as one part.
    fn close_part(&mut self, boundary: u64) -> Result<(), MuxError> {
        let scale = self.lead_scale();
        let taken: Vec<(usize, Vec<Sample>)> = (0..self.tracks.len())
            .map(|i| (i, self.tracks[i].take_before(boundary, scale)))
            .collect();
        let lead_samples = &taken[self.lead].1;
        if lead_samples.is_empty() {
            return Ok(());
        }
        let independent = lead_samples[0].keyframe;
        let runs: Vec<TrackRun<'_>> = taken
            .iter()
            .map(|(i, samples)| TrackRun {
                track_index: *i,
                samples,
            })
            .collect();
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        let data = fragment(self.fragment_sequence, &runs)?;
        let duration = boundary.saturating_sub(self.part_start) as f64 / scale as f64;
        self.part_start = boundary;
        self.stored_bytes += data.len();
        self.stats.parts += 1;
        if let Some(current) = &mut self.current {
            current.parts.push(Arc::new(Part {
                duration,
                independent,
                data,
            }));
        }
        Ok(())
    }

    fn close_segment(&mut self, boundary: u64, wallclock: SystemTime) {
        let scale = self.lead_scale();
        if let Some(mut finished) = self.current.take() {
            finished.duration = boundary.saturating_sub(self.segment_start) as f64 / scale as f64;
            self.max_segment_duration = self.max_segment_duration.max(finished.duration);
            self.stats.segments += 1;
            self.segments.push_back(finished);
        }
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        if discontinuity {
            self.pdt_anchor = (wallclock, boundary);
            self.last_break = Some(boundary);
        }
        if let Some(init) = self.next_init.take() {
            self.init_version += 1;
            self.inits.insert(self.init_version, init);
        }
        self.open_segment(boundary, discontinuity);
        self.evict();
    }

    fn open_segment(&mut self, start: u64, discontinuity: bool) {
        let (anchor_wallclock, anchor_ticks) = self.pdt_anchor;
        let since_anchor = start.saturating_sub(anchor_ticks) as f64 / self.lead_scale() as f64;
        self.segment_start = start;
        self.part_start = start;
        self.current = Some(Segment {
            msn: self.next_msn,
            parts: Vec::new(),
            duration: 0.0,
            program_date_time: anchor_wallclock + Duration::from_secs_f64(since_anchor),
            discontinuity,
            init_version: self.init_version,
        });
        self.next_msn += 1;
    }

    /// Drops the oldest segments beyond the window or the byte cap.
    fn evict(&mut self) {
        while let Some(oldest) = self.segments.front() {
            let queued: usize = self.tracks.iter().map(|t| t.ready_bytes).sum();
            if self.segments.len() <= self.config.window
                && self.stored_bytes + queued <= self.config.max_bytes
            {
                break;
            }
            self.stored_bytes -= oldest.byte_len();
            if oldest.discontinuity {
                self.discontinuity_sequence += 1;
            }
            self.segments.pop_front();
            self.stats.evicted_segments += 1;
        }
        let oldest_init = self
            .segments
            .front()
            .or(self.current.as_ref())
            .map_or(self.init_version, |s| s.init_version);
        self.inits.retain(|&version, _| version >= oldest_init);
    }

    /// Keeps a non-lead track's queue within its share of the cap when the lead stalls.
    fn bound_queue(&mut self, index: usize) {
        let cap = self.config.max_bytes / 4;
        let track = &mut self.tracks[index];
        while track.ready_bytes > cap {
            let Some(sample) = track.ready.pop_front() else {
                break;
            };
            track.ready_bytes -= sample.size();
            self.stats.dropped_frames += 1;
        }
    }

    /// Finished segments, oldest first.
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// The segment being made (its finished parts so far).
    pub fn current(&self) -> Option<&Segment> {
        self.current.as_ref()
    }

    /// A finished segment or the one in progress, by media sequence number.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .chain(self.current.as_ref())
            .find(|s| s.msn == msn)
    }

    pub fn init(&self, version: u64) -> Option<&Init> {
        self.inits.get(&version)
    }

    /// The init segment of the newest segments (what the multivariant playlist describes).
    pub fn latest_init(&self) -> &Init {
        let version = self
            .current
            .as_ref()
            .map_or(self.init_version, |s| s.init_version);
        self.inits
            .get(&version)
            .or_else(|| self.inits.values().next_back())
            .expect("the init map is never empty")
    }

    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// Discontinuities that scrolled out of the window (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// Where this playlist leaves off: a successor continues after the segment in
    /// progress (which stays unfinished), one discontinuity later.
    pub fn continuation(&self) -> Continuation {
        let listed_breaks = self
            .segments
            .iter()
            .chain(&self.current)
            .filter(|s| s.discontinuity)
            .count();
        Continuation {
            next_msn: self.next_msn,
            discontinuity_sequence: self.discontinuity_sequence + listed_breaks as u64,
        }
    }

    /// Longest finished segment so far, in seconds.
    pub fn max_segment_duration(&self) -> f64 {
        self.max_segment_duration
    }

    /// Bytes held in finished segments and the one in progress.
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    pub fn stats(&self) -> SegmenterStats {
        self.stats
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use streamgate_rtp::testing::{h264_track, opus_track};
    use streamgate_rtp::TrackId;

    /// An H.264 + Opus stream.
    pub fn tracks() -> Vec<TrackInfo> {
        vec![h264_track(), opus_track()]
    }

    /// A synthetic A/V source: 30 fps video with a keyframe every `gop` frames,
    /// 20 ms Opus frames, with unrelated RTP clock origins on the two tracks.
    pub struct Synthetic {
        pub gop: u64,
        pub video_frames: u64,
        pub audio_frames: u64,
        pub start: SystemTime,
        pub discontinuity_at_video_frame: Option<u64>,
        /// B-frames: video in decode order I0 P3 B1 B2 P6 B4 B5 … (a GOP of 3k + 1
        /// frames keeps each GOP closed), presented one frame after decoding
        /// (reorder depth 1).
        pub b_frames: bool,
    }

    impl Synthetic {
        pub fn new(gop: u64) -> Self {
            Synthetic {
                gop,
                video_frames: 0,
                audio_frames: 0,
                start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                discontinuity_at_video_frame: None,
                b_frames: false,
            }
        }

        /// Where video frame `n` (decode order) is presented, in frames.
        fn display_position(&self, n: u64) -> u64 {
            let m = n % self.gop;
            match m {
                _ if !self.b_frames => n,
                0 => n + 1,
                m if (m - 1) % 3 == 0 => n + 3,
                _ => n,
            }
        }

        /// The frames of the next `seconds` in arrival order.
        pub fn next_seconds(&mut self, seconds: u64) -> Vec<Frame> {
            let mut out = Vec::new();
            let end_ms = (self.video_frames * 1000 / 30) + seconds * 1000;
            loop {
                let video_ms = self.video_frames * 1000 / 30;
                let audio_ms = self.audio_frames * 20;
                if video_ms >= end_ms && audio_ms >= end_ms {
                    break;
                }
                if video_ms <= audio_ms {
                    let n = self.video_frames;
                    let keyframe = n.is_multiple_of(self.gop);
                    let nal: &'static [u8] = if keyframe {
                        &[0x65, 0x88, 0x84, 0x00]
                    } else {
                        &[0x41, 0x9a, 0x02]
                    };
                    let shown = self.display_position(n);
                    out.push(Frame {
                        track: TrackId::new(0),
                        kind: MediaKind::Video,
                        pts: 1_000_000 + shown * 3000,
                        dts: 1_000_000 + n * 3000,
                        wallclock: self.start + Duration::from_millis(shown * 1000 / 30),
                        keyframe,
                        discontinuity: self.discontinuity_at_video_frame == Some(n),
                        random_access_skipped: false,
                        units: vec![Bytes::from_static(&[0x09, 0xf0]), Bytes::from_static(nal)],
                        packets: vec![],
                    });
                    self.video_frames += 1;
                } else {
                    let n = self.audio_frames;
                    out.push(Frame {
                        track: TrackId::new(1),
                        kind: MediaKind::Audio,
                        pts: 77_777 + n * 960,
                        dts: 77_777 + n * 960,
                        wallclock: self.start + Duration::from_millis(audio_ms),
                        keyframe: true,
                        discontinuity: false,
                        random_access_skipped: false,
                        units: vec![Bytes::from_static(&[0xfc, 0xff, 0xfe])],
                        packets: vec![],
                    });
                    self.audio_frames += 1;
                }
            }
            out
        }
    }

    pub fn feed(segmenter: &mut Segmenter, frames: &[Frame]) {
        for frame in frames {
            segmenter.push(frame).unwrap();
        }
    }

    #[test]
    fn segments_start_at_keyframes_after_the_target() {
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        // Keyframe every 1 s: segments are cut at the keyframe at 2 s.
        feed(&mut segmenter, &Synthetic::new(30).next_seconds(11));
        let segments = segmenter.segments();
        assert_eq!(segments.len(), 5);
        for segment in segments {
            assert!(
                (segment.duration - 2.0).abs() < 1e-6,
                "{}",
                segment.duration
            );
            assert!(segment.parts[0].independent);
            assert!(
                segment.parts.iter().all(|p| p.duration <= 0.2 + 1e-9),
                "{:?}",
                segment.parts
            );
            assert!(!segment.discontinuity);
        }
        let pdt_gap = segments[1]
            .program_date_time
            .duration_since(segments[0].program_date_time)
            .unwrap();
        assert_eq!(pdt_gap, Duration::from_secs(2));
    }

    #[test]
    fn window_and_byte_cap_bound_what_is_kept() {
        let config = SegmenterConfig {
            window: 3,
            ..Default::default()
        };
        let mut segmenter = Segmenter::new(config, &tracks()).unwrap();
        feed(&mut segmenter, &Synthetic::new(30).next_seconds(30));
        assert_eq!(segmenter.segments().len(), 3);
        assert_eq!(segmenter.segments().front().unwrap().msn, 11);

        let small = SegmenterConfig {
            max_bytes: 2000,
            ..Default::default()
        };
        let mut segmenter = Segmenter::new(small, &tracks()).unwrap();
        feed(&mut segmenter, &Synthetic::new(30).next_seconds(30));
        assert!(segmenter.stored_bytes() <= 2000 + segmenter.current().unwrap().byte_len());
    }

    /// Sequence numbers of the finished segments marked as discontinuities.
    fn discontinuities(segmenter: &Segmenter) -> Vec<u64> {
        let marked = segmenter.segments().iter().filter(|s| s.discontinuity);
        marked.map(|s| s.msn).collect()
    }

    #[test]
    fn discontinuity_starts_a_marked_segment_at_the_next_keyframe() {
        let mut source = Synthetic::new(30);
        source.discontinuity_at_video_frame = Some(75);
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        feed(&mut segmenter, &source.next_seconds(9));
        let marked = discontinuities(&segmenter);
        // Frame 75 (2.5 s) breaks; the next keyframe is frame 90 (3 s), starting segment 2.
        assert_eq!(marked, vec![2]);
        assert!((segmenter.segments()[1].duration - 1.0).abs() < 1e-6);

        // The audio track reports the same break a little later: still one discontinuity.
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        let mut source = Synthetic::new(30);
        source.discontinuity_at_video_frame = Some(60);
        let mut frames = source.next_seconds(9);
        let late_audio = frames
            .iter()
            .position(|f| f.track == TrackId::new(1) && f.pts > 77_777 + 110 * 960)
            .unwrap();
        frames[late_audio].discontinuity = true;
        feed(&mut segmenter, &frames);
        let marked = discontinuities(&segmenter);
        assert_eq!(marked, vec![1]);
    }

    #[test]
    fn audio_is_interleaved_into_each_part() {
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        feed(&mut segmenter, &Synthetic::new(30).next_seconds(3));
        let part = &segmenter.segments()[0].parts[1];
        let mut cursor = std::io::Cursor::new(part.data.as_ref());
        let mp4_atom::Any::Moof(moof) =
            <mp4_atom::Any as mp4_atom::Decode>::decode(&mut cursor).unwrap()
        else {
            panic!("part does not start with moof")
        };
        assert_eq!(moof.traf.len(), 2);
        assert_eq!(
            moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time,
            18_000
        );
        // Audio continues exactly where part 0's audio ended, at most 0.2 s (9600 ticks) in.
        let mut first = std::io::Cursor::new(segmenter.segments()[0].parts[0].data.as_ref());
        let mp4_atom::Any::Moof(first) =
            <mp4_atom::Any as mp4_atom::Decode>::decode(&mut first).unwrap()
        else {
            panic!("part does not start with moof")
        };
        let audio_end: u64 = first.traf[1].trun[0]
            .samples
            .iter()
            .map(|s| s.duration.unwrap() as u64)
            .sum();
        let audio_start = moof.traf[1].tfdt.as_ref().unwrap().base_media_decode_time;
        assert_eq!(audio_start, audio_end);
        assert!(audio_start > 0 && audio_start <= 9_600, "{audio_start}");
    }

    #[test]
    fn a_following_playlist_continues_numbering_after_a_discontinuity() {
        let config = SegmenterConfig {
            window: 3,
            first_msn: 100,
            ..Default::default()
        };
        let mut source = Synthetic::new(30);
        source.discontinuity_at_video_frame = Some(75);
        let mut previous = Segmenter::new(config.clone(), &tracks()).unwrap();
        feed(&mut previous, &source.next_seconds(6));
        // Segment 102 (the break) is listed, 103 is in progress.
        assert_eq!(previous.current().map(|s| s.msn), Some(103));
        let continuation = previous.continuation();
        assert_eq!(
            continuation,
            Continuation {
                next_msn: 104,
                discontinuity_sequence: 1
            }
        );

        let follows = SegmenterConfig {
            follows: Some(continuation),
            ..config
        };
        let mut next = Segmenter::new(follows, &tracks()).unwrap();
        assert!(next.init(104).is_some(), "init versions continue too");
        let mut new_source = Synthetic::new(30);
        feed(&mut next, &new_source.next_seconds(3));
        let first = &next.segments()[0];
        assert_eq!(first.msn, 104);
        assert!(first.discontinuity);
        assert_eq!(first.init_version, 104);
        assert_eq!(next.discontinuity_sequence(), 1);

        // Scrolling the marked segment out counts it, as for any discontinuity.
        feed(&mut next, &new_source.next_seconds(10));
        assert!(next.segments().iter().all(|s| !s.discontinuity));
        assert_eq!(next.discontinuity_sequence(), 2);
    }

    /// A track run: (base media decode time, [(duration, composition offset, sync)]).
    type Run = (u64, Vec<(u32, i64, bool)>);

    /// Each track run in a part.
    fn runs(part: &Part) -> Vec<Run> {
        use mp4_atom::{Any, DecodeMaybe, TrunSamples};
        let mut cursor = std::io::Cursor::new(part.data.as_ref());
        let Ok(Some(Any::Moof(moof))) = Any::decode_maybe(&mut cursor) else {
            panic!("part starts with a moof")
        };
        moof.traf
            .iter()
            .map(|traf| {
                let TrunSamples::Explicit(entries) = &traf.trun[0].samples else {
                    panic!("explicit samples")
                };
                let samples = entries
                    .iter()
                    .map(|e| {
                        let flags = e.flags.unwrap_or_default();
                        (
                            e.duration.unwrap_or_default(),
                            e.cts.unwrap_or_default(),
                            flags & 0x0001_0000 == 0,
                        )
                    })
                    .collect();
                (
                    traf.tfdt.as_ref().map_or(0, |t| t.base_media_decode_time),
                    samples,
                )
            })
            .collect()
    }

    #[test]
    fn b_frames_get_composition_offsets_and_decode_time_durations() {
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        let mut source = Synthetic::new(31);
        source.b_frames = true;
        feed(&mut segmenter, &source.next_seconds(9));
        let segments = segmenter.segments();
        assert!(segments.len() >= 3, "{}", segments.len());
        let mut next_dts = 0;
        let mut offsets = Vec::new();
        for segment in segments {
            // Cut at every second keyframe (62 frames), timed by decode time.
            assert!(
                (segment.duration - 62.0 / 30.0).abs() < 1e-9,
                "{}",
                segment.duration
            );
            assert!(segment.parts[0].independent);
            let mut duration = 0.0;
            for part in &segment.parts {
                duration += part.duration;
                let runs = runs(part);
                let (base, samples) = &runs[0];
                assert_eq!(*base, next_dts, "tfdt is the decode time");
                next_dts += samples.iter().map(|s| u64::from(s.0)).sum::<u64>();
                assert!(
                    samples.iter().all(|s| s.0 == 3000),
                    "durations are decode-time steps"
                );
                offsets.extend(samples.iter().map(|s| (s.1, s.2)));
            }
            assert!((duration - segment.duration).abs() < 1e-9);
        }
        // I: one frame, P: three frames, B: none, as the source says.
        let expected: Vec<(i64, bool)> = (0..offsets.len() as u64)
            .map(|n| {
                (
                    source.display_position(n) as i64 * 3000 - n as i64 * 3000,
                    n % 31 == 0,
                )
            })
            .collect();
        assert_eq!(offsets, expected);

        // Audio is placed on the pictures' presentation line: the first picture,
        // captured at 33 ms, is presented at 1/30 s (its composition offset), so
        // the audio captured at 0 ms starts 33 ms before it.
        let first = &runs(&segments[0].parts[0]);
        let audio_start = first[1].0 as f64 / 48_000.0;
        assert!(
            (audio_start - (1.0 / 30.0 - 0.033)).abs() < 1e-4,
            "{audio_start}"
        );
    }

    #[test]
    fn frames_before_the_first_keyframe_are_dropped() {
        let mut source = Synthetic::new(30);
        let frames = source.next_seconds(4);
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        // Start mid-GOP: skip the first 10 video frames.
        let late: Vec<Frame> = frames
            .into_iter()
            .skip_while(|f| f.track == TrackId::new(1) || f.pts < 1_000_000 + 10 * 3000)
            .collect();
        feed(&mut segmenter, &late);
        assert!(segmenter.stats().dropped_frames > 0);
        let first = &segmenter.segments()[0];
        assert!(first.parts[0].independent);
    }
}
