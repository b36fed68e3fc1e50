//! `streamgate-load whep` against the real gateway: WebRTC viewers of the demo
//! (H.264; its AAC has no WebRTC format and is left out) and of an H.264 + Opus
//! capture, all in one process. Every viewer connects, starts on a decodable
//! keyframe, gets video frames (and Opus frames from the Opus stream) and
//! DELETEs its session; the summary's times are ordered as the steps happen.
//! No timing is pass/fail.

mod support;

use support::*;

const VIEWERS: u64 = 5;
const SECONDS: u64 = 5;

fn float(value: &serde_json::Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key}: {value}"))
}

#[test]
fn whep_viewers_connect_start_on_a_keyframe_and_get_frames() {
    let gateway = Gateway::with_streams(&format!(
        "[streams.demo]\nsource = \"demo\"\n\n[streams.opus]\nsource = \"pcap:{}\"\n",
        fixture("ffmpeg_h264_opus.pcap").display()
    ));
    let url = |name: &str| format!("http://127.0.0.1:{}/whep/{name}", gateway.http_port);
    let args: Vec<String> = [
        "--viewers",
        &VIEWERS.to_string(),
        "--url",
        &url("demo"),
        "--url",
        &url("opus"),
    ]
    .map(str::to_owned)
    .to_vec();
    let (output, summary) = run_load("whep", &args, SECONDS);
    let context = || format!("summary: {summary:#}\ngateway log:\n{}", gateway.log());
    assert_eq!(number(&summary, "viewers"), VIEWERS, "{}", context());
    assert_eq!(number(&summary, "connected"), VIEWERS, "{}", context());
    for counter in [
        "failed_viewers",
        "viewers_without_keyframe",
        "viewers_not_starting_on_keyframe",
        "undeleted_sessions",
        "backward_timestamps",
    ] {
        assert_eq!(number(&summary, counter), 0, "{counter}: {}", context());
    }
    let (expected, lost) = (number(&summary, "expected"), number(&summary, "lost"));
    assert!(expected >= number(&summary, "packets") && lost <= expected);
    let ttff = &summary["first_keyframe_ms"];
    assert_eq!(number(ttff, "samples"), VIEWERS, "{ttff}");
    let ordered = ["min", "p50", "p95", "max"].map(|key| float(ttff, key));
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{ttff}");
    let reports = summary["viewer_reports"]
        .as_array()
        .expect("viewer reports");
    assert_eq!(reports.len() as u64, VIEWERS);
    for report in reports {
        let steps = [
            "answer_ms",
            "connected_ms",
            "first_rtp_ms",
            "first_keyframe_ms",
        ]
        .map(|key| float(report, key));
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{report}");
        assert_eq!(report["keyframe_first"], true, "{report}");
        assert_eq!(report["deleted"], true, "{report}");
        assert!(number(report, "video_frames") > 0, "{report}");
        // Viewers alternate between the URLs: odd ones watch the Opus stream.
        let audio = number(report, "audio_frames");
        if number(report, "index") % 2 == 1 {
            assert!(audio > 0, "{report}");
        } else {
            assert_eq!(audio, 0, "the demo's AAC is not sent: {report}");
        }
    }
    assert!(output.status.success(), "{}", context());
}
