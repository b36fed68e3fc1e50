//! The API of the running `streamgate` binary with real readers: a stream added
//! with `PUT /api/streams/NAME` is read over RTSP by ffmpeg, `/metrics` scraped
//! during the read shows the reader and the counts moving, the API lists each
//! RTSP reader with its address and transport while it plays (and no longer once
//! it is gone), and `DELETE /api/streams/NAME` ends the reader (ffmpeg exits).

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    fixture, http_with_headers, peer, sample, spawn_quiet, start_reader, Gateway, DEADLINE,
};

#[test]
fn stream_added_through_the_api_is_read_over_rtsp_and_deleting_it_ends_the_reader() {
    let gateway = Gateway::start("");
    let body = format!("source = \"pcap:{}\"\n", fixture("ffmpeg_h264_aac.pcap"));
    let (status, created) = gateway.request("PUT", "/api/streams/cam", Some(&body));
    assert_eq!(status, 201, "PUT: {created}\n{}", gateway.log());

    let url = format!("rtsp://127.0.0.1:{}/cam", gateway.rtsp_port);
    let (mut ffmpeg, frames) = start_reader(&url);
    let deadline = Instant::now() + DEADLINE;
    let mut decoded = 0;
    while decoded < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        decoded = frames.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "ffmpeg decoded {decoded} frames, then stopped; log:\n{}",
                gateway.log()
            )
        });
    }

    // Scraped during the read: one reader, counts moving.
    let (_, first) = gateway.request("GET", "/metrics", None);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, second) = gateway.request("GET", "/metrics", None);
    for key in [
        "streamgate_stream_packets_total{stream=\"cam\"}",
        "streamgate_stream_bytes_total{stream=\"cam\"}",
        "streamgate_output_packets_total{stream=\"cam\",protocol=\"rtsp\"}",
        "streamgate_output_bytes_total{stream=\"cam\",protocol=\"rtsp\"}",
    ] {
        let (before, after) = (sample(&first, key), sample(&second, key));
        assert!(
            after > before && before.is_some(),
            "{key}: {before:?} then {after:?}\n{second}"
        );
    }
    for key in [
        "streamgate_stream_readers{stream=\"cam\"}",
        "streamgate_readers{stream=\"cam\",protocol=\"rtsp\"}",
    ] {
        assert_eq!(sample(&second, key), Some(1.0), "{key}\n{second}");
    }
    let (_, view) = gateway.request("GET", "/api/streams/cam", None);
    assert!(view.contains("\"subscribers\":1"), "{view}");
    let tcp_reader = match rtsp_readers(&gateway).as_slice() {
        [reader] => reader.clone(),
        other => panic!("want the one ffmpeg reader, got {other:?}"),
    };
    assert_eq!(tcp_reader["transport"], "tcp", "{tcp_reader}");
    assert_reader_is_local_client(&tcp_reader, gateway.rtsp_port);
    assert!(
        tcp_reader["packets"].as_u64() > Some(0) && tcp_reader["since"].as_str().is_some(),
        "{tcp_reader}"
    );

    // A second reader over UDP is listed beside it while it plays, and is gone
    // once it is killed (its connection cut off without a TEARDOWN).
    let mut udp_reader = spawn_quiet(
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostats",
            "-v",
            "error",
            "-rtsp_transport",
            "udp",
            "-i",
            &url,
            "-f",
            "null",
            "-",
        ],
    );
    let mut udp_entry = serde_json::Value::Null;
    gateway.wait_for(
        || {
            let readers = rtsp_readers(&gateway);
            match readers.iter().find(|r| r["transport"] == "udp") {
                Some(udp) if udp["packets"].as_u64() > Some(0) => {
                    udp_entry = udp.clone();
                    readers.len() == 2
                }
                _ => false,
            }
        },
        "the UDP reader (with packets sent) in the API",
    );
    assert_reader_is_local_client(&udp_entry, gateway.rtsp_port);
    assert_ne!(udp_entry["address"], tcp_reader["address"]);
    udp_reader.kill().expect("kill the UDP reader");
    udp_reader.wait().expect("wait ffmpeg");
    gateway.wait_for(
        || {
            let readers = rtsp_readers(&gateway);
            readers.len() == 1 && readers[0]["address"] == tcp_reader["address"]
        },
        "the killed UDP reader gone from the API, the TCP one still listed",
    );
    let (_, metrics) = gateway.request("GET", "/metrics", None);
    assert_eq!(
        sample(
            &metrics,
            "streamgate_readers{stream=\"cam\",protocol=\"rtsp\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // An HLS reader (ffmpeg again) shows as a viewer with its address, beside the RTSP one.
    let hls_url = format!("http://127.0.0.1:{}/hls/cam/index.m3u8", gateway.http_port);
    // The first request starts the muxer (503 until its first segment); ffmpeg does not retry.
    gateway.wait_for(
        || gateway.request("GET", "/hls/cam/index.m3u8", None).0 == 200,
        "the HLS playlist",
    );
    let mut hls_reader = spawn_quiet(
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostats",
            "-v",
            "error",
            "-i",
            &hls_url,
            "-f",
            "null",
            "-",
        ],
    );
    gateway.wait_for(
        || {
            let (_, view) = gateway.request("GET", "/api/streams/cam", None);
            view.contains("\"hls_viewers\":[\"127.0.0.1\"]")
                && view.contains("\"subscribers\":2")
                && view.contains("\"hls\":[{\"address\":\"127.0.0.1\"}]")
        },
        "the HLS viewer and the muxer in the API",
    );
    let (_, metrics) = gateway.request("GET", "/metrics", None);
    for key in [
        "streamgate_hls_viewers{stream=\"cam\"}",
        "streamgate_readers{stream=\"cam\",protocol=\"hls\"}",
    ] {
        assert_eq!(sample(&metrics, key), Some(1.0), "{key}\n{metrics}");
    }
    // The HLS bytes answered grow while ffmpeg keeps fetching media.
    let hls_bytes = "streamgate_output_bytes_total{stream=\"cam\",protocol=\"hls\"}";
    let first_hls_bytes = sample(&metrics, hls_bytes).expect("HLS output bytes");
    gateway.wait_for(
        || {
            let (_, later) = gateway.request("GET", "/metrics", None);
            sample(&later, hls_bytes).is_some_and(|bytes| bytes > first_hls_bytes)
        },
        "the HLS output bytes to grow",
    );

    let (status, _) = gateway.request("DELETE", "/api/streams/cam", None);
    assert_eq!(status, 204);
    let deadline = Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(exit) = ffmpeg.try_wait().expect("wait ffmpeg") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = ffmpeg.kill();
            panic!("ffmpeg still reading after DELETE; log:\n{}", gateway.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("ffmpeg exited with {exit} after the stream was deleted");
    // The HLS reader's next playlist request is answered 404: it ends too.
    gateway.wait_for(
        || hls_reader.try_wait().is_ok_and(|exit| exit.is_some()),
        "the HLS reader's exit",
    );
    let (status, _) = gateway.request("GET", "/api/streams/cam", None);
    assert_eq!(status, 404);
    let (_, metrics) = gateway.request("GET", "/metrics", None);
    assert!(!metrics.contains("stream=\"cam\""), "{metrics}");

    // The RTSP server no longer knows the stream.
    let probe = Command::new(peer("ffprobe"))
        .args(["-v", "error", "-rtsp_transport", "tcp", "-i", &url])
        .stdin(Stdio::null())
        .output()
        .expect("ffprobe");
    assert!(
        !probe.status.success(),
        "ffprobe still found the deleted stream"
    );
    assert!(
        String::from_utf8_lossy(&probe.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// `readers.rtsp` of `GET /api/streams/cam`.
fn rtsp_readers(gateway: &Gateway) -> Vec<serde_json::Value> {
    let (status, view) = gateway.request("GET", "/api/streams/cam", None);
    assert_eq!(status, 200, "{view}");
    let view: serde_json::Value = serde_json::from_str(&view).expect("JSON view");
    view["readers"]["rtsp"]
        .as_array()
        .unwrap_or_else(|| panic!("no readers.rtsp in {view}"))
        .clone()
}

/// The reader's address is the ffmpeg client's: loopback, its own port.
fn assert_reader_is_local_client(reader: &serde_json::Value, server_port: u16) {
    let address: std::net::SocketAddr = reader["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {reader}"));
    assert!(address.ip().is_loopback(), "{reader}");
    assert!(
        address.port() != 0 && address.port() != server_port,
        "{reader}"
    );
}

#[test]
fn api_token_from_the_environment_guards_the_api_and_stays_out_of_the_log() {
    let token = "env-T0ken-9f2";
    let gateway = Gateway::start_with_env(
        "[streams.demo]\nsource = \"demo\"\n",
        &[("STREAMGATE_API_TOKEN", token), ("RUST_LOG", "debug")],
    );
    let port = gateway.http_port;
    let (status, body) = gateway.request("GET", "/api/streams", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing or wrong bearer token"), "{body}");
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (status, body) = http_with_headers(port, "GET", "/api/streams", None, &auth);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"name\":\"demo\""), "{body}");
    let (status, _) = http_with_headers(
        port,
        "DELETE",
        "/api/streams/demo",
        None,
        "Authorization: Bearer wrong\r\n",
    );
    assert_eq!(status, 401);
    assert_eq!(gateway.request("GET", "/healthz", None).0, 200);
    let log = gateway.log();
    assert!(!log.contains(token), "the API token is in the log:\n{log}");
}
