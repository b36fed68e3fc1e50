//! Opus over RTP (RFC 7587): each packet carries exactly one Opus packet, which
//! is one access unit. Opus packets are never fragmented, so one larger than
//! the MTU cannot be sent.

use bytes::Bytes;

use super::{
    single_frame_unit, AccessUnit, DepacketizeError, PacketRef, PacketizeError, Payload, ReadyQueue,
};
use crate::packet::RtpPacket;
use crate::track::Codec;

#[derive(Debug, Default)]
pub struct Depacketizer {
    ready: ReadyQueue,
}

impl Depacketizer {
    pub fn push(&mut self, pkt: RtpPacket) -> Result<(), DepacketizeError> {
        if pkt.payload_slice().is_empty() {
            return Err(DepacketizeError::EmptyPayload {
                at: PacketRef::of(&pkt),
            });
        }
        self.ready.push(single_frame_unit(pkt));
        Ok(())
    }

    pub fn pull(&mut self) -> Option<AccessUnit> {
        self.ready.pop()
    }
}

pub(super) fn packetize(units: &[Bytes], budget: usize) -> Result<Vec<Payload>, PacketizeError> {
    let [frame] = units else {
        return Err(PacketizeError::OneFramePerCall {
            codec: Codec::Opus,
            count: units.len(),
        });
    };
    if frame.is_empty() {
        return Err(PacketizeError::BadUnit {
            codec: Codec::Opus,
            index: 0,
            len: 0,
            what: "empty frame",
        });
    }
    if frame.len() > budget {
        return Err(PacketizeError::UnitTooLarge {
            codec: Codec::Opus,
            index: 0,
            len: frame.len(),
            limit: budget,
        });
    }
    Ok(vec![Payload {
        timestamp_offset: 0,
        marker: false,
        data: frame.clone(),
    }])
}
