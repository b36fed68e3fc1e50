//! The RTSPS listener (`[rtsp] tls_listen`): ffmpeg and GStreamer read the demo
//! stream over `rtsps://` (a certificate the test makes with openssl), and a
//! TLS handshake that never completes is closed at the request timeout while
//! readers go on.

use crate::support;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;

use support::camera::WAIT;
use support::{
    decoded_frames, error_lines, ffmpeg_decode, free_port, get, gst_plays, peer, run, sample, text,
    Gateway, TempDir, PEER_DEADLINE,
};

/// A self-signed P-256 certificate for 127.0.0.1 and its key, in `dir`.
fn certificate(dir: &TempDir) -> (String, String) {
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    let made = run(
        Command::new(peer("openssl")).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &cert,
        ]),
        PEER_DEADLINE,
    );
    assert!(made.status.success(), "openssl: {}", text(&made.stderr));
    (cert, key)
}

fn rtsps_gateway(dir: &TempDir) -> (Gateway, u16) {
    let (cert, key) = certificate(dir);
    let tls_port = free_port();
    let gateway = Gateway::demo(
        &format!(
            "tls_listen = \"127.0.0.1:{tls_port}\"\ntls_certificate = \"{cert}\"\ntls_key = \"{key}\"\nrequest_timeout = \"2s\"\n"
        ),
        "",
    );
    (gateway, tls_port)
}

#[test]
fn ffmpeg_and_gstreamer_read_over_rtsps() {
    let dir = TempDir::new("rtsps");
    let (gateway, tls_port) = rtsps_gateway(&dir);
    let url = format!("rtsps://127.0.0.1:{tls_port}/demo");

    let output = ffmpeg_decode(&url, "tcp", 4, &[], &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "ffmpeg failed: {stderr}\n{}",
        gateway.log()
    );
    assert!(error_lines(&stderr).is_empty(), "ffmpeg errors:\n{stderr}");
    let frames = decoded_frames(&stdout);
    assert!(
        frames >= 50,
        "ffmpeg decoded {frames} frames of 4 s over RTSPS"
    );

    gst_plays(&gateway, &url, "tcp", 6, 25);
    // The plain listener still serves.
    let output = ffmpeg_decode(&gateway.rtsp_url("demo"), "tcp", 2, &[], &[]);
    assert!(decoded_frames(&text(&output.stdout)) >= 25);
}

/// A client that connects and never sends a ClientHello is closed at the
/// request timeout (counted), and does not hold up a reader.
#[test]
fn a_handshake_that_never_completes_is_closed() {
    let dir = TempDir::new("rtsps");
    let (gateway, tls_port) = rtsps_gateway(&dir);
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port)).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let url = format!("rtsps://127.0.0.1:{tls_port}/demo");
    let output = ffmpeg_decode(&url, "tcp", 3, &[], &[]);
    assert!(
        decoded_frames(&text(&output.stdout)) >= 25,
        "{}",
        text(&output.stderr)
    );

    let mut buf = [0u8; 16];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the server sent {n} bytes to a client that never said hello"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the silent handshake was still open after {WAIT:?}"
        ),
    }
    let metrics = get(gateway.http_port, "/metrics").text();
    let timeouts = sample(
        &metrics,
        "streamgate_rtsp_refused_total{reason=\"request_timeout\"}",
    );
    assert!(timeouts >= Some(1.0), "{metrics}");
}
