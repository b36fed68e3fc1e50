//! SDP media descriptions to [`TrackInfo`]s, and the `a=rtpmap` / `a=fmtp`
//! values outputs write when they describe a track.
//!
//! The line grammar (RFC 8866) and the `rtpmap`/`fmtp` attribute syntax come from
//! `sdp-types`: a maintained parser with typed attributes that reports the line
//! number of a malformed line. This module only interprets codec parameters:
//! H.264 (RFC 6184), H.265 (RFC 7798), Opus (RFC 7587), AAC as `mpeg4-generic`
//! AAC-hbr (RFC 3640) or as `MP4A-LATM` with `cpresent=0` (RFC 6416), and G.711
//! (RFC 3551, including the static payload types 0 and 8 that need no `rtpmap`).
//! Media with other codecs are skipped, not errors, so one exotic track does not
//! make a camera unusable.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use sdp_types::{Fmtp, Media, RtpMap, Session};

use crate::codec::{self, h264, latm};
use crate::ids::PayloadType;
use crate::track::{Codec, CodecParams, TrackId, TrackInfo};

/// Largest SDP accepted: real descriptions are a few KiB, WebRTC offers ~10 KiB.
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// Most usable media sections accepted in one description.
pub const MAX_TRACKS: usize = 16;

/// Static RTP payload types (RFC 3551) that need no `rtpmap`.
const PT_PCMU: u8 = 0;
const PT_PCMA: u8 = 8;

/// AU-header layout of AAC-hbr, the only RFC 3640 mode the AAC depacketizer reads.
const AAC_HBR_SIZE_LENGTH: u32 = 13;
const AAC_HBR_INDEX_LENGTH: u32 = 3;

/// One usable media section of an SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpTrack {
    /// `id` is the index among usable media; `payload_type` is the SDP's.
    pub info: TrackInfo,
    /// The media-level `a=control` URL (RTSP), as written.
    pub control: Option<String>,
    /// The `m=` line's transport port (where a capture's packets were sent; 0 or 9
    /// in RTSP and WebRTC descriptions).
    pub port: u16,
}

/// Why an SDP cannot be used.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP of {len} bytes exceeds the {MAX_SDP_LEN}-byte limit")]
    TooLong { len: usize },
    #[error("malformed SDP: {0}")]
    Syntax(String),
    #[error("SDP has more than {MAX_TRACKS} usable media sections")]
    TooManyTracks,
    #[error("SDP media #{media} (payload type {payload_type}): bad a={attribute}: {reason}")]
    BadAttribute {
        media: usize,
        payload_type: PayloadType,
        attribute: &'static str,
        reason: String,
    },
}

/// Parses the media sections this pipeline can carry, in SDP order.
///
/// For each `m=video`/`m=audio` section the first payload type (in `m=` order)
/// with a supported codec is used; sections without one are skipped (logged at
/// debug level). Parameter sets given in `fmtp` fill [`TrackInfo::params`].
pub fn parse_tracks(sdp: &[u8]) -> Result<Vec<SdpTrack>, SdpError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLong { len: sdp.len() });
    }
    let session = Session::parse(sdp).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let mut tracks = Vec::new();
    for (media_index, media) in session.medias.iter().enumerate() {
        if !matches!(media.media.as_str(), "video" | "audio") {
            continue;
        }
        let Some(info) = usable_format(media, media_index, TrackId::new(tracks.len()))? else {
            tracing::debug!(media = media_index, fmt = %media.fmt, "skipping SDP media: no supported codec");
            continue;
        };
        if tracks.len() == MAX_TRACKS {
            return Err(SdpError::TooManyTracks);
        }
        tracks.push(SdpTrack {
            info,
            control: media
                .get_first_attribute_value("control")
                .flatten()
                .map(str::to_owned),
            port: media.port,
        });
    }
    Ok(tracks)
}

/// The `a=rtpmap` value describing `track`, e.g. `96 H264/90000`, `97 opus/48000/2`.
pub fn rtpmap(track: &TrackInfo) -> String {
    let pt = track.payload_type;
    let rate = track.clock_rate;
    match track.codec {
        Codec::H264 => format!("{pt} H264/{rate}"),
        Codec::H265 => format!("{pt} H265/{rate}"),
        // RFC 7587: always "/2"; whether the sender sends stereo is `sprop-stereo`.
        Codec::Opus => format!("{pt} opus/{rate}/2"),
        Codec::Aac => format!("{pt} MPEG4-GENERIC/{rate}/{}", track.channels),
        Codec::AacLatm => format!("{pt} MP4A-LATM/{rate}/{}", track.channels),
        Codec::Pcmu | Codec::Pcma => {
            let name = if track.codec == Codec::Pcmu {
                "PCMU"
            } else {
                "PCMA"
            };
            match track.channels {
                1 => format!("{pt} {name}/{rate}"),
                channels => format!("{pt} {name}/{rate}/{channels}"),
            }
        }
    }
}

/// The `a=fmtp` value describing `track`, or `None` when the codec needs none.
///
/// H.264 always states `packetization-mode=1` (what the packetizer emits) and,
/// once the SPS is known, `profile-level-id` and `sprop-parameter-sets`.
pub fn fmtp(track: &TrackInfo) -> Option<String> {
    let pt = track.payload_type;
    let p = &track.params;
    match track.codec {
        Codec::H264 => {
            let mut value = format!("{pt} packetization-mode=1");
            if let Some([profile, constraints, level]) =
                p.sps.as_deref().and_then(h264::profile_level_id)
            {
                value += &format!(";profile-level-id={profile:02x}{constraints:02x}{level:02x}");
            }
            let sets: Vec<String> = [&p.sps, &p.pps]
                .into_iter()
                .flatten()
                .map(|n| BASE64.encode(n))
                .collect();
            if !sets.is_empty() {
                value += &format!(";sprop-parameter-sets={}", sets.join(","));
            }
            Some(value)
        }
        Codec::H265 => {
            let sets: Vec<String> = [
                ("sprop-vps", &p.vps),
                ("sprop-sps", &p.sps),
                ("sprop-pps", &p.pps),
            ]
            .into_iter()
            .filter_map(|(key, nal)| {
                nal.as_ref()
                    .map(|nal| format!("{key}={}", BASE64.encode(nal)))
            })
            .collect();
            (!sets.is_empty()).then(|| format!("{pt} {}", sets.join(";")))
        }
        Codec::Opus => (track.channels == 2).then(|| format!("{pt} sprop-stereo=1")),
        Codec::Aac => {
            let mut value = format!(
                "{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength={AAC_HBR_SIZE_LENGTH};\
                 indexlength={AAC_HBR_INDEX_LENGTH};indexdeltalength={AAC_HBR_INDEX_LENGTH}"
            );
            if let Some(config) = &p.audio_config {
                value += ";config=";
                value.extend(config.iter().map(|b| format!("{b:02X}")));
            }
            Some(value)
        }
        // The source's StreamMuxConfig as sent: forwarded packets are framed by it.
        // profile-level-id and object are left at their defaults: decoders read the config.
        Codec::AacLatm => {
            let config = p.stream_mux_config.as_ref()?;
            let hex: String = config.iter().map(|b| format!("{b:02X}")).collect();
            Some(format!("{pt} cpresent=0;config={hex}"))
        }
        Codec::Pcmu | Codec::Pcma => None,
    }
}

/// The first payload type of `media` with a supported codec, as a track.
fn usable_format(
    media: &Media,
    media_index: usize,
    id: TrackId,
) -> Result<Option<TrackInfo>, SdpError> {
    for pt in media
        .fmt
        .split_ascii_whitespace()
        .filter_map(|f| f.parse::<u8>().ok().and_then(PayloadType::new))
    {
        let bad = |attribute, reason: String| SdpError::BadAttribute {
            media: media_index,
            payload_type: pt,
            attribute,
            reason,
        };
        let rtpmap = media
            .attributes_typed::<RtpMap>()
            .filter_map(Result::ok)
            .find(|m| m.payload_type == pt.get());
        let fmtp = media
            .attributes_typed::<Fmtp>()
            .filter_map(Result::ok)
            .find(|f| f.fmt == pt.get());
        let params = FmtpParams(fmtp.as_ref());
        let Some(described) = describe(pt.get(), rtpmap.as_ref(), &params)
            .map_err(|(attr, reason)| bad(attr, reason))?
        else {
            continue;
        };
        return Ok(Some(TrackInfo {
            id,
            payload_type: pt,
            ..described
        }));
    }
    Ok(None)
}

/// Codec, clock, channels and parameters of one payload type, or `None` when the
/// codec (or its variant, e.g. AAC-lbr or H.264 interleaved mode) is unsupported.
/// Errors carry the offending attribute's name.
fn describe(
    pt: u8,
    rtpmap: Option<&RtpMap>,
    fmtp: &FmtpParams<'_>,
) -> Result<Option<TrackInfo>, (&'static str, String)> {
    let Some(rtpmap) = rtpmap else {
        return Ok(match pt {
            PT_PCMU => Some(audio_track(Codec::Pcmu, 8000, 1)),
            PT_PCMA => Some(audio_track(Codec::Pcma, 8000, 1)),
            _ => None,
        });
    };
    let rate = rtpmap.clock_rate;
    if rate == 0 {
        return Err(("rtpmap", "clock rate 0".into()));
    }
    let channels = match rtpmap.encoding_params.as_deref() {
        None => 1,
        Some(c) => c
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&c| c > 0)
            .ok_or(("rtpmap", format!("bad channel count {c:?}")))?,
    };
    let name = rtpmap.encoding_name.to_ascii_uppercase();
    let track = match name.as_str() {
        "H264" => {
            let mode = fmtp.get("packetization-mode").unwrap_or("0");
            if !matches!(mode, "0" | "1") {
                tracing::debug!(
                    pt,
                    mode,
                    "skipping H.264 with unsupported packetization-mode"
                );
                return Ok(None);
            }
            if let Some(profile) = fmtp.get("profile-level-id") {
                if profile.len() != 6 || !profile.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err((
                        "fmtp",
                        format!("profile-level-id {profile:?} is not 6 hex digits"),
                    ));
                }
            }
            let sets = fmtp.parameter_sets("sprop-parameter-sets")?;
            video_track(Codec::H264, rate, &sets)
        }
        "H265" => {
            // RFC 7798 §7.1: a positive sprop-max-don-diff puts a DONL field in
            // front of every NAL unit, which the depacketizer does not parse.
            if let Some(diff) = fmtp.number("sprop-max-don-diff")?.filter(|&d| d > 0) {
                return Err((
                    "fmtp",
                    format!(
                        "H.265 with decoding order numbers (sprop-max-don-diff={diff}) is not \
                         supported: DONL fields are not parsed; configure the camera for \
                         sprop-max-don-diff=0"
                    ),
                ));
            }
            let mut sets = fmtp.parameter_sets("sprop-vps")?;
            sets.extend(fmtp.parameter_sets("sprop-sps")?);
            sets.extend(fmtp.parameter_sets("sprop-pps")?);
            video_track(Codec::H265, rate, &sets)
        }
        "OPUS" => {
            let stereo = fmtp.get("sprop-stereo") == Some("1");
            audio_track(Codec::Opus, rate, if stereo { 2 } else { 1 })
        }
        "MPEG4-GENERIC" => {
            let hbr = fmtp
                .get("mode")
                .is_some_and(|m| m.eq_ignore_ascii_case("AAC-hbr"))
                && fmtp.number("sizelength")? == Some(AAC_HBR_SIZE_LENGTH)
                && fmtp.number("indexlength")? == Some(AAC_HBR_INDEX_LENGTH)
                && fmtp
                    .number("indexdeltalength")?
                    .unwrap_or(AAC_HBR_INDEX_LENGTH)
                    == AAC_HBR_INDEX_LENGTH;
            if !hbr {
                tracing::debug!(
                    pt,
                    "skipping mpeg4-generic that is not AAC-hbr (sizelength 13, indexlength 3)"
                );
                return Ok(None);
            }
            let config = fmtp
                .get("config")
                .ok_or(("fmtp", "mpeg4-generic without config".to_string()))?;
            let config =
                decode_hex(config).ok_or(("fmtp", format!("config {config:?} is not hex")))?;
            let mut track = audio_track(Codec::Aac, rate, channels);
            track.params.audio_config = Some(config);
            track
        }
        "MP4A-LATM" => {
            // RFC 6416 §7.1: cpresent defaults to 1 (StreamMuxConfig in every
            // element), which the depacketizer does not read: the camera's video
            // still plays, without this audio.
            if fmtp.get("cpresent").unwrap_or("1") != "0" {
                tracing::warn!(
                    pt,
                    "skipping MP4A-LATM audio with the configuration in band (cpresent=1): \
                     only cpresent=0 with config= is supported"
                );
                return Ok(None);
            }
            let hex = fmtp
                .get("config")
                .ok_or(("fmtp", "MP4A-LATM without config".to_string()))?;
            let config = decode_hex(hex).ok_or(("fmtp", format!("config {hex:?} is not hex")))?;
            let parsed = latm::parse_stream_mux_config(&config)
                .map_err(|e| ("fmtp", format!("MP4A-LATM config {hex}: {e}")))?;
            // The config knows the channels; the rtpmap often omits them (meaning 1).
            let mut track = audio_track(Codec::AacLatm, rate, parsed.channels);
            track.params.audio_config = Some(parsed.audio_specific_config);
            track.params.stream_mux_config = Some(config);
            track
        }
        "PCMU" => audio_track(Codec::Pcmu, rate, channels),
        "PCMA" => audio_track(Codec::Pcma, rate, channels),
        _ => return Ok(None),
    };
    Ok(Some(track))
}

/// A video track whose parameters are the SPS/PPS/VPS (and so picture size)
/// found among the SDP's parameter sets.
fn video_track(codec: Codec, clock_rate: u32, parameter_sets: &[Bytes]) -> TrackInfo {
    let mut params = CodecParams::default();
    codec::update_params(codec, parameter_sets, &mut params);
    TrackInfo {
        id: TrackId::new(0),
        codec,
        clock_rate,
        channels: 1,
        payload_type: PayloadType::default(),
        params,
    }
}

fn audio_track(codec: Codec, clock_rate: u32, channels: u16) -> TrackInfo {
    TrackInfo {
        id: TrackId::new(0),
        codec,
        clock_rate,
        channels,
        payload_type: PayloadType::default(),
        params: CodecParams::default(),
    }
}

/// An `a=fmtp` parameter list, looked up case-insensitively with surrounding
/// spaces ignored (ffmpeg writes `; ` between parameters).
struct FmtpParams<'a>(Option<&'a Fmtp>);

impl FmtpParams<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0?
            .format_specific_params
            .iter()
            .find(|p| p.param.trim().eq_ignore_ascii_case(key))
            .and_then(|p| p.val.as_deref())
            .map(str::trim)
    }

    fn number(&self, key: &'static str) -> Result<Option<u32>, (&'static str, String)> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| ("fmtp", format!("{key}={v:?} is not a number")))
            })
            .transpose()
    }

    /// Comma-separated base64 NAL units (`sprop-parameter-sets`, `sprop-sps`, …);
    /// empty entries are ignored, every returned unit is non-empty.
    fn parameter_sets(&self, key: &'static str) -> Result<Vec<Bytes>, (&'static str, String)> {
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match BASE64.decode(s) {
                Ok(nal) if !nal.is_empty() => Ok(Bytes::from(nal)),
                _ => Err((
                    "fmtp",
                    format!("{key} entry {s:?} is not base64 of a NAL unit"),
                )),
            })
            .collect()
    }
}

fn decode_hex(s: &str) -> Option<Bytes> {
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::MediaKind;

    const H264_AAC: &[u8] = include_bytes!("../../../fixtures/ffmpeg_h264_aac.sdp");
    const H264_OPUS: &[u8] = include_bytes!("../../../fixtures/ffmpeg_h264_opus.sdp");
    const H265: &[u8] = include_bytes!("../../../fixtures/ffmpeg_h265.sdp");

    fn one(sdp: &str) -> Result<Vec<SdpTrack>, SdpError> {
        parse_tracks(sdp.as_bytes())
    }

    fn with_media(media: &str) -> String {
        format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{media}")
    }

    #[test]
    fn ffmpeg_h264_aac_fixture() {
        let tracks = parse_tracks(H264_AAC).unwrap();
        assert_eq!(tracks.len(), 2);
        let video = &tracks[0];
        assert_eq!(
            (
                video.info.id,
                video.info.codec,
                video.info.clock_rate,
                video.info.payload_type.get()
            ),
            (TrackId::new(0), Codec::H264, 90_000, 96)
        );
        assert_eq!(video.port, 5004);
        assert_eq!(video.control, None);
        let sps = video.info.params.sps.as_ref().unwrap();
        assert_eq!(sps[0] & 0x1f, 7);
        assert_eq!(&sps[1..4], &[0x42, 0xc0, 0x1f]);
        assert_eq!(
            video.info.params.pps.as_deref(),
            Some(&BASE64.decode("aM48gA==").unwrap()[..])
        );
        assert!(video.info.is_ready());
        let size = (video.info.params.width, video.info.params.height);
        assert_eq!(size, (Some(1280), Some(720)));

        let audio = &tracks[1];
        assert_eq!(
            (
                audio.info.id,
                audio.info.codec,
                audio.info.clock_rate,
                audio.info.channels
            ),
            (TrackId::new(1), Codec::Aac, 48_000, 2)
        );
        assert_eq!(audio.port, 5006);
        assert_eq!(audio.info.payload_type.get(), 97);
        assert_eq!(
            audio.info.params.audio_config.as_deref(),
            Some(&[0x11, 0x90, 0x56, 0xe5, 0x00][..])
        );
        assert_eq!(audio.info.kind(), MediaKind::Audio);
    }

    #[test]
    fn ffmpeg_h264_opus_fixture() {
        let tracks = parse_tracks(H264_OPUS).unwrap();
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].info.codec, Codec::H264);
        let opus = &tracks[1].info;
        assert_eq!(
            (
                opus.codec,
                opus.clock_rate,
                opus.channels,
                opus.payload_type.get()
            ),
            (Codec::Opus, 48_000, 2, 97)
        );
        assert_eq!(rtpmap(opus), "97 opus/48000/2");
        assert_eq!(fmtp(opus).as_deref(), Some("97 sprop-stereo=1"));
    }

    #[test]
    fn ffmpeg_h265_fixture() {
        let tracks = parse_tracks(H265).unwrap();
        assert_eq!(tracks.len(), 1);
        let video = &tracks[0].info;
        assert_eq!(video.codec, Codec::H265);
        assert_eq!(
            video.params.vps.as_ref().map(|n| (n[0] >> 1) & 0x3f),
            Some(32) // VPS
        );
        assert_eq!(
            video.params.sps.as_ref().map(|n| (n[0] >> 1) & 0x3f),
            Some(33) // SPS
        );
        assert_eq!(
            video.params.pps.as_ref().map(|n| (n[0] >> 1) & 0x3f),
            Some(34) // PPS
        );
        assert_eq!(
            (video.params.width, video.params.height),
            (Some(1280), Some(720))
        );
        assert!(video.is_ready());
    }

    #[test]
    fn h265_with_decoding_order_numbers_is_refused_by_name() {
        let sdp = |fmtp: &str| {
            format!("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=fmtp:96 {fmtp}\r\n")
        };
        let error = parse_tracks(sdp("sprop-max-don-diff=2;sprop-depack-buf-nalus=3").as_bytes())
            .unwrap_err();
        assert!(
            matches!(&error, SdpError::BadAttribute { attribute: "fmtp", reason, .. }
                if reason.contains("sprop-max-don-diff=2") && reason.contains("DONL")),
            "{error}"
        );
        assert!(parse_tracks(sdp("sprop-max-don-diff=x").as_bytes()).is_err());
        // Zero means no DONL fields: accepted like no parameter at all.
        let tracks = parse_tracks(sdp("sprop-max-don-diff=0").as_bytes()).unwrap();
        assert_eq!(tracks[0].info.codec, Codec::H265);
    }

    /// An SDP describing `tracks` with the writers, as the RTSP server would.
    fn write_sdp(tracks: &[SdpTrack]) -> String {
        let mut written = String::from("v=0\r\ns=-\r\n");
        for (i, t) in tracks.iter().enumerate() {
            let kind = match t.info.kind() {
                MediaKind::Video => "video",
                MediaKind::Audio => "audio",
            };
            let pt = t.info.payload_type;
            written += &format!(
                "m={kind} 0 RTP/AVP {pt}\r\na=rtpmap:{}\r\n",
                rtpmap(&t.info)
            );
            if let Some(f) = fmtp(&t.info) {
                written += &format!("a=fmtp:{f}\r\n");
            }
            written += &format!("a=control:trackID={i}\r\n");
        }
        written
    }

    #[test]
    fn writers_round_trip_through_the_parser() {
        for sdp in [H264_AAC, H264_OPUS, H265] {
            let tracks = parse_tracks(sdp).unwrap();
            let written = write_sdp(&tracks);
            let reparsed = parse_tracks(written.as_bytes()).unwrap();
            let infos = |ts: &[SdpTrack]| ts.iter().map(|t| t.info.clone()).collect::<Vec<_>>();
            assert_eq!(infos(&reparsed), infos(&tracks), "{written}");
            assert_eq!(reparsed[0].control.as_deref(), Some("trackID=0"));
        }
    }

    #[test]
    fn h264_writer_states_mode_profile_and_parameter_sets() {
        let tracks = parse_tracks(H264_AAC).unwrap();
        assert_eq!(rtpmap(&tracks[0].info), "96 H264/90000");
        assert_eq!(
            fmtp(&tracks[0].info).as_deref(),
            Some("96 packetization-mode=1;profile-level-id=42c01f;sprop-parameter-sets=Z0LAH9oBQBbsBEAAAAMAQAAADIPGDKg=,aM48gA==")
        );
        assert_eq!(rtpmap(&tracks[1].info), "97 MPEG4-GENERIC/48000/2");
        assert_eq!(
            fmtp(&tracks[1].info).as_deref(),
            Some("97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=119056E500")
        );
    }

    /// Tracks the fixtures do not cover still survive write → parse unchanged.
    #[test]
    fn unusual_tracks_round_trip() {
        let sdp = with_media(
            "m=audio 0 RTP/AVP 96\r\na=rtpmap:96 PCMA/16000/2\r\n\
             m=video 0 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 sprop-parameter-sets=aM48gA==\r\n",
        );
        let tracks = one(&sdp).unwrap();
        assert_eq!(rtpmap(&tracks[0].info), "96 PCMA/16000/2");
        assert_eq!(
            fmtp(&tracks[1].info).as_deref(),
            Some("97 packetization-mode=1;sprop-parameter-sets=aM48gA==")
        );
        let reparsed = one(&write_sdp(&tracks)).unwrap();
        let infos = |ts: &[SdpTrack]| ts.iter().map(|t| t.info.clone()).collect::<Vec<_>>();
        assert_eq!(infos(&reparsed), infos(&tracks));
    }

    /// A camera's MP4A-LATM audio (the RFC 6416 example config: AAC-LC, 16 kHz, mono).
    #[test]
    fn latm_audio_yields_its_audio_specific_config_and_round_trips() {
        let sdp = with_media(
            "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MP4A-LATM/16000/1\r\n\
             a=fmtp:97 profile-level-id=15; cpresent=0; object=2; config=400028103FC0\r\n",
        );
        let tracks = one(&sdp).unwrap();
        let audio = &tracks[0].info;
        assert_eq!(
            (
                audio.codec,
                audio.clock_rate,
                audio.channels,
                audio.payload_type.get()
            ),
            (Codec::AacLatm, 16_000, 1, 97)
        );
        assert_eq!(
            audio.params.audio_config.as_deref(),
            Some(&[0x14, 0x08][..])
        );
        assert!(audio.is_ready());
        assert_eq!(rtpmap(audio), "97 MP4A-LATM/16000/1");
        assert_eq!(
            fmtp(audio).as_deref(),
            Some("97 cpresent=0;config=400028103FC0")
        );
        let reparsed = one(&write_sdp(&tracks)).unwrap();
        assert_eq!(reparsed[0].info, *audio);
    }

    #[test]
    fn latm_in_band_config_is_skipped_and_a_bad_out_of_band_one_refused_by_name() {
        let sdp = |fmtp: &str| {
            with_media(&format!(
                "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MP4A-LATM/16000/1\r\na=fmtp:97 {fmtp}\r\n"
            ))
        };
        for in_band in ["cpresent=1", "object=2"] {
            assert_eq!(one(&sdp(in_band)).unwrap(), [], "{in_band}: skipped");
        }
        for (fmtp, expected) in [
            ("cpresent=0", "MP4A-LATM without config"),
            ("cpresent=0;config=40002", "is not hex"),
            ("cpresent=0;config=C00028103FC0", "audioMuxVersion 1"),
            (
                "cpresent=0;config=4000",
                "ends inside the AudioSpecificConfig",
            ),
        ] {
            let err = one(&sdp(fmtp)).expect_err(fmtp).to_string();
            assert!(err.contains(expected), "{fmtp}: {err}");
        }
    }

    #[test]
    fn static_g711_payload_types_need_no_rtpmap() {
        let tracks = one(&with_media(
            "m=audio 0 RTP/AVP 0\r\nm=audio 0 RTP/AVP 8\r\n",
        ))
        .unwrap();
        let got: Vec<_> = tracks
            .iter()
            .map(|t| {
                (
                    t.info.id,
                    t.info.codec,
                    t.info.clock_rate,
                    t.info.payload_type.get(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (TrackId::new(0), Codec::Pcmu, 8000, 0),
                (TrackId::new(1), Codec::Pcma, 8000, 8)
            ]
        );
        assert_eq!(rtpmap(&tracks[0].info), "0 PCMU/8000");
        assert_eq!(fmtp(&tracks[1].info), None);
    }

    #[test]
    fn unknown_codecs_and_media_are_skipped_and_ids_stay_dense() {
        let sdp = with_media(
            "m=video 0 RTP/AVP 98\r\na=rtpmap:98 VP8/90000\r\n\
             m=application 0 RTP/AVP 107\r\n\
             m=audio 0 RTP/AVP 101 0\r\na=rtpmap:101 telephone-event/8000\r\n\
             m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\na=fmtp:97 mode=AAC-lbr;sizelength=6;indexlength=2;config=1408\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=2\r\n\
             m=video 0 RTP/AVP 99\r\na=rtpmap:99 h264/90000\r\na=control:rtsp://cam/track9\r\n",
        );
        let tracks = one(&sdp).unwrap();
        let got: Vec<_> = tracks
            .iter()
            .map(|t| {
                (
                    t.info.id,
                    t.info.codec,
                    t.info.payload_type.get(),
                    t.control.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (TrackId::new(0), Codec::Pcmu, 0, None),
                (TrackId::new(1), Codec::H264, 99, Some("rtsp://cam/track9"))
            ]
        );
        assert!(
            !tracks[1].info.is_ready(),
            "no sprop: parameter sets must come in band"
        );
    }

    #[test]
    fn webrtc_style_media_uses_first_supported_payload_type() {
        let sdp = with_media(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
             a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n",
        );
        let tracks = one(&sdp).unwrap();
        assert_eq!(tracks[0].info.payload_type.get(), 102);
        assert_eq!(
            (tracks[1].info.codec, tracks[1].info.channels),
            (Codec::Opus, 1)
        );
        assert_eq!(fmtp(&tracks[1].info), None);
    }

    #[test]
    fn malformed_input_gives_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "malformed SDP"),
            ("v=1\r\n", "malformed SDP"),
            ("v=0\r\nm=video\r\n", "malformed SDP"),
            (
                "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=!!!,aM48gA==\r\n",
                "media #0 (payload type 96): bad a=fmtp: sprop-parameter-sets entry \"!!!\" is not base64",
            ),
            ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e0\r\n", "profile-level-id"),
            ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/0\r\n", "clock rate 0"),
            ("v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/x\r\n", "bad channel count"),
            (
                "v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3\r\n",
                "mpeg4-generic without config",
            ),
            (
                "v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;config=1G\r\n",
                "config \"1G\" is not hex",
            ),
            (
                "v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 mode=AAC-hbr;sizelength=x\r\n",
                "sizelength=\"x\" is not a number",
            ),
        ];
        for (sdp, expected) in cases {
            let err = one(sdp).expect_err(sdp).to_string();
            assert!(err.contains(expected), "{sdp:?}: {err}");
        }
    }

    #[test]
    fn size_and_track_caps() {
        let huge = vec![b'a'; MAX_SDP_LEN + 1];
        assert_eq!(
            parse_tracks(&huge),
            Err(SdpError::TooLong {
                len: MAX_SDP_LEN + 1
            })
        );
        let many = with_media(&"m=audio 0 RTP/AVP 0\r\n".repeat(MAX_TRACKS + 1));
        assert_eq!(one(&many), Err(SdpError::TooManyTracks));
        let exactly = with_media(&"m=audio 0 RTP/AVP 0\r\n".repeat(MAX_TRACKS));
        assert_eq!(one(&exactly).unwrap().len(), MAX_TRACKS);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let base = H264_AAC.to_vec();
        for _ in 0..2000 {
            let mut sdp = base.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % sdp.len();
                sdp[at] = (seed >> 32) as u8;
            }
            match parse_tracks(&sdp) {
                Ok(tracks) => assert!(tracks.len() <= 2),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}
