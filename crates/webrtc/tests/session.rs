//! A str0m client (a second, independent `Rtc`, as a browser would be) against
//! `WhepServer` in simulated time: no sockets, no clock. The client offers
//! recvonly video, connects through ICE-lite and DTLS, receives the frames with
//! the payload unchanged and its own SSRC, and its PLIs reach the caller rate
//! limited.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use str0m::media::KeyframeRequestKind;
use str0m::Event;
use streamgate_rtp::testing::{h264_track, video_frame};
use streamgate_webrtc::testing::{connect, offer, server, step};
use streamgate_webrtc::ServerEvent;

#[test]
fn a_viewer_connects_receives_shared_payloads_and_asks_for_keyframes() {
    let mut now = Instant::now();
    let mut server = server();
    let client = offer(&mut server, now, 0, &[h264_track()]);
    let id = client.session.clone();
    let mid = client.mid;
    let mut clients = [client];
    // The GOP's first frame arrives while the viewer is still connecting.
    let payload = Bytes::from(vec![0x65; 900]);
    let origin = (now, SystemTime::UNIX_EPOCH);
    server.send_frame(now, &id, origin, &Arc::new(video_frame(0, &payload, 3, 25)));
    let mut events = connect(&mut server, &mut clients, &mut now);
    for n in 1..10 {
        server.send_frame(now, &id, origin, &Arc::new(video_frame(n, &payload, 3, 25)));
        events.extend(step(
            &mut server,
            &mut clients,
            &mut now,
            Duration::from_millis(40),
        ));
    }
    events.extend(step(
        &mut server,
        &mut clients,
        &mut now,
        Duration::from_millis(10),
    ));
    let packets: Vec<_> = clients[0]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RtpPacket(p) => Some(p),
            _ => None,
        })
        .collect();
    // 10 frames × 3 packets, the one sent before the connection included.
    assert_eq!(packets.len(), 30, "packets received");
    for packet in &packets {
        assert_eq!(&packet.payload[..], &payload[..]);
        assert_ne!(*packet.header.ssrc, 7, "the source's SSRC leaked");
    }
    let seqs: Vec<u64> = packets.iter().map(|p| *p.seq_no).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(events.contains(&ServerEvent::Connected(id.clone())));

    // Two PLIs within a second become one keyframe request.
    for _ in 0..2 {
        clients[0]
            .rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .expect("receive stream")
            .request_keyframe(KeyframeRequestKind::Pli);
        for _ in 0..5 {
            events.extend(step(
                &mut server,
                &mut clients,
                &mut now,
                Duration::from_millis(20),
            ));
        }
    }
    let requests = events
        .iter()
        .filter(|e| **e == ServerEvent::KeyframeRequest(id.clone()))
        .count();
    assert_eq!(requests, 1, "{events:?}");

    assert!(server.remove(&id));
    assert!(server.is_empty());
}

/// Datagrams that are no WebRTC, or belong to no session, are counted and
/// dropped: never a panic, never a session.
#[test]
fn garbage_datagrams_are_counted_and_dropped() {
    let mut server = server();
    let now = Instant::now();
    let source = SocketAddr::from(([10, 0, 0, 9], 5000));
    let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[0; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0xff]); // a USERNAME longer than the datagram
    let datagrams: [&[u8]; 6] = [
        &[],
        &[0x80],
        &[0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3],
        &[22, 254, 253, 0, 0],
        &stun,
        &[0xff; 1500],
    ];
    for datagram in datagrams {
        server.receive(now, source, datagram);
    }
    assert_eq!(server.unmatched, datagrams.len() as u64);
    assert!(server.is_empty());
    assert_eq!(server.take_transmits().count(), 0);
}

/// A viewer's PLI that the source does not answer with a keyframe (an RTSP
/// camera, a capture) gets the cached GOP resent, to that viewer only, once
/// per rate-limited request, with its sequence numbers and timestamps going
/// on; a source that does answer in time gets no resend.
#[test]
fn an_unanswered_pli_resends_the_cached_gop() {
    let mut now = Instant::now();
    let mut server = server();
    let mut clients = [
        offer(&mut server, now, 0, &[h264_track()]),
        offer(&mut server, now, 1, &[h264_track()]),
    ];
    let ids: Vec<_> = clients.iter().map(|c| c.session.clone()).collect();
    let (idr, delta) = (Bytes::from(vec![0x65; 900]), Bytes::from(vec![0x41; 900]));
    // Frames every 40 ms, a keyframe only when the test says so. Their RTP
    // timestamps are 10 ticks apart (not 3600), so the resent frames, one tick
    // apart, span more than the gap to the next live frame.
    let frame = |n: u64, keyframe: bool| {
        let mut frame = video_frame(n, if keyframe { &idr } else { &delta }, 3, u64::MAX);
        frame.keyframe = keyframe;
        for packet in &mut frame.packets {
            packet.header[4..8].copy_from_slice(&(n as u32 * 10).to_be_bytes());
        }
        Arc::new(frame)
    };
    let origin = (now, SystemTime::UNIX_EPOCH);
    let mut events = connect(&mut server, &mut clients, &mut now);
    let mut n = 0;
    // Sends frame n to both viewers (a keyframe when asked), then 40 ms pass.
    let mut next_frame = |server: &mut _, clients: &mut [_], now: &mut Instant, keyframe| {
        let frame = frame(n, keyframe);
        for id in &ids {
            streamgate_webrtc::WhepServer::send_frame(server, *now, id, origin, &frame);
        }
        n += 1;
        step(server, clients, now, Duration::from_millis(40))
    };
    for i in 0..5 {
        events.extend(next_frame(&mut server, &mut clients, &mut now, i == 0));
    }
    let pli = |clients: &mut [streamgate_webrtc::testing::Client]| {
        let mid = clients[0].mid;
        clients[0]
            .rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .expect("receive stream")
            .request_keyframe(KeyframeRequestKind::Pli);
    };
    // Two PLIs 80 ms apart, then a second of frames with no keyframe.
    pli(&mut clients);
    events.extend(next_frame(&mut server, &mut clients, &mut now, false));
    events.extend(next_frame(&mut server, &mut clients, &mut now, false));
    pli(&mut clients);
    for _ in 0..25 {
        events.extend(next_frame(&mut server, &mut clients, &mut now, false));
    }
    assert_eq!(server.gop_resends, 1, "one resend for two PLIs");
    // The resent GOP is the keyframe and every frame since, up to the resend.
    let resent = idr_packets(&clients[0]);
    assert_eq!(resent, 6, "the keyframe again");
    assert_eq!(
        idr_packets(&clients[1]),
        3,
        "the other viewer got no resend"
    );
    for client in &clients {
        continuous(client);
    }
    let received = |c: &streamgate_webrtc::testing::Client| packets(c).len();
    assert!(
        received(&clients[0]) > received(&clients[1]) + 3 * 10,
        "the frames after the keyframe were resent too"
    );

    // A source that makes a keyframe within the wait: nothing is resent.
    pli(&mut clients);
    events.extend(next_frame(&mut server, &mut clients, &mut now, false));
    events.extend(next_frame(&mut server, &mut clients, &mut now, true));
    for _ in 0..25 {
        events.extend(next_frame(&mut server, &mut clients, &mut now, false));
    }
    assert_eq!(server.gop_resends, 1, "the source's keyframe answered");
    assert_eq!(idr_packets(&clients[0]), resent + 3);
    continuous(&clients[0]);
    let requests = events
        .iter()
        .filter(|e| matches!(e, ServerEvent::KeyframeRequest(_)))
        .count();
    assert_eq!(requests, 2, "{events:?}");
}

fn packets(client: &streamgate_webrtc::testing::Client) -> Vec<&str0m::rtp::RtpPacket> {
    client
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RtpPacket(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn idr_packets(client: &streamgate_webrtc::testing::Client) -> usize {
    packets(client)
        .iter()
        .filter(|p| p.payload.first() == Some(&0x65))
        .count()
}

/// Sequence numbers without a gap and timestamps that never go back, in the
/// order the viewer received them.
fn continuous(client: &streamgate_webrtc::testing::Client) {
    let packets = packets(client);
    let seqs: Vec<u64> = packets.iter().map(|p| *p.seq_no).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let times: Vec<u32> = packets.iter().map(|p| p.header.timestamp).collect();
    assert!(
        times
            .windows(2)
            .all(|w| (w[1].wrapping_sub(w[0]) as i32) >= 0),
        "{times:?}"
    );
}
