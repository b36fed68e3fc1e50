//! The `streamgate` binary itself: config errors as a user sees them, and a
//! clean start and stop on the shipped gateway.toml.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{
    decoded_frames, error_lines, ffmpeg_decode, free_port, repo_path, signal, text, TempDir,
};

const BINARY: &str = env!("CARGO_BIN_EXE_streamgate");
/// Hang guard only: how long to wait for a log line before declaring the binary stuck.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// `streamgate check-config PATH` at the log level a user runs it with.
fn check_config(path: &Path) -> std::process::Output {
    support::check_config(path, "info")
}

#[test]
fn check_config_reports_file_line_and_problem() {
    let dir = TempDir::new("binary_config-errors");
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown_key.toml",
            "[streams.cam]\nsource = \"demo\"\nport = 554\n",
            ":3:1: unknown field `port`, expected one of `source`, `sdp`",
        ),
        (
            "unknown_section.toml",
            "[stream.cam]\nsource = \"demo\"\n",
            ":1:2: unknown field `stream`",
        ),
        (
            "bad_scheme.toml",
            "[streams.cam]\nsource = \"http://cam.local/live\"\n",
            ":2:10: unknown source scheme `http://`",
        ),
        (
            "missing_source.toml",
            "\n[streams.cam]\nsdp = \"cam.sdp\"\n",
            ":2:1: missing field `source`",
        ),
    ];
    for (file, text, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let output = check_config(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file} was accepted");
        let wanted = format!("{}{expected}", path.display());
        assert!(
            stderr.contains(&wanted),
            "{file}: want {wanted:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_config_loads_pcap_sources_and_names_the_stream() {
    let dir = TempDir::new("binary_config-pcap");
    let fixtures = repo_path("fixtures");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[streams.h265]\nsource = \"pcap:{}\"\n",
            fixtures.join("ffmpeg_h265.pcap").display()
        ),
    )
    .unwrap();
    let output = check_config(&good);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let missing = dir.path().join("missing.toml");
    std::fs::write(&missing, "[streams.cam]\nsource = \"pcap:nowhere.pcap\"\n").unwrap();
    let output = check_config(&missing);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("stream cam: ") && stderr.contains("nowhere.sdp"),
        "{stderr}"
    );
}

#[test]
fn shipped_config_checks_clean() {
    let output = check_config(&repo_path("gateway.toml"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("configuration is valid"));
}

/// A running binary whose stderr log lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str], dir: &Path) -> Running {
        let mut child = Command::new(BINARY)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `text`; None if the log ended first.
    fn wait_for(&mut self, text: &str) -> Option<String> {
        loop {
            match self.lines.recv_timeout(HANG_GUARD) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn signal(&self, name: &str) {
        signal(self.child.id(), &format!("-{name}"));
    }

    /// Collects the rest of the log (until stderr closes) and waits for exit.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        while let Ok(line) = self.lines.recv_timeout(HANG_GUARD) {
            self.seen.push(line);
        }
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped gateway.toml with every `listen = "..."` address (each output
/// states its listener there) moved to a free loopback port, so tests run side
/// by side and next to a running gateway. Returns the text and the first
/// listener's port (the `[rtsp]` server's: it comes first in the file).
fn shipped_config_on_free_ports() -> (String, u16) {
    let shipped = std::fs::read_to_string(repo_path("gateway.toml")).unwrap();
    let mut ports = Vec::new();
    let text: Vec<String> = shipped
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("listen = ") {
                let port = free_port();
                ports.push(port);
                format!("listen = \"127.0.0.1:{port}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(!ports.is_empty(), "gateway.toml has no `listen` line");
    (text.join("\n") + "\n", ports[0])
}

/// The binary running in `dir` on the shipped gateway.toml (on free ports);
/// returns it once it logs that it runs, with its RTSP port.
fn start_shipped(dir: &TempDir) -> (Running, u16) {
    let (config, rtsp_port) = shipped_config_on_free_ports();
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let mut gateway = Running::start(&[], dir.path());
    assert!(
        gateway.wait_for("streamgate running").is_some(),
        "did not start: {:?}",
        gateway.seen
    );
    (gateway, rtsp_port)
}

#[test]
fn starts_on_gateway_toml_and_stops_cleanly_on_sigint() {
    let dir = TempDir::new("binary_config-shipped");
    let (gateway, rtsp_port) = start_shipped(&dir);
    assert!(gateway
        .seen
        .iter()
        .any(|l| l.contains("starting replay source") && l.contains("stream=demo")));
    // The README's promise: the shipped config serves the demo to ffmpeg.
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/demo");
    let read = ffmpeg_decode(&url, "tcp", 3, &[], &[]);
    let stderr = text(&read.stderr);
    assert!(read.status.success(), "ffmpeg failed on {url}: {stderr}");
    assert!(error_lines(&stderr).is_empty(), "{stderr}");
    assert!(decoded_frames(&text(&read.stdout)) > 0, "no frame decoded");
    gateway.signal("INT");
    let (status, log) = gateway.finish();
    assert!(status.success(), "exit {status:?}: {log:?}");
    assert!(
        log.iter().any(|l| l.contains("SIGINT: shutting down")),
        "{log:?}"
    );
    assert!(log.last().is_some_and(|l| l.contains("stopped")), "{log:?}");
}

#[test]
fn failing_sources_are_reported_without_secrets_and_sigterm_stops() {
    let dir = TempDir::new("binary_config-failing");
    std::fs::write(
        dir.path().join("gw.toml"),
        shipped_config_on_free_ports().0
            + "\n[streams.cam]\nsource = \"rtsps://admin:hunter2@127.0.0.1:9/live\"\nalways_on = true\n",
    )
    .unwrap();
    let mut gateway = Running::start(&["--config", "gw.toml"], dir.path());
    assert!(
        gateway.wait_for("camera session failed").is_some(),
        "no failure reported: {:?}",
        gateway.seen
    );
    gateway.signal("TERM");
    let (status, log) = gateway.finish();
    assert!(status.success(), "exit {status:?}: {log:?}");
    let failed = log
        .iter()
        .find(|l| l.contains("stream=cam") && l.contains("camera session failed"));
    assert!(
        failed.is_some_and(|l| l.contains("rtsps://***@127.0.0.1:9/live")),
        "{log:?}"
    );
    assert!(
        log.iter().all(|l| !l.contains("hunter2")),
        "password logged: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("SIGTERM: shutting down")),
        "{log:?}"
    );
}

/// Ctrl-C ends every RTSP session the way RFC 3550 says a sender leaves: an
/// RTCP BYE on each track, which ffmpeg (what Frigate reads through) takes as
/// the stream's end rather than as a network failure to retry.
#[test]
fn sigint_sends_rtcp_bye_on_every_track_to_a_reader() {
    let dir = TempDir::new("binary_config-bye");
    let (gateway, rtsp_port) = start_shipped(&dir);
    let ffmpeg_log = dir.path().join("ffmpeg.log");
    let mut reader = Command::new(support::peer("ffmpeg"))
        .args(["-hide_banner", "-nostats", "-v", "debug"])
        .args(["-rtsp_transport", "tcp", "-i"])
        .arg(format!("rtsp://127.0.0.1:{rtsp_port}/demo"))
        .args(["-f", "null", "-", "-progress", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&ffmpeg_log).unwrap())
        .spawn()
        .unwrap();
    // Kept open until ffmpeg ends: closing it would kill ffmpeg with SIGPIPE.
    let mut progress = BufReader::new(reader.stdout.take().unwrap()).lines();
    let decoding = progress
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.strip_prefix("frame=").is_some_and(|n| n.trim() != "0"));
    assert!(decoding, "ffmpeg decoded nothing before it stopped");
    gateway.signal("INT");
    let (status, log) = gateway.finish();
    assert!(status.success(), "exit {status:?}: {log:?}");
    // The gateway has exited, so ffmpeg's input has ended: it stops by itself
    // (the progress pipe reaches its end when it does).
    progress.for_each(drop);
    reader.wait().unwrap();
    let stderr = std::fs::read_to_string(&ffmpeg_log).unwrap();
    let byes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Received BYE for stream"))
        .collect();
    // ffmpeg counts them: "Received BYE for stream 1 (2/2)" once every track has one.
    let all_tracks = byes.last().and_then(|l| {
        let counts = l.rsplit_once('(')?.1.trim_end_matches(')');
        let (seen, tracks) = counts.split_once('/')?;
        Some(seen == tracks && tracks.parse::<u32>().ok()? >= 2)
    });
    assert_eq!(all_tracks, Some(true), "BYE lines: {byes:?}");
}

/// The README's promise for the default build: the binary needs nothing but
/// the C runtime every Debian/Ubuntu machine has (no FFmpeg, GStreamer or
/// OpenSSL libraries), so `cargo run --release` works on a fresh machine.
#[test]
fn default_build_links_only_the_c_runtime() {
    const C_RUNTIME: [&str; 8] = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux-x86-64.so",
    ];
    let ldd = Command::new("ldd").arg(BINARY).output().unwrap();
    assert!(ldd.status.success(), "ldd: {}", text(&ldd.stderr));
    let libraries: Vec<String> = text(&ldd.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_owned())
        .collect();
    assert!(
        libraries.iter().any(|l| l.starts_with("libc.so")),
        "{libraries:?}"
    );
    let others: Vec<&String> = libraries
        .iter()
        .filter(|l| !C_RUNTIME.iter().any(|c| l.starts_with(c)))
        .collect();
    assert!(
        others.is_empty(),
        "links more than the C runtime: {others:?}"
    );
}
