//! Harness of the API and dashboard tests: the real `streamgate` binary on free
//! ports with a temp config, a minimal HTTP/1.1 client, peers found on PATH (a
//! missing peer fails the test).
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest a peer or a wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A peer program from PATH; a missing peer fails the test.
pub fn peer(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (scripts/setup installs it)"))
}

/// The binary on free ports with `streams` as its streams; killed on drop.
pub struct Gateway {
    child: Child,
    pub rtsp_port: u16,
    pub http_port: u16,
    pub dir: PathBuf,
}

impl Gateway {
    pub fn start(streams: &str) -> Gateway {
        Gateway::start_with_env(streams, &[])
    }

    /// Like [`Gateway::start`], with extra environment variables for the binary.
    pub fn start_with_env(streams: &str, env: &[(&str, &str)]) -> Gateway {
        let (rtsp_port, http_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("sg-api-{}-{rtsp_port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("gateway.toml");
        std::fs::write(&config, config_text(rtsp_port, http_port, streams)).expect("write config");
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied())
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

    /// Replaces the config file's streams (the listeners stay) and sends SIGHUP.
    pub fn reload(&self, streams: &str) {
        let text = config_text(self.rtsp_port, self.http_port, streams);
        std::fs::write(self.dir.join("gateway.toml"), text).expect("rewrite config");
        let status = Command::new(peer("kill"))
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.http_port, method, path, body)
    }

    pub fn wait_for(&self, mut done: impl FnMut() -> bool, what: &str) {
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

fn config_text(rtsp_port: u16, http_port: u16, streams: &str) -> String {
    format!(
        "[rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n{streams}"
    )
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request (connection closed after); (status, body). Status 0: no answer.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_with_headers(port, method, path, body, "")
}

/// [`http`] with extra header lines (each ending in `\r\n`).
pub fn http_with_headers(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &str,
) -> (u16, String) {
    let Ok(mut socket) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/toml\r\n{headers}Content-Length: {}\r\n\r\n{body}",
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
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// A capture under fixtures/, as an absolute path.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

/// ffmpeg decoding `url` to nothing; its `-progress` frame counts arrive on the channel.
pub fn start_reader(url: &str) -> (Child, mpsc::Receiver<u64>) {
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
