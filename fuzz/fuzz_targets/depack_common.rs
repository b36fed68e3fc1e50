//! Driver shared by the depacketizer fuzz targets.
//!
//! Input: records of a 16-bit big-endian length followed by that many bytes of
//! an RTP packet; a zero length calls `discard_partial`, as ingest does after
//! loss. Seeds come from the bundled captures (`fuzz/seed_depack.py`).
//!
//! Checks: no panic; every access unit stays within the caps and has no empty
//! unit; packetizing each access unit then depacketizing it again gives the
//! same units, timestamp and keyframe flag; and the decode times derived from
//! them (with the in-band parameter sets, timestamps as presentation times) rise
//! for video (audio has no decode-order rule).

use bytes::Bytes;
use streamgate_rtp::codec::decode_order::DecodeOrder;
use streamgate_rtp::codec::{
    update_params, AccessUnit, Depacketizer, Packetizer, MAX_ACCESS_UNIT_BYTES,
    MAX_PACKETS_PER_ACCESS_UNIT, MAX_UNITS_PER_ACCESS_UNIT,
};
use streamgate_rtp::testing;
use streamgate_rtp::{Codec, MediaKind, RtpPacket, Ssrc, TrackInfo};

/// A track of `codec`; AAC gets an AudioSpecificConfig (LC, 48 kHz, stereo),
/// MP4A-LATM the RFC 6416 example StreamMuxConfig (LC, 16 kHz, mono, one frame
/// per element, so that one access unit packetizes on its own).
pub fn track(codec: Codec, clock_rate: u32, channels: u16) -> TrackInfo {
    let mut track = testing::track(codec, clock_rate, channels);
    match codec {
        Codec::Aac => track.params.audio_config = Some(Bytes::from_static(&[0x11, 0x90])),
        Codec::AacLatm => {
            track.params.audio_config = Some(Bytes::from_static(&[0x14, 0x08]));
            track.params.stream_mux_config =
                Some(Bytes::from_static(&[0x40, 0x00, 0x28, 0x10, 0x3f, 0xc0]));
        }
        _ => {}
    }
    track
}

/// Runs `data` through a depacketizer for `track`; `min_unit` is the shortest
/// valid unit (the NAL header length for video), `mtu` the round trip's MTU.
pub fn run(track: &TrackInfo, data: &[u8], min_unit: usize, mtu: usize) {
    let mut depacketizer = Depacketizer::new(track).expect("track is valid");
    let mut params = track.params.clone();
    let mut decode_order = DecodeOrder::new(track.codec, track.clock_rate);
    let mut last_dts = None;
    let mut rest = data;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (record, tail) = tail.split_at(len);
        rest = tail;
        if record.is_empty() {
            depacketizer.discard_partial();
            continue;
        }
        let Ok(pkt) = RtpPacket::parse(Bytes::copy_from_slice(record)) else {
            continue;
        };
        let _ = depacketizer.push(pkt);
        while let Some(au) = depacketizer.pull() {
            check(&au, min_unit);
            round_trip(track, &au, mtu);
            update_params(track.codec, &au.units, &mut params);
            let dts = decode_order.dts(&au.units, &params, u64::from(au.rtp_timestamp));
            // Only video has a decode-order rule; audio's decode time is its RTP
            // timestamp as sent, made continuous by the ingest's timeline (the
            // `ingest` target checks that).
            if track.kind() == MediaKind::Video {
                assert!(
                    last_dts.is_none_or(|last| dts > last),
                    "decode time went back"
                );
            }
            last_dts = Some(dts);
        }
    }
}

fn check(au: &AccessUnit, min_unit: usize) {
    assert!(!au.units.is_empty());
    assert!(au.units.iter().all(|u| u.len() >= min_unit.max(1)));
    assert!(au.units.len() <= MAX_UNITS_PER_ACCESS_UNIT);
    assert!(au.units.iter().map(Bytes::len).sum::<usize>() <= MAX_ACCESS_UNIT_BYTES);
    assert!(au.packets.len() <= MAX_PACKETS_PER_ACCESS_UNIT);
}

fn round_trip(track: &TrackInfo, au: &AccessUnit, mtu: usize) {
    let out = Packetizer::new(track, Ssrc::new(1), mtu)
        .packetize(au.rtp_timestamp, &au.units)
        .expect("a depacketized access unit packetizes");
    let mut depacketizer = Depacketizer::new(track).expect("track is valid");
    let mut again = Vec::new();
    for packet in out {
        assert!(packet.len() <= mtu);
        let mut raw = packet.header.to_vec();
        raw.extend_from_slice(&packet.payload);
        let pkt = RtpPacket::parse(Bytes::from(raw)).expect("packetizer output parses");
        depacketizer
            .push(pkt)
            .expect("packetizer output depacketizes");
        again.extend(std::iter::from_fn(|| depacketizer.pull()));
    }
    assert_eq!(again.len(), 1, "one access unit back");
    assert_eq!(again[0].rtp_timestamp, au.rtp_timestamp);
    assert_eq!(again[0].units, au.units);
    assert_eq!(again[0].keyframe, au.keyframe);
}
