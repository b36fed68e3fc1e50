//! Cost of parsing one packet: RTP (a plain 1200-byte video packet, and a 200-byte
//! one with CSRCs and an RFC 8285 extension whose elements are walked) and a
//! 64-byte SR + SDES compound RTCP packet. Each bench name carries the packet
//! size; figures are per packet (throughput = 1 element).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use streamgate_rtp::packet::{one_byte_extension, ExtensionElement, RtpPacketBuilder};
use streamgate_rtp::rtcp::{self, RtcpPacket, Sdes, SenderReport};
use streamgate_rtp::{PayloadType, RtpPacket, SeqNo, Ssrc};

/// A typical H.264 FU-A packet under a 1500-byte MTU.
const VIDEO_PAYLOAD_LEN: usize = 1188;

fn video_packet() -> Bytes {
    let builder = RtpPacketBuilder {
        payload_type: PayloadType::new(96).unwrap(),
        sequence_number: SeqNo::new(1000),
        timestamp: 90_000,
        ssrc: Ssrc::new(0x1234_5678),
        payload: Bytes::from(vec![0x5c; VIDEO_PAYLOAD_LEN]),
        ..Default::default()
    };
    builder.build().expect("valid builder")
}

fn packet_with_extension() -> Bytes {
    let elements = [
        ExtensionElement {
            id: 1,
            data: &[1, 2, 3],
        },
        ExtensionElement {
            id: 2,
            data: &[9; 8],
        },
    ];
    let builder = RtpPacketBuilder {
        payload_type: PayloadType::new(111).unwrap(),
        csrcs: vec![1, 2],
        extension: Some(one_byte_extension(&elements).expect("valid elements")),
        payload: Bytes::from(vec![0x11; 160]),
        ..Default::default()
    };
    builder.build().expect("valid builder")
}

fn sr_with_sdes() -> Bytes {
    let mut out = bytes::BytesMut::new();
    let sr = SenderReport {
        ssrc: Ssrc::new(1),
        ntp_time: rtcp::ntp_from_system_time(std::time::SystemTime::now()),
        rtp_time: 90_000,
        packet_count: 100,
        octet_count: 120_000,
        reports: vec![],
    };
    RtcpPacket::SenderReport(sr).write_to(&mut out);
    RtcpPacket::SourceDescription(Sdes::cname(Ssrc::new(1), "streamgate-bench-cname"))
        .write_to(&mut out);
    out.freeze()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet_parse");
    group.throughput(Throughput::Elements(1));

    let video = video_packet();
    group.bench_function(format!("rtp_{}B", video.len()), |b| {
        b.iter(|| {
            let pkt = RtpPacket::parse(black_box(video.clone())).expect("valid packet");
            black_box(pkt.payload())
        })
    });

    let extended = packet_with_extension();
    group.bench_function(
        format!("rtp_csrc_ext_{}B_with_elements", extended.len()),
        |b| {
            b.iter(|| {
                let pkt = RtpPacket::parse(black_box(extended.clone())).expect("valid packet");
                let elements = pkt.extension().map_or(0, |e| e.elements().count());
                black_box((pkt.payload(), elements))
            })
        },
    );

    let compound = sr_with_sdes();
    group.bench_function(format!("rtcp_sr_sdes_{}B", compound.len()), |b| {
        b.iter(|| black_box(rtcp::parse_compound(black_box(&compound)).expect("valid compound")))
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
