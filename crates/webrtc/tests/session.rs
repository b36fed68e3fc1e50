//! A str0m client (a second, independent `Rtc`, as a browser would be) against
//! `WhepServer` in simulated time: no sockets, no clock. The client offers
//! recvonly video, connects through ICE-lite and DTLS, receives the frames with
//! the payload unchanged and its own SSRC, and its PLIs reach the caller rate
//! limited.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use streamgate_rtp::testing::{h264_track, video_frame};
use streamgate_webrtc::{process_certificate, Local, ServerEvent, WhepServer};

const SERVER: &str = "10.0.0.1:8189";
const CLIENT: &str = "10.0.0.2:5000";

struct Sim {
    now: Instant,
    client: Rtc,
    server: WhepServer,
    events: Vec<Event>,
    server_events: Vec<ServerEvent>,
}

impl Sim {
    /// Polls the client after an input (str0m's contract: one input, then
    /// poll until a timeout), handing its datagrams to the server.
    fn drain_client(&mut self) {
        let client_addr: SocketAddr = CLIENT.parse().unwrap();
        loop {
            match self.client.poll_output().expect("client output") {
                Output::Timeout(_) => break,
                Output::Transmit(t) => self.server.receive(self.now, client_addr, &t.contents),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    /// Moves datagrams both ways and time forward by `step`.
    fn step(&mut self, step: Duration) {
        let (server_addr, client_addr): (SocketAddr, SocketAddr) =
            (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
        self.drain_client();
        let datagrams: Vec<Vec<u8>> = self.server.take_transmits().map(|(_, d)| d).collect();
        for datagram in datagrams {
            let input = Input::Receive(
                self.now,
                Receive {
                    proto: Protocol::Udp,
                    source: server_addr,
                    destination: client_addr,
                    contents: datagram.as_slice().try_into().unwrap(),
                },
            );
            self.client.handle_input(input).expect("client input");
            self.drain_client();
        }
        while let Some(event) = self.server.poll_event() {
            self.server_events.push(event);
        }
        self.now += step;
        self.client.handle_input(Input::Timeout(self.now)).unwrap();
        self.drain_client();
        self.server.timeout(self.now);
    }
}

#[test]
fn a_viewer_connects_receives_shared_payloads_and_asks_for_keyframes() {
    let now = Instant::now();
    let cert = process_certificate().expect("a DTLS certificate");
    let local = Local {
        cert,
        candidates: vec![SERVER.parse().unwrap()],
    };
    let mut server = WhepServer::new(local, SERVER.parse().unwrap());
    let mut client = Rtc::builder().set_rtp_mode(true).build(now);
    client.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
    let mut change = client.sdp_api();
    let mid = change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();

    let track = h264_track();
    let (id, _etag, answer) = server
        .offer(now, "cam", &offer.to_sdp_string(), &[track])
        .expect("offer accepted");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let mut sim = Sim {
        now,
        client,
        server,
        events: vec![],
        server_events: vec![],
    };
    // The GOP's first frame arrives while the viewer is still connecting.
    let payload = Bytes::from(vec![0x65; 900]);
    let origin = (now, SystemTime::UNIX_EPOCH);
    sim.server
        .send_frame(now, &id, origin, &Arc::new(video_frame(0, &payload, 3, 25)));
    for _ in 0..200 {
        sim.step(Duration::from_millis(10));
        if sim.client.is_connected() {
            break;
        }
    }
    assert!(sim.client.is_connected(), "no connection in simulated 2 s");
    for n in 1..10 {
        let at = sim.now;
        sim.server
            .send_frame(at, &id, origin, &Arc::new(video_frame(n, &payload, 3, 25)));
        sim.step(Duration::from_millis(40));
    }
    sim.step(Duration::from_millis(10));
    let packets: Vec<_> = sim
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
    assert!(sim
        .server_events
        .contains(&ServerEvent::Connected(id.clone())));

    // Two PLIs within a second become one keyframe request.
    for _ in 0..2 {
        sim.client
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .expect("receive stream")
            .request_keyframe(KeyframeRequestKind::Pli);
        for _ in 0..5 {
            sim.step(Duration::from_millis(20));
        }
    }
    let requests = sim
        .server_events
        .iter()
        .filter(|e| **e == ServerEvent::KeyframeRequest(id.clone()))
        .count();
    assert_eq!(requests, 1, "{:?}", sim.server_events);

    assert!(sim.server.remove(&id));
    assert!(sim.server.is_empty());
}

/// Datagrams that are no WebRTC, or belong to no session, are counted and
/// dropped: never a panic, never a session.
#[test]
fn garbage_datagrams_are_counted_and_dropped() {
    let cert = process_certificate().expect("a DTLS certificate");
    let local = Local {
        cert,
        candidates: vec![SERVER.parse().unwrap()],
    };
    let mut server = WhepServer::new(local, SERVER.parse().unwrap());
    let now = Instant::now();
    let source: SocketAddr = CLIENT.parse().unwrap();
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
