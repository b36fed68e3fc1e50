//! Shared harness of the load tests: run `streamgate-load` and the `streamgate`
//! binary as real processes on ephemeral loopback ports, bounded in time.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest a `read` run may take beyond its own duration before the test fails.
pub const GRACE: Duration = Duration::from_secs(60);

pub fn load_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_streamgate-load"))
}

/// The `streamgate` binary of the same build (built here: it is another package).
pub fn gateway_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "streamgate",
            "--bin",
            "streamgate",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building streamgate failed");
    load_binary().with_file_name("streamgate")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A child process killed on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `streamgate-load cameras` on a free port; returns it and the URL prefix
/// (`rtsp://127.0.0.1:PORT/cam`).
pub fn start_cameras(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(load_binary())
        .args(["cameras", "--listen", "127.0.0.1:0", "--duration", "240"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn streamgate-load cameras");
    let stdout = child.stdout.take().expect("cameras stdout");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("cameras printed no URL within 30 s");
    let prefix = line
        .split_whitespace()
        .find(|word| word.starts_with("rtsp://"))
        .and_then(|url| url.strip_suffix('0'))
        .unwrap_or_else(|| panic!("no camera URL in {line:?}"))
        .to_owned();
    (running, prefix)
}

/// `streamgate-load read ... --json`: exit status and the parsed summary.
pub fn read(args: &[String], duration_secs: u64) -> (Output, serde_json::Value) {
    run_load("read", args, duration_secs)
}

/// `streamgate-load SUBCOMMAND ... --json --duration S` (`read` or `whep`):
/// exit status and the parsed summary.
pub fn run_load(
    subcommand: &str,
    args: &[String],
    duration_secs: u64,
) -> (Output, serde_json::Value) {
    let mut child = Command::new(load_binary())
        .args([
            subcommand,
            "--json",
            "--duration",
            &duration_secs.to_string(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn streamgate-load {subcommand}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(duration_secs) + GRACE;
    while child.try_wait().expect("wait streamgate-load").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{subcommand} did not end within its duration + {GRACE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().expect("streamgate-load output");
    let summary = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{subcommand} printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, summary)
}

pub fn number(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no number {key}: {summary}"))
}

/// The `streamgate` binary on free loopback ports (its WHEP server on a free
/// UDP port); killed on drop.
pub struct Gateway {
    _process: Running,
    pub rtsp_port: u16,
    pub http_port: u16,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// Pulling `count` cameras at `camera_prefix` as streams `pulled0..`.
    pub fn start(camera_prefix: &str, count: usize) -> Gateway {
        let streams: String = (0..count)
            .map(|i| format!("[streams.pulled{i}]\nsource = \"{camera_prefix}{i}\"\n\n"))
            .collect();
        Gateway::with_streams(&streams)
    }

    /// With `streams` (`[streams.*]` tables) as the rest of its config.
    pub fn with_streams(streams: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let (rtsp_port, http_port) = (free_port(), free_port());
        let config = format!(
            "[rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[webrtc]\nlisten = \"127.0.0.1:0\"\n\n{streams}"
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).expect("write config");
        let process = Running(
            Command::new(gateway_binary())
                .arg("--config")
                .arg(&config_path)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("gateway.log")).expect("log file"))
                .spawn()
                .expect("spawn streamgate"),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", rtsp_port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "gateway never listened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Gateway {
            _process: process,
            rtsp_port,
            http_port,
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }
}
