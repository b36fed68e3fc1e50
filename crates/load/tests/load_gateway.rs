//! The load tools against the real gateway: 10 virtual cameras, the
//! `streamgate` binary pulling them as rtsp:// sources, and 50 readers of the
//! gateway's restreams for 30 s. Every packet arrives, time never steps back and
//! every reader starts on a decodable keyframe.

mod support;

use std::process::{Command, Stdio};

use support::*;

const CAMERAS: usize = 10;
const READERS: usize = 50;
const SECONDS: u64 = 30;

#[test]
fn fifty_readers_of_ten_pulled_cameras_lose_nothing() {
    let (_cameras, camera_prefix) = start_cameras(&["--count", &CAMERAS.to_string()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut config = format!(
        "[rtsp]\nlisten = \"127.0.0.1:{port}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n",
        free_port()
    );
    for i in 0..CAMERAS {
        config += &format!("[streams.pulled{i}]\nsource = \"{camera_prefix}{i}\"\n\n");
    }
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, config).expect("write config");
    let log_path = dir.path().join("gateway.log");
    let _gateway = Running(
        Command::new(gateway_binary())
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log file"))
            .spawn()
            .expect("spawn streamgate"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let mut args = vec!["--readers".to_owned(), READERS.to_string()];
    for i in 0..CAMERAS {
        args.push("--url".to_owned());
        args.push(format!("rtsp://127.0.0.1:{port}/pulled{i}"));
    }
    let (output, summary) = read(&args, SECONDS);
    let context = || {
        format!(
            "summary: {summary:#}\ngateway log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    };
    assert_eq!(number(&summary, "readers"), READERS as u64);
    assert_eq!(number(&summary, "failed_readers"), 0, "{}", context());
    assert_eq!(number(&summary, "lost"), 0, "{}", context());
    assert_eq!(number(&summary, "backward_timestamps"), 0, "{}", context());
    assert_eq!(
        number(&summary, "readers_not_starting_on_keyframe"),
        0,
        "{}",
        context()
    );
    assert_eq!(
        number(&summary, "readers_without_video"),
        0,
        "{}",
        context()
    );
    let reports = summary["reader_reports"]
        .as_array()
        .expect("reader reports");
    assert_eq!(reports.len(), READERS);
    for report in reports {
        // Video and audio of 25 fps 720p for most of 30 s: thousands of packets each.
        assert!(report["packets"].as_u64().unwrap_or(0) > 1000, "{report}");
    }
    assert!(
        output.status.success(),
        "read failed: {:?}\n{}",
        summary["failures"],
        context()
    );
}
