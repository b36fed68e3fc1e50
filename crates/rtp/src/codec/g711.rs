//! G.711 µ-law (PCMU) and A-law (PCMA) over RTP (RFC 3551 §4.5.14): one byte
//! per sample per channel, 8 kHz. Every packet is one access unit; a long frame
//! may be split at any sample boundary, the timestamp advancing one tick per
//! sample.

use bytes::Bytes;

use super::{
    single_frame_unit, AccessUnit, DepacketizeError, PacketRef, PacketizeError, Payload, ReadyQueue,
};
use crate::packet::RtpPacket;
use crate::track::{Codec, TrackInfo};

#[derive(Debug)]
pub struct Depacketizer {
    channels: usize,
    ready: ReadyQueue,
}

impl Depacketizer {
    pub fn new(track: &TrackInfo) -> Result<Self, DepacketizeError> {
        if track.channels == 0 {
            return Err(DepacketizeError::BadTrack {
                codec: track.codec,
                reason: "zero channels",
            });
        }
        Ok(Depacketizer {
            channels: usize::from(track.channels),
            ready: ReadyQueue::default(),
        })
    }

    pub fn push(&mut self, pkt: RtpPacket) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        let len = pkt.payload_slice().len();
        if len == 0 {
            return Err(DepacketizeError::EmptyPayload { at });
        }
        if len % self.channels != 0 {
            return Err(DepacketizeError::Malformed {
                at,
                what: "payload is not a whole number of samples for every channel",
            });
        }
        self.ready.push(single_frame_unit(pkt));
        Ok(())
    }

    pub fn pull(&mut self) -> Option<AccessUnit> {
        self.ready.pop()
    }
}

/// Splits `units` (consecutive runs of samples) into packets of whole samples,
/// each a slice of its unit.
pub(super) fn packetize(
    codec: Codec,
    units: &[Bytes],
    budget: usize,
    channels: u16,
) -> Result<Vec<Payload>, PacketizeError> {
    let channels = usize::from(channels.max(1));
    let chunk_len = budget - budget % channels;
    if chunk_len == 0 {
        return Err(PacketizeError::MtuTooSmall {
            codec,
            mtu: budget + super::RTP_HEADER_LEN,
            needed: channels + super::RTP_HEADER_LEN,
        });
    }
    let mut payloads = Vec::new();
    let mut samples = 0u32;
    for (index, unit) in units.iter().enumerate() {
        if unit.is_empty() || unit.len() % channels != 0 {
            return Err(PacketizeError::BadUnit {
                codec,
                index,
                len: unit.len(),
                what: "not a whole, non-zero number of samples for every channel",
            });
        }
        for start in (0..unit.len()).step_by(chunk_len) {
            let data = unit.slice(start..unit.len().min(start + chunk_len));
            let len = data.len();
            payloads.push(Payload {
                timestamp_offset: samples,
                marker: false,
                data,
            });
            // RTP timestamps wrap by design.
            samples = samples.wrapping_add((len / channels) as u32);
        }
    }
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Depacketizer as AnyDepacketizer, Packetizer};
    use crate::ids::Ssrc;
    use crate::testing::{depacketize_all, round_trip, rtp, track};

    #[test]
    fn long_frames_split_at_sample_boundaries_with_advancing_timestamps() {
        let track = track(Codec::Pcma, 8_000, 2);
        let frame = Bytes::from((0..400u32).map(|i| i as u8).collect::<Vec<_>>());
        // MTU 12 + 101 bytes: 100-byte chunks (50 stereo samples each).
        let output = round_trip(&track, 113, &[(800, vec![frame.clone()])]);
        let expected: Vec<(u32, Vec<Bytes>)> = (0..4)
            .map(|i| {
                (
                    800 + 50 * i as u32,
                    vec![frame.slice(i * 100..(i + 1) * 100)],
                )
            })
            .collect();
        assert_eq!(output, expected);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut d = AnyDepacketizer::new(&track(Codec::Pcmu, 8_000, 2)).unwrap();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &[]),
                rtp(1, 0, false, &[1, 2, 3]),
                rtp(2, 0, false, &[1, 2]),
            ],
        );
        assert!(matches!(
            errors[..],
            [
                DepacketizeError::EmptyPayload { .. },
                DepacketizeError::Malformed { .. }
            ]
        ));
        assert_eq!(aus.len(), 1);
        assert!(AnyDepacketizer::new(&track(Codec::Pcmu, 8_000, 0)).is_err());
        let mut packetizer = Packetizer::new(&track(Codec::Pcmu, 8_000, 2), Ssrc::new(1), 13);
        assert!(
            packetizer
                .packetize(0, &[Bytes::from_static(&[1, 2])])
                .is_err(),
            "MTU below one sample"
        );
        let mut packetizer = Packetizer::new(&track(Codec::Pcmu, 8_000, 2), Ssrc::new(1), 100);
        assert!(packetizer
            .packetize(0, &[Bytes::from_static(&[1, 2, 3])])
            .is_err());
    }
}
