//! Output header rewriting: the ingest writes each packet's output RTP header once,
//! so every output forwards the same bytes. Per track a random SSRC that stays for
//! the stream's life, a continuous sequence number, and the track's output payload
//! type; the timestamp is the continuous `pts` truncated to 32 bits.

use bytes::Bytes;
use streamgate_rtp::{OutPacket, PayloadType, SeqNo, Ssrc};

/// One track's output identity, kept across source restarts.
#[derive(Debug)]
pub(super) struct OutputHeaders {
    payload_type: PayloadType,
    ssrc: Ssrc,
    next_sequence: SeqNo,
}

impl OutputHeaders {
    /// A random SSRC and first sequence number (RFC 3550 §5.1).
    pub(super) fn new(payload_type: PayloadType) -> OutputHeaders {
        OutputHeaders {
            payload_type,
            ssrc: Ssrc::new(rand::random()),
            next_sequence: SeqNo::new(rand::random()),
        }
    }

    /// The next output packet of the track, carrying `payload`.
    pub(super) fn packet(&mut self, marker: bool, timestamp: u32, payload: Bytes) -> OutPacket {
        let sequence = self.next_sequence;
        self.next_sequence = sequence.next();
        OutPacket::new(
            self.payload_type,
            marker,
            sequence,
            timestamp,
            self.ssrc,
            payload,
        )
    }
}
