//! Parameter-set insertion: H.264/H.265 keyframes that arrive without their
//! parameter sets in band get them prepended, because RTSP readers such as ffmpeg
//! `-c copy` recorders need SPS/PPS before every IDR, not only in the SDP.

use bytes::Bytes;
use streamgate_rtp::codec::nal::{is_delimiter, parameter_set, ParameterSet};
use streamgate_rtp::{Codec, CodecParams};

/// Puts the parameter sets in front of a keyframe's units (after a leading
/// delimiter) when it lacks any in band. Returns the new units and the prepended
/// sets. All sets go in, in decoding order (VPS, SPS, PPS), even if one came in
/// band: a PPS must follow its SPS, and `params` already holds the in-band ones.
pub(super) fn with_parameter_sets(
    codec: Codec,
    params: &CodecParams,
    units: Vec<Bytes>,
) -> (Vec<Bytes>, Vec<Bytes>) {
    let has = |wanted: ParameterSet| {
        units
            .iter()
            .any(|u| parameter_set(codec, u) == Some(wanted))
    };
    let needed: &[(ParameterSet, &Option<Bytes>)] = match codec {
        Codec::H264 => &[
            (ParameterSet::Sps, &params.sps),
            (ParameterSet::Pps, &params.pps),
        ],
        Codec::H265 => &[
            (ParameterSet::Vps, &params.vps),
            (ParameterSet::Sps, &params.sps),
            (ParameterSet::Pps, &params.pps),
        ],
        _ => &[],
    };
    if needed.iter().all(|(kind, _)| has(*kind)) {
        return (units, Vec::new());
    }
    let sets: Vec<Bytes> = needed
        .iter()
        .filter_map(|(_, set)| set.as_ref().cloned())
        .collect();
    let at = usize::from(units.first().is_some_and(|u| is_delimiter(codec, u)));
    let mut out = Vec::with_capacity(units.len() + sets.len());
    out.extend_from_slice(&units[..at]);
    out.extend(sets.iter().cloned());
    out.extend_from_slice(&units[at..]);
    (out, sets)
}
