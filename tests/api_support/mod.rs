//! Harness of the API and dashboard tests: the real `streamgate` binary on free
//! ports with a temp config, a minimal HTTP/1.1 client, peers found on PATH (a
//! missing peer fails the test).
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.http_port, method, path, body)
    }

    pub fn wait_for(&self, done: impl Fn() -> bool, what: &str) {
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
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
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
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}
