//! Does this RTP payload begin a picture a decoder can start from? Rotation switches
//! to the new session at such a packet, before anything is depacketized.
//!
//! True for a packet carrying a parameter set or the first fragment of an IDR/IRAP
//! picture: servers send SPS/PPS (VPS) right before the keyframe, so switching there
//! keeps the parameter sets with their picture.

use streamgate_rtp::Codec;

/// H.264 NAL types (RFC 6184): IDR slice, SPS, STAP-A, FU-A.
const H264_IDR: u8 = 5;
const H264_SPS: u8 = 7;
const H264_STAP_A: u8 = 24;
const H264_FU_A: u8 = 28;
/// H.265 NAL types (RFC 7798): IRAP range, VPS, SPS, aggregation packet, fragmentation unit.
const H265_IRAP: std::ops::RangeInclusive<u8> = 16..=21;
const H265_VPS: u8 = 32;
const H265_SPS: u8 = 33;
const H265_AP: u8 = 48;
const H265_FU: u8 = 49;

/// Whether a decoder can start at this packet. Audio codecs: always.
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::H264 => h264(payload),
        Codec::H265 => h265(payload),
        _ => true,
    }
}

fn h264(payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else { return false };
    let starts = |nal_type: u8| nal_type == H264_IDR || nal_type == H264_SPS;
    match header & 0x1f {
        H264_STAP_A => aggregated(&payload[1..]).any(|nal| nal.first().is_some_and(|h| starts(h & 0x1f))),
        H264_FU_A => payload.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == H264_IDR),
        nal_type => starts(nal_type),
    }
}

fn h265(payload: &[u8]) -> bool {
    let nal_type = |header: u8| (header >> 1) & 0x3f;
    let starts = |t: u8| H265_IRAP.contains(&t) || t == H265_VPS || t == H265_SPS;
    let Some(&header) = payload.first() else { return false };
    match nal_type(header) {
        // No DONL: the client never offers sprop-max-don-diff.
        H265_AP => payload
            .get(2..)
            .is_some_and(|units| aggregated(units).any(|nal| nal.first().is_some_and(|h| starts(nal_type(*h))))),
        H265_FU => payload.get(2).is_some_and(|fu| fu & 0x80 != 0 && H265_IRAP.contains(&(fu & 0x3f))),
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
        assert!(starts_keyframe(Codec::H264, &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]));
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
        assert!(starts_keyframe(Codec::H265, &[48 << 1, 1, 0, 2, 32 << 1, 1]));
        assert!(!starts_keyframe(Codec::H265, &[48 << 1]));
    }

    #[test]
    fn audio_always_starts() {
        assert!(starts_keyframe(Codec::Opus, &[]));
    }
}
