//! Harness of the RTSP camera source tests: the GStreamer fake camera
//! (tests/peers/gst_camera.py), misbehaving cameras, a restream server in the test
//! process, and a log capture to check what the source logs (and never logs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use streamgate_pipeline::{Hub, HubConfig};
use streamgate_rtsp::client::{RtspSource, SourceConfig, SourceState, SourceStatus};
use streamgate_rtsp::server::{RtspServer, ServerConfig, StreamEntry};

use super::repo_path;

/// Generous bound for anything the tests wait for (a failure, not a measurement).
pub const WAIT: Duration = Duration::from_secs(30);

/// A bundled media file the fake camera can loop: `ffmpeg_h264_aac.mkv` (10 s
/// 720p H.264, 2 s GOP, + AAC stereo) or `ffmpeg_h264_opus.mkv`.
pub fn media(name: &str) -> PathBuf {
    let path = repo_path(&format!("fixtures/media/{name}"));
    assert!(path.is_file(), "{} missing", path.display());
    path
}

/// gst-rtsp-server as a camera (a child process), restartable on its port.
pub struct Camera {
    child: Child,
    pub port: u16,
    media: PathBuf,
    args: Vec<String>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Camera {
    /// A camera on any free port at `rtsp://127.0.0.1:PORT/cam`; `extra` e.g. `["--user", "u", "--password", "p"]`.
    pub fn start(extra: &[&str]) -> Camera {
        Camera::with_media("ffmpeg_h264_aac.mkv", extra)
    }

    /// A camera looping `fixtures/media/{name}`.
    pub fn with_media(name: &str, extra: &[&str]) -> Camera {
        let media = media(name);
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (child, port) = spawn_camera(0, &media, &args, &lines);
        Camera {
            child,
            port,
            media,
            args,
            lines,
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    pub fn url_with(&self, userinfo: &str, path: &str) -> String {
        format!("rtsp://{userinfo}@127.0.0.1:{}/{path}", self.port)
    }

    /// Kills the camera like a power cut (SIGKILL: no TEARDOWN, no RTCP BYE).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let (child, port) = spawn_camera(self.port, &self.media, &self.args, &self.lines);
        assert_eq!(port, self.port);
        self.child = child;
    }

    /// Freezes the camera (SIGSTOP): its connections stay open but nothing moves.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Thaws a frozen camera (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        super::signal(self.child.id(), &format!("-{name}"));
    }

    /// Every stdout line so far (`client-connected N`, `client-closed N`, `media-started`…).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| l.as_str() == line).count()
    }

    /// Waits until the camera printed `line` (at least `times` times in total).
    pub fn wait_line(&self, line: &str, times: usize) {
        let deadline = Instant::now() + WAIT;
        while self.count(line) < times {
            assert!(
                Instant::now() < deadline,
                "camera never printed {line:?} ×{times}; it printed {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_camera(
    port: u16,
    media: &Path,
    args: &[String],
    lines: &Arc<Mutex<Vec<String>>>,
) -> (Child, u16) {
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.is_file(),
        "/usr/bin/python3 missing: run scripts/setup"
    );
    let mut child = Command::new(python)
        .arg(repo_path("tests/peers/gst_camera.py"))
        .arg("--media")
        .arg(media)
        .args(["--port", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tests/peers/gst_camera.py");
    let stdout = child.stdout.take().expect("camera stdout");
    let mut stderr = child.stderr.take().expect("camera stderr");
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .strip_prefix("listening ")
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                let _ = port_tx.send(port);
            }
            sink.lock().unwrap().push(line);
        }
    });
    match port_rx.recv_timeout(WAIT) {
        Ok(port) => (child, port),
        Err(_) => {
            let _ = child.kill();
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            panic!("gst camera did not start (GStreamer + python3-gi + gst-rtsp-server needed: run scripts/setup):\n{err}");
        }
    }
}

/// How a [`BadCamera`] misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Answers every request with bytes that are not RTSP.
    Garbage,
    /// Accepts the TCP connection and never says anything.
    Silent,
}

/// A TCP server that is not a working camera. Stops (and closes its sockets) on drop.
pub struct BadCamera {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub connections: Arc<Mutex<usize>>,
}

impl BadCamera {
    pub fn start(misbehaviour: Misbehaviour) -> BadCamera {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind bad camera");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(0));
        let (stop2, connections2) = (stop.clone(), connections.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut socket, _)) => {
                        *connections2.lock().unwrap() += 1;
                        if let Misbehaviour::Garbage = misbehaviour {
                            let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut request = [0u8; 4096];
                            let _ = socket.read(&mut request);
                            let _ = socket.write_all(
                                b"\x00\xffHELLO THIS IS NOT RTSP\r\n\x01\x02\x03\r\n\r\n",
                            );
                        }
                        held.push(socket);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        BadCamera {
            port,
            stop,
            connections,
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }
}

impl Drop for BadCamera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The test's log: every tracing event (and retina's `log` records) of this test binary.
pub fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary) and a panic counter.
pub fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Tasks run on the runtime's workers; a test's own failed assertion is not counted.
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"))
            {
                PANICKED.store(true, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Set by a panic on a runtime worker: a source task's panic would not fail a test by itself.
pub static PANICKED: AtomicBool = AtomicBool::new(false);

pub fn hub(name: &str) -> Hub {
    Hub::new(name, HubConfig::default())
}

/// A source with short timeouts (so failure tests retry quickly; no assertion depends on them).
pub fn source_config(url: &str, transport: &str) -> SourceConfig {
    let mut config = SourceConfig::new(url);
    config.transport = transport.parse().expect("transport");
    config.connect_timeout = Duration::from_secs(3);
    config.stall_timeout = Duration::from_secs(3);
    config
}

/// Waits until the source's status satisfies `done`.
pub async fn wait_status(
    source: &RtspSource,
    what: &str,
    done: impl Fn(&SourceStatus) -> bool,
) -> SourceStatus {
    let mut status = source.watch_status();
    let reached = match tokio::time::timeout(WAIT, status.wait_for(|s| done(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    reached.unwrap_or_else(|| {
        panic!(
            "source never reached {what}; status {:?}\nlog:\n{}",
            source.status(),
            logs()
        )
    })
}

pub fn is_playing(s: &SourceStatus) -> bool {
    s.state == SourceState::Playing
}

/// Tasks alive on this test's runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until no more tasks are alive than `before` (retina's background TEARDOWN
/// may take a moment); fails if some stay.
pub async fn assert_no_tasks_left(before: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while alive_tasks() > before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} tasks left after stop (before: {before})",
            alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves `hub` as `rtsp://127.0.0.1:PORT/NAME` from this process; returns the URL.
pub async fn restream(name: &str, hub: Hub) -> String {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let stream_name = name.to_owned();
    let directory = move |requested: &str| {
        (requested == stream_name).then(|| StreamEntry {
            hub: hub.clone(),
            credentials: None,
            publish: None,
        })
    };
    let server = RtspServer::bind(config, Arc::new(directory))
        .await
        .expect("bind restream server");
    let port = server.local_addr().expect("server addr").port();
    tokio::spawn(server.run());
    format!("rtsp://127.0.0.1:{port}/{name}")
}

/// `(stream index, dts)` of ffprobe's `-show_entries packet=stream_index,dts -of csv=p=0`
/// lines; `None` for a packet ffprobe could not time (`N/A`).
pub fn parse_packet_dts(csv: &str) -> Vec<(u32, Option<i64>)> {
    csv.lines()
        .filter_map(|l| {
            let (index, dts) = l.split_once(',')?;
            Some((
                index.trim().parse().ok()?,
                dts.trim().trim_end_matches(',').parse().ok(),
            ))
        })
        .collect()
}

/// Packets whose DTS is missing or not above the previous one of the same stream.
/// Only a stream's first packets may lack a DTS: ffmpeg's RTSP reader cannot time
/// them before the stream's sender report (it does the same reading a camera).
pub fn non_increasing_dts(packets: &[(u32, Option<i64>)]) -> Vec<String> {
    let mut last: std::collections::HashMap<u32, i64> = Default::default();
    let mut bad = Vec::new();
    for (i, &(stream, dts)) in packets.iter().enumerate() {
        match (dts, last.get(&stream)) {
            (None, None) => {}
            (None, Some(_)) => bad.push(format!("packet {i} stream {stream}: no dts")),
            (Some(dts), Some(&previous)) if dts <= previous => bad.push(format!(
                "packet {i} stream {stream}: dts {dts} after {previous}"
            )),
            (Some(dts), _) => {
                last.insert(stream, dts);
            }
        }
    }
    bad
}
