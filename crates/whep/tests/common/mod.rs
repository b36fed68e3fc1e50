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

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl WhepServer {
    /// Starts the server with extra arguments (`--max-session`, `--token`, ...). Fails the
    /// test when the peer (the venv's python with aiortc) is missing.
    pub fn start(args: &[&str]) -> WhepServer {
        let root = repo_root();
        let python = root.join(".venv/bin/python");
        assert!(python.exists(), "aiortc venv missing at {}: run scripts/setup", python.display());
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
        BufReader::new(stdout).read_line(&mut line).expect("read the server's port");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("WHEP server did not start: {line:?}"));
        WhepServer { child, port, events, _dir: dir }
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

    /// Waits (bounded) until `count(key, value) >= n`; returns the final count.
    pub async fn wait_count(&self, key: &str, value: &str, n: usize, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.count(key, value);
            if seen >= n || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WhepServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
