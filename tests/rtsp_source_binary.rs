//! The `streamgate` binary with an `rtsp://` stream in its config: the camera (the
//! GStreamer fake camera, with a password) is pulled on demand and re-served, ffmpeg
//! decodes the restream, the camera is left after the idle grace, and the password
//! never reaches the log.

mod rtsp_source_support;
mod rtsp_support;

use std::process::Command;

use rtsp_source_support::*;
use rtsp_support::{error_lines, peer, progress_value, run, text, Gateway, PEER_DEADLINE};

fn decode_restream(gateway: &Gateway, transport: &str) {
    let output = run(
        Command::new(peer("ffmpeg"))
            .args(["-hide_banner", "-nostats", "-v", "error", "-rtsp_transport", transport])
            .args(["-i", &gateway.url("cam"), "-t", "6", "-f", "null", "-", "-progress", "pipe:1"]),
        PEER_DEADLINE,
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "ffmpeg failed: {stderr}\n{}", gateway.log());
    assert!(error_lines(&stderr).is_empty(), "ffmpeg reported errors:\n{stderr}\n{}", gateway.log());
    let frames: u64 = progress_value(&stdout, "frame").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(frames >= 100, "ffmpeg decoded only {frames} frames of 6 s at 25 fps");
}

#[test]
fn configured_camera_is_pulled_on_demand_and_restreamed() {
    let password = "Zk9-camera-pw";
    let camera = Camera::start(&["--user", "viewer", "--password", password]);
    let stream = format!(
        "[streams.cam]\nsource = \"{}\"\ntransport = \"udp\"\nidle_grace = \"1s\"\n",
        camera.url_with(&format!("viewer:{password}"), "cam")
    );
    let gateway = Gateway::start("", &stream);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(camera.count("client-connected 1"), 0, "connected before any reader: {:?}", camera.lines());

    decode_restream(&gateway, "tcp");
    camera.wait_line("client-connected 1", 1);
    camera.wait_line("client-closed 0", 1);
    decode_restream(&gateway, "udp");
    camera.wait_line("client-closed 0", 2);

    let log = gateway.log();
    assert!(!log.contains(password), "the camera password is in the log:\n{log}");
    assert!(log.contains("camera session playing"), "no session in the log:\n{log}");
}
