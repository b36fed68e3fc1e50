//! RTSP authentication against real clients: ffmpeg (Digest MD5: it takes the
//! last Digest challenge it understands), aiortsp forced to Basic and to Digest
//! (it takes the first Digest challenge: SHA-256). Right credentials play, wrong
//! or missing ones get 401 and no stream; per-stream credentials override the
//! server's.

use crate::support;

use support::*;

const SERVER_CREDENTIALS: &str = "username = \"viewer\"\npassword = \"s3cret-pass\"";
const PRIVATE_STREAM: &str =
    "[streams.private]\nsource = \"demo\"\nrtsp_username = \"owner\"\nrtsp_password = \"0wner-only\"";

fn gateway() -> Gateway {
    Gateway::demo(SERVER_CREDENTIALS, PRIVATE_STREAM)
}

fn ffprobe_video(url: &str) -> std::process::Output {
    ffprobe_streams(url, &["-select_streams", "v:0"])
}

#[test]
fn ffmpeg_digest_right_credentials_play_wrong_get_401() {
    let gateway = gateway();
    let right = ffprobe_video(&gateway.url_with_credentials("viewer", "s3cret-pass", "demo"));
    assert!(
        right.status.success(),
        "right credentials refused: {}\n{}",
        text(&right.stderr),
        gateway.log()
    );
    assert!(text(&right.stdout).contains("codec_name=h264"));

    for url in [
        gateway.url_with_credentials("viewer", "wrong", "demo"),
        gateway.url_with_credentials("intruder", "s3cret-pass", "demo"),
        gateway.rtsp_url("demo"),
        // The server's credentials do not open a stream that has its own.
        gateway.url_with_credentials("viewer", "s3cret-pass", "private"),
    ] {
        let wrong = ffprobe_video(&url);
        let stderr = text(&wrong.stderr);
        assert!(
            !wrong.status.success(),
            "{url} played without the right credentials"
        );
        assert!(
            stderr.contains("401"),
            "{url}: expected 401, ffprobe said: {stderr}"
        );
        assert!(
            !text(&wrong.stdout).contains("codec_name"),
            "{url} described the stream"
        );
    }

    let own = ffprobe_video(&gateway.url_with_credentials("owner", "0wner-only", "private"));
    assert!(
        own.status.success(),
        "per-stream credentials refused: {}",
        text(&own.stderr)
    );
    assert!(
        !gateway.log().contains("s3cret") && !gateway.log().contains("0wner-only"),
        "a password reached the log"
    );
}

fn aiortsp_describe(url: &str, scheme: &str) -> (u16, String) {
    let output = run_python_peer("aiortsp_read.py", &["--describe", url, scheme]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "aiortsp describe failed: {}",
        text(&output.stderr)
    );
    let status = progress_number(&stdout, "status");
    (status, stdout)
}

#[test]
fn aiortsp_basic_and_sha256_digest_right_and_wrong() {
    let gateway = gateway();
    for scheme in ["basic", "digest"] {
        let (status, body) = aiortsp_describe(
            &gateway.url_with_credentials("viewer", "s3cret-pass", "demo"),
            scheme,
        );
        assert_eq!(
            status,
            200,
            "{scheme} with right credentials: {body}\n{}",
            gateway.log()
        );
        assert!(
            body.contains("m=video") && body.contains("m=audio"),
            "{scheme}: no SDP: {body}"
        );

        let (status, body) = aiortsp_describe(
            &gateway.url_with_credentials("viewer", "nope", "demo"),
            scheme,
        );
        assert_eq!(status, 401, "{scheme} with a wrong password: {body}");
        assert!(
            !body.contains("m=video"),
            "{scheme}: a wrong password got the SDP"
        );
    }
}
