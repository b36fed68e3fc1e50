//! The HTTP limits of the running binary over raw TCP (`[http] max_body`,
//! per-route body caps, `request_timeout`, `max_concurrent_requests`): each
//! refusal carries its status and a JSON message, closes its connection (read
//! gives 0), and other clients keep being served meanwhile (the HLS playlist of
//! the demo stream and `/healthz` answer 200).
//!
//! No wall-clock thresholds: "at once" is shown by the 413 arriving although
//! the request timeout is far off (a server waiting for the body would answer
//! 408 or nothing), and every read has a generous hang guard.

use crate::support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{get, hint_parts, Gateway};

/// Hang guard for every read: far beyond any answer the tests wait for.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// The demo stream with these lines in `[http]`.
fn gateway(http_extra: &str) -> Gateway {
    Gateway::start(&format!(
        "{http_extra}\n\n[streams.demo]\nsource = \"demo\"\n"
    ))
}

/// A connection that has sent `head` (and whatever body bytes it holds), no more.
fn send(port: u16, head: &str) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    socket.write_all(head.as_bytes()).expect("send");
    socket
}

/// The answer on `socket`: status, headers (lower-case names) and body.
fn answer(socket: &TcpStream) -> (u16, Vec<(String, String)>, String) {
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .expect("a content-length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    assert!(
        reader.buffer().is_empty(),
        "bytes after the answer: {:?}",
        reader.buffer()
    );
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The server closed `socket` (EOF, or a reset for the bytes it never read).
fn assert_closed(mut socket: TcpStream) {
    let mut rest = [0; 64];
    match socket.read(&mut rest) {
        Ok(0) => {}
        Ok(n) => panic!("more after the answer: {:?}", &rest[..n]),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed: {e}"),
    }
}

/// Other clients are served: `/healthz` and the demo's HLS media playlist answer 200.
fn others_served(gateway: &Gateway) {
    assert_eq!(get(gateway.http_port, "/healthz").status, 200);
    gateway.wait_ok("/hls/demo/stream.m3u8");
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn declared_lengths_over_a_cap_are_answered_413_at_once_and_closed() {
    let gateway = gateway("request_timeout = \"10m\"\nmax_body = 100000");
    others_served(&gateway);
    let cases = [
        // The lie: far over every cap, three bytes of body.
        ("PUT /api/streams/x", "99999999999"),
        // Under `max_body`, over the route's own cap (16 KiB for the Ring forms).
        ("POST /ring/token-exchange", "50000"),
        // Over `max_body` on a route that reads no body at all.
        ("GET /healthz", "100001"),
    ];
    let held: Vec<TcpStream> = cases
        .iter()
        .map(|(line, length)| {
            send(
                gateway.http_port,
                &format!("{line} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nabc"),
            )
        })
        .collect();
    for ((line, _), socket) in cases.iter().zip(held) {
        let (status, _, body) = answer(&socket);
        assert_eq!(status, 413, "{line}: {body}");
        assert!(body.contains("length limit exceeded"), "{line}: {body}");
        assert_closed(socket);
    }
    others_served(&gateway);

    // A chunked body (no length declared) is cut off at the cap too.
    let mut socket = send(
        gateway.http_port,
        "PUT /api/streams/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let chunk = format!("{:x}\r\n{}\r\n", 70_000, "#".repeat(70_000));
    socket.write_all(chunk.as_bytes()).expect("send chunk");
    let (status, _, body) = answer(&socket);
    assert_eq!(status, 413, "{body}");
    others_served(&gateway);
}

#[test]
fn a_request_not_complete_in_time_is_answered_408_and_closed() {
    let gateway = gateway("request_timeout = \"2s\"");
    // Slow bodies: ten bytes of a declared hundred, then silence.
    let slow: Vec<TcpStream> = (0..5)
        .map(|_| {
            send(
                gateway.http_port,
                "PUT /api/streams/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
            )
        })
        .collect();
    others_served(&gateway);
    for socket in slow {
        let (status, headers, body) = answer(&socket);
        assert_eq!(status, 408, "{body}");
        assert!(body.contains("request_timeout"), "{body}");
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert_closed(socket);
    }
    others_served(&gateway);
    let (status, _) = gateway.request("GET", "/api/streams/slow", None);
    assert_eq!(status, 404, "a timed-out PUT created nothing");
}

/// A blocking playlist reload waits for a whole segment to be made, which the
/// 2 s segment target makes longer than the 1 s request timeout: it is answered
/// with the playlist, because the HLS routes keep their own hold instead.
#[test]
fn a_blocking_hls_reload_outlives_the_request_timeout() {
    let gateway = Gateway::start(
        "request_timeout = \"1s\"\n\n[streams.demo]\nsource = \"demo\"\n\n[hls]\nsegment_target = 2.0\n",
    );
    let playlist = gateway.wait_ok("/hls/demo/stream.m3u8").text();
    let hint = playlist
        .lines()
        .find_map(|line| line.strip_prefix("#EXT-X-PRELOAD-HINT:"))
        .and_then(|attrs| attrs.split("URI=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no preload hint:\n{playlist}"));
    let (msn, _) = hint_parts(hint);
    let next: u64 = msn.parse::<u64>().expect("msn") + 1;
    // Segment `next` exists once segment `msn` (still being made) and then
    // `next` itself are finished: at least one whole segment of media away.
    let reply = get(
        gateway.http_port,
        &format!("/hls/demo/stream.m3u8?_HLS_msn={next}"),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().contains(&format!("seg_{next}.m4s"))
            || reply.text().contains(&format!("part_{next}_")),
        "segment {next} not in the answer:\n{}",
        reply.text()
    );
}

#[test]
fn requests_beyond_the_in_flight_cap_are_answered_503_and_closed() {
    let gateway = gateway("request_timeout = \"10m\"\nmax_concurrent_requests = 1");
    others_served(&gateway);
    // Holds the only slot: its handler waits for the rest of its body.
    let body = "source = \"demo\"\n";
    let (first, rest) = body.split_at(5);
    let mut holder = send(
        gateway.http_port,
        &format!(
            "PUT /api/streams/held HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{first}",
            body.len()
        ),
    );
    // The holder's handler has started once a second request is refused.
    let refused = loop {
        let socket = send(
            gateway.http_port,
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let (status, headers, body) = answer(&socket);
        if status == 503 {
            break (socket, headers, body);
        }
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (socket, headers, body) = refused;
    assert!(body.contains("max_concurrent_requests"), "{body}");
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert_closed(socket);

    // The holder is served as if nothing happened, and the slot is free again.
    holder.write_all(rest.as_bytes()).expect("rest of body");
    let (status, _, body) = answer(&holder);
    assert_eq!(status, 201, "{body}");
    others_served(&gateway);
}
