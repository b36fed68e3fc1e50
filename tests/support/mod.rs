//! Harness shared by the end-to-end tests: the real `streamgate` binary on free
//! ports with a temp config, peers found on PATH (a missing peer fails the test,
//! never skips), peers run bounded in time, ffmpeg output helpers and a minimal
//! blocking HTTP/1.1 client. The RTSP camera-source harness is in [`camera`], the
//! Chromium HLS player in [`player`], the Ring simulator and linking in [`ring`].

pub mod camera;
pub mod mqtt;
pub mod player;
pub mod ring;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest any peer process may run before the test fails it.
pub const PEER_DEADLINE: Duration = Duration::from_secs(90);

/// Longest a wait on the gateway may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

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

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `(msn, part)` of an LL-HLS preload hint URI `part_{msn}_{part}.m4s`.
pub fn hint_parts(uri: &str) -> (&str, &str) {
    uri.strip_prefix("part_")
        .unwrap()
        .strip_suffix(".m4s")
        .unwrap()
        .split_once('_')
        .unwrap()
}

/// A capture under fixtures/, as an absolute path.
pub fn fixture(name: &str) -> String {
    repo_path("fixtures").join(name).display().to_string()
}

/// The project venv's python (aiortsp lives there).
pub fn venv_python() -> PathBuf {
    let python = repo_path(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/setup",
        python.display()
    );
    python
}

/// Sends `signal` (`-HUP`, `-STOP`, `-CONT`…) to process `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new(peer("kill"))
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
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

/// The running binary; killed on drop. Its config is `dir/gateway.toml`, its log `dir/gateway.log`.
pub struct Gateway {
    child: Child,
    pub rtsp_port: u16,
    pub http_port: u16,
    pub dir: TempDir,
    rtsp_extra: String,
}

impl Gateway {
    /// The binary with `streams` (`[streams.*]` tables and other sections) as the rest of its config.
    pub fn start(streams: &str) -> Gateway {
        Gateway::launch("", streams, &[])
    }

    /// Like [`Gateway::start`], with extra environment variables for the binary.
    pub fn start_with_env(streams: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::launch("", streams, env)
    }

    /// The demo capture as stream `demo`, `rtsp_extra` lines in `[rtsp]` and `extra` appended.
    pub fn demo(rtsp_extra: &str, extra: &str) -> Gateway {
        Gateway::launch(
            rtsp_extra,
            &format!("[streams.demo]\nsource = \"demo\"\n\n{extra}\n"),
            &[],
        )
    }

    /// The demo stream as `demo` with `extra_hls` lines in `[hls]`.
    pub fn hls(extra_hls: &str) -> Gateway {
        Gateway::hls_with("[streams.demo]\nsource = \"demo\"\n", extra_hls)
    }

    /// The given `[streams.*]` tables with `extra_hls` lines in `[hls]`.
    pub fn hls_with(streams: &str, extra_hls: &str) -> Gateway {
        Gateway::start(&format!("{streams}\n[hls]\n{extra_hls}\n"))
    }

    /// Like [`Gateway::start`] on the given ports (a cluster member's config
    /// advertises its own).
    #[cfg(feature = "cluster")]
    pub fn start_on(rtsp_port: u16, http_port: u16, rest: &str) -> Gateway {
        Gateway::launch_on((rtsp_port, http_port), "", rest, &[])
    }

    fn launch(rtsp_extra: &str, rest: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::launch_on((free_port(), free_port()), rtsp_extra, rest, env)
    }

    fn launch_on(
        (rtsp_port, http_port): (u16, u16),
        rtsp_extra: &str,
        rest: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let dir = TempDir::new("gateway");
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, config_text(rtsp_port, http_port, rtsp_extra, rest))
            .expect("write config");
        let log = std::fs::File::create(dir.path().join("gateway.log")).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,streamgate_rtsp=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn streamgate");
        let mut gateway = Gateway {
            child,
            rtsp_port,
            http_port,
            dir,
            rtsp_extra: rtsp_extra.to_owned(),
        };
        gateway.wait_listening();
        gateway
    }

    /// Waits until both listeners accept and `/healthz` answers 200.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(
                self.is_running(),
                "gateway exited at start; log:\n{}",
                self.log()
            );
            if TcpStream::connect(("127.0.0.1", self.rtsp_port)).is_ok()
                && http(self.http_port, "GET", "/healthz", None).0 == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not listen on {}/{} within {DEADLINE:?}; log:\n{}",
                self.rtsp_port,
                self.http_port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the config file's rest (the listeners stay) and sends SIGHUP.
    pub fn reload(&self, streams: &str) {
        let text = config_text(self.rtsp_port, self.http_port, &self.rtsp_extra, streams);
        std::fs::write(self.dir.path().join("gateway.toml"), text).expect("rewrite config");
        signal(self.pid(), "-HUP");
    }

    pub fn rtsp_url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.rtsp_port)
    }

    pub fn url_with_credentials(&self, user: &str, password: &str, path: &str) -> String {
        format!(
            "rtsp://{user}:{password}@127.0.0.1:{}/{path}",
            self.rtsp_port
        )
    }

    /// `http://127.0.0.1:PORT{path}`; `path` starts with `/`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
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

    /// Resident set size of the gateway process, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// One HTTP request to the gateway: (status, body).
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

    /// `GET /api/streams/NAME` until `done` holds for its body; the body.
    pub fn wait_api(&self, name: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let body = get(self.http_port, &format!("/api/streams/{name}")).text();
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "API view of {name} never matched: {body}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `path` until it answers 200 (the gateway answers 503 while the first segment is made).
    pub fn wait_ok(&self, path: &str) -> Response {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = get(self.http_port, path);
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

fn config_text(rtsp_port: u16, http_port: u16, rtsp_extra: &str, rest: &str) -> String {
    // The WHEP server's UDP port: any free one, unless the test sets `[webrtc]`.
    // Last, so that `rest` may begin with `[http]` keys.
    let webrtc = if rest.contains("[webrtc]") {
        ""
    } else {
        "\n\n[webrtc]\nlisten = \"127.0.0.1:0\"\n"
    };
    format!(
        "[rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\n{rtsp_extra}\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n{rest}{webrtc}"
    )
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
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

/// One HTTP/1.1 request to 127.0.0.1:`port` (connection closed after), with extra
/// header lines (each ending in `\r\n`); `None` when the exchange failed. The body
/// is read by Content-Length (the gateway always sends it), else to the end.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &str,
    timeout: Duration,
) -> Option<Response> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    let body = body.unwrap_or("");
    // TOML (the API's) unless the caller's headers name the type.
    let content_type = if headers.to_ascii_lowercase().contains("content-type:") {
        ""
    } else {
        "Content-Type: application/toml\r\n"
    };
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{content_type}{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
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
    match response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => {
            response.body.resize(len, 0);
            reader.read_exact(&mut response.body).ok()?;
        }
        None => {
            reader.read_to_end(&mut response.body).ok()?;
        }
    }
    Some(response)
}

/// ffprobe's `entries` of `path` (`-show_entries`), as `key=value` lines.
pub fn ffprobe(path: &Path, entries: &str) -> String {
    let output = run(
        Command::new(peer("ffprobe"))
            .args([
                "-v",
                "error",
                "-show_entries",
                entries,
                "-of",
                "default=nw=1",
            ])
            .arg(path),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// GET `path` from 127.0.0.1:`port` (30 s timeout); fails the test when there is no answer.
pub fn get(port: u16, path: &str) -> Response {
    let response = request(port, "GET", path, None, "", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("GET {path}: no HTTP answer"));
    assert!(
        response.header("transfer-encoding").is_none(),
        "chunked responses are not expected from the gateway"
    );
    response
}

/// One HTTP request; (status, body). Status 0: no answer.
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
    request(port, method, path, body, headers, Duration::from_secs(10))
        .map_or((0, String::new()), |response| {
            (response.status, response.text())
        })
}

/// Value of `name{labels}` in Prometheus text.
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
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

/// `streamgate check-config PATH` with `RUST_LOG=rust_log`, run to completion.
pub fn check_config(path: &Path, rust_log: &str) -> Output {
    run(
        Command::new(env!("CARGO_BIN_EXE_streamgate"))
            .arg("check-config")
            .arg(path)
            .env("RUST_LOG", rust_log),
        PEER_DEADLINE,
    )
}

/// Runs the Python peer `tests/peers/{script}` with the project venv's python within [`PEER_DEADLINE`].
pub fn run_python_peer(script: &str, args: &[&str]) -> Output {
    run(
        Command::new(venv_python())
            .arg(repo_path("tests/peers").join(script))
            .args(args),
        PEER_DEADLINE,
    )
}

/// GStreamer (`tests/peers/gst_play.py`: rtspsrc, decodebin) plays `url` over
/// `protocols` (`tcp`, `udp`) for `seconds`; fails unless it reported no error
/// and decoded at least `at_least` video and audio buffers each.
pub fn gst_plays(gateway: &Gateway, url: &str, protocols: &str, seconds: u32, at_least: u64) {
    let output = run_python_peer("gst_play.py", &[url, protocols, &seconds.to_string()]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "gst_play.py failed: {}",
        text(&output.stderr)
    );
    assert!(
        !stdout.contains("error="),
        "GStreamer reading {url} over {protocols} reported errors:\n{stdout}\n{}",
        gateway.log()
    );
    for kind in ["video", "audio"] {
        let decoded: u64 = progress_number(&stdout, kind);
        assert!(
            decoded >= at_least,
            "GStreamer decoded {decoded} {kind} buffers of {url} over {protocols}:\n{stdout}"
        );
    }
}

/// Starts the peer `program` with `args` in the background, all its output discarded.
pub fn spawn_quiet(program: &str, args: &[&str]) -> Child {
    Command::new(peer(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
}

/// Runs the peer `program` with `args` within [`PEER_DEADLINE`]: (success, stdout, stderr).
pub fn run_peer(program: &str, args: &[&str]) -> (bool, String, String) {
    let output = run(Command::new(peer(program)).args(args), PEER_DEADLINE);
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
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

/// ffmpeg decoding `seconds` of `url`, read over `transport`, to nothing: only
/// error-level lines on stderr, `-progress` on stdout. `input_options` go before
/// `-i`, `output_options` after `-t`.
pub fn ffmpeg_decode(
    url: &str,
    transport: &str,
    seconds: u32,
    input_options: &[&str],
    output_options: &[&str],
) -> Output {
    run(
        Command::new(peer("ffmpeg"))
            .args(["-hide_banner", "-nostats", "-v", "error"])
            .args(["-rtsp_transport", transport])
            .args(input_options)
            .args(["-i", url, "-t", &seconds.to_string()])
            .args(output_options)
            .args(["-f", "null", "-", "-progress", "pipe:1"]),
        PEER_DEADLINE,
    )
}

/// The number a peer's `key=value` output reported last for `key` (0 when none).
pub fn progress_number<T: std::str::FromStr + Default>(stdout: &str, key: &str) -> T {
    progress_value(stdout, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// The frames ffmpeg decoded, from its `-progress` output (0 when it reported none).
pub fn decoded_frames(stdout: &str) -> u64 {
    progress_number(stdout, "frame")
}

/// What ffmpeg decoded of a stream: per video frame its dts and pts (in 1/90000 s,
/// as passed through), the audio frame count, and its error lines.
pub struct Decoded {
    pub video_dts: Vec<i64>,
    pub video: Vec<i64>,
    pub audio: usize,
    pub errors: Vec<String>,
}

/// Reads `seconds` of `url` (RTSP over TCP) with ffmpeg, decoding every video and
/// audio frame into `framecrc` lists in `dir` (one line per decoded frame,
/// timestamps passed through). The stream must have audio.
pub fn decode_av(url: &str, seconds: u32, dir: &Path) -> Decoded {
    let (video_list, audio_list) = (dir.join("video.crc"), dir.join("audio.crc"));
    let output = run(
        Command::new(peer("ffmpeg"))
            .args(["-nostdin", "-v", "error", "-rtsp_transport", "tcp"])
            .args(["-timeout", "5000000"])
            .args(["-t", &seconds.to_string(), "-i", url])
            .args(["-map", "0:v", "-fps_mode", "passthrough"])
            .args(["-enc_time_base:v", "1:90000", "-f", "framecrc"])
            .arg(&video_list)
            .args(["-map", "0:a", "-f", "framecrc"])
            .arg(&audio_list),
        Duration::from_secs(u64::from(seconds) + 60),
    );
    assert!(
        output.status.success(),
        "ffmpeg failed: {}",
        text(&output.stderr)
    );
    // framecrc lines: stream, dts, pts, duration, size, crc.
    let frames = |path: &Path| -> Vec<Vec<i64>> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(',').filter_map(|f| f.trim().parse().ok()).collect())
            .collect()
    };
    let video = frames(&video_list);
    let stderr = text(&output.stderr);
    Decoded {
        video_dts: video.iter().filter_map(|f| f.get(1).copied()).collect(),
        video: video.iter().filter_map(|f| f.get(2).copied()).collect(),
        audio: frames(&audio_list).len(),
        errors: error_lines(&stderr)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
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
    let mut previous_left_out = false;
    error_lines(stderr)
        .into_iter()
        .filter(|l| {
            // ffmpeg folds repeats of a line into "Last message repeated N times".
            let left_out = l.contains("non monotonically increasing dts to muxer")
                || (previous_left_out && l.trim_start().starts_with("Last message repeated"));
            previous_left_out = left_out;
            !left_out
        })
        .collect()
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

/// Runs `tests/js/SCRIPT` with node (headless Chromium through playwright-core)
/// and returns the JSON report it prints last; fails the test with the script's
/// output and the gateway's log when it fails.
pub fn node_report(script: &str, args: &[&str], gateway: &Gateway) -> serde_json::Value {
    let output = run(
        Command::new(peer("node"))
            .arg(repo_path(&format!("tests/js/{script}")))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(150),
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {}\n{stdout}\n{}",
        text(&output.stderr),
        gateway.log()
    );
    let report = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad report from {script} ({e}): {stdout}"));
    println!("{script} report: {report}");
    report
}
