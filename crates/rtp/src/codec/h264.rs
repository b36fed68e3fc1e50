//! H.264 over RTP (RFC 6184): single NAL unit, STAP-A and FU-A packets, i.e.
//! packetization-mode 0 and 1. STAP-B, MTAP and FU-B (interleaved mode 2) are
//! rejected with a clear error.
//!
//! SPS parsing uses the `h264-reader` crate: the H.264 SPS has profile-dependent
//! fields (chroma format, scaling lists, VUI) that are easy to get subtly wrong.

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

use super::nal::{NalDepacketizer, NalSyntax, ParameterSet};
use crate::track::Codec;

/// H.264 depacketizer (see [`super::nal`]).
pub type Depacketizer = NalDepacketizer<Syntax>;

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

    fn parameter_set(nal_type: u8) -> Option<ParameterSet> {
        match nal_type {
            SPS => Some(ParameterSet::Sps),
            PPS => Some(ParameterSet::Pps),
            _ => None,
        }
    }

    fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
        // decode_nal skips the NAL header byte and removes emulation prevention.
        let rbsp = decode_nal(sps).ok()?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).ok()?;
        sps.pixel_dimensions().ok()
    }
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
