//! The API of the running `streamgate` binary with real readers: a stream added
//! with `PUT /api/streams/NAME` is read over RTSP by ffmpeg, `/metrics` scraped
//! during the read shows the reader and the counts moving, and
//! `DELETE /api/streams/NAME` ends the reader (ffmpeg exits).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest a peer or a wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A peer program from PATH; a missing peer fails the test.
fn peer(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (scripts/setup installs it)"))
}

/// The binary on free ports with `streams` as its streams; killed on drop.
struct Gateway {
    child: Child,
    rtsp_port: u16,
    http_port: u16,
    dir: PathBuf,
}

impl Gateway {
    fn start(streams: &str) -> Gateway {
        let (rtsp_port, http_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("sg-api-{}-{rtsp_port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "[rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n{streams}"
            ),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn streamgate");
        let gateway = Gateway {
            child,
            rtsp_port,
            http_port,
            dir,
        };
        gateway.wait_for(
            || http(gateway.http_port, "GET", "/healthz", None).0 == 200,
            "/healthz",
        );
        gateway
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.http_port, method, path, body)
    }

    fn wait_for(&self, done: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} never happened; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request (connection closed after); (status, body). Status 0: no answer.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let Ok(mut socket) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/toml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
    if socket.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = socket.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Bodies here are small; axum sends them with Content-Length, not chunked.
    (status, body.to_owned())
}

/// Value of `name{labels}` in Prometheus text.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

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
