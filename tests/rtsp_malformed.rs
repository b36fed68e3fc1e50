//! Malformed, oversized and unanswerable requests sent straight to the gateway's
//! RTSP port: malformed or oversized ones get 400 and the connection closed by
//! the server; well-formed requests it cannot serve get their status and the
//! connection stays usable. The gateway never panics and keeps serving.
//! The `[rtsp]` limits (lying lengths, the request deadline, connection caps)
//! are answered and close their connection while a reader keeps playing; the
//! RTSP crate's tests/limits.rs covers each in detail.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// How long the server gets to answer or close (generous: a missing close is a
/// hang, not a slow answer).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn connect(gateway: &Gateway) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", gateway.rtsp_port)).expect("connect");
    stream
        .set_read_timeout(Some(ANSWER_WITHIN))
        .expect("read timeout");
    stream
}

/// Reads until the server closes; Err if it keeps the connection open.
fn read_until_closed(stream: &mut TcpStream) -> Result<String, String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(text(&received)),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(text(&received)),
            Err(e) => return Err(format!("{e} after {:?}", text(&received))),
        }
    }
}

/// Reads one response (head and any body).
fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let response = text(&received);
        if let Some(head_end) = response.find("\r\n\r\n") {
            let body_len: usize = response[..head_end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if received.len() >= head_end + 4 + body_len {
                return response;
            }
        }
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no complete response: {e}: {response:?}"));
        assert!(n > 0, "connection closed mid-response: {response:?}");
        received.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn malformed_and_oversized_requests_get_400_and_close() {
    let gateway = Gateway::demo("", "");
    let big_header = format!(
        "OPTIONS rtsp://127.0.0.1/demo RTSP/1.0\r\nCSeq: 1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "binary junk",
            vec![0x00, 0xff, 0x13, 0x37, b'\r', b'\n', b'\r', b'\n'],
        ),
        (
            "no protocol version",
            b"OPTIONS rtsp://127.0.0.1/demo\r\nCSeq: 1\r\n\r\n".to_vec(),
        ),
        (
            "header without colon",
            b"OPTIONS rtsp://127.0.0.1/demo RTSP/1.0\r\nCSeq 1\r\n\r\n".to_vec(),
        ),
        (
            "HTTP instead of RTSP",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        ),
        (
            "a response, not a request",
            b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n".to_vec(),
        ),
        (
            "negative Content-Length",
            b"OPTIONS rtsp://127.0.0.1/demo RTSP/1.0\r\nContent-Length: -5\r\n\r\n".to_vec(),
        ),
        ("oversized head (40 KB)", big_header.into_bytes()),
        ("endless request line", vec![b'A'; 70_000]),
    ];
    for (what, request) in cases {
        let mut stream = connect(&gateway);
        // A server that closes early may reset the rest of a large write.
        let _ = stream.write_all(&request);
        let answer = read_until_closed(&mut stream)
            .unwrap_or_else(|e| panic!("{what}: connection not closed: {e}"));
        assert!(
            answer.starts_with("RTSP/1.0 400 "),
            "{what}: expected 400, got {answer:?}"
        );
    }
    assert_still_serving(&mut connect(&gateway));
    assert!(
        !gateway.log().contains("panicked"),
        "the gateway panicked:\n{}",
        gateway.log()
    );
}

#[test]
fn unservable_requests_get_their_status_and_keep_the_connection() {
    let gateway = Gateway::demo("", "");
    let url = gateway.rtsp_url("demo");
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown stream", format!("DESCRIBE {} RTSP/1.0\r\nCSeq: 2\r\n\r\n", gateway.rtsp_url("nope")), "404"),
        ("unknown track", format!("SETUP {url}/trackID=9 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"), "404"),
        ("unknown method", format!("FROBNICATE {url} RTSP/1.0\r\nCSeq: 4\r\n\r\n"), "501"),
        ("RECORD on a restream", format!("RECORD {url} RTSP/1.0\r\nCSeq: 5\r\n\r\n"), "405"),
        ("PLAY in a session that does not exist", format!("PLAY {url} RTSP/1.0\r\nCSeq: 6\r\nSession: DEADBEEF\r\n\r\n"), "454"),
        ("PLAY before SETUP", format!("PLAY {url} RTSP/1.0\r\nCSeq: 7\r\n\r\n"), "454"),
        ("multicast transport", format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 8\r\nTransport: RTP/AVP;multicast\r\n\r\n"), "461"),
        ("SETUP without Transport", format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 9\r\n\r\n"), "461"),
    ];
    let mut stream = connect(&gateway);
    for (what, request, status) in cases {
        stream.write_all(request.as_bytes()).expect("write request");
        let response = read_response(&mut stream);
        assert!(
            response.starts_with(&format!("RTSP/1.0 {status} ")),
            "{what}: expected {status}, got {response:?}"
        );
        assert!(
            response.contains("\r\nCSeq: "),
            "{what}: CSeq not echoed: {response:?}"
        );
    }
    // The same connection still works.
    stream
        .write_all(format!("OPTIONS {url} RTSP/1.0\r\nCSeq: 10\r\n\r\n").as_bytes())
        .expect("write OPTIONS");
    let response = read_response(&mut stream);
    assert!(
        response.starts_with("RTSP/1.0 200 OK") && response.contains("CSeq: 10"),
        "{response:?}"
    );
}

/// A normal DESCRIBE on a fresh connection still gets the SDP.
fn assert_still_serving(stream: &mut TcpStream) {
    let peer = stream.peer_addr().expect("peer addr");
    let request = format!(
        "DESCRIBE rtsp://{peer}/demo RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .expect("write DESCRIBE");
    let response = read_response(stream);
    assert!(
        response.starts_with("RTSP/1.0 200 OK") && response.contains("m=video"),
        "{response:?}"
    );
}

/// A raw-socket reader playing the demo's video (TCP interleaved) on its own
/// thread, counting the RTP packets it gets.
fn start_player(gateway: &Gateway) -> Arc<AtomicU64> {
    let mut stream = connect(gateway);
    let url = gateway.rtsp_url("demo");
    let setup = format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n");
    stream.write_all(setup.as_bytes()).expect("SETUP");
    let reply = read_response(&mut stream);
    assert!(reply.starts_with("RTSP/1.0 200 "), "{reply}");
    let session = reply
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .expect("Session")
        .to_owned();
    let play = format!("PLAY {url} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n");
    stream.write_all(play.as_bytes()).expect("PLAY");
    // Byte by byte: interleaved packets follow the answer at once.
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("PLAY answer");
        reply.push(byte[0]);
    }
    let reply = text(&reply);
    assert!(reply.starts_with("RTSP/1.0 200 "), "{reply}");
    let packets = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&packets);
    std::thread::spawn(move || {
        let mut head = [0u8; 4];
        while stream.read_exact(&mut head).is_ok() && head[0] == b'$' {
            let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]]))];
            if stream.read_exact(&mut body).is_err() {
                break;
            }
            if head[1] == 0 {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    packets
}

/// Waits (hang guard: [`ANSWER_WITHIN`]) for the player to get more packets.
fn assert_receiving(packets: &AtomicU64, when: &str) {
    let before = packets.load(Ordering::Relaxed);
    let since = Instant::now();
    while packets.load(Ordering::Relaxed) <= before {
        assert!(
            since.elapsed() < ANSWER_WITHIN,
            "{when}: the playing reader stopped receiving packets"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `[rtsp]` limit keys reach the server: a lying length is answered before
/// the (long) request deadline, a client over its connection cap gets 503, each
/// closes its connection, each is logged, and a playing reader is unaffected.
#[test]
fn rtsp_limits_are_answered_and_close_while_a_reader_plays() {
    let gateway = Gateway::demo(
        "request_timeout = \"30s\"\nmax_connections_per_client = 3\nmax_connections = 100",
        "",
    );
    let packets = start_player(&gateway);
    assert_receiving(&packets, "after PLAY");
    let url = gateway.rtsp_url("demo");
    let cases = [
        ("Content-Length: 99999999999", "abc", "413"),
        ("Content-Length: 99999999", "b", "413"),
        ("Content-Length: -5", "", "400"),
        ("Content-Length: lots", "", "400"),
        ("Content-Length: 4\r\nContent-Length: 5", "abcd", "400"),
    ];
    for (length, body, status) in cases {
        let mut stream = connect(&gateway);
        let request = format!("SET_PARAMETER {url} RTSP/1.0\r\nCSeq: 1\r\n{length}\r\n\r\n{body}");
        let _ = stream.write_all(request.as_bytes());
        let answer = read_until_closed(&mut stream)
            .unwrap_or_else(|e| panic!("{length:?}: connection not closed: {e}"));
        assert!(
            answer.starts_with(&format!("RTSP/1.0 {status} ")),
            "{length:?}: expected {status} before the 30 s request deadline, got {answer:?}"
        );
        assert_receiving(&packets, length);
    }

    // The player holds one of this address's 3 connections; take the other two
    // (the start-up probe's connection may take a moment to be counted out).
    let options = |cseq: u32| format!("OPTIONS {url} RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n");
    let since = Instant::now();
    let mut held = Vec::new();
    while held.len() < 2 {
        let mut stream = connect(&gateway);
        stream.write_all(options(1).as_bytes()).expect("OPTIONS");
        let answer = read_response(&mut stream);
        if answer.starts_with("RTSP/1.0 200 ") {
            held.push(stream);
        } else {
            assert!(
                since.elapsed() < ANSWER_WITHIN,
                "never admitted: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut over = connect(&gateway);
    over.write_all(options(5).as_bytes()).expect("OPTIONS");
    let answer = read_until_closed(&mut over).expect("refused connection closed");
    assert!(
        answer.starts_with("RTSP/1.0 503 ") && answer.contains("CSeq: 5"),
        "{answer:?}"
    );
    assert_receiving(&packets, "after the refused connection");
    for stream in &mut held {
        stream.write_all(options(2).as_bytes()).expect("OPTIONS");
        assert!(read_response(stream).starts_with("RTSP/1.0 200 "));
    }
    let log = gateway.log();
    for line in [
        "RTSP request refused (413): Content-Length 99999999999",
        "RTSP request refused (400): Content-Length",
        "RTSP connection refused (503): client 127.0.0.1 already has 3 connections",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    // And counted in /metrics, by reason.
    let (status, metrics) = gateway.request("GET", "/metrics", None);
    assert_eq!(status, 200);
    for (reason, at_least) in [
        ("body_too_large", 2.0),
        ("bad_content_length", 3.0),
        ("max_connections_per_client", 1.0),
    ] {
        let key = format!("streamgate_rtsp_refused_total{{reason=\"{reason}\"}}");
        let value = support::sample(&metrics, &key).unwrap_or_default();
        assert!(value >= at_least, "{key} = {value}:\n{metrics}");
    }
}
