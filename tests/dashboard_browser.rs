//! The dashboard at `/` in headless Chromium (Debian's `chromium`, driven by
//! playwright-core through tests/js/dashboard.mjs): it lists every stream with its
//! RTSP and HLS URLs, each player shows moving video from the binary's own hls.js,
//! a screenshot of each player is not blank, the copy button copies the RTSP URL, and
//! a stream deleted through the API shows as removed without reloading the page.
//! The players use WebRTC (WHEP) when the browser can reach the gateway's UDP
//! port and fall back to LL-HLS when not; both ways are played here.

use crate::support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{peer, Gateway};

/// The gateway advertises an address the browser cannot reach (TEST-NET-1):
/// the WebRTC attempt fails and every player falls back to LL-HLS.
#[test]
fn dashboard_lists_streams_and_plays_each_in_chromium() {
    let unreachable = "[webrtc]\nlisten = \"127.0.0.1:0\"\nadvertise = [\"192.0.2.1\"]\n";
    let report = dashboard(None, unreachable);
    for player in report["players"].as_object().unwrap().values() {
        assert_eq!(player["mode"], "hls", "{player}");
        assert!(player["webrtcError"].is_string(), "{player}");
    }
}

/// With loopback candidates allowed (as a LAN browser reaches the gateway),
/// every player plays over WebRTC and shows its latency.
#[test]
fn dashboard_plays_over_webrtc_by_default() {
    let report = dashboard(Some("webrtc"), "");
    for player in report["players"].as_object().unwrap().values() {
        assert_eq!(player["mode"], "webrtc", "{player}");
        assert!(
            player["latency"]
                .as_str()
                .is_some_and(|l| l.starts_with("WebRTC")),
            "{player}"
        );
    }
}

/// Runs tests/js/dashboard.mjs (in `mode`) and checks what every mode shows.
fn dashboard(mode: Option<&str>, extra: &str) -> Value {
    peer("chromium");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ffmpeg_h264_aac.pcap");
    let gateway = Gateway::start(&format!(
        "{extra}[streams.demo]\nsource = \"demo\"\n[streams.lobby]\nsource = \"pcap:{}\"\n",
        fixture.display()
    ));
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let output = Command::new(peer("node"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/js/dashboard.mjs"
        ))
        .arg(format!("http://127.0.0.1:{}/", gateway.http_port))
        .arg(screenshots)
        .arg("90")
        .args(mode)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dashboard.mjs failed: {}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr),
        gateway.log()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad report ({e}): {stdout}"));
    println!("dashboard report: {report}");

    let streams = report["streams"].as_array().expect("streams");
    let names: Vec<&str> = streams.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["demo", "lobby"]);
    for stream in streams {
        let name = stream["name"].as_str().unwrap_or_default();
        assert_eq!(stream["state"], "running", "{stream}");
        assert_eq!(
            stream["rtsp"],
            format!("rtsp://127.0.0.1:{}/{name}", gateway.rtsp_port)
        );
        assert_eq!(
            stream["hls"],
            format!(
                "http://127.0.0.1:{}/hls/{name}/index.m3u8",
                gateway.http_port
            )
        );
        let player = &report["players"][name];
        assert_eq!(
            player["fatalErrors"],
            serde_json::json!([]),
            "{name}: {player}"
        );
        assert_eq!(
            (&player["videoWidth"], &player["videoHeight"]),
            (&1280.into(), &720.into()),
            "{name}: {player}"
        );
        let (before, later) = (
            player["currentTime"].as_f64(),
            player["currentTimeLater"].as_f64(),
        );
        assert!(
            before >= Some(3.0) && later > before,
            "{name}'s video is not moving: {player}"
        );
    }
    for shot in report["screenshots"].as_array().expect("screenshots") {
        // testsrc2's colour bars and moving pattern: far from a flat picture.
        let variance = shot["variance"].as_f64().unwrap_or_default();
        assert!(variance > 100.0, "blank-looking screenshot: {shot}");
        assert!(shot["width"].as_u64() > Some(100), "{shot}");
    }
    assert_eq!(report["screenshots"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        report["copied"],
        format!("rtsp://127.0.0.1:{}/demo", gateway.rtsp_port)
    );
    assert_eq!(report["deleteStatus"], 204);
    assert_eq!(
        report["stateAfterDelete"], "removed",
        "the card of the deleted stream"
    );
    assert_eq!(
        report["pageErrors"],
        serde_json::json!([]),
        "script errors in the page"
    );
    report
}
