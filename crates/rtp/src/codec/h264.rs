//! H.264 over RTP (RFC 6184): single NAL unit, STAP-A and FU-A packets, i.e.
//! packetization-mode 0 and 1. STAP-B, MTAP and FU-B (interleaved mode 2) are
//! rejected with a clear error.
//!
//! SPS parsing uses the `h264-reader` crate: the H.264 SPS has profile-dependent
//! fields (chroma format, scaling lists, VUI) that are easy to get subtly wrong.

use bytes::Bytes;
use h264_reader::nal::sps::{FrameMbsFlags, PicOrderCntType, SeqParameterSet};
use h264_reader::rbsp::{decode_nal, BitReader};

use super::bits::{self, unescape_rbsp};
use super::nal::{NalDepacketizer, NalSyntax, ParameterSet};
use crate::track::Codec;

/// H.264 depacketizer (see [`super::nal`]).
pub type Depacketizer = NalDepacketizer<Syntax>;

const NON_IDR: u8 = 1;
const IDR: u8 = 5;
const SPS: u8 = 7;
const PPS: u8 = 8;

/// RFC 6184 payload syntax: one-byte NAL header `F | NRI(2) | type(5)`.
#[derive(Debug)]
pub struct Syntax;

impl NalSyntax for Syntax {
    const CODEC: Codec = Codec::H264;
    const HEADER_LEN: usize = 1;
    const AGGREGATION: u8 = 24;
    const FRAGMENTATION: u8 = 28;
    const FU_TYPE_MASK: u8 = 0x1f;

    fn nal_type(header: &[u8]) -> u8 {
        header[0] & 0x1f
    }

    fn with_type(header: &[u8], nal_type: u8) -> [u8; 2] {
        [(header[0] & 0xe0) | nal_type, 0]
    }

    /// F is set if any unit's F is; NRI is the highest of the units' (RFC 6184 §5.7).
    fn aggregation_header(nals: &[Bytes]) -> [u8; 2] {
        let forbidden = nals.iter().fold(0, |acc, n| acc | (n[0] & 0x80));
        let nri = nals.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
        [forbidden | nri | Self::AGGREGATION, 0]
    }

    fn is_single(nal_type: u8) -> bool {
        (1..=23).contains(&nal_type)
    }

    fn is_random_access(nal_type: u8) -> bool {
        nal_type == IDR
    }

    /// H.264 starts only at IDR pictures, which no leading picture precedes.
    fn is_random_access_skipped(_nal_type: u8) -> bool {
        false
    }

    fn parameter_set(nal_type: u8) -> Option<ParameterSet> {
        match nal_type {
            SPS => Some(ParameterSet::Sps),
            PPS => Some(ParameterSet::Pps),
            _ => None,
        }
    }

    fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
        parse_sps(sps)?.pixel_dimensions().ok()
    }

    /// The VUI's `max_num_reorder_frames`; none with `pic_order_cnt_type` 2
    /// (output order is decode order). Otherwise the SPS does not say: the spec's
    /// inferred default (the whole DPB) would delay decode times for the many
    /// High-profile cameras that send no B-frames, so it is measured instead.
    fn sps_reorder_depth(sps: &[u8]) -> Option<u32> {
        let sps = parse_sps(sps)?;
        let restrictions = sps
            .vui_parameters
            .as_ref()
            .and_then(|vui| vui.bitstream_restrictions.as_ref());
        match (restrictions, &sps.pic_order_cnt) {
            (Some(r), _) => Some(r.max_num_reorder_frames),
            (None, PicOrderCntType::TypeTwo) => Some(0),
            (None, _) => None,
        }
    }
}

/// What reading a slice header's `pic_order_cnt_lsb` takes from the SPS.
///
/// Only that much of the slice header is read, with the crate's bit reader:
/// h264-reader's `SliceHeader` parses the whole header (and needs the PPS and
/// the whole unescaped slice), where picture order is in its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PocSyntax {
    log2_max_frame_num: u32,
    colour_plane: bool,
    log2_max_poc_lsb: u32,
}

impl PocSyntax {
    /// `None` unless frames code their order as `pic_order_cnt_lsb`
    /// (`pic_order_cnt_type` 0, no field pictures).
    pub fn of_sps(sps: &[u8]) -> Option<PocSyntax> {
        let sps = parse_sps(sps)?;
        let PicOrderCntType::TypeZero {
            log2_max_pic_order_cnt_lsb_minus4,
        } = sps.pic_order_cnt
        else {
            return None;
        };
        if sps.frame_mbs_flags != FrameMbsFlags::Frames {
            return None;
        }
        Some(PocSyntax {
            log2_max_frame_num: u32::from(sps.log2_max_frame_num()),
            colour_plane: sps.chroma_info.separate_colour_plane_flag,
            log2_max_poc_lsb: u32::from(log2_max_pic_order_cnt_lsb_minus4) + 4,
        })
    }

    /// `pic_order_cnt_lsb` wraps at this.
    pub fn max_poc_lsb(&self) -> u32 {
        1 << self.log2_max_poc_lsb
    }

    /// Whether an access unit is an IDR, and its `pic_order_cnt_lsb`, from its
    /// first slice (`None` without a slice that parses).
    pub fn picture_order(&self, units: &[Bytes]) -> Option<(bool, u32)> {
        let slice = units
            .iter()
            .find(|u| matches!(u.first().map(|h| h & 0x1f), Some(NON_IDR | IDR)))?;
        let idr = slice[0] & 0x1f == IDR;
        // The fields up to pic_order_cnt_lsb take at most 20 bytes.
        let head = unescape_rbsp(slice.get(1..slice.len().min(32))?);
        let mut r = bits::BitReader::new(&head);
        r.read_ue()?; // first_mb_in_slice
        r.read_ue()?; // slice_type
        r.read_ue()?; // pic_parameter_set_id
        if self.colour_plane {
            r.skip_bits(2)?; // colour_plane_id
        }
        r.skip_bits(self.log2_max_frame_num as usize)?; // frame_num
        if idr {
            r.read_ue()?; // idr_pic_id
        }
        Some((idr, r.read_bits(self.log2_max_poc_lsb)?))
    }
}

fn parse_sps(sps: &[u8]) -> Option<SeqParameterSet> {
    // decode_nal skips the NAL header byte and removes emulation prevention.
    let rbsp = decode_nal(sps).ok()?;
    SeqParameterSet::from_bits(BitReader::new(&*rbsp)).ok()
}

/// The `profile-level-id` fmtp value (profile_idc, constraint flags, level_idc)
/// of an SPS NAL unit, header included.
pub fn profile_level_id(sps: &[u8]) -> Option<[u8; 3]> {
    match sps {
        [header, profile, constraints, level, ..] if header & 0x1f == SPS => {
            Some([*profile, *constraints, *level])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{
        update_params, DepacketizeError, Depacketizer as AnyDepacketizer, Packetizer,
    };
    use crate::codec::{MAX_ACCESS_UNIT_BYTES, MAX_UNITS_PER_ACCESS_UNIT};
    use crate::ids::{SeqNo, Ssrc};
    use crate::testing::{bytes, depacketize_all, round_trip, rtp, track};
    use crate::track::CodecParams;

    /// The fixtures' SPS (ffmpeg, 1280x720 constrained baseline) and PPS.
    const FIXTURE_SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00,
        0x40, 0x00, 0x00, 0x0c, 0x83, 0xc6, 0x0c, 0xa8,
    ];
    const FIXTURE_PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn depacketizer() -> AnyDepacketizer {
        AnyDepacketizer::new(&track(Codec::H264, 90_000, 1)).unwrap()
    }

    fn idr(len: usize) -> Bytes {
        let mut nal = vec![0x65];
        nal.extend((1..len).map(|i| (i % 251) as u8));
        Bytes::from(nal)
    }

    fn fu_a(nal_header: u8, start: bool, end: bool, data: &[u8]) -> Vec<u8> {
        let mut p = vec![
            (nal_header & 0xe0) | 28,
            (nal_header & 0x1f) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
        ];
        p.extend_from_slice(data);
        p
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x78];
        for nal in nals {
            p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            p.extend_from_slice(nal);
        }
        p
    }

    #[test]
    fn single_nal_units_are_slices_of_the_packet_and_marker_ends_the_au() {
        let mut d = depacketizer();
        let pkt = rtp(1, 3000, true, &[0x65, 1, 2, 3]);
        let payload_ptr = pkt.payload_slice().as_ptr();
        let (aus, errors) = depacketize_all(&mut d, [rtp(0, 3000, false, &[0x06, 9]), pkt]);
        assert!(errors.is_empty());
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].rtp_timestamp, 3000);
        assert_eq!(
            aus[0].units,
            vec![bytes(&[0x06, 9]), bytes(&[0x65, 1, 2, 3])]
        );
        assert_eq!(
            aus[0].units[1].as_ptr(),
            payload_ptr,
            "unit must not be copied"
        );
        assert_eq!(aus[0].packets.len(), 2);
        assert!(aus[0].keyframe);
    }

    #[test]
    fn timestamp_change_ends_an_au_without_marker() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &[0x41, 1]),
                rtp(1, 3000, false, &[0x41, 2]),
                rtp(2, 6000, true, &[0x41, 3]),
            ],
        );
        assert!(errors.is_empty());
        let timestamps: Vec<u32> = aus.iter().map(|au| au.rtp_timestamp).collect();
        assert_eq!(timestamps, vec![0, 3000, 6000]);
        assert!(aus.iter().all(|au| !au.keyframe));
    }

    #[test]
    fn stap_a_with_many_nals_yields_each_as_a_slice() {
        let nals: Vec<Vec<u8>> = (0..200u8).map(|i| vec![0x06, i, i]).collect();
        let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(&mut d, [rtp(0, 0, true, &stap_a(&refs))]);
        assert!(errors.is_empty());
        assert_eq!(aus[0].units.len(), 200);
        assert_eq!(aus[0].units[199], bytes(&[0x06, 199, 199]));
    }

    #[test]
    fn stap_a_lying_or_zero_nal_size_drops_the_au_and_recovers() {
        let mut lying = stap_a(&[&[0x67, 1, 2]]);
        lying.extend_from_slice(&[0x00, 0x40, 0x68]); // claims 64 bytes, has 1
        let zero = stap_a(&[&[0x67, 1], &[]]);
        let truncated_size = [0x78, 0x00];
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &lying),
                rtp(1, 0, true, &[0x65, 1]), // rest of the dropped AU: ignored
                rtp(2, 10, true, &zero),
                rtp(3, 20, true, &truncated_size),
                rtp(4, 30, true, &[0x78]),
                rtp(5, 40, true, &[0x41, 7]),
            ],
        );
        assert!(matches!(
            errors[0],
            DepacketizeError::BadLength {
                claimed: 64,
                available: 1,
                ..
            }
        ));
        assert!(matches!(
            errors[1],
            DepacketizeError::BadLength { claimed: 0, .. }
        ));
        assert!(matches!(errors[2], DepacketizeError::Truncated { .. }));
        assert!(matches!(errors[3], DepacketizeError::Truncated { .. }));
        assert_eq!(errors.len(), 4);
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].rtp_timestamp, 40);
    }

    #[test]
    fn fu_a_reassembles_once_with_the_original_header() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &fu_a(0x65, true, false, &[1, 2])),
                rtp(1, 0, false, &fu_a(0x65, false, false, &[])),
                rtp(2, 0, false, &fu_a(0x65, false, false, &[3])),
                rtp(3, 0, true, &fu_a(0x65, false, true, &[4, 5])),
            ],
        );
        assert!(errors.is_empty());
        assert_eq!(aus[0].units, vec![bytes(&[0x65, 1, 2, 3, 4, 5])]);
        assert_eq!(aus[0].packets.len(), 4);
        assert!(aus[0].keyframe);
    }

    #[test]
    fn fu_a_start_lost_is_an_error_and_the_au_is_discarded() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &[0x41, 1]),
                rtp(1, 0, false, &fu_a(0x41, false, false, &[2])),
                rtp(2, 0, true, &fu_a(0x41, false, true, &[3])),
                rtp(3, 10, true, &[0x41, 4]),
            ],
        );
        assert_eq!(errors.len(), 1);
        assert!(matches!(
            errors[0],
            DepacketizeError::FragmentStartLost { .. }
        ));
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].units, vec![bytes(&[0x41, 4])]);
    }

    #[test]
    fn fu_a_end_lost_is_detected_by_timestamp_marker_or_new_start() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                // End lost, revealed by the next timestamp; that packet is kept.
                rtp(0, 0, false, &fu_a(0x41, true, false, &[1])),
                rtp(1, 10, true, &[0x41, 2]),
                // End lost, revealed by the marker on a middle fragment.
                rtp(2, 20, false, &fu_a(0x41, true, false, &[3])),
                rtp(3, 20, true, &fu_a(0x41, false, false, &[4])),
                // End lost, revealed by a second start.
                rtp(4, 30, false, &fu_a(0x41, true, false, &[5])),
                rtp(5, 30, false, &fu_a(0x41, true, false, &[6])),
                rtp(6, 30, true, &fu_a(0x41, false, true, &[7])),
                // End lost, revealed by a non-FU packet.
                rtp(7, 40, false, &fu_a(0x41, true, false, &[8])),
                rtp(8, 40, true, &[0x41, 9]),
                rtp(9, 50, true, &[0x41, 10]),
            ],
        );
        assert!(errors
            .iter()
            .all(|e| matches!(e, DepacketizeError::FragmentEndLost { .. })));
        assert_eq!(errors.len(), 4);
        let timestamps: Vec<u32> = aus.iter().map(|au| au.rtp_timestamp).collect();
        assert_eq!(timestamps, vec![10, 50]);
    }

    #[test]
    fn truncated_empty_and_unsupported_payloads_are_errors() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &[0x41, 1]),
                rtp(1, 0, false, &[]), // padding-only: error, AU in progress kept
                rtp(2, 0, true, &[0x41, 2]),
                rtp(3, 10, true, &[0x7c]), // FU-A without FU header
                rtp(4, 20, true, &[0x79, 0, 1, 0x41]), // STAP-B
                rtp(5, 30, true, &[0x00, 1]), // reserved type 0
                rtp(6, 40, true, &[0x7c, 0xc5, 1]), // FU with S and E
                rtp(7, 50, true, &stap_a(&[&[0x7c, 0x85, 1]])), // FU-A inside a STAP-A
            ],
        );
        assert!(matches!(errors[0], DepacketizeError::EmptyPayload { .. }));
        assert!(matches!(
            errors[1],
            DepacketizeError::Truncated {
                what: "FU header",
                ..
            }
        ));
        assert!(matches!(
            errors[2],
            DepacketizeError::UnsupportedType { nal_type: 25, .. }
        ));
        assert!(matches!(
            errors[3],
            DepacketizeError::UnsupportedType { nal_type: 0, .. }
        ));
        assert!(matches!(errors[4], DepacketizeError::Malformed { .. }));
        assert!(matches!(
            errors[5],
            DepacketizeError::UnsupportedType { nal_type: 28, .. }
        ));
        assert_eq!(errors.len(), 6);
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].units.len(), 2);
    }

    #[test]
    fn discard_partial_drops_the_rest_of_the_au() {
        let mut d = depacketizer();
        d.push(rtp(0, 0, false, &[0x41, 1])).unwrap();
        d.discard_partial();
        let (aus, errors) = depacketize_all(
            &mut d,
            [rtp(2, 0, true, &[0x41, 2]), rtp(3, 10, true, &[0x41, 3])],
        );
        assert!(errors.is_empty());
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].rtp_timestamp, 10);
    }

    #[test]
    fn access_unit_size_and_nal_count_are_capped() {
        let mut d = depacketizer();
        let chunk = vec![0u8; 60_000];
        let mut packets = vec![rtp(0, 0, false, &fu_a(0x65, true, false, &chunk))];
        let fragments = MAX_ACCESS_UNIT_BYTES / chunk.len() + 1;
        packets.extend(
            (1..=fragments as u16).map(|seq| rtp(seq, 0, false, &fu_a(0x65, false, false, &chunk))),
        );
        packets.push(rtp(9000, 10, true, &[0x41, 1]));
        let (aus, errors) = depacketize_all(&mut d, packets);
        assert_eq!(errors.len(), 1);
        assert!(matches!(
            errors[0],
            DepacketizeError::AccessUnitTooLarge { .. }
        ));
        assert_eq!(aus.len(), 1);

        let tiny: Vec<&[u8]> = vec![&[0x06]; 300];
        let packets = (0..4).map(|seq| rtp(seq, 20, seq == 3, &stap_a(&tiny)));
        let (aus, errors) = depacketize_all(&mut d, packets);
        assert!(aus.is_empty());
        assert!(matches!(
            errors[..],
            [DepacketizeError::TooMany {
                limit: MAX_UNITS_PER_ACCESS_UNIT,
                ..
            }]
        ));
    }

    #[test]
    fn in_band_parameter_sets_update_params_with_picture_size() {
        let mut params = CodecParams::default();
        let units = [bytes(FIXTURE_SPS), bytes(FIXTURE_PPS), idr(10)];
        assert!(update_params(Codec::H264, &units, &mut params));
        assert_eq!(params.sps.as_deref(), Some(FIXTURE_SPS));
        assert_eq!(params.pps.as_deref(), Some(FIXTURE_PPS));
        assert_eq!((params.width, params.height), (Some(1280), Some(720)));
        assert!(
            !update_params(Codec::H264, &units, &mut params),
            "same sets: no change"
        );
        assert_eq!(profile_level_id(FIXTURE_SPS), Some([0x42, 0xc0, 0x1f]));
        assert_eq!(profile_level_id(FIXTURE_PPS), None);
        assert_eq!(profile_level_id(&[0x67, 0x42]), None);

        // An SPS that does not parse is still stored; the size becomes unknown.
        assert!(update_params(
            Codec::H264,
            &[bytes(&[0x67, 0xff])],
            &mut params
        ));
        assert_eq!((params.width, params.height), (None, None));
    }

    #[test]
    fn packetizer_aggregates_parameter_sets_fragments_large_nals_and_marks_the_last() {
        let mut packetizer = Packetizer::new(&track(Codec::H264, 90_000, 1), Ssrc::new(42), 200);
        let packets = packetizer
            .packetize(90, &[bytes(FIXTURE_SPS), bytes(FIXTURE_PPS), idr(1000)])
            .unwrap();
        assert_eq!(packets[0].payload[0] & 0x1f, 24, "SPS+PPS in one STAP-A");
        assert!(packets[1..].iter().all(|p| p.payload[0] & 0x1f == 28));
        let markers: Vec<bool> = packets.iter().map(|p| p.marker()).collect();
        assert_eq!(markers.iter().filter(|&&m| m).count(), 1);
        assert!(packets.last().unwrap().marker());
        let sequences: Vec<SeqNo> = packets.iter().map(|p| p.sequence()).collect();
        assert!(sequences.windows(2).all(|w| w[1] == w[0].next()));
        assert!(packets
            .iter()
            .all(|p| p.timestamp() == 90 && p.ssrc() == Ssrc::new(42) && p.len() <= 200));

        let too_small = Packetizer::new(&track(Codec::H264, 90_000, 1), Ssrc::new(42), 14)
            .packetize(0, &[idr(100)]);
        assert!(too_small.is_err());
    }

    #[test]
    fn round_trip_gives_identical_access_units_at_any_mtu() {
        let input = vec![
            (0, vec![bytes(FIXTURE_SPS), bytes(FIXTURE_PPS), idr(5000)]),
            (3000, vec![bytes(&[0x41, 1, 2, 3])]),
            (6000, vec![bytes(&[0x06, 5, 5]), idr(3000), idr(1199)]),
        ];
        for mtu in [1200, 300, 15] {
            let output = round_trip(&track(Codec::H264, 90_000, 1), mtu, &input);
            assert_eq!(output, input, "mtu {mtu}");
        }
    }
}
