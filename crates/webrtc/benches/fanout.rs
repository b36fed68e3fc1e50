//! Cost of sending one frame to N connected WHEP viewers: header rewrite,
//! str0m's RTP/SRTP per viewer, datagrams taken from the server (not sent).
//! Input: a 20 kB frame in 17 packets of 1200 bytes, about what a 1080p
//! 4 Mbit/s stream carries per frame at 25 fps; viewers in simulated time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use streamgate_rtp::testing::{h264_track, video_frame};
use streamgate_webrtc::testing::{connect, offer, server, step};

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("whep_fanout");
    for viewers in [1u16, 50] {
        let mut now = Instant::now();
        let mut server = server();
        let mut clients: Vec<_> = (0..viewers)
            .map(|n| offer(&mut server, now, n, &[h264_track()]))
            .collect();
        connect(&mut server, &mut clients, &mut now);
        step(
            &mut server,
            &mut clients,
            &mut now,
            Duration::from_millis(10),
        );
        let payload = Bytes::from(vec![0x41; 1200]);
        let origin = (now, SystemTime::UNIX_EPOCH);
        let ids: Vec<_> = clients.iter().map(|c| c.session.clone()).collect();
        let mut n = 0;
        group.throughput(Throughput::Elements(u64::from(viewers)));
        group.bench_with_input(BenchmarkId::from_parameter(viewers), &viewers, |b, _| {
            b.iter(|| {
                n += 1;
                let frame = Arc::new(video_frame(n, &payload, 17, 50));
                for id in &ids {
                    server.send_frame(now, id, origin, &frame);
                }
                server.take_transmits().map(|(_, d)| d.len()).sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
