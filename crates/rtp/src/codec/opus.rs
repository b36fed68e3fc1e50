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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Depacketizer as AnyDepacketizer, Packetizer};
    use crate::ids::Ssrc;
    use crate::testing::{bytes, depacketize_all, round_trip, rtp, track};

    #[test]
    fn each_packet_is_one_keyframe_access_unit_without_copying() {
        let mut d = AnyDepacketizer::new(&track(Codec::Opus, 48_000, 2)).unwrap();
        let pkt = rtp(0, 960, false, &[0xfc, 1, 2]);
        let ptr = pkt.payload_slice().as_ptr();
        let (aus, errors) = depacketize_all(&mut d, [rtp(1, 0, false, &[]), pkt]);
        assert!(matches!(
            errors[..],
            [DepacketizeError::EmptyPayload { .. }]
        ));
        assert_eq!(aus.len(), 1);
        assert_eq!((aus[0].rtp_timestamp, aus[0].keyframe), (960, true));
        assert_eq!(aus[0].units[0].as_ptr(), ptr);
    }

    #[test]
    fn round_trip_and_limits() {
        let track = track(Codec::Opus, 48_000, 2);
        let input: Vec<(u32, Vec<Bytes>)> = (0..5u8)
            .map(|i| (u32::from(i) * 960, vec![bytes(&[0xfc, i])]))
            .collect();
        assert_eq!(round_trip(&track, 1200, &input), input);
        let mut packetizer = Packetizer::new(&track, Ssrc::new(1), 100);
        assert!(packetizer
            .packetize(0, &[Bytes::from(vec![0; 89])])
            .is_err());
        assert!(packetizer
            .packetize(0, &[bytes(&[1]), bytes(&[2])])
            .is_err());
        assert!(packetizer.packetize(0, &[Bytes::new()]).is_err());
    }
}
