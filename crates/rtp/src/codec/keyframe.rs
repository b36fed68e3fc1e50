//! Does this RTP payload begin a picture a decoder can start from? Decided on one
//! packet, before anything is depacketized: a WHEP rotation switches to the new
//! session at such a packet. (Depacketized access units carry `keyframe` already.)
//!
//! True for a packet carrying a parameter set or the first fragment of an IDR/IRAP
//! picture: servers send SPS/PPS (VPS) right before the keyframe, so switching there
//! keeps the parameter sets with their picture.

use super::nal::{aggregated_units, NalSyntax, ParameterSet};
use super::{h264, h265};
use crate::track::Codec;

/// FU header bit marking the first fragment (same place in H.264 and H.265).
const FU_START: u8 = 0x80;

/// Whether a decoder can start at this packet. Audio codecs: always.
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::H264 => nal_starts_keyframe::<h264::Syntax>(payload),
        Codec::H265 => nal_starts_keyframe::<h265::Syntax>(payload),
        _ => true,
    }
}

fn nal_starts_keyframe<S: NalSyntax>(payload: &[u8]) -> bool {
    let starts = |nal_type| {
        S::is_random_access(nal_type)
            || matches!(
                S::parameter_set(nal_type),
                Some(ParameterSet::Vps | ParameterSet::Sps)
            )
    };
    let Some(body) = payload.get(S::HEADER_LEN..) else {
        return false;
    };
    match S::nal_type(payload) {
        // Aggregation without DONL: the client never offers sprop-max-don-diff.
        t if t == S::AGGREGATION => aggregated_units(body).map_while(Result::ok).any(|range| {
            let nal = &body[range];
            nal.len() >= S::HEADER_LEN && starts(S::nal_type(nal))
        }),
        t if t == S::FRAGMENTATION => body
            .first()
            .is_some_and(|fu| fu & FU_START != 0 && S::is_random_access(fu & S::FU_TYPE_MASK)),
        t => starts(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_keyframe_starts() {
        assert!(starts_keyframe(Codec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(Codec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(Codec::H264, &[0x41, 0x9a]));
        // STAP-A with SPS + PPS.
        assert!(starts_keyframe(
            Codec::H264,
            &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]
        ));
        // STAP-A with a PPS only, and one whose size overruns the packet.
        assert!(!starts_keyframe(Codec::H264, &[0x78, 0, 2, 0x68, 0xce]));
        assert!(!starts_keyframe(Codec::H264, &[0x78, 0, 9, 0x67]));
        // FU-A: IDR start, IDR middle, non-IDR start.
        assert!(starts_keyframe(Codec::H264, &[0x7c, 0x85, 1]));
        assert!(!starts_keyframe(Codec::H264, &[0x7c, 0x05, 1]));
        assert!(!starts_keyframe(Codec::H264, &[0x7c, 0x81, 1]));
        assert!(!starts_keyframe(Codec::H264, &[]));
        assert!(!starts_keyframe(Codec::H264, &[0x7c]));
    }

    #[test]
    fn h265_keyframe_starts() {
        assert!(starts_keyframe(Codec::H265, &[19 << 1, 1])); // IDR_W_RADL
        assert!(starts_keyframe(Codec::H265, &[32 << 1, 1])); // VPS
        assert!(!starts_keyframe(Codec::H265, &[1 << 1, 1])); // TRAIL_R
        assert!(starts_keyframe(Codec::H265, &[49 << 1, 1, 0x80 | 19]));
        assert!(!starts_keyframe(Codec::H265, &[49 << 1, 1, 19]));
        assert!(starts_keyframe(
            Codec::H265,
            &[48 << 1, 1, 0, 2, 32 << 1, 1]
        ));
        assert!(!starts_keyframe(Codec::H265, &[48 << 1]));
    }

    #[test]
    fn audio_always_starts() {
        assert!(starts_keyframe(Codec::Opus, &[]));
    }
}
