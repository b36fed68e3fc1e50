//! Headless Chromium playing an HLS page with hls.js (tests/js/hls_play.mjs), and
//! its JSON report.

use std::process::{Child, Command, Stdio};

use super::{peer, Gateway};

/// What the player's seconds count (tests/js/hls_play.mjs's last argument).
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// The playhead reaches them.
    Position,
    /// That much media played from wherever hls.js started: a live stream's start
    /// position depends on how long it ran before the browser came up.
    Played,
}

/// Runs tests/js/hls_play.mjs against `url` until the playhead reaches `seconds`;
/// returns its JSON report.
pub fn play(url: &str, seconds: u32) -> String {
    report(start_player(url, seconds, Until::Position))
}

/// Runs tests/js/hls_play.mjs until `seconds` of media played; returns its report.
pub fn play_from_start(url: &str, seconds: u32) -> String {
    report(start_player(url, seconds, Until::Played))
}

/// Starts tests/js/hls_play.mjs playing `url` for `seconds` (80 s at most: a busy
/// machine starts Chromium slowly).
pub fn start_player(url: &str, seconds: u32, until: Until) -> Child {
    peer("chromium");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/hls_play.mjs");
    let until = match until {
        Until::Position => "position",
        Until::Played => "played",
    };
    Command::new(peer("node"))
        .arg(script)
        .arg(url)
        .arg(seconds.to_string())
        .arg("80")
        .arg(until)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node")
}

/// The player's JSON report, once it is done.
pub fn report(player: Child) -> String {
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
pub fn number(report: &str, key: &str) -> f64 {
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

pub fn list<'a>(report: &'a str, key: &str) -> &'a str {
    let at = report
        .find(&format!("\"{key}\":["))
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
        + key.len()
        + 4;
    let end = report[at..].find(']').unwrap() + at;
    &report[at..end]
}

/// Prints the player's report and checks it played `seconds` without a fatal error.
pub fn assert_played(report: &str, seconds: f64, gateway: &Gateway) {
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
