//! Headless Chromium (Debian's `chromium`, driven by playwright-core) plays the
//! gateway's player page with the bundled hls.js in low-latency mode.

mod support;

use std::process::{Child, Command, Stdio};

use support::{fixture, peer, sample, Gateway};

/// Runs tests/js/hls_play.mjs against `url`; returns its JSON report.
fn play(url: &str, seconds: u32) -> String {
    report(start_player(url, seconds))
}

/// Starts tests/js/hls_play.mjs playing `url` until `seconds` of it played (60 s at most).
fn start_player(url: &str, seconds: u32) -> Child {
    peer("chromium");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/hls_play.mjs");
    Command::new(peer("node"))
        .arg(script)
        .arg(url)
        .arg(seconds.to_string())
        .arg("60")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node")
}

/// The player's JSON report, once it is done.
fn report(player: Child) -> String {
    let output = player.wait_with_output().expect("wait for node");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "hls_play.mjs failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_owned()
}

/// A number field of the flat JSON report.
fn number(report: &str, key: &str) -> f64 {
    let at = report
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
        + key.len()
        + 3;
    let end = report[at..].find([',', '}']).unwrap() + at;
    report[at..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {report}"))
}

fn list<'a>(report: &'a str, key: &str) -> &'a str {
    let at = report
        .find(&format!("\"{key}\":["))
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
        + key.len()
        + 4;
    let end = report[at..].find(']').unwrap() + at;
    &report[at..end]
}

/// Prints the player's report and checks it played `seconds` without a fatal error.
fn assert_played(report: &str, seconds: f64, gateway: &Gateway) {
    println!("chromium report: {report}");
    assert_eq!(
        list(report, "fatalErrors"),
        "",
        "hls.js fatal errors: {report}\n{}",
        gateway.log()
    );
    assert!(
        number(report, "currentTime") >= seconds,
        "playback did not advance {seconds} s: {report}\n{}",
        gateway.log()
    );
}

#[test]
fn chromium_plays_the_player_page_at_low_latency() {
    let gateway = Gateway::hls("");
    let report = play(&gateway.http_url("/hls/demo/"), 12);
    assert_played(&report, 10.0, &gateway);
    assert_eq!(number(&report, "videoWidth"), 1280.0);
    assert_eq!(number(&report, "videoHeight"), 720.0);

    // Reported, not asserted: timing belongs in benchmarks.
    let mut latencies: Vec<f64> = list(&report, "latencies")
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        println!("latency: hls.playingDate never set");
    } else {
        println!(
            "latency (wall clock - playhead PROGRAM-DATE-TIME): min {:.2} s, median {:.2} s, max {:.2} s over {} samples",
            latencies[0],
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1],
            latencies.len()
        );
    }
}

/// The stream is replaced through the API while Chromium plays it: hls.js goes on
/// across the discontinuity into the new source's segments, without a fatal error.
#[test]
fn chromium_keeps_playing_when_the_stream_is_replaced() {
    let source = |name: &str| format!("source = \"pcap:{}\"\n", fixture(name));
    let gateway = Gateway::hls_with(
        &format!("[streams.cam]\n{}", source("ffmpeg_h264_aac.pcap")),
        "",
    );
    gateway.wait_ok("/hls/cam/stream.m3u8");
    let player = start_player(&gateway.http_url("/hls/cam/"), 20);
    // Replaced once the player has fetched media (a few parts' worth of bytes).
    let hls_bytes = "streamgate_output_bytes_total{stream=\"cam\",protocol=\"hls\"}";
    gateway.wait_for(
        || {
            let (_, metrics) = gateway.request("GET", "/metrics", None);
            sample(&metrics, hls_bytes).is_some_and(|bytes| bytes > 500_000.0)
        },
        "the player fetching media",
    );
    let (status, body) = gateway.request(
        "PUT",
        "/api/streams/cam",
        Some(&source("ffmpeg_h264_opus.pcap")),
    );
    assert_eq!(status, 200, "PUT: {body}");
    let report = report(player);
    assert_played(&report, 20.0, &gateway);
    assert!(
        number(&report, "playedCc") >= 1.0,
        "no segment of the new source played: {report}\n{}",
        gateway.log()
    );
}
