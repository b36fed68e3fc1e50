//! Shared by the HLS end-to-end tests: runs the real `streamgate` binary on a free
//! port with a temporary config, and a minimal blocking HTTP/1.1 client (enough
//! for playlists and media; the gateway always sends Content-Length).

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A peer program the test needs; a missing one fails the test (never skips).
pub fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed: run scripts/setup"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway process; killed on drop. Its log is in `dir/gateway.log`.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Gateway {
    /// Starts the binary serving the demo stream as `demo`, plus `extra_hls` lines in `[hls]`.
    pub fn start(extra_hls: &str) -> Gateway {
        Gateway::start_with("[streams.demo]\nsource = \"demo\"\n", extra_hls)
    }

    /// Starts the binary with the given `[streams.*]` tables.
    pub fn start_with(streams: &str, extra_hls: &str) -> Gateway {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("streamgate-hls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "{streams}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\n\n[hls]\n{extra_hls}\n",
                rtsp_port = free_port()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start streamgate");
        let mut gateway = Gateway { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = gateway.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "streamgate did not listen ({exited:?}): {}",
                gateway.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// Resident set size of the gateway process, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Polls `path` until it answers 200 (the gateway answers 503 while the first segment is made).
    pub fn wait_ok(&self, path: &str) -> Response {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = get(self.port, path);
            if response.status == 200 {
                return response;
            }
            assert!(
                response.status == 503 && Instant::now() < deadline,
                "GET {path}: {} {}\n{}",
                response.status,
                response.text(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
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

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` from 127.0.0.1:`port` (one connection per request, 30 s timeout).
pub fn get(port: u16, path: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    assert!(
        response.header("transfer-encoding").is_none(),
        "chunked responses are not expected from the gateway"
    );
    match response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            response.body.resize(len, 0);
            reader.read_exact(&mut response.body).expect("body");
        }
        None => {
            reader.read_to_end(&mut response.body).expect("body");
        }
    }
    response
}

/// Runs a program and returns (success, stdout, stderr).
pub fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(require(program))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run peer");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
