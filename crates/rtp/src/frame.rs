//! The unit the Hub fans out: one access unit of one track, carrying both the
//! RTP packets ready to send and the depacketized payload.
//!
//! A `Frame` is built once at ingest and shared as `Arc<Frame>` by every
//! subscriber: outputs that forward RTP (RTSP) write `packets`, outputs that mux
//! (HLS) read `units`. Neither field is ever copied per subscriber.

use std::time::SystemTime;

use bytes::Bytes;

use crate::ids::{PayloadType, SeqNo, Ssrc};
use crate::track::{MediaKind, TrackId};

/// Size of the fixed RTP header every output packet is given.
pub const RTP_HEADER_LEN: usize = 12;

/// An RTP packet as the outputs send it: a fresh 12-byte header (the stream's
/// output SSRC, continuous sequence number and timestamp, output payload type)
/// plus the source's payload, which stays a slice of the received buffer.
///
/// Splitting header and payload lets the header be rewritten once at ingest while
/// the payload is written with vectored I/O without being copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutPacket {
    pub header: [u8; RTP_HEADER_LEN],
    pub payload: Bytes,
}

impl OutPacket {
    /// Builds a version-2 header with no padding, extension or CSRCs.
    pub fn new(
        payload_type: PayloadType,
        marker: bool,
        sequence: SeqNo,
        timestamp: u32,
        ssrc: Ssrc,
        payload: Bytes,
    ) -> Self {
        let mut header = [0u8; RTP_HEADER_LEN];
        header[0] = 0x80;
        header[1] = payload_type.get() | if marker { 0x80 } else { 0 };
        header[2..4].copy_from_slice(&sequence.get().to_be_bytes());
        header[4..8].copy_from_slice(&timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&ssrc.get().to_be_bytes());
        OutPacket { header, payload }
    }

    pub fn sequence(&self) -> SeqNo {
        SeqNo::new(u16::from_be_bytes([self.header[2], self.header[3]]))
    }

    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([
            self.header[4],
            self.header[5],
            self.header[6],
            self.header[7],
        ])
    }

    pub fn ssrc(&self) -> Ssrc {
        Ssrc::new(u32::from_be_bytes([
            self.header[8],
            self.header[9],
            self.header[10],
            self.header[11],
        ]))
    }

    pub fn marker(&self) -> bool {
        self.header[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> PayloadType {
        PayloadType::from_header_byte(self.header[1])
    }

    /// Length on the wire (header + payload).
    pub fn len(&self) -> usize {
        RTP_HEADER_LEN + self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One access unit of one track.
#[derive(Debug, Clone)]
pub struct Frame {
    pub track: TrackId,
    pub kind: MediaKind,
    /// Presentation time in the track's clock, continuous for the stream's life:
    /// never goes backwards across source reconnects or RTP timestamp resets.
    pub pts: u64,
    /// Decode time in the track's clock (equal to `pts` when the source gives no
    /// separate decode order, i.e. no B-frames).
    pub dts: u64,
    /// Wall-clock time of `pts`: the stream's origin (wall time of output time 0,
    /// fixed for the Hub's life) plus `pts / clock_rate`. A pure function of the
    /// continuous timeline, so the NTP↔RTP mapping outputs derive from it is the
    /// same line for every track and never jumps (source reports only align the
    /// tracks' timelines, see [`crate::ingest`]).
    pub wallclock: SystemTime,
    /// A decoder can start here (video IDR/IRAP; every audio frame).
    pub keyframe: bool,
    /// An H.265 RASL picture: it refers to pictures before the keyframe it
    /// follows, so a subscriber whose decoding started at that keyframe skips it
    /// (a reader would otherwise get an undecodable picture presented before its
    /// first one).
    pub random_access_skipped: bool,
    /// The source's timeline really broke before this frame (e.g. its codec
    /// parameters changed); outputs such as HLS mark it.
    pub discontinuity: bool,
    /// The payload: NAL units without start codes (video) or one audio frame.
    /// Each is a slice of the received packet, or one reassembled buffer (FU-A).
    pub units: Vec<Bytes>,
    /// The RTP packets that carry this access unit, ready to send. May be empty
    /// for an audio frame that shared its packet with the previous frame
    /// (several AAC frames in one RTP packet).
    pub packets: Vec<OutPacket>,
}

impl Frame {
    /// Payload bytes (sum of `units`), for bitrate and bound accounting.
    pub fn payload_len(&self) -> usize {
        self.units.iter().map(Bytes::len).sum()
    }
}
