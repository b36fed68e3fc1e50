//! Hub fan-out cost per frame to 1, 10 and 100 subscribers.
//!
//! Input: a video frame of one RTP packet with a 1200-byte payload (a typical
//! packet-sized P-frame slice), a keyframe every 50 frames so the GOP cache is
//! maintained as in a live stream. Each iteration builds the `Frame` (as ingest
//! does: two small `Vec`s, payload shared), publishes it and, in
//! `publish_and_receive`, has every subscriber take it. `publish_stalled` has
//! subscribers that never read: publishing must cost the same as with none.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use streamgate_pipeline::{Hub, HubConfig, Subscription};
use streamgate_rtp::testing;
use streamgate_rtp::Codec;

const PAYLOAD_BYTES: usize = 1200;
const GOP_FRAMES: u64 = 50;

fn hub() -> Hub {
    let hub = Hub::new("bench", HubConfig::default());
    hub.set_tracks(vec![testing::track(Codec::H264, 90_000, 1)]);
    hub
}

fn fan_out(c: &mut Criterion) {
    let payload = Bytes::from(vec![0x41; PAYLOAD_BYTES]);
    let mut group = c.benchmark_group("hub_fanout");
    group.throughput(Throughput::Elements(1));
    for subscribers in [1usize, 10, 100] {
        group.bench_with_input(
            BenchmarkId::new("publish_and_receive", subscribers),
            &subscribers,
            |b, &n| {
                let hub = hub();
                let mut subs: Vec<Subscription> = (0..n).map(|_| hub.subscribe()).collect();
                let mut count = 0u64;
                b.iter(|| {
                    hub.publish(testing::video_frame(count, &payload, 1, GOP_FRAMES));
                    count += 1;
                    for sub in &mut subs {
                        let got = sub.try_recv().ok().flatten();
                        std::hint::black_box(got);
                    }
                });
                assert!(subs.iter().all(|s| s.dropped() == 0));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("publish_stalled", subscribers),
            &subscribers,
            |b, &n| {
                let hub = hub();
                let _stalled: Vec<Subscription> = (0..n).map(|_| hub.subscribe()).collect();
                let mut count = 0u64;
                b.iter(|| {
                    hub.publish(testing::video_frame(count, &payload, 1, GOP_FRAMES));
                    count += 1;
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
