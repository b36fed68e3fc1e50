//! The API of the running `streamgate` binary with real readers: a stream added
//! with `PUT /api/streams/NAME` is read over RTSP by ffmpeg, `/metrics` scraped
//! during the read shows the reader and the counts moving, and
//! `DELETE /api/streams/NAME` ends the reader (ffmpeg exits).

mod api_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use api_support::{peer, sample, Gateway, DEADLINE};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

/// ffmpeg decoding `url` to nothing; its `-progress` frame counts arrive on the channel.
fn start_reader(url: &str) -> (Child, mpsc::Receiver<u64>) {
    let mut child = Command::new(peer("ffmpeg"))
        .args([
            "-hide_banner",
            "-nostats",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
        ])
        .args(["-i", url, "-f", "null", "-", "-progress", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ffmpeg");
    let stdout = child.stdout.take().expect("stdout");
    let (frames_tx, frames) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(Ok(frame)) = line.strip_prefix("frame=").map(|v| v.trim().parse()) {
                if frames_tx.send(frame).is_err() {
                    return;
                }
            }
        }
    });
    (child, frames)
}

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
    for counter in [
        "streamgate_stream_packets_total",
        "streamgate_stream_bytes_total",
    ] {
        let key = format!("{counter}{{stream=\"cam\"}}");
        let (before, after) = (sample(&first, &key), sample(&second, &key));
        assert!(
            after > before && before.is_some(),
            "{counter}: {before:?} then {after:?}\n{second}"
        );
    }
    assert_eq!(
        sample(&second, "streamgate_stream_readers{stream=\"cam\"}"),
        Some(1.0),
        "{second}"
    );
    let (_, view) = gateway.request("GET", "/api/streams/cam", None);
    assert!(view.contains("\"readers\":1"), "{view}");

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
