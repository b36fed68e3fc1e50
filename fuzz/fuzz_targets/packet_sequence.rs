//! Driver shared by the `ingest` and `hls_segmenter` targets: an arbitrary
//! sequence of RTP packets (and source restarts) run through a `StreamIngest`
//! of an H.264 + AAC stream (the tracks of `fixtures/ffmpeg_h264_aac`), the
//! frames it publishes handed to the caller.
//!
//! Input: records of `[op][len: u16 BE][packet]`. `op == 0xff` restarts the
//! source (no length follows); otherwise bit 0 is the track and `op >> 1` the
//! milliseconds the clock moves before the packet arrives. Seeds are the
//! captures' packets in arrival order (`fuzz/seed_corpus.py`).
//!
//! Checks here, for every frame published: per track, the decode time never
//! steps back and stays within the presentation time's reach (`dts <= pts`
//! is not required: B-frames), the track id is one announced, and the payload
//! stays within the access-unit caps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamgate_pipeline::{Hub, HubConfig, StreamIngest};
use streamgate_rtp::codec::{MAX_ACCESS_UNIT_BYTES, MAX_UNITS_PER_ACCESS_UNIT};
use streamgate_rtp::{testing, Codec, Frame, PayloadType, RtpPacket, TrackId, TrackInfo};

/// The stream's tracks: H.264 (ready, track 0) and AAC-hbr 48 kHz stereo (track 1).
pub fn tracks() -> Vec<TrackInfo> {
    let mut aac = testing::track(Codec::Aac, 48000, 2);
    aac.id = TrackId::new(1);
    aac.payload_type = PayloadType::new(97).expect("97 is dynamic");
    aac.params.audio_config = Some(Bytes::from_static(&[0x11, 0x90]));
    vec![testing::h264_track(), aac]
}

/// Runs `data` through an ingest; `frame` sees each published frame in order.
pub fn run(data: &[u8], mut frame: impl FnMut(&Arc<Frame>)) {
    let tracks = tracks();
    let hub = Hub::new("fuzz", HubConfig::default());
    let mut subscription = hub.subscribe();
    let mut ingest = StreamIngest::new(hub.clone(), tracks.clone());
    let mut now = Instant::now();
    let mut last_dts: HashMap<TrackId, u64> = HashMap::new();
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
            let track = TrackId::new(usize::from(op & 1));
            if let Ok(packet) = RtpPacket::parse(Bytes::copy_from_slice(record)) {
                let _ = ingest.push_rtp(track, packet, now);
            }
        }
        while let Ok(Some(published)) = subscription.try_recv() {
            assert!(tracks.iter().any(|t| t.id == published.track));
            assert!(published.units.len() <= MAX_UNITS_PER_ACCESS_UNIT);
            assert!(published.payload_len() <= MAX_ACCESS_UNIT_BYTES);
            if let Some(previous) = last_dts.insert(published.track, published.dts) {
                assert!(
                    published.dts >= previous,
                    "track {:?}: DTS stepped back from {previous} to {}",
                    published.track,
                    published.dts
                );
            }
            frame(&published);
        }
    }
}
