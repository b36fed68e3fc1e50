//! Cost per packet of H.264 depacketizing and of RTP packetizing, on the
//! bundled capture `fixtures/ffmpeg_h264_opus` (video track: 1280x720 H.264,
//! 25 fps, 2 s GOP, 10 s, ~490 packets of ≤1200 bytes with FU-A and in-band
//! SPS/PPS). Throughput counts packets: criterion's "elem/s" is packets/s and
//! time per iteration / packets is ns per packet.

use std::path::Path;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use streamgate_replay::Capture;
use streamgate_rtp::codec::{Depacketizer, Packetizer};
use streamgate_rtp::{Codec, RtpPacket, Ssrc, TrackInfo};

/// Output MTU the packetize benchmark uses (as the RTSP restream does).
const MTU: usize = 1200;

fn video_track() -> (TrackInfo, Vec<RtpPacket>) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let capture = Capture::load(
        &fixtures.join("ffmpeg_h264_opus.pcap"),
        &fixtures.join("ffmpeg_h264_opus.sdp"),
    )
    .expect("bundled capture loads");
    let track = capture
        .tracks
        .iter()
        .map(|t| t.info.clone())
        .find(|t| t.codec == Codec::H264)
        .expect("capture has an H.264 track");
    let packets = capture
        .packets
        .into_iter()
        .filter(|(_, id, _)| *id == track.id)
        .map(|(_, _, pkt)| pkt)
        .collect();
    (track, packets)
}

fn depacketize_all(track: &TrackInfo, packets: &[RtpPacket]) -> Vec<(u32, Vec<Bytes>)> {
    let mut depacketizer = Depacketizer::new(track).expect("H.264 depacketizer");
    let mut units = Vec::new();
    for pkt in packets {
        depacketizer
            .push(pkt.clone())
            .expect("capture packets are valid");
        while let Some(au) = depacketizer.pull() {
            units.push((au.rtp_timestamp, au.units));
        }
    }
    units
}

fn bench(c: &mut Criterion) {
    let (track, packets) = video_track();
    let access_units = depacketize_all(&track, &packets);

    let mut group = c.benchmark_group("h264");
    group.throughput(Throughput::Elements(packets.len() as u64));
    group.bench_function(format!("depacketize_{}_packets", packets.len()), |b| {
        b.iter(|| black_box(depacketize_all(&track, black_box(&packets))))
    });

    let mut packetizer = Packetizer::new(&track, Ssrc::new(1), MTU);
    let output_packets: usize = access_units
        .iter()
        .map(|(ts, units)| packetizer.packetize(*ts, units).expect("packetizes").len())
        .sum();
    group.throughput(Throughput::Elements(output_packets as u64));
    group.bench_function(
        format!(
            "packetize_{}_aus_to_{output_packets}_packets_mtu{MTU}",
            access_units.len()
        ),
        |b| {
            b.iter(|| {
                for (ts, units) in &access_units {
                    black_box(
                        packetizer
                            .packetize(*ts, black_box(units))
                            .expect("packetizes"),
                    );
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
