//! Does this RTP payload begin a picture a decoder can start from? Rotation switches
//! to the new session at such a packet, before anything is depacketized.
//!
//! True for a packet carrying a parameter set or the first fragment of an IDR/IRAP
//! picture: servers send SPS/PPS (VPS) right before the keyframe, so switching there
//! keeps the parameter sets with their picture.

use streamgate_rtp::codec::nal::{NalSyntax, ParameterSet};
use streamgate_rtp::codec::{h264, h265};
use streamgate_rtp::Codec;

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
        t if t == S::AGGREGATION => {
            aggregated(body).any(|nal| nal.len() >= S::HEADER_LEN && starts(S::nal_type(nal)))
        }
        t if t == S::FRAGMENTATION => body
            .first()
            .is_some_and(|fu| fu & FU_START != 0 && S::is_random_access(fu & S::FU_TYPE_MASK)),
        t => starts(t),
    }
}

/// The NAL units of an aggregation packet body (16-bit size + unit, repeated); stops at
/// the first size that overruns the packet.
fn aggregated(mut body: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let size = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
        let unit = body.get(2..2 + size)?;
        body = &body[2 + size..];
        Some(unit)
    })
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
