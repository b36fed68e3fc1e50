#![allow(dead_code)] // each test binary uses a part of these helpers
//! The aiortc WHEP server (tests/peers/whep_server.py) as a child process, and the
//! request log it writes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct WhepServer {
    child: Child,
    pub port: u16,
    events: PathBuf,
    _dir: tempfile::TempDir,
}

/// The repository root (this module is shared by the crate's and the root package's tests).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("tests/peers/whep_server.py").is_file())
        .expect("tests/peers/whep_server.py above CARGO_MANIFEST_DIR")
        .to_path_buf()
}

impl WhepServer {
    /// Starts the server with extra arguments (`--max-session`, `--token`, ...). Fails the
    /// test when the peer (the venv's python with aiortc) is missing.
    pub fn start(args: &[&str]) -> WhepServer {
        let root = repo_root();
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "aiortc venv missing at {}: run scripts/setup",
            python.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("events.jsonl");
        let mut child = Command::new(python)
            .arg(root.join("tests/peers/whep_server.py"))
            .arg("--events")
            .arg(&events)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the aiortc WHEP server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's port");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("WHEP server did not start: {line:?}"));
        WhepServer {
            child,
            port,
            events,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Every request and session event the server recorded so far.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn count(&self, key: &str, value: &str) -> usize {
        self.events().iter().filter(|e| e[key] == value).count()
    }
}

impl Drop for WhepServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A source config for `path` on the test server, bound to loopback.
pub fn config(server: &WhepServer, path: &str) -> streamgate_whep::WhepConfig {
    let source = server.url(path).replace("http://", "whep://");
    let mut config =
        streamgate_whep::WhepConfig::new(streamgate_whep::endpoint_url(&source).expect("WHEP URL"));
    config.bind_ip = std::net::Ipv4Addr::LOCALHOST.into();
    config
}

/// Waits (bounded) for a status that satisfies `done`; returns the last status seen.
pub async fn wait_status(
    source: &streamgate_whep::WhepSource,
    within: Duration,
    done: impl Fn(&streamgate_whep::WhepStatus) -> bool,
) -> streamgate_whep::WhepStatus {
    let mut watch = source.watch_status();
    let _ = tokio::time::timeout(within, watch.wait_for(|s| done(s))).await;
    source.status()
}
