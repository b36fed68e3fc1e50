//! Sample tracks for the tests, benchmarks and fuzz targets of streamgate's
//! crates (cargo feature `test-util`; this crate's own tests always have it), so
//! each is written once instead of as a `TrackInfo` literal per test.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::codec::{AccessUnit, DepacketizeError, Depacketizer, Packetizer};
use crate::frame::{Frame, OutPacket};
use crate::ids::{PayloadType, SeqNo, Ssrc};
use crate::packet::{RtpPacket, RtpPacketBuilder};
use crate::track::{Codec, CodecParams, MediaKind, TrackId, TrackInfo};

/// The SPS of ffmpeg's 1280x720 H.264 Constrained Baseline captures
/// (`fixtures/ffmpeg_h264_*`), level 3.1: `avc1.42c01f`.
pub const H264_SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
    0x00, 0x00, 0x0c, 0x83, 0xc6, 0x0c, 0xa8,
];
/// The PPS beside [`H264_SPS`].
pub const H264_PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

/// The SPS of `fixtures/ffmpeg_h264_bframes` (x264 High, `-bf 2`): its VUI
/// declares 2 reorder frames.
pub const H264_BFRAMES_SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
];

/// An H.264 SPS NAL unit (header included) with its VUI's bitstream_restriction
/// removed, so that it declares no reordering, as many cameras' do.
pub fn without_declared_reordering(sps: &[u8]) -> Bytes {
    use h264_reader::nal::sps::SeqParameterSet;
    use h264_reader::nal::{NalHeader, WritableNal};
    use h264_reader::rbsp::{decode_nal, BitReader};
    let rbsp = decode_nal(sps).expect("test SPS unescapes");
    let mut parsed = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).expect("test SPS parses");
    if let Some(vui) = parsed.vui_parameters.as_mut() {
        vui.bitstream_restrictions = None;
    }
    let header = NalHeader::new(sps[0]).expect("test SPS has a NAL header");
    Bytes::from(parsed.to_vec_with_header(header))
}

/// Track 0 of `codec` with payload type 96 and no codec parameters (so H.264,
/// H.265 and AAC tracks are not ready until parameters arrive).
pub fn track(codec: Codec, clock_rate: u32, channels: u16) -> TrackInfo {
    TrackInfo {
        id: TrackId::new(0),
        codec,
        clock_rate,
        channels,
        payload_type: PayloadType::new(96).unwrap(),
        params: CodecParams::default(),
    }
}

/// Track 0: H.264 at 90 kHz with [`H264_SPS`] and [`H264_PPS`] (ready), 1280x720.
pub fn h264_track() -> TrackInfo {
    TrackInfo {
        params: CodecParams {
            sps: Some(Bytes::from_static(H264_SPS)),
            pps: Some(Bytes::from_static(H264_PPS)),
            width: Some(1280),
            height: Some(720),
            ..CodecParams::default()
        },
        ..track(Codec::H264, 90_000, 1)
    }
}

/// Track 1: Opus stereo at 48 kHz, payload type 111.
pub fn opus_track() -> TrackInfo {
    TrackInfo {
        id: TrackId::new(1),
        payload_type: PayloadType::new(111).unwrap(),
        ..track(Codec::Opus, 48_000, 2)
    }
}

/// Frame `n` of a 25 fps video on track 0 (3600 ticks of 90 kHz apart), as
/// `packets` RTP packets (payload type 96) and one unit that all share `payload`
/// (nothing copied); every `gop`-th frame is a keyframe.
pub fn video_frame(n: u64, payload: &Bytes, packets: usize, gop: u64) -> Frame {
    let ticks = n * 3600;
    let first_seq = n.wrapping_mul(packets as u64);
    Frame {
        track: TrackId::new(0),
        kind: MediaKind::Video,
        pts: ticks,
        dts: ticks,
        wallclock: SystemTime::UNIX_EPOCH + Duration::from_millis(n * 40),
        keyframe: n.checked_rem(gop) == Some(0),
        discontinuity: false,
        random_access_skipped: false,
        units: vec![payload.clone()],
        packets: (0..packets)
            .map(|i| {
                let seq = SeqNo::new(first_seq.wrapping_add(i as u64) as u16);
                OutPacket::new(
                    PayloadType::new(96).unwrap(),
                    i + 1 == packets,
                    seq,
                    ticks as u32,
                    Ssrc::new(7),
                    payload.clone(),
                )
            })
            .collect(),
    }
}

// Building packets and running a depacketizer over them (the codec tests, and the
// capture tests of streamgate-replay).

pub fn rtp(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
    let raw = RtpPacketBuilder {
        payload_type: PayloadType::new(96).unwrap(),
        marker,
        sequence_number: SeqNo::new(seq),
        timestamp: ts,
        ssrc: Ssrc::new(1),
        payload: Bytes::copy_from_slice(payload),
        ..Default::default()
    }
    .build()
    .expect("test packet builds");
    RtpPacket::parse(raw).expect("test packet parses")
}

/// Re-parses a packetizer's output as a received packet.
pub fn received(out: &OutPacket) -> RtpPacket {
    let mut raw = out.header.to_vec();
    raw.extend_from_slice(&out.payload);
    RtpPacket::parse(Bytes::from(raw)).expect("packetizer output parses")
}

/// Pushes every packet, collecting access units and errors in order.
pub fn depacketize_all(
    d: &mut Depacketizer,
    packets: impl IntoIterator<Item = RtpPacket>,
) -> (Vec<AccessUnit>, Vec<DepacketizeError>) {
    let mut units = Vec::new();
    let mut errors = Vec::new();
    for pkt in packets {
        if let Err(e) = d.push(pkt) {
            errors.push(e);
        }
        while let Some(au) = d.pull() {
            units.push(au);
        }
    }
    (units, errors)
}

/// Packetizes each `(timestamp, units)` access unit and depacketizes the result;
/// returns what came out, checking the MTU on the way.
pub fn round_trip(
    track: &TrackInfo,
    mtu: usize,
    input: &[(u32, Vec<Bytes>)],
) -> Vec<(u32, Vec<Bytes>)> {
    let mut packetizer = Packetizer::new(track, Ssrc::new(7), mtu);
    let mut packets = Vec::new();
    for (ts, units) in input {
        for out in packetizer.packetize(*ts, units).expect("packetizes") {
            assert!(
                out.len() <= mtu,
                "packet of {} bytes exceeds MTU {mtu}",
                out.len()
            );
            packets.push(received(&out));
        }
    }
    let mut d = Depacketizer::new(track).expect("depacketizer");
    let (aus, errors) = depacketize_all(&mut d, packets);
    assert_eq!(errors, vec![]);
    aus.into_iter()
        .map(|au| (au.rtp_timestamp, au.units))
        .collect()
}

pub fn bytes(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::update_params;

    #[test]
    fn the_h264_track_describes_its_parameter_sets() {
        let track = h264_track();
        assert!(track.is_ready());
        let mut parsed = CodecParams::default();
        let units = [Bytes::from_static(H264_SPS), Bytes::from_static(H264_PPS)];
        assert!(update_params(Codec::H264, &units, &mut parsed));
        assert_eq!(parsed, track.params);
    }

    #[test]
    fn a_video_frame_shares_its_payload_and_marks_its_last_packet() {
        let payload = Bytes::from(vec![0x41; 100]);
        let frame = video_frame(3, &payload, 4, 3);
        assert!(frame.keyframe);
        let seqs: Vec<u16> = frame.packets.iter().map(|p| p.sequence().get()).collect();
        assert_eq!(seqs, [12, 13, 14, 15]);
        let markers: Vec<bool> = frame.packets.iter().map(|p| p.marker()).collect();
        assert_eq!(markers, [false, false, false, true]);
        assert_eq!(frame.units[0].as_ptr(), payload.as_ptr());
        assert_eq!(frame.packets[3].payload.as_ptr(), payload.as_ptr());
        assert!(!video_frame(4, &payload, 1, 3).keyframe);
    }
}
