//! Headless Chromium (Debian's `chromium`, driven by playwright-core) plays the
//! gateway's player page with the bundled hls.js in low-latency mode.

mod support;

use std::process::Command;

use support::{peer, Gateway};

/// Runs tests/js/hls_play.mjs against `url`; returns its JSON report.
fn play(url: &str, seconds: u32) -> String {
    peer("chromium");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/hls_play.mjs");
    let output = Command::new(peer("node"))
        .arg(script)
        .arg(url)
        .arg(seconds.to_string())
        .arg("60")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run node");
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

#[test]
fn chromium_plays_the_player_page_at_low_latency() {
    let gateway = Gateway::hls("");
    let report = play(&gateway.http_url("/hls/demo/"), 12);
    println!("chromium report: {report}");
    assert_eq!(
        list(&report, "fatalErrors"),
        "",
        "hls.js fatal errors: {report}\n{}",
        gateway.log()
    );
    assert!(
        number(&report, "currentTime") >= 10.0,
        "playback did not advance 10 s: {report}\n{}",
        gateway.log()
    );
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
