//! H.265 over RTP (RFC 7798): single NAL unit, aggregation (AP) and
//! fragmentation (FU) packets. PACI packets are rejected. DONL fields (sent
//! only when the SDP has sprop-max-don-diff > 0) are not supported: such a
//! track should be refused when its SDP is parsed.

use bytes::Bytes;

use super::bits::{unescape_rbsp, BitReader};
use super::nal::{NalDepacketizer, NalSyntax, ParameterSet};
use crate::track::Codec;

/// H.265 depacketizer (see [`super::nal`]).
pub type Depacketizer = NalDepacketizer<Syntax>;

const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;

/// RFC 7798 payload syntax: two-byte NAL header
/// `F | type(6) | LayerId(6) | TID(3)`.
#[derive(Debug)]
pub struct Syntax;

fn layer_id(header: &[u8]) -> u8 {
    ((header[0] & 1) << 5) | (header[1] >> 3)
}

impl NalSyntax for Syntax {
    const CODEC: Codec = Codec::H265;
    const HEADER_LEN: usize = 2;
    const AGGREGATION: u8 = 48;
    const FRAGMENTATION: u8 = 49;
    const FU_TYPE_MASK: u8 = 0x3f;

    fn nal_type(header: &[u8]) -> u8 {
        (header[0] >> 1) & 0x3f
    }

    fn with_type(header: &[u8], nal_type: u8) -> [u8; 2] {
        [(header[0] & 0x81) | (nal_type << 1), header[1]]
    }

    /// F is set if any unit's F is; LayerId and TID are the lowest of the units'
    /// (RFC 7798 §4.4.2).
    fn aggregation_header(nals: &[Bytes]) -> [u8; 2] {
        let forbidden = nals.iter().fold(0, |acc, n| acc | (n[0] & 0x80));
        let layer = nals.iter().map(|n| layer_id(n)).min().unwrap_or(0);
        let tid = nals.iter().map(|n| n[1] & 0x07).min().unwrap_or(0);
        [
            forbidden | (Self::AGGREGATION << 1) | (layer >> 5),
            ((layer & 0x1f) << 3) | tid,
        ]
    }

    fn is_single(nal_type: u8) -> bool {
        nal_type <= 47
    }

    /// IRAP pictures: BLA, IDR and CRA (types 16..=21).
    fn is_random_access(nal_type: u8) -> bool {
        (16..=21).contains(&nal_type)
    }

    /// RASL_N and RASL_R: leading pictures of a CRA (open GOP) that a decoder
    /// starting at that CRA must drop (H.265 8.1.3, NoRaslOutputFlag).
    fn is_random_access_skipped(nal_type: u8) -> bool {
        matches!(nal_type, 8 | 9)
    }

    fn parameter_set(nal_type: u8) -> Option<ParameterSet> {
        match nal_type {
            VPS => Some(ParameterSet::Vps),
            SPS => Some(ParameterSet::Sps),
            PPS => Some(ParameterSet::Pps),
            _ => None,
        }
    }

    fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
        let rbsp = unescape_rbsp(sps);
        read_sps_dimensions(&mut BitReader::new(rbsp.get(2..)?)).map(|(size, _)| size)
    }

    /// `sps_max_num_reorder_pics` of the highest sub-layer (always present).
    fn sps_reorder_depth(sps: &[u8]) -> Option<u32> {
        let rbsp = unescape_rbsp(sps);
        let mut r = BitReader::new(rbsp.get(2..)?);
        let (_, max_sub_layers_minus1) = read_sps_dimensions(&mut r)?;
        r.read_ue()?; // bit_depth_luma_minus8
        r.read_ue()?; // bit_depth_chroma_minus8
        r.read_ue()?; // log2_max_pic_order_cnt_lsb_minus4
        let first = if r.read_bit()? {
            0
        } else {
            max_sub_layers_minus1
        };
        let mut reorder = 0;
        for _ in first..=max_sub_layers_minus1 {
            r.read_ue()?; // sps_max_dec_pic_buffering_minus1
            reorder = r.read_ue()?;
            r.read_ue()?; // sps_max_latency_increase_plus1
        }
        Some(reorder)
    }
}

/// Reads the SPS (after its NAL header) up to the conformance window (H.265
/// §7.3.2.2): the cropped picture size and `sps_max_sub_layers_minus1`.
fn read_sps_dimensions(r: &mut BitReader<'_>) -> Option<((u32, u32), usize)> {
    r.skip_bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.read_bits(3)? as usize;
    r.skip_bits(1)?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(r, max_sub_layers_minus1)?;
    r.read_ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.read_ue()?;
    if chroma_format_idc == 3 {
        r.skip_bits(1)?; // separate_colour_plane_flag
    }
    let width = r.read_ue()?;
    let height = r.read_ue()?;
    // Crop offsets are in chroma sample units (Table 6-1); 4:0:0 and 4:4:4 use luma.
    let (sub_width, sub_height) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        0 | 3 => (1, 1),
        _ => return None,
    };
    let (mut crop_x, mut crop_y) = (0u32, 0u32);
    if r.read_bit()? {
        let (left, right, top, bottom) = (r.read_ue()?, r.read_ue()?, r.read_ue()?, r.read_ue()?);
        crop_x = left.checked_add(right)?.checked_mul(sub_width)?;
        crop_y = top.checked_add(bottom)?.checked_mul(sub_height)?;
    }
    let size = (width.checked_sub(crop_x)?, height.checked_sub(crop_y)?);
    Some((size, max_sub_layers_minus1))
}

/// `profile_tier_level(1, sps_max_sub_layers_minus1)` (H.265 §7.3.3).
fn skip_profile_tier_level(r: &mut BitReader<'_>, max_sub_layers_minus1: usize) -> Option<()> {
    const PROFILE_BITS: usize = 88;
    const LEVEL_BITS: usize = 8;
    r.skip_bits(PROFILE_BITS + LEVEL_BITS)?;
    let mut present = [(false, false); 7];
    for flags in present.iter_mut().take(max_sub_layers_minus1) {
        *flags = (r.read_bit()?, r.read_bit()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip_bits(2 * (8 - max_sub_layers_minus1))?; // reserved_zero_2bits
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1) {
        if profile {
            r.skip_bits(PROFILE_BITS)?;
        }
        if level {
            r.skip_bits(LEVEL_BITS)?;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{update_params, DepacketizeError, Depacketizer};
    use crate::testing::{bytes, depacketize_all, round_trip, rtp, track};
    use crate::track::CodecParams;

    /// The H.265 fixture's parameter sets (ffmpeg, 1280x720 Main).
    const FIXTURE_VPS: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0xba, 0x02, 0x40,
    ];
    const FIXTURE_SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x5b, 0xa4, 0xa4, 0xc2, 0xf0, 0x16,
        0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84,
    ];
    const FIXTURE_PPS: &[u8] = &[0x44, 0x01, 0xc0, 0x73, 0xc1, 0x89];

    /// A NAL unit of `nal_type` with LayerId 1 and TID 2, to check they survive.
    fn nal(nal_type: u8, len: usize) -> Bytes {
        let mut unit = vec![nal_type << 1, (1 << 3) | 2];
        unit.extend((2..len).map(|i| (i % 253) as u8));
        Bytes::from(unit)
    }

    fn depacketizer() -> Depacketizer {
        Depacketizer::new(&track(Codec::H265, 90_000, 1)).unwrap()
    }

    #[test]
    fn aggregation_and_fragmentation_packets_depacketize() {
        let cra = nal(21, 6);
        let mut ap = vec![48 << 1, 1];
        for unit in [&nal(32, 4), &nal(33, 5)] {
            ap.extend_from_slice(&(unit.len() as u16).to_be_bytes());
            ap.extend_from_slice(unit);
        }
        let fu = |fu_header: u8, data: &[u8]| {
            let mut p = vec![(49 << 1) | (cra[0] & 0x81), cra[1], fu_header];
            p.extend_from_slice(data);
            p
        };
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &ap),
                rtp(1, 0, false, &fu(0x80 | 21, &cra[2..4])),
                rtp(2, 0, true, &fu(0x40 | 21, &cra[4..])),
            ],
        );
        assert!(errors.is_empty());
        assert_eq!(aus[0].units, vec![nal(32, 4), nal(33, 5), cra]);
        assert!(aus[0].keyframe, "CRA is IRAP");
    }

    #[test]
    fn rasl_pictures_are_marked_skipped_at_random_access() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, true, &nal(21, 4)), // CRA
                rtp(1, 10, true, &nal(8, 4)), // RASL_N
                rtp(2, 20, true, &nal(9, 4)), // RASL_R
                rtp(3, 30, true, &nal(7, 4)), // RADL_R: decodable from the CRA
                rtp(4, 40, true, &nal(1, 4)), // TRAIL_R
            ],
        );
        assert!(errors.is_empty());
        let skipped: Vec<bool> = aus.iter().map(|au| au.random_access_skipped).collect();
        assert_eq!(skipped, vec![false, true, true, false, false]);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, true, &[0x02]),                    // one byte of a two-byte header
                rtp(1, 10, true, &[49 << 1, 1]),             // FU without FU header
                rtp(2, 20, true, &[50 << 1, 1, 0, 0]),       // PACI
                rtp(3, 30, true, &[48 << 1, 1, 0, 9, 0x02]), // AP lying size
                rtp(4, 40, true, &[49 << 1, 1, 0x80 | 49]),  // FU of an FU
                rtp(5, 50, true, &nal(1, 4)),
            ],
        );
        assert!(matches!(errors[0], DepacketizeError::Truncated { .. }));
        assert!(matches!(errors[1], DepacketizeError::Truncated { .. }));
        assert!(matches!(
            errors[2],
            DepacketizeError::UnsupportedType { nal_type: 50, .. }
        ));
        assert!(matches!(
            errors[3],
            DepacketizeError::BadLength { claimed: 9, .. }
        ));
        assert!(matches!(
            errors[4],
            DepacketizeError::UnsupportedType { nal_type: 49, .. }
        ));
        assert_eq!(aus.len(), 1);
        assert!(!aus[0].keyframe);
    }

    #[test]
    fn in_band_parameter_sets_update_params_with_picture_size() {
        let mut params = CodecParams::default();
        let units = [
            bytes(FIXTURE_VPS),
            bytes(FIXTURE_SPS),
            bytes(FIXTURE_PPS),
            nal(19, 10),
        ];
        assert!(update_params(Codec::H265, &units, &mut params));
        assert_eq!(params.vps.as_deref(), Some(FIXTURE_VPS));
        assert_eq!(params.pps.as_deref(), Some(FIXTURE_PPS));
        assert_eq!((params.width, params.height), (Some(1280), Some(720)));
        assert!(!update_params(Codec::H265, &units, &mut params));
    }

    /// Writes bits MSB first, then adds emulation prevention as an encoder would.
    #[derive(Default)]
    struct BitWriter {
        bits: Vec<bool>,
    }

    impl BitWriter {
        fn bits(&mut self, n: u32, value: u32) {
            self.bits
                .extend((0..n).rev().map(|i| (value >> i) & 1 == 1));
        }

        fn ue(&mut self, value: u32) {
            let code = value + 1;
            let len = 32 - code.leading_zeros();
            self.bits(len - 1, 0);
            self.bits(len, code);
        }

        fn nal(mut self, header: [u8; 2]) -> Vec<u8> {
            self.bits.push(true); // rbsp_stop_one_bit
            while self.bits.len() % 8 != 0 {
                self.bits.push(false);
            }
            let rbsp = self
                .bits
                .chunks(8)
                .map(|b| b.iter().fold(0u8, |acc, &bit| (acc << 1) | u8::from(bit)));
            let mut out = header.to_vec();
            let mut zeros = 0;
            for byte in rbsp {
                if zeros >= 2 && byte <= 3 {
                    out.push(3);
                    zeros = 0;
                }
                zeros = if byte == 0 { zeros + 1 } else { 0 };
                out.push(byte);
            }
            out
        }
    }

    #[test]
    fn sps_with_sub_layers_and_conformance_window_gives_the_cropped_size() {
        let mut w = BitWriter::default();
        w.bits(4, 0); // vps id
        w.bits(3, 1); // max_sub_layers_minus1
        w.bits(1, 1);
        w.bits(32, 0x0160_0000); // general profile space/tier/idc + compat flags
        w.bits(32, 0);
        w.bits(32, 93); // rest of general PTL, level_idc 93
        w.bits(2, 0b11); // sub-layer 0: profile and level present
        w.bits(14, 0); // reserved_zero_2bits for sub-layers 1..8
        w.bits(32, 0);
        w.bits(32, 0);
        w.bits(24, 0);
        w.bits(8, 90);
        w.ue(0); // sps id
        w.ue(1); // 4:2:0
        w.ue(1920);
        w.ue(1088);
        w.bits(1, 1); // conformance window
        for offset in [0, 0, 0, 4] {
            w.ue(offset);
        }
        let sps = w.nal([33 << 1, 1]);
        assert!(
            sps.windows(3).any(|x| x == [0, 0, 3]),
            "test SPS exercises unescaping"
        );
        assert_eq!(Syntax::sps_dimensions(&sps), Some((1920, 1080)));
        for len in 0..sps.len() - 2 {
            assert_eq!(
                Syntax::sps_dimensions(&sps[..len]),
                None,
                "truncated at {len}"
            );
        }
    }

    #[test]
    fn round_trip_gives_identical_access_units_at_any_mtu() {
        let input = vec![
            (
                0,
                vec![
                    bytes(FIXTURE_VPS),
                    bytes(FIXTURE_SPS),
                    bytes(FIXTURE_PPS),
                    nal(19, 4000),
                ],
            ),
            (3000, vec![nal(1, 500)]),
            (6000, vec![nal(1, 2), nal(1, 1500)]),
        ];
        for mtu in [1200, 200, 17] {
            assert_eq!(
                round_trip(&track(Codec::H265, 90_000, 1), mtu, &input),
                input,
                "mtu {mtu}"
            );
        }
    }
}
