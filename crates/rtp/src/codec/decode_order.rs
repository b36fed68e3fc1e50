//! Decode timestamps for video with B-frames.
//!
//! RTP carries only presentation times: a camera that sends B-frames (H.264
//! Main/High, H.265) sends its pictures in decode order with timestamps that
//! step back at every B-frame. Muxers (fMP4 for HLS) and readers need a decode
//! time per frame that only goes forward and is never after the presentation
//! time; [`DecodeOrder`] derives one, sans-IO and without holding frames back.
//!
//! With a reorder depth `N` (at most `N` frames precede any frame in decode
//! order and follow it in presentation order), the decode time of a frame is the
//! `(N + 1)`-th largest presentation time seen so far, this frame's included:
//! the classic rule (ffmpeg's `pts_buffer`) that needs no look-ahead. It is
//! never after the frame's own presentation time (at most `N` earlier frames
//! are later than it) and never goes back (the k-th largest of a growing set
//! only grows). For I/P-only streams `N = 0` and the decode time is the
//! presentation time itself.
//!
//! `N` comes from the SPS when it says (H.264 VUI `max_num_reorder_frames`,
//! `pic_order_cnt_type` 2; H.265 `sps_max_num_reorder_pics`, always there).
//! Many H.264 cameras declare nothing; the spec's default then (the whole DPB)
//! would hold decode times back for the many that send no B-frames, so `N`
//! starts at 0 and is learnt:
//! - announced by picture order counts: a frame decoded ahead of pictures
//!   presented before it leaves a hole in the count, so the B-frames to come
//!   are known before the first of them arrives ([`Holes`]);
//! - measured from presentation times, as a safety net: a frame preceded by
//!   more later-presented frames than `N` raises it. Learnt only at the frame
//!   that needs it, so that frame (and the few after it) may get a decode time
//!   after its presentation time: fMP4 writes that as a negative composition
//!   offset, and decode time still never goes back.
//!
//! Until `N + 1` frames were seen, and when `N` grows, the rule has no answer
//! above the previous decode time; decode time then advances by
//! [`MIN_STEP_SECS`], small enough to stay before the next pictures'
//! presentation times. The first frame keeps its presentation time, so decode
//! time also continues after an earlier ingest's on the same Hub.
//!
//! MediaMTX's `DTSExtractor` (mediacommon) works from picture order counts
//! alone, interpolating between frames; here the timeline's continuous
//! presentation times give the order and the spacing, and the counts only
//! announce reordering. Forwarded RTP keeps the presentation times.

use bytes::Bytes;

use super::nal::NalSyntax;
use super::{h264, h265};
use crate::track::{Codec, CodecParams};

/// Deepest reordering believed: the H.264/H.265 DPB holds at most 16 frames. A
/// frame preceded by more later-presented frames is a timestamp step back, not
/// reordering.
pub const MAX_REORDER: usize = 16;

/// Smallest decode-time advance (1 ms) where the reorder rule has no answer.
pub const MIN_STEP_SECS: f64 = 0.001;

/// Derives one video track's decode times; see the module docs.
#[derive(Debug, Clone)]
pub struct DecodeOrder {
    codec: Codec,
    step: u64,
    /// The SPS the depths below were read for (`None` until one is known).
    sps: Option<Bytes>,
    /// The depth the SPS declares.
    declared: Option<usize>,
    /// The deepest reordering the presentation times showed.
    measured: usize,
    /// The deepest reordering the picture order counts announced.
    announced: usize,
    /// H.264 picture order, read while the SPS declares nothing.
    holes: Option<Holes>,
    /// The largest presentation times seen, largest first (at most `MAX_REORDER + 1`).
    latest: Vec<u64>,
    last_dts: Option<u64>,
}

impl DecodeOrder {
    /// For a track of `codec` timed at `clock_rate` Hz.
    pub fn new(codec: Codec, clock_rate: u32) -> DecodeOrder {
        DecodeOrder {
            codec,
            step: ((f64::from(clock_rate) * MIN_STEP_SECS) as u64).max(1),
            sps: None,
            declared: None,
            measured: 0,
            announced: 0,
            holes: None,
            latest: Vec::with_capacity(MAX_REORDER + 1),
            last_dts: None,
        }
    }

    /// The reorder depth in use.
    pub fn depth(&self) -> usize {
        self.declared
            .unwrap_or(0)
            .max(self.measured)
            .max(self.announced)
    }

    /// The decode time of the next frame in decode order, made of `units` and
    /// presented at `pts` (track clock). `params` holds the SPS in use (from the
    /// SDP or in band).
    pub fn dts(&mut self, units: &[Bytes], params: &CodecParams, pts: u64) -> u64 {
        if !matches!(self.codec, Codec::H264 | Codec::H265) {
            return pts;
        }
        self.read_sps(params);
        if let Some(holes) = &mut self.holes {
            match holes.ahead_of_a_hole(units) {
                Some(ahead) => self.announced = self.announced.max(ahead),
                None => {
                    tracing::debug!(codec = ?self.codec, "picture order counts do not follow the expected spacing; reordering is measured from timestamps only");
                    self.holes = None;
                    self.announced = 0;
                }
            }
        }
        let later = self.latest.iter().take_while(|&&p| p > pts).count();
        if later > MAX_REORDER {
            // Time stepped back further than any reordering: start the rule over.
            self.latest.clear();
        } else if later > self.depth() {
            tracing::debug!(codec = ?self.codec, depth = later, "B-frames reorder deeper than announced; decode times follow the measured depth");
            self.measured = later;
        }
        let at = self.latest.partition_point(|&p| p > pts);
        self.latest.insert(at, pts);
        self.latest.truncate(MAX_REORDER + 1);

        let by_rule = self.latest.get(self.depth()).copied();
        let dts = match self.last_dts {
            None => pts,
            Some(last) => match by_rule {
                Some(dts) if dts > last => dts,
                _ => last.saturating_add(self.step),
            },
        };
        self.last_dts = Some(dts);
        dts
    }

    /// Takes what a new SPS says; a depth measured or announced under an SPS
    /// that declares none stays.
    fn read_sps(&mut self, params: &CodecParams) {
        let Some(sps) = params
            .sps
            .as_ref()
            .filter(|&sps| self.sps.as_ref() != Some(sps))
        else {
            return;
        };
        self.sps = Some(sps.clone());
        self.declared = match self.codec {
            Codec::H264 => h264::Syntax::sps_reorder_depth(sps),
            _ => h265::Syntax::sps_reorder_depth(sps),
        }
        .map(|d| usize::try_from(d).map_or(MAX_REORDER, |d| d.min(MAX_REORDER)));
        self.holes = None;
        if self.declared.is_some() {
            self.measured = 0;
            self.announced = 0;
        } else if self.codec == Codec::H264 {
            self.holes = h264::PocSyntax::of_sps(sps).map(Holes::new);
        }
    }
}

/// Tracks which pictures of an H.264 GOP were decoded, by picture order count,
/// so that a frame decoded ahead of pictures presented before it (a hole in the
/// order) announces the B-frames to come before the first of them arrives:
/// without that, the frame decoded first would already have a decode time
/// later than theirs.
///
/// Encoders count 2 per frame (1 once an odd count is seen). A hole that stays
/// open longer than any reordering means the assumed spacing is wrong (an
/// encoder that counts 4 per frame, or skips): the counts are then ignored.
#[derive(Debug, Clone)]
struct Holes {
    syntax: h264::PocSyntax,
    per_frame: i64,
    /// `pic_order_cnt_lsb` and the unwrapped count of the previous frame.
    previous: Option<(u32, i64)>,
    /// Every picture up to this count was decoded.
    complete_to: i64,
    /// Counts of decoded pictures past a hole.
    ahead: Vec<i64>,
}

impl Holes {
    fn new(syntax: h264::PocSyntax) -> Holes {
        Holes {
            syntax,
            per_frame: 2,
            previous: None,
            complete_to: 0,
            ahead: Vec::new(),
        }
    }

    /// How many decoded pictures are ahead of a hole once this access unit is
    /// counted (frames that precede the hole's picture in decode order and
    /// follow it in presentation order). `None`: give up (see the type docs).
    fn ahead_of_a_hole(&mut self, units: &[Bytes]) -> Option<usize> {
        let Some((idr, lsb)) = self.syntax.picture_order(units) else {
            return Some(self.ahead.len());
        };
        let count = match self.previous {
            Some((previous_lsb, previous)) if !idr => {
                let max = self.syntax.max_poc_lsb();
                let diff = lsb.wrapping_sub(previous_lsb) & (max - 1);
                let diff = if diff >= max / 2 {
                    i64::from(diff) - i64::from(max)
                } else {
                    i64::from(diff)
                };
                previous + diff
            }
            // An IDR (or the first frame seen) starts the count over.
            _ => {
                self.complete_to = 0;
                self.ahead.clear();
                0
            }
        };
        self.previous = Some((lsb, count));
        if count % 2 != 0 {
            self.per_frame = 1;
        }
        if count > self.complete_to && !self.ahead.contains(&count) {
            self.ahead.push(count);
        }
        while let Some(at) = self
            .ahead
            .iter()
            .position(|&c| c == self.complete_to + self.per_frame)
        {
            self.ahead.swap_remove(at);
            self.complete_to += self.per_frame;
        }
        (self.ahead.len() <= MAX_REORDER).then_some(self.ahead.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{without_declared_reordering, H264_BFRAMES_SPS, H264_SPS};

    /// 25 fps at 90 kHz.
    const FRAME: u64 = 3600;

    fn params(sps: Option<&[u8]>) -> CodecParams {
        CodecParams {
            sps: sps.map(Bytes::copy_from_slice),
            ..CodecParams::default()
        }
    }

    /// Presentation times (in frames, offset by `base` ticks) in decode order.
    fn pts_of(display_positions: &[u64], base: u64) -> Vec<u64> {
        display_positions
            .iter()
            .map(|&p| base + p * FRAME)
            .collect()
    }

    fn run(order: &mut DecodeOrder, params: &CodecParams, pts: &[u64]) -> Vec<u64> {
        pts.iter().map(|&p| order.dts(&[], params, p)).collect()
    }

    fn assert_monotonic(dts: &[u64]) {
        assert!(
            dts.windows(2).all(|w| w[1] > w[0]),
            "decode times must rise: {dts:?}"
        );
    }

    fn assert_not_after_pts(pts: &[u64], dts: &[u64]) {
        for (i, (p, d)) in pts.iter().zip(dts).enumerate() {
            assert!(d <= p, "frame {i}: dts {d} after pts {p}");
        }
    }

    /// `gops` GOPs of `len` frames with `b` B-frames between references, in
    /// decode order (I0 P3 B1 B2 P6 B4 B5 … for b = 2), as display positions.
    fn ibbp(gops: u64, len: u64, b: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for g in 0..gops {
            let start = g * len;
            out.push(start);
            let mut reference = 0;
            while reference + b + 1 < len {
                let next = reference + b + 1;
                out.push(start + next);
                out.extend((reference + 1..next).map(|p| start + p));
                reference = next;
            }
            out.extend((reference + 1..len).map(|p| start + p));
        }
        out
    }

    /// The SPS of `fixtures/ffmpeg_h265_bframes` (x265 Main, 3 B-frames in a
    /// pyramid): `sps_max_num_reorder_pics` 2.
    const X265_BFRAMES_SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0,
        0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10,
    ];

    #[test]
    fn reorder_depth_is_read_from_the_sps() {
        assert_eq!(h264::Syntax::sps_reorder_depth(H264_BFRAMES_SPS), Some(2));
        assert_eq!(h264::Syntax::sps_reorder_depth(H264_SPS), Some(0));
        assert_eq!(h265::Syntax::sps_reorder_depth(X265_BFRAMES_SPS), Some(2));
        for len in 0..24 {
            assert_eq!(
                h265::Syntax::sps_reorder_depth(&X265_BFRAMES_SPS[..len]),
                None,
                "truncated at {len}"
            );
        }
        assert_eq!(
            h264::Syntax::sps_reorder_depth(&H264_BFRAMES_SPS[..6]),
            None
        );
    }

    /// The x264 B-frame capture's SPS declaring no reordering, and parsed.
    fn undeclared_sps() -> (Bytes, h264_reader::nal::sps::SeqParameterSet) {
        use h264_reader::nal::sps::SeqParameterSet;
        use h264_reader::rbsp::{decode_nal, BitReader};
        let nal = without_declared_reordering(H264_BFRAMES_SPS);
        let rbsp = decode_nal(&nal).unwrap();
        let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).unwrap();
        (nal, sps)
    }

    /// A slice NAL unit up to `pic_order_cnt_lsb` (`poc`), for `sps`.
    fn slice(sps: &h264_reader::nal::sps::SeqParameterSet, idr: bool, poc: u64) -> Bytes {
        use h264_reader::nal::sps::PicOrderCntType;
        use h264_reader::rbsp::{BitWrite, BitWriter, ByteWriter};
        let PicOrderCntType::TypeZero {
            log2_max_pic_order_cnt_lsb_minus4,
        } = sps.pic_order_cnt
        else {
            panic!("x264 codes pic_order_cnt_lsb")
        };
        let bits = u32::from(log2_max_pic_order_cnt_lsb_minus4) + 4;
        let mut out = vec![if idr { 0x65 } else { 0x41 }];
        {
            let mut w = BitWriter::new(ByteWriter::new(&mut out));
            w.write_ue(0).unwrap(); // first_mb_in_slice
            w.write_ue(if idr { 7 } else { 1 }).unwrap(); // slice_type I / B
            w.write_ue(0).unwrap(); // pic_parameter_set_id
            w.write_var(u32::from(sps.log2_max_frame_num()), 0u32)
                .unwrap();
            if idr {
                w.write_ue(0).unwrap(); // idr_pic_id
            }
            w.write_var(bits, (poc % (1 << bits)) as u32).unwrap();
            w.write_rbsp_trailing_bits().unwrap();
        }
        Bytes::from(out)
    }

    /// Runs frames given as display positions in decode order, `gop` frames per
    /// GOP, their slices counting `per_frame` per position.
    fn run_with_slices(
        positions: &[u64],
        gop: u64,
        per_frame: u64,
    ) -> (DecodeOrder, Vec<u64>, Vec<u64>) {
        let (sps_nal, sps) = undeclared_sps();
        let params = params(Some(&sps_nal));
        let mut order = DecodeOrder::new(Codec::H264, 90_000);
        let pts = pts_of(positions, 1_000);
        let dts = positions
            .iter()
            .zip(&pts)
            .map(|(&p, &t)| {
                let unit = slice(&sps, p % gop == 0, (p % gop) * per_frame);
                order.dts(&[unit], &params, t)
            })
            .collect();
        (order, pts, dts)
    }

    #[test]
    fn picture_order_announces_b_frames_the_sps_does_not_declare() {
        assert_eq!(h264::Syntax::sps_reorder_depth(&undeclared_sps().0), None);
        // I0 P3 B1 B2 …: the P-frame's count shows two pictures still to come.
        let (order, pts, dts) = run_with_slices(&ibbp(3, 49, 2), 49, 2);
        assert_eq!(order.depth(), 1);
        assert_monotonic(&dts);
        assert_not_after_pts(&pts, &dts);
        // Counting 1 per frame (odd counts) works too.
        let (order, pts, dts) = run_with_slices(&ibbp(3, 49, 2), 49, 1);
        assert_eq!(order.depth(), 1);
        assert_monotonic(&dts);
        assert_not_after_pts(&pts, &dts);
        // A B-pyramid (I0 P4 B2 b1 b3) is two deep.
        let mut positions = vec![0];
        for r in (4..48).step_by(4) {
            positions.extend([r, r - 2, r - 3, r - 1]);
        }
        let (order, pts, dts) = run_with_slices(&positions, 48, 2);
        assert_eq!(order.depth(), 2);
        assert_monotonic(&dts);
        assert_not_after_pts(&pts, &dts);
    }

    #[test]
    fn counts_that_leave_holes_open_are_given_up() {
        // I/P only, counting 4 per frame: every frame seems to leave a hole.
        let positions: Vec<u64> = (0..60).collect();
        let (order, pts, dts) = run_with_slices(&positions, 60, 4);
        assert_eq!(order.depth(), 0);
        assert_monotonic(&dts);
        assert_not_after_pts(&pts, &dts);
        assert_eq!(dts[30..], pts[30..], "back to dts = pts");
    }

    #[test]
    fn i_p_only_streams_get_dts_equal_to_pts() {
        let pts: Vec<u64> = (0..100).map(|n| 1_000 + n * FRAME).collect();
        for sps in [None, Some(H264_SPS)] {
            let mut order = DecodeOrder::new(Codec::H264, 90_000);
            assert_eq!(run(&mut order, &params(sps), &pts), pts);
            assert_eq!(order.depth(), 0);
        }
        // Irregular spacing (a variable frame rate camera) changes nothing.
        let uneven = [0, 3600, 3700, 20_000, 20_001, 90_000];
        let mut order = DecodeOrder::new(Codec::H265, 90_000);
        assert_eq!(run(&mut order, &params(None), &uneven), uneven);
    }

    #[test]
    fn audio_is_passed_through() {
        let mut order = DecodeOrder::new(Codec::Opus, 48_000);
        assert_eq!(
            run(&mut order, &params(None), &[960, 0, 1920]),
            [960, 0, 1920]
        );
    }

    #[test]
    fn declared_depth_gives_rising_dts_never_after_pts() {
        let pts = pts_of(&ibbp(4, 50, 2), 77_777);
        let mut order = DecodeOrder::new(Codec::H264, 90_000);
        let dts = run(&mut order, &params(Some(H264_BFRAMES_SPS)), &pts);
        assert_eq!(order.depth(), 2);
        assert_monotonic(&dts);
        assert_not_after_pts(&pts, &dts);
        // The first frame keeps its time, the next ones step by a millisecond, then
        // decode times are the presentation times two frames late, one frame
        // duration apart, as a decoder consumes them.
        assert_eq!(dts[..3], [pts[0], pts[0] + 90, pts[0] + 180]);
        let mut sorted = pts.clone();
        sorted.sort_unstable();
        assert_eq!(dts[3..], sorted[1..sorted.len() - 2]);
    }

    #[test]
    fn measured_depth_recovers_within_a_few_frames() {
        // No SPS depth: the first B-frame reveals reordering (its dts cannot be
        // before the P-frame's any more), then the rule holds again.
        let pts = pts_of(&ibbp(3, 50, 2), 0);
        let mut order = DecodeOrder::new(Codec::H264, 90_000);
        let dts = run(&mut order, &params(None), &pts);
        assert_eq!(order.depth(), 1);
        assert_monotonic(&dts);
        assert_not_after_pts(&pts[6..], &dts[6..]);
    }

    #[test]
    fn pyramid_depth_from_the_h265_sps_and_loss_keep_the_rules() {
        // x265 bframes=3 b-pyramid: I0 P4 B2 b1 b3, depth 2 declared.
        let mut positions = Vec::new();
        for g in 0..4u64 {
            let s = g * 48;
            positions.push(s);
            for r in (4..48).step_by(4) {
                positions.extend([s + r, s + r - 2, s + r - 3, s + r - 1]);
            }
            positions.extend([s + 47, s + 45, s + 46]);
        }
        let mut pts = pts_of(&positions, 5);
        pts.remove(30); // a frame lost in transit
        let mut order = DecodeOrder::new(Codec::H265, 90_000);
        let dts = run(&mut order, &params(Some(X265_BFRAMES_SPS)), &pts);
        assert_eq!(order.depth(), 2);
        assert_monotonic(&dts);
        assert_not_after_pts(&pts, &dts);
    }

    #[test]
    fn timestamps_stepping_far_back_keep_dts_rising() {
        let mut pts: Vec<u64> = (0..40).map(|n| 900_000 + n * FRAME).collect();
        pts.extend((0..40).map(|n| 450_000 + n * FRAME));
        let mut order = DecodeOrder::new(Codec::H264, 90_000);
        let dts = run(&mut order, &params(None), &pts);
        assert_monotonic(&dts);
        assert_eq!(order.depth(), 0, "a step back is not reordering");
    }

    #[test]
    fn a_new_sps_declaring_less_reordering_moves_dts_up_to_pts() {
        let pts = pts_of(&ibbp(1, 20, 2), 0);
        let mut order = DecodeOrder::new(Codec::H264, 90_000);
        run(&mut order, &params(Some(H264_BFRAMES_SPS)), &pts);
        let later: Vec<u64> = (20..30).map(|n| n * FRAME).collect();
        let dts = run(&mut order, &params(Some(H264_SPS)), &later);
        assert_eq!(order.depth(), 0);
        assert_eq!(dts, later);
    }
}
