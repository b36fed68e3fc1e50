//! The load tools against the real gateway: 10 virtual cameras, the
//! `streamgate` binary pulling them as rtsp:// sources, and 50 readers of the
//! gateway's restreams for 30 s. Every packet arrives, time never steps back and
//! every reader starts on a decodable keyframe. The same checks hold for HLS
//! readers of the gateway's playlists.

mod support;

use support::*;

const CAMERAS: usize = 10;
const READERS: usize = 50;
const SECONDS: u64 = 30;

/// Every per-reader check of the summary came out clean: no reader ended early,
/// nothing lost, no timestamp stepped back, every reader started on a keyframe.
fn assert_every_check_passed(summary: &serde_json::Value, context: &impl Fn() -> String) {
    for counter in [
        "failed_readers",
        "lost",
        "backward_timestamps",
        "readers_not_starting_on_keyframe",
        "readers_without_video",
    ] {
        assert_eq!(number(summary, counter), 0, "{counter}: {}", context());
    }
}

#[test]
fn fifty_readers_of_ten_pulled_cameras_lose_nothing() {
    let (_cameras, camera_prefix) = start_cameras(&["--count", &CAMERAS.to_string()]);
    let gateway = Gateway::start(&camera_prefix, CAMERAS);
    let mut args = vec!["--readers".to_owned(), READERS.to_string()];
    for i in 0..CAMERAS {
        args.push("--url".to_owned());
        args.push(format!("rtsp://127.0.0.1:{}/pulled{i}", gateway.rtsp_port));
    }
    let (output, summary) = read(&args, SECONDS);
    let context = || format!("summary: {summary:#}\ngateway log:\n{}", gateway.log());
    assert_eq!(number(&summary, "readers"), READERS as u64);
    assert_every_check_passed(&summary, &context);
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

/// HLS readers of two pulled cameras' playlists, whole segments or LL-HLS parts.
fn read_hls(parts: bool) -> (std::process::Output, serde_json::Value, impl Fn() -> String) {
    let (cameras, camera_prefix) = start_cameras(&["--count", "2"]);
    let gateway = Gateway::start(&camera_prefix, 2);
    let mut args = vec!["--readers".to_owned(), "6".to_owned()];
    if parts {
        args.push("--parts".to_owned());
    }
    for i in 0..2 {
        args.push("--url".to_owned());
        args.push(format!(
            "http://127.0.0.1:{}/hls/pulled{i}/index.m3u8",
            gateway.http_port
        ));
    }
    // 20 s: several 2 s segments per reader after the muxer has started.
    let (output, summary) = read(&args, 20);
    let log = gateway.log();
    drop((gateway, cameras));
    let context = {
        let summary = summary.clone();
        move || format!("summary: {summary:#}\ngateway log:\n{log}")
    };
    (output, summary, context)
}

#[test]
fn hls_readers_of_pulled_cameras_get_every_segment() {
    let (output, summary, context) = read_hls(false);
    assert_every_check_passed(&summary, &context);
    for report in summary["reader_reports"]
        .as_array()
        .expect("reader reports")
    {
        // Units are segments here: a reader that fetched two has checked a gap.
        assert!(report["packets"].as_u64().unwrap_or(0) >= 2, "{report}");
    }
    assert!(output.status.success(), "{}", context());
}

/// LL-HLS readers ask for each part with a blocking reload and get every part
/// in order, from an independent one on; each reload is timed.
#[test]
fn ll_hls_readers_of_pulled_cameras_get_every_part() {
    let (output, summary, context) = read_hls(true);
    assert_every_check_passed(&summary, &context);
    for report in summary["reader_reports"]
        .as_array()
        .expect("reader reports")
    {
        // 0.2 s parts for well over 10 s: dozens of parts.
        assert!(report["packets"].as_u64().unwrap_or(0) >= 20, "{report}");
    }
    // Most parts are asked for before they exist, each such reload timed.
    let timed = number(&summary["latency_ms"], "samples");
    assert!(timed >= 6 * 10, "{}", context());
    assert!(output.status.success(), "{}", context());
}
