//! Headless Chromium (Debian's `chromium`, driven by playwright-core) plays
//! streams over WHEP from the gateway's player page (`GET /whep/NAME`), and its
//! `getStats()` shows what it decoded.

use crate::support;

use support::{fixture, node_report, Gateway};

fn stat(report: &serde_json::Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing from {report}"))
}

#[test]
fn chromium_plays_h264_and_opus_over_whep() {
    let gateway = Gateway::start(&format!(
        "[streams.cam]\nsource = \"pcap:{}\"\n",
        fixture("ffmpeg_h264_opus.pcap")
    ));
    let report = node_report(
        "whep_play.mjs",
        &[&gateway.http_url("/whep/cam"), "8"],
        &gateway,
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(
        report["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/whep/cam/") && l.len() == "/whep/cam/".len() + 32),
        "{report}"
    );
    // framesDecoded keeps rising: over the last half of the samples too.
    let history: Vec<f64> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    let half = &history[history.len() / 2..];
    assert!(
        half.last() > half.first() && half[0] > 0.0,
        "frames not decoded throughout: {history:?}"
    );
    assert!(stat(&report, "keyFramesDecoded") >= 1.0, "{report}");
    assert_eq!(stat(&report, "frameWidth"), 1280.0, "{report}");
    assert_eq!(stat(&report, "frameHeight"), 720.0, "{report}");
    assert!(
        stat(&report, "totalSamplesReceived") > 0.0,
        "no Opus samples: {report}"
    );
    // Reported, not asserted: timing belongs in the load tool.
    println!(
        "time to first decoded frame (POST to framesDecoded > 0): {} ms",
        report["firstFrameMs"]
    );
}

/// The demo's AAC track has no WebRTC format: the viewer gets the video.
#[test]
fn chromium_plays_the_demo_video_over_whep() {
    let gateway = Gateway::demo("", "");
    let report = node_report(
        "whep_play.mjs",
        &[&gateway.http_url("/whep/demo"), "5"],
        &gateway,
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(stat(&report, "framesDecoded") > 0.0, "{report}");
    assert!(stat(&report, "keyFramesDecoded") >= 1.0, "{report}");
    assert_eq!(stat(&report, "frameWidth"), 1280.0, "{report}");
}

/// An ICE restart through PATCH (`If-Match: *`): the browser keeps decoding
/// over the restarted connection.
#[test]
fn chromium_restarts_ice_through_patch_and_keeps_playing() {
    let gateway = Gateway::demo("", "");
    let report = node_report(
        "whep_play.mjs",
        &[&gateway.http_url("/whep/demo"), "10", "restart"],
        &gateway,
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(
        report["restart"]
            .as_str()
            .is_some_and(|r| r.starts_with("ok")),
        "{report}"
    );
    assert!(
        stat(&report, "framesDecoded") > stat(&report, "framesAtRestart") + 10.0,
        "no frames after the restart: {report}"
    );
    assert_eq!(report["state"], "connected", "{report}");
}
