//! H.265 over RTP (RFC 7798): single NAL unit, aggregation (AP) and
//! fragmentation (FU) packets. PACI packets and DONL fields (only present when
//! sprop-max-don-diff > 0, which SDP parsing rejects) are not supported.

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

    fn parameter_set(nal_type: u8) -> Option<ParameterSet> {
        match nal_type {
            VPS => Some(ParameterSet::Vps),
            SPS => Some(ParameterSet::Sps),
            PPS => Some(ParameterSet::Pps),
            _ => None,
        }
    }

    fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
        sps_dimensions(sps)
    }
}

/// Reads the SPS up to the conformance window (H.265 §7.3.2.2) and returns the
/// cropped picture size.
fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape_rbsp(sps);
    let mut r = BitReader::new(rbsp.get(2..)?);
    r.skip_bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.read_bits(3)? as usize;
    r.skip_bits(1)?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
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
    Some((width.checked_sub(crop_x)?, height.checked_sub(crop_y)?))
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
