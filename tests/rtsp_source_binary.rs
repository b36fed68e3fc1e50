//! The `streamgate` binary with `rtsp://` streams in its config: the camera (the
//! GStreamer fake camera, with a password) is pulled on demand and re-served, ffmpeg
//! decodes the restream, the camera is left after the idle grace; a stream with the
//! wrong password shows the 401 in the HTTP API; no password reaches the log or the API.

use crate::support;

use support::camera::*;
use support::{decoded_frames, error_lines, ffmpeg_decode, text, Gateway};

fn decode_restream(gateway: &Gateway, transport: &str) {
    let output = ffmpeg_decode(&gateway.rtsp_url("cam"), transport, 6, &[], &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "ffmpeg failed: {stderr}\n{}",
        gateway.log()
    );
    assert!(
        error_lines(&stderr).is_empty(),
        "ffmpeg reported errors:\n{stderr}\n{}",
        gateway.log()
    );
    let frames: u64 = decoded_frames(&stdout);
    assert!(
        frames >= 100,
        "ffmpeg decoded only {frames} frames of 6 s at 25 fps"
    );
}

#[test]
fn configured_camera_is_pulled_on_demand_and_restreamed() {
    let password = "Zk9-camera-pw";
    let wrong = "WRONG-pw-777";
    let camera = Camera::start(&["--user", "viewer", "--password", password]);
    let other_camera = Camera::start(&["--user", "viewer", "--password", password]);
    let streams = format!(
        "[streams.cam]\nsource = \"{}\"\ntransport = \"udp\"\nidle_grace = \"1s\"\n\n\
         [streams.badauth]\nsource = \"{}\"\nalways_on = true\n",
        camera.url_with(&format!("viewer:{password}"), "cam"),
        other_camera.url_with(&format!("viewer:{wrong}"), "cam"),
    );
    let gateway = Gateway::demo("", &streams);

    // The always-on stream with the wrong password reports the camera's 401 in the API.
    let view = gateway.wait_api("badauth", |view| view.contains("401 Unauthorized"));
    assert!(
        view.contains("\"source_state\":\"retrying\"")
            || view.contains("\"source_state\":\"connecting\""),
        "{view}"
    );
    assert!(!view.contains(wrong), "the password is in the API: {view}");
    assert_eq!(
        camera.count("client-connected 1"),
        0,
        "`cam` connected before any reader: {:?}",
        camera.lines()
    );

    decode_restream(&gateway, "tcp");
    camera.wait_line("client-closed 0", 1);
    let view = gateway.wait_api("cam", |view| view.contains("\"source_state\":\"idle\""));
    assert!(
        !view.contains(password),
        "the password is in the API: {view}"
    );
    decode_restream(&gateway, "udp");

    let log = gateway.log();
    assert!(
        !log.contains(password) && !log.contains(wrong),
        "a camera password is in the log:\n{log}"
    );
    assert!(
        log.contains("camera session playing"),
        "no session in the log:\n{log}"
    );
}
