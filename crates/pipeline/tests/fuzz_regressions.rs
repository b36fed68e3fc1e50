//! Inputs the fuzz targets found (fuzz/fuzz_targets/packet_sequence.rs),
//! replayed in the target's record format: `[op][len: u16 BE][packet]`, op
//! 0xff a source restart, else bit 0 the track and `op >> 1` the milliseconds
//! before the packet. Each found a bug, fixed where the test names it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamgate_pipeline::{Hub, HubConfig, StreamIngest};
use streamgate_rtp::{testing, Codec, PayloadType, RtpPacket, TrackId};

/// Every frame's (track, dts, pts) in publication order.
fn replay(data: &[u8]) -> Vec<(TrackId, u64, u64)> {
    let mut aac = testing::track(Codec::Aac, 48000, 2);
    aac.id = TrackId::new(1);
    aac.payload_type = PayloadType::new(97).unwrap();
    aac.params.audio_config = Some(Bytes::from_static(&[0x11, 0x90]));
    let hub = Hub::new("fuzz", HubConfig::default());
    let mut subscription = hub.subscribe();
    let mut ingest = StreamIngest::new(hub.clone(), vec![testing::h264_track(), aac]);
    let mut now = Instant::now();
    let mut frames = Vec::new();
    let mut rest = data;
    while let [op, tail @ ..] = rest {
        if *op == 0xff {
            ingest.source_restarted();
            rest = tail;
        } else {
            let [high, low, tail @ ..] = tail else { break };
            let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
            let (record, tail) = tail.split_at(len);
            rest = tail;
            now += Duration::from_millis(u64::from(op >> 1));
            if let Ok(packet) = RtpPacket::parse(Bytes::copy_from_slice(record)) {
                let _ = ingest.push_rtp(TrackId::new(usize::from(op & 1)), packet, now);
            }
        }
        while let Ok(Some(frame)) = subscription.try_recv() {
            frames.push((frame.track, frame.dts, frame.pts));
        }
    }
    frames
}

/// Per track, where the decode time stepped back: (index, before, after).
fn steps_back(frames: &[(TrackId, u64, u64)]) -> Vec<(usize, u64, u64)> {
    let mut last: HashMap<TrackId, u64> = HashMap::new();
    let mut back = Vec::new();
    for (n, (track, dts, _)) in frames.iter().enumerate() {
        if let Some(previous) = last.insert(*track, *dts) {
            if *dts < previous {
                back.push((n, previous, *dts));
            }
        }
    }
    back
}

/// An AAC timestamp 512 ticks behind the last went out as a decode time that
/// stepped back; audio timelines are now forward-only (`Timeline::forward_only`).
#[test]
fn audio_decode_time_never_steps_back_on_fuzzed_packets() {
    let frames = replay(include_bytes!("fuzz/ingest_audio_dts_back.bin"));
    let back = steps_back(&frames);
    if let Some(&(n, _, _)) = back.first() {
        let around = &frames[n.saturating_sub(6)..(n + 3).min(frames.len())];
        panic!(
            "DTS stepped back {} times, first at frame {n}: {around:?}",
            back.len()
        );
    }
}
