//! Shared harness of the RTSP end-to-end tests: start the real `streamgate`
//! binary on a free port with a temp config (the bundled demo capture as the
//! source), find the peers on PATH (a missing peer fails the test), and run them
//! bounded in time.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any peer process may run before the test fails it.
pub const PEER_DEADLINE: Duration = Duration::from_secs(90);

/// A running gateway; killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Gateway {
    /// Starts the gateway with a demo stream `demo` and the given extra TOML
    /// (appended; may add `[streams.*]`, and `[rtsp]` keys via `rtsp_extra`).
    pub fn start(rtsp_extra: &str, extra: &str) -> Gateway {
        let port = free_port();
        let http_port = free_port();
        let dir = TempDir::new("rtsp");
        let config = format!(
            "[rtsp]\nlisten = \"127.0.0.1:{port}\"\n{rtsp_extra}\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
             [streams.demo]\nsource = \"demo\"\n\n{extra}\n"
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("gateway.log")).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info,streamgate_rtsp=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn streamgate");
        let mut gateway = Gateway { child, port, dir };
        gateway.wait_listening();
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }

    pub fn url_with_credentials(&self, user: &str, password: &str, path: &str) -> String {
        format!("rtsp://{user}:{password}@127.0.0.1:{}/{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gateway's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            assert!(
                self.is_running(),
                "gateway exited at start; log:\n{}",
                self.log()
            );
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "gateway did not listen on {} within 20 s; log:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("streamgate-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// The path of a peer program; panics (fails the test) when it is not installed.
pub fn peer(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("required peer `{name}` is not on PATH: run scripts/setup"))
}

/// The project venv's python (aiortsp lives there).
pub fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/setup",
        python.display()
    );
    python
}

/// Runs a command to completion, killing it after `deadline`.
pub fn run(command: &mut Command, deadline: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr =
                String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
            panic!("{command:?} did not finish within {deadline:?}; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// ffprobe's `key=value` lines of the streams of `url`.
pub fn ffprobe_streams(url: &str, extra: &[&str]) -> Output {
    run(
        Command::new(peer("ffprobe"))
            .args(["-v", "error", "-rtsp_transport", "tcp"])
            .args(extra)
            .args([
                "-show_entries",
                "stream=codec_type,codec_name,width,height,sample_rate,channels",
            ])
            .args(["-of", "default=noprint_wrappers=1", url]),
        PEER_DEADLINE,
    )
}

/// Lines of ffmpeg's `-progress` output, last value per key.
pub fn progress_value(stdout: &str, key: &str) -> Option<String> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim().to_string())
}

/// ffmpeg stderr lines at error level that matter (ffmpeg prints nothing else with `-v error`).
pub fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// ffmpeg's error-level lines that report a decoding problem. Left out: the
/// null/MP4 muxer's "non monotonically increasing dts" notice, which is about
/// input timestamps, not decoding: it appears when frames arrive faster than
/// real time under `-use_wallclock_as_timestamps` (the GOP-cache burst), and
/// over UDP, where ffmpeg reads each socket in turn video-first and stamps the
/// first audio packet it reads after the burst like the next one.
pub fn decode_errors(stderr: &str) -> Vec<&str> {
    error_lines(stderr)
        .into_iter()
        .filter(|l| !l.contains("non monotonically increasing dts to muxer"))
        .collect()
}
