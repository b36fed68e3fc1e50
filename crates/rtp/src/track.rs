//! What a stream carries: its tracks, their codecs and the codec parameters a
//! decoder needs (SPS/PPS/VPS, AAC `AudioSpecificConfig`, …).
//!
//! Sources fill these from SDP and update them when parameter sets arrive in band;
//! outputs read them to write SDP (RTSP DESCRIBE) or init segments (HLS).

use std::fmt;

use bytes::Bytes;

use crate::ids::PayloadType;

/// Names a track within its stream, stable for the stream's life. Not a
/// position: sources number their tracks as they like (an SDP's order, a
/// WebRTC `mid`), so tracks are looked up by id, never indexed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(usize);

impl TrackId {
    pub const fn new(id: usize) -> TrackId {
        TrackId(id)
    }

    pub const fn get(self) -> usize {
        self.0
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Video or audio: outputs order and sync tracks by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Video,
    Audio,
}

/// Codecs the pipeline can depacketize and packetize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    H264,
    H265,
    Opus,
    /// MPEG-4 AAC carried as RFC 3640 `mpeg4-generic` (AAC-hbr mode).
    Aac,
    /// MPEG-4 AAC carried as RFC 6416 `MP4A-LATM` with the configuration out of
    /// band (`cpresent=0`), as most IP cameras send it. Frames carry raw AAC access
    /// units like [`Codec::Aac`]; the packets stay LATM, so RTSP outputs describe
    /// them with the source's `StreamMuxConfig`.
    AacLatm,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::H265 => MediaKind::Video,
            Codec::Opus | Codec::Aac | Codec::AacLatm | Codec::Pcmu | Codec::Pcma => {
                MediaKind::Audio
            }
        }
    }

    /// The RTP clock rate this codec always uses, if fixed by its RTP payload format.
    pub fn fixed_clock_rate(self) -> Option<u32> {
        match self {
            Codec::H264 | Codec::H265 => Some(90_000),
            Codec::Opus => Some(48_000),
            Codec::Pcmu | Codec::Pcma => Some(8_000),
            Codec::Aac | Codec::AacLatm => None,
        }
    }
}

/// Codec parameters; the `Bytes` fields are raw NAL units (no start code) or
/// the AAC `AudioSpecificConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodecParams {
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
    /// AAC AudioSpecificConfig (the SDP's `config=` hex for `mpeg4-generic`; taken
    /// out of the `StreamMuxConfig` for `MP4A-LATM`).
    pub audio_config: Option<Bytes>,
    /// LATM `StreamMuxConfig` (the `MP4A-LATM` SDP's `config=` hex), kept as sent so
    /// that forwarded LATM packets are described exactly as the source framed them.
    pub stream_mux_config: Option<Bytes>,
    /// Coded picture size, parsed from the SPS when known.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// One track of a stream as the outputs need to describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub id: TrackId,
    pub codec: Codec,
    pub clock_rate: u32,
    /// Audio channel count (1 when unknown or for video).
    pub channels: u16,
    /// Payload type of the packets this stream's frames carry (`Frame::packets`).
    pub payload_type: PayloadType,
    pub params: CodecParams,
}

impl TrackInfo {
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }

    /// True when an output can describe this track so that a client can decode it
    /// (H.264 needs SPS+PPS, H.265 VPS+SPS+PPS, AAC its config).
    pub fn is_ready(&self) -> bool {
        let p = &self.params;
        match self.codec {
            Codec::H264 => p.sps.is_some() && p.pps.is_some(),
            Codec::H265 => p.vps.is_some() && p.sps.is_some() && p.pps.is_some(),
            Codec::Aac => p.audio_config.is_some(),
            Codec::AacLatm => p.audio_config.is_some() && p.stream_mux_config.is_some(),
            Codec::Opus | Codec::Pcmu | Codec::Pcma => true,
        }
    }
}
