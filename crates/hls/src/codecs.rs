//! What a player must know about each track before it downloads media: the
//! RFC 6381 `CODECS` string for the multivariant playlist and the decoder
//! configuration records for the init segment, both derived from the same
//! parameter sets so they always agree.

use bytes::Bytes;
use streamgate_rtp::{Codec, TrackInfo};

use crate::MuxError;

/// H.265 `profile_tier_level` fields that both `hvcC` and the `hvc1.` codec string carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcProfile {
    pub profile_space: u8,
    pub tier_high: bool,
    pub profile_idc: u8,
    pub compatibility_flags: [u8; 4],
    pub constraint_flags: [u8; 6],
    pub level_idc: u8,
}

/// Removes H.264/H.265 emulation-prevention bytes (`00 00 03` → `00 00`) from the
/// first `limit` output bytes; the headers read here sit at the start of the NAL.
fn unescape_prefix(nal: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    let mut zeros = 0;
    for &byte in nal {
        if out.len() == limit {
            break;
        }
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

impl HevcProfile {
    /// Reads the general profile/tier/level from an H.265 SPS NAL unit (with its
    /// 2-byte NAL header): header(2) + vps id/max sub layers/nesting(1) + PTL(12).
    pub fn from_sps(sps: &[u8]) -> Option<HevcProfile> {
        let rbsp = unescape_prefix(sps, 15);
        if rbsp.len() < 15 {
            return None;
        }
        let ptl = &rbsp[3..15];
        Some(HevcProfile {
            profile_space: ptl[0] >> 6,
            tier_high: ptl[0] & 0x20 != 0,
            profile_idc: ptl[0] & 0x1f,
            compatibility_flags: [ptl[1], ptl[2], ptl[3], ptl[4]],
            constraint_flags: [ptl[5], ptl[6], ptl[7], ptl[8], ptl[9], ptl[10]],
            level_idc: ptl[11],
        })
    }

    /// ISO/IEC 14496-15 Annex E form, e.g. `hvc1.1.6.L93.B0`.
    fn codec_string(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let compat = u32::from_be_bytes(self.compatibility_flags).reverse_bits();
        let tier = if self.tier_high { 'H' } else { 'L' };
        let mut out = format!(
            "hvc1.{space}{}.{compat:X}.{tier}{}",
            self.profile_idc, self.level_idc
        );
        let used = self
            .constraint_flags
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for byte in &self.constraint_flags[..used] {
            out.push_str(&format!(".{byte:X}"));
        }
        out
    }
}

fn required(
    track: &TrackInfo,
    field: Option<&Bytes>,
    name: &'static str,
) -> Result<Bytes, MuxError> {
    field.cloned().ok_or(MuxError::MissingParameter {
        track: track.id,
        name,
    })
}

pub(crate) fn h264_sps(track: &TrackInfo) -> Result<Bytes, MuxError> {
    let sps = required(track, track.params.sps.as_ref(), "SPS")?;
    if sps.len() < 4 {
        return Err(MuxError::BadParameter {
            track: track.id,
            name: "SPS",
        });
    }
    Ok(sps)
}

pub(crate) fn hevc_profile(track: &TrackInfo) -> Result<HevcProfile, MuxError> {
    let sps = required(track, track.params.sps.as_ref(), "SPS")?;
    HevcProfile::from_sps(&sps).ok_or(MuxError::BadParameter {
        track: track.id,
        name: "SPS",
    })
}

pub(crate) fn aac_config(track: &TrackInfo) -> Result<Bytes, MuxError> {
    let config = required(
        track,
        track.params.audio_config.as_ref(),
        "AudioSpecificConfig",
    )?;
    if config.len() < 2 {
        return Err(MuxError::BadParameter {
            track: track.id,
            name: "AudioSpecificConfig",
        });
    }
    Ok(config)
}

/// Whether this crate can put the codec into fMP4 for HLS players (G.711 has no
/// HLS-playable fMP4 mapping, so such tracks are left out of the rendition). AAC
/// from `MP4A-LATM` is muxed like any AAC: frames hold raw access units.
pub fn is_muxable(codec: Codec) -> bool {
    matches!(
        codec,
        Codec::H264 | Codec::H265 | Codec::Aac | Codec::AacLatm | Codec::Opus
    )
}

/// RFC 6381 codec string of one track, e.g. `avc1.42c01f`, `mp4a.40.2`, `opus`.
pub fn codec_string(track: &TrackInfo) -> Result<String, MuxError> {
    match track.codec {
        Codec::H264 => {
            let sps = h264_sps(track)?;
            Ok(format!("avc1.{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]))
        }
        Codec::H265 => Ok(hevc_profile(track)?.codec_string()),
        Codec::Aac | Codec::AacLatm => {
            let config = aac_config(track)?;
            let object_type = match config[0] >> 3 {
                // Escape value: the real type follows in the next 6 bits.
                31 => 32 + (((config[0] & 0x07) << 3) | (config[1] >> 5)),
                object_type => object_type,
            };
            Ok(format!("mp4a.40.{object_type}"))
        }
        Codec::Opus => Ok("opus".to_owned()),
        codec => Err(MuxError::UnsupportedCodec(codec)),
    }
}

#[cfg(test)]
mod tests {
    use streamgate_rtp::CodecParams;

    use super::*;

    fn track(codec: Codec, params: CodecParams) -> TrackInfo {
        TrackInfo {
            params,
            ..streamgate_rtp::testing::track(codec, 90_000, 1)
        }
    }

    #[test]
    fn h264_string_comes_from_sps_profile_bytes() {
        let params = CodecParams {
            sps: Some(Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f, 0xda])),
            ..Default::default()
        };
        assert_eq!(
            codec_string(&track(Codec::H264, params)).unwrap(),
            "avc1.42c01f"
        );
    }

    #[test]
    fn hevc_string_follows_annex_e() {
        // x265 Main profile, level 3.1 SPS header (with an emulation-prevention byte in the flags).
        let sps = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x5d, 0xa0,
        ];
        let profile = HevcProfile::from_sps(&sps).unwrap();
        assert_eq!(profile.profile_idc, 1);
        assert_eq!(profile.level_idc, 93);
        assert_eq!(profile.codec_string(), "hvc1.1.6.L93.90");
    }

    #[test]
    fn aac_string_reads_object_type() {
        let params = CodecParams {
            audio_config: Some(Bytes::from_static(&[0x11, 0x90])),
            ..Default::default()
        };
        assert_eq!(
            codec_string(&track(Codec::Aac, params.clone())).unwrap(),
            "mp4a.40.2"
        );
        assert_eq!(
            codec_string(&track(Codec::AacLatm, params)).unwrap(),
            "mp4a.40.2"
        );
    }

    #[test]
    fn missing_sps_is_an_error_not_a_panic() {
        assert!(matches!(
            codec_string(&track(Codec::H264, CodecParams::default())),
            Err(MuxError::MissingParameter { name: "SPS", .. })
        ));
        let short = CodecParams {
            sps: Some(Bytes::from_static(&[0x67])),
            ..Default::default()
        };
        assert!(codec_string(&track(Codec::H264, short)).is_err());
    }
}
