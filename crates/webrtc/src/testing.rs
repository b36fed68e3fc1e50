//! Viewers and publishers for tests and benches (feature `test-util`): str0m
//! clients (a second, independent `Rtc` each, as browsers would be) connected
//! to a `WhepServer` in simulated time, datagrams moved in memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use streamgate_rtp::TrackInfo;

use crate::{process_certificate, Local, ServerEvent, SessionId, WhepServer};

/// The server's socket address in the simulation.
pub const SERVER: &str = "10.0.0.1:8189";

pub struct Client {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub session: SessionId,
    /// The video m-line (recvonly for a viewer, sendonly for a publisher).
    pub mid: Mid,
    pub events: Vec<Event>,
}

/// A server on [`SERVER`] with the process certificate.
pub fn server() -> WhepServer {
    let local = Local {
        cert: process_certificate().expect("a DTLS certificate"),
        candidates: vec![SERVER.parse().unwrap()],
    };
    WhepServer::new(local, SERVER.parse().unwrap())
}

/// A client at `10.0.0.2:(5000 + n)` whose recvonly video offer the server accepted.
pub fn offer(server: &mut WhepServer, now: Instant, n: u16, tracks: &[TrackInfo]) -> Client {
    let addr = SocketAddr::from(([10, 0, 0, 2], 5000 + n));
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (sdp, pending) = change.apply().unwrap();
    let (session, _etag, answer) = server
        .offer(now, "cam", &sdp.to_sdp_string(), tracks)
        .expect("offer accepted");
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    Client {
        rtc,
        addr,
        session,
        mid,
        events: vec![],
    }
}

/// A WHIP publisher at `10.0.0.3:(5000 + n)` whose sendonly H.264 video offer
/// the server accepted, and the stream tracks the server made of it.
pub fn publish(server: &mut WhepServer, now: Instant, n: u16) -> (Client, Vec<TrackInfo>) {
    let addr = SocketAddr::from(([10, 0, 0, 3], 5000 + n));
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (sdp, pending) = change.apply().unwrap();
    let (session, _etag, answer, tracks) = server
        .publish(now, "cam", &sdp.to_sdp_string())
        .expect("offer accepted");
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let client = Client {
        rtc,
        addr,
        session,
        mid,
        events: vec![],
    };
    (client, tracks)
}

/// One input to a client, then its output polled (str0m's contract); its
/// datagrams go to the server.
fn handle(client: &mut Client, server: &mut WhepServer, now: Instant, input: Input) {
    client.rtc.handle_input(input).expect("client input");
    loop {
        match client.rtc.poll_output().expect("client output") {
            Output::Timeout(_) => return,
            Output::Transmit(t) => server.receive(now, client.addr, &t.contents),
            Output::Event(e) => client.events.push(e),
        }
    }
}

/// Moves the server's datagrams to their clients, then time on by `step`;
/// returns the server's events.
pub fn step(
    server: &mut WhepServer,
    clients: &mut [Client],
    now: &mut Instant,
    step: Duration,
) -> Vec<ServerEvent> {
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let datagrams: Vec<(SocketAddr, Vec<u8>)> = server.take_transmits().collect();
    for (destination, datagram) in datagrams {
        let Some(client) = clients.iter_mut().find(|c| c.addr == destination) else {
            continue;
        };
        let receive = Receive {
            proto: Protocol::Udp,
            source: server_addr,
            destination,
            contents: datagram.as_slice().try_into().unwrap(),
        };
        handle(client, server, *now, Input::Receive(*now, receive));
    }
    let mut events = Vec::new();
    while let Some(event) = server.poll_event() {
        events.push(event);
    }
    *now += step;
    for client in clients.iter_mut() {
        handle(client, server, *now, Input::Timeout(*now));
    }
    server.timeout(*now);
    events
}

/// Steps until every client is connected (at most 5 simulated seconds).
pub fn connect(
    server: &mut WhepServer,
    clients: &mut [Client],
    now: &mut Instant,
) -> Vec<ServerEvent> {
    let mut events = Vec::new();
    for _ in 0..500 {
        events.extend(step(server, clients, now, Duration::from_millis(10)));
        if clients.iter().all(|c| c.rtc.is_connected()) {
            return events;
        }
    }
    panic!("clients not connected in 5 simulated seconds");
}
