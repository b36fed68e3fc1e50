//! `[rtsp] udp_ports`: UDP readers get their server RTP/RTCP ports from the
//! configured range (what a firewall or container port mapping lets through),
//! a SETUP that finds every pair taken gets 453, and ffmpeg reads over UDP
//! once pairs are free again. The range holds exactly the demo's two tracks.

use crate::support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::ops::RangeInclusive;
use std::process::Command;

use support::*;

/// Four free UDP ports starting at an even one (probed, then released for the gateway).
fn free_port_block() -> RangeInclusive<u16> {
    for _ in 0..100 {
        let probe = UdpSocket::bind("0.0.0.0:0").expect("bind ephemeral UDP port");
        let first = probe.local_addr().expect("local addr").port() & !1;
        drop(probe);
        if first == 0 || first > u16::MAX - 3 {
            continue;
        }
        let held: Vec<_> = (first..=first + 3)
            .map_while(|port| UdpSocket::bind(("0.0.0.0", port)).ok())
            .collect();
        if held.len() == 4 {
            return first..=first + 3;
        }
    }
    panic!("no four free consecutive UDP ports");
}

fn ports_free(range: &RangeInclusive<u16>) -> bool {
    let held: Vec<_> = range
        .clone()
        .map_while(|port| UdpSocket::bind(("0.0.0.0", port)).ok())
        .collect();
    held.len() == range.len()
}

/// Sends one request and reads its response head (SETUP answers have no body).
fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).expect("send request");
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !text(&received).contains("\r\n\r\n") {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no response to {request:?}: {e}"));
        assert!(n > 0, "connection closed after {request:?}");
        received.extend_from_slice(&buf[..n]);
    }
    text(&received)
}

fn setup(url: &str, cseq: u32, client_port: u16, session: Option<&str>) -> String {
    let session = session.map_or(String::new(), |s| format!("Session: {s}\r\n"));
    format!(
        "SETUP {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{session}\
         Transport: RTP/AVP;unicast;client_port={client_port}-{}\r\n\r\n",
        client_port + 1
    )
}

fn header<'a>(response: &'a str, name: &str) -> &'a str {
    response
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {name} header in {response:?}"))
}

/// The `server_port=A-B` pair of a Transport header.
fn server_ports(transport: &str) -> (u16, u16) {
    transport
        .split(';')
        .find_map(|p| p.strip_prefix("server_port="))
        .and_then(|ports| ports.split_once('-'))
        .and_then(|(rtp, rtcp)| Some((rtp.parse().ok()?, rtcp.parse().ok()?)))
        .unwrap_or_else(|| panic!("no server_port in {transport:?}"))
}

#[test]
fn udp_readers_get_ports_from_the_range_and_453_when_it_is_full() {
    let range = free_port_block();
    let gateway = Gateway::demo(
        &format!("udp_ports = \"{}-{}\"", range.start(), range.end()),
        "",
    );
    let track = |id: u32| format!("{}/trackID={id}", gateway.rtsp_url("demo"));

    // One reader takes both pairs: each is an even/odd pair inside the range.
    let mut holder = TcpStream::connect(("127.0.0.1", gateway.rtsp_port)).expect("connect");
    holder
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let video = exchange(&mut holder, &setup(&track(0), 1, 40000, None));
    assert!(video.starts_with("RTSP/1.0 200 "), "{video}");
    let session = header(&video, "Session").split(';').next().unwrap_or("");
    let audio = exchange(&mut holder, &setup(&track(1), 2, 40002, Some(session)));
    assert!(audio.starts_with("RTSP/1.0 200 "), "{audio}");
    let mut taken = Vec::new();
    for response in [&video, &audio] {
        let (rtp, rtcp) = server_ports(header(response, "Transport"));
        assert!(
            rtp % 2 == 0 && rtcp == rtp + 1 && range.contains(&rtp) && range.contains(&rtcp),
            "server_port={rtp}-{rtcp} is not an even/odd pair in {range:?}"
        );
        taken.push(rtp);
    }
    assert_ne!(taken[0], taken[1], "both tracks got the same pair");

    // The range is full: another reader's SETUP is refused with 453, and logged.
    let mut refused = TcpStream::connect(("127.0.0.1", gateway.rtsp_port)).expect("connect");
    refused
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let full = exchange(&mut refused, &setup(&track(0), 1, 40004, None));
    assert!(
        full.starts_with("RTSP/1.0 453 Not Enough Bandwidth\r\n"),
        "{full}"
    );
    gateway.wait_for(
        || gateway.log().contains("widen [rtsp] udp_ports"),
        "a log line about the exhausted UDP port range",
    );

    // The first reader leaves; its pairs are released and ffmpeg reads over UDP
    // from the same range (its SETUP replies are in its trace output).
    drop(holder);
    gateway.wait_for(|| ports_free(&range), "the first reader's ports released");
    let output = run(
        Command::new(peer("ffmpeg"))
            .args(["-hide_banner", "-nostats", "-v", "trace"])
            .args(["-rtsp_transport", "udp", "-i", &gateway.rtsp_url("demo")])
            .args(["-t", "3", "-f", "null", "-", "-progress", "pipe:1"]),
        PEER_DEADLINE,
    );
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "ffmpeg over UDP failed: {}\n{}",
        stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n"),
        gateway.log()
    );
    assert!(
        decoded_frames(&text(&output.stdout)) > 0,
        "ffmpeg decoded nothing"
    );
    let replies: Vec<(u16, u16)> = stderr
        .lines()
        .filter_map(|l| l.split("line='Transport: ").nth(1))
        .map(|transport| server_ports(transport.trim_end_matches('\'')))
        .collect();
    assert_eq!(replies.len(), 2, "ffmpeg did not SETUP two tracks over UDP");
    for (rtp, rtcp) in replies {
        assert!(
            range.contains(&rtp) && rtcp == rtp + 1,
            "ffmpeg was given server_port={rtp}-{rtcp}, outside {range:?}"
        );
    }
}
