//! Malformed, oversized and unanswerable requests sent straight to the gateway's
//! RTSP port: malformed or oversized ones get 400 and the connection closed by
//! the server; well-formed requests it cannot serve get their status and the
//! connection stays usable. The gateway never panics and keeps serving.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
    let big_body = format!(
        "SET_PARAMETER rtsp://127.0.0.1/demo RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\n{}",
        "b".repeat(40_000)
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
        (
            "oversized body (Content-Length 99999999)",
            big_body.into_bytes(),
        ),
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
