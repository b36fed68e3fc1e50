//! Helpers of the server's integration tests: a Hub with an H.264 track, a
//! server over it on a loopback port, and blocking RTSP request/response I/O.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use streamgate_pipeline::{Hub, HubConfig};
use streamgate_rtp::testing;
use streamgate_rtp::{Codec, TrackInfo};
use streamgate_rtsp::server::{RtspServer, ServerConfig, StreamEntry};
use tokio::task::JoinHandle;

/// An H.264 track; `ready` gives it SPS/PPS (else DESCRIBE has to wait).
pub fn h264_track(ready: bool) -> TrackInfo {
    if ready {
        testing::h264_track()
    } else {
        testing::track(Codec::H264, 90_000, 1)
    }
}

pub fn hub(name: &str, ready: bool) -> Hub {
    let hub = Hub::new(name, HubConfig::default());
    hub.set_tracks(vec![h264_track(ready)]);
    hub
}

/// Serves `hubs` (by their names) with `config` on a free loopback port.
pub async fn serve(hubs: Vec<Hub>, config: ServerConfig) -> (SocketAddr, JoinHandle<()>) {
    let directory = move |name: &str| {
        hubs.iter()
            .find(|h| h.name() == name)
            .map(|hub| StreamEntry {
                hub: hub.clone(),
                credentials: None,
                publish: None,
            })
    };
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..config
    };
    let server = RtspServer::bind(config, Arc::new(directory))
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    (addr, tokio::spawn(server.run()))
}

/// Reads one response head (up to the blank line).
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `request` and returns the response head and body.
pub fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).expect("write request");
    let head = read_head(stream);
    let body_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; body_len];
    stream.read_exact(&mut body).expect("response body");
    head + &String::from_utf8_lossy(&body)
}

/// The next interleaved frame (`$`, channel, length, body) as (channel, body);
/// `None` once the server has closed the connection.
pub fn read_interleaved(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).ok()?;
    assert_eq!(head[0], b'$', "not an interleaved frame");
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]]))];
    stream.read_exact(&mut body).expect("interleaved body");
    Some((head[1], body))
}

/// The session id of a SETUP response.
pub fn session_id(response: &str) -> String {
    response
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .expect("Session header")
        .to_string()
}
