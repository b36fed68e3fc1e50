//! WHIP ingest: aiortc (an independent WebRTC stack, `tests/peers/whip_publish.py`)
//! publishes the bundled H.264 + Opus file to a `source = "publish"` stream
//! over WHIP, and ffmpeg reads it back over RTSP; the POST needs the stream's
//! publish password (or the API token) as a bearer token, and DELETE ends the
//! publisher's turn; a second publisher is refused (409), as is a stream
//! that is not `source = "publish"` (405).

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::camera::media;
use support::{
    decoded_frames, ffmpeg_decode, get, http_with_headers, repo_path, text, venv_python, Gateway,
};

#[test]
fn aiortc_publishes_over_whip_and_ffmpeg_reads_it_back_over_rtsp() {
    let secret = "whip-Secret-7";
    let gateway = Gateway::start(&format!(
        "[streams.pub]\nsource = \"publish\"\npublish_username = \"pusher\"\npublish_password = \"{secret}\"\n\n\
         [streams.demo]\nsource = \"demo\"\n"
    ));
    let post = |path: &str, token: &str| {
        let headers = format!("Content-Type: application/sdp\r\nAuthorization: Bearer {token}\r\n");
        http_with_headers(gateway.http_port, "POST", path, Some("v=0\r\n"), &headers)
    };
    let (status, body) = post("/whip/pub", "wrong");
    assert_eq!(status, 401, "a POST without the token: {body}");
    let (status, body) = post("/whip/demo", secret);
    assert_eq!(status, 405, "a stream that is not `publish`: {body}");

    let mut child = Command::new(venv_python())
        .arg(repo_path("tests/peers/whip_publish.py"))
        .arg(gateway.http_url("/whip/pub"))
        .arg(media("ffmpeg_h264_opus.mkv"))
        .args(["--seconds", "8", "--token", secret])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the aiortc publisher");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok);
    let first = lines.next().unwrap_or_default();
    assert_eq!(first, "CONNECTED", "{}", gateway.log());

    let (status, body) = post("/whip/pub", secret);
    assert_eq!(status, 409, "a second publisher: {body}");

    let api = get(gateway.http_port, "/api/streams/pub").text();
    assert!(api.contains("\"source_state\":\"playing\""), "{api}");
    assert!(api.contains("\"codec\":\"h264\""), "{api}");
    assert!(api.contains("\"codec\":\"opus\""), "{api}");

    let output = ffmpeg_decode(&gateway.rtsp_url("pub"), "tcp", 3, &[], &[]);
    let frames = decoded_frames(&text(&output.stdout));
    assert!(
        frames >= 25,
        "ffmpeg decoded {frames} frames over RTSP: {}\n{}",
        text(&output.stderr),
        gateway.log()
    );

    let last = lines.last().unwrap_or_default();
    assert!(
        child.wait().expect("wait").success(),
        "whip_publish.py failed: {last}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("bad report ({e}): {last}"));
    assert_eq!(report["delete_status"], 200, "{report}");
    assert!(report["location"]
        .as_str()
        .is_some_and(|l| l.starts_with("/whip/pub/")));
    gateway.wait_for(
        || {
            get(gateway.http_port, "/api/streams/pub")
                .text()
                .contains("\"source_state\":\"idle\"")
        },
        "the publisher's turn ended",
    );
    assert!(!gateway.log().contains(secret), "the token is in the log");
}
