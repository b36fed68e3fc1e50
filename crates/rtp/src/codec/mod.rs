//! Depacketizers (RTP → access units) and packetizers (access units → RTP) for
//! every codec the gateway carries.
//!
//! Both directions are enum-dispatched over the codec. Depacketizers follow a
//! push/pull contract: [`Depacketizer::push`] one packet in order, then
//! [`Depacketizer::pull`] until `None`. Units are `Bytes` slices of the received
//! packets; the only copy is fragment reassembly (FU-A/FU, fragmented AAC), once
//! per unit (LATM: per `AudioMuxElement`). Every buffer is capped
//! ([`MAX_ACCESS_UNIT_BYTES`], [`MAX_UNITS_PER_ACCESS_UNIT`],
//! [`MAX_PACKETS_PER_ACCESS_UNIT`], [`MAX_UNPULLED_ACCESS_UNITS`],
//! [`latm::MAX_ELEMENT_BYTES`]).

pub mod aac;
mod bits;
pub mod decode_order;
pub mod g711;
pub mod h264;
pub mod h265;
mod keyframe;
pub mod latm;
pub mod nal;
pub mod opus;

pub use keyframe::starts_keyframe;

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use crate::frame::{OutPacket, RTP_HEADER_LEN};
use crate::ids::{PayloadType, SeqNo, Ssrc};
use crate::packet::RtpPacket;
use crate::track::{Codec, CodecParams, TrackInfo};

/// Largest access unit a depacketizer assembles; bigger ones are dropped with
/// an error. 8 MiB is far above any real frame (a 4K intra frame is ~1–2 MiB).
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 << 20;
/// Most NAL units one video access unit may hold.
pub const MAX_UNITS_PER_ACCESS_UNIT: usize = 1024;
/// Most RTP packets one access unit may span.
pub const MAX_PACKETS_PER_ACCESS_UNIT: usize = 8192;
/// Finished access units kept until pulled; beyond this the oldest is dropped
/// (only a caller that never pulls gets there).
pub const MAX_UNPULLED_ACCESS_UNITS: usize = 256;

/// One depacketized access unit.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub rtp_timestamp: u32,
    /// NAL units without start codes (video) or one audio frame.
    pub units: Vec<Bytes>,
    /// The source packets that carried it. When several AAC frames share one
    /// packet, the first frame carries the packet and the rest carry none.
    pub packets: Vec<RtpPacket>,
    /// A decoder can start here: H.264 IDR, H.265 IRAP, every audio frame.
    pub keyframe: bool,
    /// Undecodable when decoding started at the keyframe before it (an H.265
    /// RASL picture after a CRA).
    pub random_access_skipped: bool,
}

/// Identifies the packet an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef {
    pub sequence_number: SeqNo,
    pub timestamp: u32,
}

impl PacketRef {
    fn of(pkt: &RtpPacket) -> Self {
        PacketRef {
            sequence_number: pkt.sequence_number(),
            timestamp: pkt.timestamp(),
        }
    }
}

impl fmt::Display for PacketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RTP seq {} ts {}", self.sequence_number, self.timestamp)
    }
}

/// Why a packet (and with it the access unit in progress) was dropped.
///
/// After any error the depacketizer is ready for the next packet. Errors about a
/// packet's own content drop that packet and the rest of its access unit;
/// [`DepacketizeError::FragmentEndLost`] reports a previous access unit that
/// could not be finished (the packet that revealed it is still used).
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DepacketizeError {
    #[error("{codec:?} track cannot be depacketized: {reason}")]
    BadTrack { codec: Codec, reason: &'static str },
    #[error("{at}: empty payload")]
    EmptyPayload { at: PacketRef },
    #[error("{at}: payload ends inside the {what}")]
    Truncated { at: PacketRef, what: &'static str },
    #[error("{at}: {what} claims {claimed} bytes but {available} remain")]
    BadLength {
        at: PacketRef,
        what: &'static str,
        claimed: usize,
        available: usize,
    },
    #[error("{at}: {what}")]
    Malformed { at: PacketRef, what: &'static str },
    #[error("{at}: unsupported {codec:?} payload type {nal_type} ({what})")]
    UnsupportedType {
        at: PacketRef,
        codec: Codec,
        nal_type: u8,
        what: &'static str,
    },
    #[error("{at}: fragment continues a unit whose first fragment was lost; access unit dropped")]
    FragmentStartLost { at: PacketRef },
    #[error("{at}: fragmented unit ended before its last fragment; access unit dropped")]
    FragmentEndLost { at: PacketRef },
    #[error("{at}: access unit exceeds {limit} bytes; dropped")]
    AccessUnitTooLarge { at: PacketRef, limit: usize },
    #[error("{at}: access unit exceeds {limit} {what}; dropped")]
    TooMany {
        at: PacketRef,
        what: &'static str,
        limit: usize,
    },
}

/// Why an access unit cannot be packetized.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PacketizeError {
    #[error("MTU {mtu} leaves no room for a {codec:?} payload (needs at least {needed} bytes)")]
    MtuTooSmall {
        codec: Codec,
        mtu: usize,
        needed: usize,
    },
    #[error("{codec:?} unit {index} ({len} bytes): {what}")]
    BadUnit {
        codec: Codec,
        index: usize,
        len: usize,
        what: &'static str,
    },
    #[error("{codec:?} unit {index} of {len} bytes exceeds the {limit}-byte limit")]
    UnitTooLarge {
        codec: Codec,
        index: usize,
        len: usize,
        limit: usize,
    },
    #[error("{codec:?} packetizes one frame per call, got {count}")]
    OneFramePerCall { codec: Codec, count: usize },
    #[error("{codec:?} packs frames in groups of {multiple}, got {count}")]
    FrameCount {
        codec: Codec,
        count: usize,
        multiple: usize,
    },
}

/// Finished access units waiting for [`Depacketizer::pull`].
#[derive(Debug, Default)]
struct ReadyQueue(VecDeque<AccessUnit>);

impl ReadyQueue {
    fn push(&mut self, au: AccessUnit) {
        if self.0.len() >= MAX_UNPULLED_ACCESS_UNITS {
            tracing::warn!(
                limit = MAX_UNPULLED_ACCESS_UNITS,
                "depacketizer output not pulled; dropping the oldest access unit"
            );
            self.0.pop_front();
        }
        self.0.push_back(au);
    }

    fn pop(&mut self) -> Option<AccessUnit> {
        self.0.pop_front()
    }
}

/// Turns one track's RTP packets into access units.
#[derive(Debug)]
pub enum Depacketizer {
    H264(h264::Depacketizer),
    H265(h265::Depacketizer),
    Opus(opus::Depacketizer),
    Aac(aac::Depacketizer),
    Latm(latm::Depacketizer),
    G711(g711::Depacketizer),
}

impl Depacketizer {
    pub fn new(track: &TrackInfo) -> Result<Depacketizer, DepacketizeError> {
        Ok(match track.codec {
            Codec::H264 => Depacketizer::H264(h264::Depacketizer::default()),
            Codec::H265 => Depacketizer::H265(h265::Depacketizer::default()),
            Codec::Opus => Depacketizer::Opus(opus::Depacketizer::default()),
            Codec::Aac => Depacketizer::Aac(aac::Depacketizer::new(track)?),
            Codec::AacLatm => Depacketizer::Latm(latm::Depacketizer::new(track)?),
            Codec::Pcmu | Codec::Pcma => Depacketizer::G711(g711::Depacketizer::new(track)?),
        })
    }

    /// Takes the next packet in sequence order. On `Err` the depacketizer is still
    /// usable; call [`Self::pull`] either way.
    pub fn push(&mut self, pkt: RtpPacket) -> Result<(), DepacketizeError> {
        match self {
            Depacketizer::H264(d) => d.push(pkt),
            Depacketizer::H265(d) => d.push(pkt),
            Depacketizer::Opus(d) => d.push(pkt),
            Depacketizer::Aac(d) => d.push(pkt),
            Depacketizer::Latm(d) => d.push(pkt),
            Depacketizer::G711(d) => d.push(pkt),
        }
    }

    pub fn pull(&mut self) -> Option<AccessUnit> {
        match self {
            Depacketizer::H264(d) => d.pull(),
            Depacketizer::H265(d) => d.pull(),
            Depacketizer::Opus(d) => d.pull(),
            Depacketizer::Aac(d) => d.pull(),
            Depacketizer::Latm(d) => d.pull(),
            Depacketizer::G711(d) => d.pull(),
        }
    }

    /// Drops the access unit in progress (ingest calls this after packet loss).
    pub fn discard_partial(&mut self) {
        match self {
            Depacketizer::H264(d) => d.discard_partial(),
            Depacketizer::H265(d) => d.discard_partial(),
            Depacketizer::Aac(d) => d.discard_partial(),
            Depacketizer::Latm(d) => d.discard_partial(),
            Depacketizer::Opus(_) | Depacketizer::G711(_) => {}
        }
    }
}

/// One RTP payload a codec packetizer produced, before the header is added.
#[derive(Debug)]
struct Payload {
    /// Added to the access unit's timestamp (audio frames after the first).
    timestamp_offset: u32,
    marker: bool,
    data: Bytes,
}

/// Turns access units into RTP packets of at most `mtu` bytes (header included).
#[derive(Debug)]
pub struct Packetizer {
    codec: Codec,
    payload_type: PayloadType,
    ssrc: Ssrc,
    mtu: usize,
    next_sequence: SeqNo,
    channels: u16,
    /// RTP clock ticks per AAC frame (see [`aac::samples_per_frame`]).
    aac_frame_ticks: u32,
    /// AAC frames per LATM `AudioMuxElement` (see [`latm::frames_per_element`]).
    latm_frames_per_element: usize,
}

impl Packetizer {
    /// Starts at a random sequence number (RFC 3550 §5.1).
    pub fn new(track: &TrackInfo, ssrc: Ssrc, mtu: usize) -> Packetizer {
        Packetizer {
            codec: track.codec,
            payload_type: track.payload_type,
            ssrc,
            mtu,
            next_sequence: SeqNo::new(rand::random()),
            channels: track.channels.max(1),
            aac_frame_ticks: aac::samples_per_frame(track),
            latm_frames_per_element: latm::frames_per_element(track),
        }
    }

    /// Packetizes one access unit: `units` are NAL units (video, marker on the
    /// last packet) or audio frames.
    pub fn packetize(
        &mut self,
        rtp_timestamp: u32,
        units: &[Bytes],
    ) -> Result<Vec<OutPacket>, PacketizeError> {
        let budget = self.mtu.saturating_sub(RTP_HEADER_LEN);
        let payloads = match self.codec {
            Codec::H264 => nal::packetize::<h264::Syntax>(units, budget)?,
            Codec::H265 => nal::packetize::<h265::Syntax>(units, budget)?,
            Codec::Opus => opus::packetize(units, budget)?,
            Codec::Aac => aac::packetize(units, budget, self.aac_frame_ticks)?,
            Codec::AacLatm => latm::packetize(
                units,
                budget,
                self.aac_frame_ticks,
                self.latm_frames_per_element,
            )?,
            Codec::Pcmu | Codec::Pcma => g711::packetize(self.codec, units, budget, self.channels)?,
        };
        Ok(payloads
            .into_iter()
            .map(|p| {
                let sequence = self.next_sequence;
                self.next_sequence = sequence.next();
                OutPacket::new(
                    self.payload_type,
                    p.marker,
                    sequence,
                    rtp_timestamp.wrapping_add(p.timestamp_offset),
                    self.ssrc,
                    p.data,
                )
            })
            .collect())
    }
}

/// Looks for in-band parameter sets (SPS/PPS/VPS) in an access unit and merges
/// them into `params` (also width/height parsed from the SPS). Returns true when
/// something changed.
pub fn update_params(codec: Codec, units: &[Bytes], params: &mut CodecParams) -> bool {
    match codec {
        Codec::H264 => nal::update_params::<h264::Syntax>(units, params),
        Codec::H265 => nal::update_params::<h265::Syntax>(units, params),
        Codec::Opus | Codec::Aac | Codec::AacLatm | Codec::Pcmu | Codec::Pcma => false,
    }
}

/// The access unit of a codec that puts exactly one frame in each packet.
fn single_frame_unit(pkt: RtpPacket) -> AccessUnit {
    AccessUnit {
        rtp_timestamp: pkt.timestamp(),
        units: vec![pkt.payload()],
        packets: vec![pkt],
        keyframe: true,
        random_access_skipped: false,
    }
}
