//! A WHIP publisher (a str0m client in simulated time) connects on the
//! server's socket and its RTP packets come out as `ServerEvent::Rtp` for the
//! track the server made of its m-line: header fields and payload as sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::rtp::{RtpWrite, SeqNo};
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::{Codec, TrackId};
use streamgate_webrtc::testing::{connect, publish, server, step};
use streamgate_webrtc::ServerEvent;

#[test]
fn a_publisher_connects_and_its_rtp_comes_out_per_track() {
    let mut now = Instant::now();
    let mut server = server();
    let (client, tracks) = publish(&mut server, now, 1);
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].codec, Codec::H264);
    assert_eq!(tracks[0].clock_rate, 90_000);
    assert!(server.viewers().is_empty(), "a publisher is no viewer");
    let mut clients = [client];
    let events = connect(&mut server, &mut clients, &mut now);
    let id = clients[0].session.clone();
    assert!(events.contains(&ServerEvent::Connected(id.clone())));

    let pt = tracks[0].payload_type.get().into();
    let payloads: Vec<Arc<[u8]>> = (0u8..5).map(|i| Arc::from(vec![0x65, i, i, i])).collect();
    let mid = clients[0].mid;
    for (i, payload) in payloads.iter().enumerate() {
        let seq: SeqNo = (1000 + i as u64).into();
        let write = RtpWrite::new(pt, seq, 3000 * i as u32, now, Arc::clone(payload)).marker(true);
        let mut api = clients[0].rtc.direct_api();
        let stream = api
            .stream_tx_by_mid(mid, None)
            .expect("the publisher's send stream");
        stream.write_rtp(write);
    }
    let mut received = Vec::new();
    for _ in 0..50 {
        for event in step(
            &mut server,
            &mut clients,
            &mut now,
            Duration::from_millis(10),
        ) {
            if let ServerEvent::Rtp {
                id: from,
                track,
                packet,
            } = event
            {
                assert_eq!(from, id);
                assert_eq!(track, TrackId::new(0));
                received.push(RtpPacket::parse(packet).expect("a plain RTP packet"));
            }
        }
    }
    assert_eq!(received.len(), payloads.len(), "every packet, once");
    for (i, (packet, payload)) in received.iter().zip(&payloads).enumerate() {
        assert_eq!(packet.payload().as_ref(), payload.as_ref());
        assert_eq!(packet.payload_type().get(), tracks[0].payload_type.get());
        assert_eq!(packet.sequence_number().get(), 1000 + i as u16);
        assert!(packet.marker());
    }
    let timestamps: Vec<u32> = received.iter().map(|p| p.timestamp()).collect();
    assert!(
        timestamps
            .windows(2)
            .all(|w| w[1].wrapping_sub(w[0]) == 3000),
        "{timestamps:?}"
    );
}
