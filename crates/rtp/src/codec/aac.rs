//! MPEG-4 AAC over RTP (RFC 3640 `mpeg4-generic`, AAC-hbr mode: 13-bit
//! AU-size + 3-bit AU-index/AU-index-delta headers, no interleaving).
//!
//! A packet holds an AU-header section and one or more whole AUs (frame `i`
//! gets the packet's timestamp + `i` frames), or one fragment of an AU too big
//! for a packet (reassembled with one copy; the marker bit ends it).

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::BitReader;
use super::{
    AccessUnit, DepacketizeError, PacketRef, PacketizeError, Payload, ReadyQueue,
    MAX_PACKETS_PER_ACCESS_UNIT,
};
use crate::packet::RtpPacket;
use crate::track::{Codec, TrackInfo};

/// Largest AU a 13-bit AU-size can describe.
const MAX_AU_SIZE: usize = (1 << 13) - 1;
/// Most AUs accepted in (and put into) one packet; real senders use 1–8.
const MAX_AUS_PER_PACKET: usize = 64;
/// AU-headers-length field plus one 16-bit AU header.
const SINGLE_HEADER_LEN: usize = 4;
/// Frame length when the AudioSpecificConfig does not say otherwise.
const DEFAULT_FRAME_LEN: u32 = 1024;

/// An AU split over several packets, kept as slices until complete.
#[derive(Debug)]
struct Fragment {
    timestamp: u32,
    size: usize,
    received: usize,
    pieces: Vec<Bytes>,
    packets: Vec<RtpPacket>,
}

#[derive(Debug)]
pub struct Depacketizer {
    frame_ticks: u32,
    fragment: Option<Fragment>,
    ready: ReadyQueue,
}

impl Depacketizer {
    pub fn new(track: &TrackInfo) -> Result<Self, DepacketizeError> {
        if track.clock_rate == 0 {
            return Err(DepacketizeError::BadTrack {
                codec: Codec::Aac,
                reason: "zero clock rate",
            });
        }
        Ok(Depacketizer {
            frame_ticks: samples_per_frame(track),
            fragment: None,
            ready: ReadyQueue::default(),
        })
    }

    pub fn push(&mut self, pkt: RtpPacket) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        // Whatever happens to this packet, an unfinished fragment of another AU is lost.
        let fragment = self.fragment.take();
        let (sizes, data) = read_au_headers(at, pkt.payload())?;
        match fragment {
            Some(f) if f.timestamp == at.timestamp => self.continue_fragment(f, &sizes, data, pkt),
            Some(_) => self
                .read_packet(&sizes, data, pkt)
                .and(Err(DepacketizeError::FragmentEndLost { at })),
            None => self.read_packet(&sizes, data, pkt),
        }
    }

    pub fn pull(&mut self) -> Option<AccessUnit> {
        self.ready.pop()
    }

    pub fn discard_partial(&mut self) {
        self.fragment = None;
    }

    /// A packet of whole AUs, or the first fragment of one.
    fn read_packet(
        &mut self,
        sizes: &[usize],
        data: Bytes,
        pkt: RtpPacket,
    ) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        if let [size] = *sizes {
            if size > data.len() && !pkt.marker() {
                self.fragment = Some(Fragment {
                    timestamp: at.timestamp,
                    size,
                    received: data.len(),
                    pieces: vec![data],
                    packets: vec![pkt],
                });
                return Ok(());
            }
        }
        // At most 64 sizes of at most 8191 bytes: no overflow.
        let total: usize = sizes.iter().sum();
        if total != data.len() {
            return Err(DepacketizeError::BadLength {
                at,
                what: "AU sizes",
                claimed: total,
                available: data.len(),
            });
        }
        let mut packet = Some(pkt);
        let mut start = 0;
        for (i, &size) in sizes.iter().enumerate() {
            self.ready.push(AccessUnit {
                rtp_timestamp: at
                    .timestamp
                    .wrapping_add(self.frame_ticks.wrapping_mul(i as u32)),
                units: vec![data.slice(start..start + size)],
                packets: packet.take().into_iter().collect(),
                keyframe: true,
                random_access_skipped: false,
            });
            start += size;
        }
        Ok(())
    }

    fn continue_fragment(
        &mut self,
        mut f: Fragment,
        sizes: &[usize],
        data: Bytes,
        pkt: RtpPacket,
    ) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        if sizes != [f.size] {
            return Err(DepacketizeError::Malformed {
                at,
                what: "AU header of a fragment differs from the first fragment's",
            });
        }
        f.received += data.len();
        if f.received > f.size {
            return Err(DepacketizeError::BadLength {
                at,
                what: "fragmented AU size",
                claimed: f.size,
                available: f.received,
            });
        }
        if f.packets.len() >= MAX_PACKETS_PER_ACCESS_UNIT {
            return Err(DepacketizeError::TooMany {
                at,
                what: "packets",
                limit: MAX_PACKETS_PER_ACCESS_UNIT,
            });
        }
        let marker = pkt.marker();
        f.pieces.push(data);
        f.packets.push(pkt);
        if f.received < f.size {
            if marker {
                return Err(DepacketizeError::FragmentEndLost { at });
            }
            self.fragment = Some(f);
            return Ok(());
        }
        let mut unit = BytesMut::with_capacity(f.size);
        for piece in &f.pieces {
            unit.put_slice(piece);
        }
        self.ready.push(AccessUnit {
            rtp_timestamp: f.timestamp,
            units: vec![unit.freeze()],
            packets: f.packets,
            keyframe: true,
            random_access_skipped: false,
        });
        Ok(())
    }
}

/// Parses the AU-header section: the AU sizes and the data that follows.
fn read_au_headers(at: PacketRef, payload: Bytes) -> Result<(Vec<usize>, Bytes), DepacketizeError> {
    if payload.is_empty() {
        return Err(DepacketizeError::EmptyPayload { at });
    }
    let Some(&[high, low]) = payload.get(..2) else {
        return Err(DepacketizeError::Truncated {
            at,
            what: "AU-headers-length",
        });
    };
    let header_bits = usize::from(u16::from_be_bytes([high, low]));
    if header_bits == 0 || header_bits % 16 != 0 {
        return Err(DepacketizeError::Malformed {
            at,
            what: "AU-headers-length is not a whole, non-zero number of 16-bit AAC-hbr AU headers",
        });
    }
    let count = header_bits / 16;
    let available = payload.len() - 2;
    if count * 2 > available {
        return Err(DepacketizeError::BadLength {
            at,
            what: "AU-headers-length",
            claimed: count * 2,
            available,
        });
    }
    if count > MAX_AUS_PER_PACKET {
        return Err(DepacketizeError::TooMany {
            at,
            what: "AUs in one packet",
            limit: MAX_AUS_PER_PACKET,
        });
    }
    let headers = &payload[2..2 + count * 2];
    let mut sizes = Vec::with_capacity(count);
    for header in headers.chunks_exact(2) {
        let header = u16::from_be_bytes([header[0], header[1]]);
        if header & 0x7 != 0 {
            return Err(DepacketizeError::Malformed {
                at,
                what: "AU-index/AU-index-delta ≠ 0: interleaving is not supported",
            });
        }
        let size = usize::from(header >> 3);
        if size == 0 {
            return Err(DepacketizeError::Malformed {
                at,
                what: "zero-size AU",
            });
        }
        sizes.push(size);
    }
    Ok((sizes, payload.slice(2 + count * 2..)))
}

/// RTP clock ticks per AAC frame: the frame length (1024, or 960 when the
/// config's frameLengthFlag says so) scaled from the core sampling rate to the
/// RTP clock (HE-AAC: the clock is usually twice the core rate).
pub(super) fn samples_per_frame(track: &TrackInfo) -> u32 {
    let parsed = track
        .params
        .audio_config
        .as_deref()
        .and_then(frame_len_and_core_rate)
        .and_then(|(frame_len, core_rate)| {
            let ticks = u64::from(frame_len) * u64::from(track.clock_rate);
            (ticks % u64::from(core_rate) == 0)
                .then(|| u32::try_from(ticks / u64::from(core_rate)).ok())?
        });
    parsed.unwrap_or(DEFAULT_FRAME_LEN)
}

/// From an AudioSpecificConfig (ISO 14496-3 §1.6.2.1): frame length and the
/// core sampling rate.
fn frame_len_and_core_rate(config: &[u8]) -> Option<(u32, u32)> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let mut r = BitReader::new(config);
    let read_object_type = |r: &mut BitReader<'_>| match r.read_bits(5)? {
        31 => Some(32 + r.read_bits(6)?),
        t => Some(t),
    };
    let read_rate = |r: &mut BitReader<'_>| match r.read_bits(4)? {
        15 => r.read_bits(24),
        i => RATES.get(i as usize).copied(),
    };
    let mut object_type = read_object_type(&mut r)?;
    let core_rate = read_rate(&mut r)?;
    r.skip_bits(4)?; // channelConfiguration
    const SBR: u32 = 5;
    const PS: u32 = 29;
    if object_type == SBR || object_type == PS {
        read_rate(&mut r)?; // extensionSamplingFrequency
        object_type = read_object_type(&mut r)?;
    }
    // GASpecificConfig's frameLengthFlag, for the object types that have one.
    let short_frames = matches!(object_type, 1..=4 | 6 | 7) && r.read_bit()?;
    (core_rate > 0).then_some((if short_frames { 960 } else { 1024 }, core_rate))
}

/// Packs whole frames into packets (as many as fit, up to 64) and fragments
/// frames that fit no packet.
pub(super) fn packetize(
    units: &[Bytes],
    budget: usize,
    frame_ticks: u32,
) -> Result<Vec<Payload>, PacketizeError> {
    if budget <= SINGLE_HEADER_LEN {
        return Err(PacketizeError::MtuTooSmall {
            codec: Codec::Aac,
            mtu: budget + super::RTP_HEADER_LEN,
            needed: SINGLE_HEADER_LEN + 1 + super::RTP_HEADER_LEN,
        });
    }
    for (index, unit) in units.iter().enumerate() {
        if unit.is_empty() || unit.len() > MAX_AU_SIZE {
            return Err(PacketizeError::UnitTooLarge {
                codec: Codec::Aac,
                index,
                len: unit.len(),
                limit: MAX_AU_SIZE,
            });
        }
    }
    let mut payloads = Vec::new();
    let mut first = 0;
    while first < units.len() {
        let timestamp_offset = frame_ticks.wrapping_mul(first as u32);
        let mut len = 2;
        let count = units[first..]
            .iter()
            .take(MAX_AUS_PER_PACKET)
            .take_while(|unit| {
                len += 2 + unit.len();
                len <= budget
            })
            .count();
        if count == 0 {
            fragment(&units[first], budget, timestamp_offset, &mut payloads);
            first += 1;
            continue;
        }
        let group = &units[first..first + count];
        let mut buf = BytesMut::with_capacity(2 + group.iter().map(|u| 2 + u.len()).sum::<usize>());
        buf.put_u16(16 * count as u16);
        for unit in group {
            buf.put_u16((unit.len() as u16) << 3);
        }
        for unit in group {
            buf.put_slice(unit);
        }
        payloads.push(Payload {
            timestamp_offset,
            marker: true,
            data: buf.freeze(),
        });
        first += count;
    }
    Ok(payloads)
}

/// Splits one frame over several packets, each with the frame's full AU-size;
/// only the last has the marker bit.
fn fragment(unit: &Bytes, budget: usize, timestamp_offset: u32, out: &mut Vec<Payload>) {
    let chunk_len = budget - SINGLE_HEADER_LEN;
    let mut chunks = unit.chunks(chunk_len).peekable();
    while let Some(chunk) = chunks.next() {
        let mut buf = BytesMut::with_capacity(SINGLE_HEADER_LEN + chunk.len());
        buf.put_u16(16);
        buf.put_u16((unit.len() as u16) << 3);
        buf.put_slice(chunk);
        out.push(Payload {
            timestamp_offset,
            marker: chunks.peek().is_none(),
            data: buf.freeze(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Depacketizer as AnyDepacketizer, Packetizer};
    use crate::ids::Ssrc;
    use crate::testing::{bytes, depacketize_all, round_trip, rtp};

    /// The AAC fixture's config: AAC-LC, 48 kHz, stereo.
    const LC_48K_STEREO: &[u8] = &[0x11, 0x90];
    /// Explicit HE-AAC (SBR): 24 kHz core, 48 kHz output, stereo.
    const HE_24K_CORE: &[u8] = &[0x2b, 0x11, 0x88];

    fn aac_track(config: Option<&[u8]>, clock_rate: u32) -> TrackInfo {
        let mut track = crate::testing::track(Codec::Aac, clock_rate, 2);
        track.params.audio_config = config.map(bytes);
        track
    }

    fn depacketizer() -> AnyDepacketizer {
        AnyDepacketizer::new(&aac_track(Some(LC_48K_STEREO), 48_000)).unwrap()
    }

    /// AU-header section for `sizes` (index 0) followed by `data`.
    fn payload(sizes: &[u16], data: &[u8]) -> Vec<u8> {
        let mut p = (16 * sizes.len() as u16).to_be_bytes().to_vec();
        for size in sizes {
            p.extend_from_slice(&(size << 3).to_be_bytes());
        }
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn frame_duration_comes_from_the_config_and_clock() {
        assert_eq!(
            samples_per_frame(&aac_track(Some(LC_48K_STEREO), 48_000)),
            1024
        );
        assert_eq!(
            samples_per_frame(&aac_track(Some(HE_24K_CORE), 48_000)),
            2048
        );
        assert_eq!(
            samples_per_frame(&aac_track(Some(&[0x11, 0x94]), 48_000)),
            960
        );
        assert_eq!(samples_per_frame(&aac_track(None, 48_000)), 1024);
        assert_eq!(samples_per_frame(&aac_track(Some(&[0x11]), 48_000)), 1024);
    }

    #[test]
    fn several_aus_per_packet_get_consecutive_timestamps_and_share_the_packet() {
        let mut d = depacketizer();
        let pkt = rtp(0, 1000, true, &payload(&[2, 1, 3], &[1, 1, 2, 3, 3, 3]));
        let (aus, errors) = depacketize_all(&mut d, [pkt]);
        assert!(errors.is_empty());
        let got: Vec<(u32, Bytes, usize)> = aus
            .iter()
            .map(|au| (au.rtp_timestamp, au.units[0].clone(), au.packets.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1000, bytes(&[1, 1]), 1),
                (2024, bytes(&[2]), 0),
                (3048, bytes(&[3, 3, 3]), 0)
            ]
        );
        assert!(aus.iter().all(|au| au.keyframe && au.units.len() == 1));
    }

    #[test]
    fn lying_lengths_and_bad_headers_are_errors() {
        let mut d = depacketizer();
        let mut lying_headers_length = payload(&[2], &[1, 1]);
        lying_headers_length[1] = 0xf0; // 15 headers claimed, 1 present
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, true, &[]),
                rtp(1, 0, true, &[0x00]),
                rtp(2, 0, true, &lying_headers_length),
                rtp(3, 0, true, &[0x00, 0x0d, 0, 0x10, 1]), // 13 bits: not whole headers
                rtp(4, 0, true, &[0x00, 0x00, 1]),
                rtp(5, 0, true, &payload(&[2, 2], &[1, 1, 2])), // sizes exceed the data
                rtp(6, 0, true, &payload(&[1], &[1, 2])),       // data beyond the sizes
                rtp(7, 0, true, &payload(&[4], &[1, 2])),       // marker, yet AU incomplete
                rtp(8, 0, true, &payload(&[0], &[])),
                rtp(9, 0, true, &[0x00, 0x10, 0x00, 0x09, 1]), // AU-index 1
                rtp(10, 0, true, &payload(&[1], &[7])),
            ],
        );
        assert!(matches!(errors[0], DepacketizeError::EmptyPayload { .. }));
        assert!(matches!(errors[1], DepacketizeError::Truncated { .. }));
        assert!(matches!(
            errors[2],
            DepacketizeError::BadLength {
                claimed: 30,
                available: 4,
                ..
            }
        ));
        assert!(matches!(errors[3], DepacketizeError::Malformed { .. }));
        assert!(matches!(errors[4], DepacketizeError::Malformed { .. }));
        assert!(matches!(
            errors[5],
            DepacketizeError::BadLength {
                claimed: 4,
                available: 3,
                ..
            }
        ));
        assert!(matches!(
            errors[6],
            DepacketizeError::BadLength {
                claimed: 1,
                available: 2,
                ..
            }
        ));
        assert!(matches!(
            errors[7],
            DepacketizeError::BadLength {
                claimed: 4,
                available: 2,
                ..
            }
        ));
        assert!(matches!(
            errors[8],
            DepacketizeError::Malformed {
                what: "zero-size AU",
                ..
            }
        ));
        assert!(matches!(errors[9], DepacketizeError::Malformed { .. }));
        assert_eq!(errors.len(), 10);
        assert_eq!(aus.len(), 1);
    }

    #[test]
    fn fragmented_au_is_reassembled_and_losses_are_reported() {
        let mut d = depacketizer();
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &payload(&[5], &[1, 2])),
                rtp(1, 0, false, &payload(&[5], &[3])),
                rtp(2, 0, true, &payload(&[5], &[4, 5])),
                // End lost: the next timestamp reveals it, and its packet is kept.
                rtp(3, 1024, false, &payload(&[5], &[1, 2])),
                rtp(4, 2048, true, &payload(&[1], &[9])),
                // Fragment that overruns its AU size.
                rtp(5, 3072, false, &payload(&[3], &[1, 2])),
                rtp(6, 3072, true, &payload(&[3], &[3, 4])),
                // Fragment whose AU header changes.
                rtp(7, 4096, false, &payload(&[3], &[1, 2])),
                rtp(8, 4096, true, &payload(&[4], &[3])),
            ],
        );
        assert!(matches!(
            errors[0],
            DepacketizeError::FragmentEndLost { .. }
        ));
        assert!(matches!(errors[1], DepacketizeError::BadLength { .. }));
        assert!(matches!(errors[2], DepacketizeError::Malformed { .. }));
        assert_eq!(errors.len(), 3);
        assert_eq!(aus.len(), 2);
        assert_eq!(aus[0].units, vec![bytes(&[1, 2, 3, 4, 5])]);
        assert_eq!(aus[0].packets.len(), 3);
        assert_eq!(aus[1].rtp_timestamp, 2048);

        d.push(rtp(9, 5120, false, &payload(&[3], &[1]))).unwrap();
        d.discard_partial();
        assert!(d
            .push(rtp(10, 5120, true, &payload(&[3], &[2, 3])))
            .is_err());
        assert!(d.pull().is_none());
    }

    #[test]
    fn round_trip_groups_frames_and_fragments_big_ones() {
        let track = aac_track(Some(LC_48K_STEREO), 48_000);
        let frames: Vec<Bytes> = (0..12u8)
            .map(|i| Bytes::from(vec![i; 100 + usize::from(i) * 40]))
            .collect();
        // Output is one access unit per frame, 1024 ticks apart.
        let expected: Vec<(u32, Vec<Bytes>)> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (5000 + 1024 * i as u32, vec![f.clone()]))
            .collect();
        for mtu in [1200, 300, 17] {
            assert_eq!(
                round_trip(&track, mtu, &[(5000, frames.clone())]),
                expected,
                "mtu {mtu}"
            );
        }
        let packets = Packetizer::new(&track, Ssrc::new(1), 1200)
            .packetize(0, &frames)
            .unwrap();
        assert!(
            packets.len() < frames.len(),
            "several frames share a packet"
        );
        assert!(packets.iter().all(|p| p.marker()));
    }

    #[test]
    fn packetizer_rejects_frames_a_13_bit_size_cannot_describe() {
        let mut packetizer = Packetizer::new(&aac_track(None, 48_000), Ssrc::new(1), 1200);
        assert!(packetizer
            .packetize(0, &[Bytes::from(vec![0; 8192])])
            .is_err());
        assert!(packetizer.packetize(0, &[Bytes::new()]).is_err());
        assert!(Packetizer::new(&aac_track(None, 48_000), Ssrc::new(1), 16)
            .packetize(0, &[bytes(&[1])])
            .is_err());
    }
}
