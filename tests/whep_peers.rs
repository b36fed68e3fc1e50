//! aiortc (an independent WebRTC stack, `tests/peers/whep_view.py`) as WHEP
//! viewers of the gateway: it decodes what the server sends, and many viewers
//! at once all use the server's one UDP port.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::{fixture, repo_path, sample, venv_python, Gateway};

fn opus_gateway() -> Gateway {
    Gateway::start(&format!(
        "[streams.cam]\nsource = \"pcap:{}\"\n",
        fixture("ffmpeg_h264_opus.pcap")
    ))
}

/// Runs whep_view.py; `at_connected` runs once every viewer has its first frame.
fn view(gateway: &Gateway, args: &[&str], at_connected: impl FnOnce()) -> serde_json::Value {
    let mut child = Command::new(venv_python())
        .arg(repo_path("tests/peers/whep_view.py"))
        .arg(gateway.http_url("/whep/cam"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the aiortc viewer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut at_connected = Some(at_connected);
    let mut last = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        if line.starts_with("CONNECTED") {
            if let Some(f) = at_connected.take() {
                f();
            }
        }
        last = line;
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "whep_view.py failed: {last}\n{}",
        gateway.log()
    );
    assert!(
        at_connected.is_none(),
        "viewers never connected\n{}",
        gateway.log()
    );
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("bad report ({e}): {last}"))
}

#[test]
fn aiortc_decodes_video_and_audio_and_delete_ends_the_session() {
    let gateway = opus_gateway();
    let report = view(&gateway, &["--seconds", "4"], || {});
    let viewer = &report["viewers"][0];
    assert!(viewer["video_frames"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(viewer["width"], 1280, "{report}");
    assert_eq!(viewer["height"], 720, "{report}");
    assert!(viewer["audio_frames"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(viewer["delete_status"], 200, "{report}");
    println!(
        "aiortc time to first frame: {} ms",
        report["first_frame_ms"]
    );
    // The DELETE freed the session.
    let readers = "streamgate_readers{stream=\"cam\",protocol=\"webrtc\"}";
    gateway.wait_for(
        || sample(&gateway.request("GET", "/metrics", None).1, readers) == Some(0.0),
        "the session gone from /metrics",
    );
    let location = viewer["location"].as_str().unwrap();
    let (status, _) = gateway.request("DELETE", location, None);
    assert_eq!(status, 404, "a second DELETE of {location}");
}

/// `ss -uapn` while 50 viewers play: the gateway has one UDP socket, the
/// `[webrtc]` port, and every viewer gets audio through it.
#[test]
fn fifty_viewers_share_the_one_udp_port() {
    let gateway = opus_gateway();
    let pid = gateway.pid();
    let report = view(
        &gateway,
        &["--viewers", "50", "--audio-only", "--seconds", "3"],
        || {
            let ss = Command::new("ss").arg("-uapn").output().expect("run ss");
            let ss = String::from_utf8_lossy(&ss.stdout);
            let ours: Vec<&str> = ss
                .lines()
                .filter(|l| l.contains(&format!("pid={pid},")))
                .collect();
            assert_eq!(
                ours.len(),
                1,
                "the gateway's UDP sockets:\n{}",
                ours.join("\n")
            );
            let (_, metrics) = gateway.request("GET", "/metrics", None);
            assert_eq!(
                sample(
                    &metrics,
                    "streamgate_readers{stream=\"cam\",protocol=\"webrtc\"}"
                ),
                Some(50.0)
            );
        },
    );
    let viewers = report["viewers"].as_array().unwrap();
    assert_eq!(viewers.len(), 50);
    for viewer in viewers {
        assert!(viewer["audio_frames"].as_u64().unwrap() > 0, "{viewer}");
        assert_eq!(viewer["delete_status"], 200, "{viewer}");
    }
}

/// A viewer that stops reading (its aiortc process SIGSTOPped, its socket
/// buffer full) costs another viewer nothing: Chromium, playing meanwhile,
/// loses no packet and keeps decoding.
#[test]
fn a_stopped_viewer_costs_the_others_no_frames() {
    let gateway = opus_gateway();
    let mut stopped = Command::new(venv_python())
        .arg(repo_path("tests/peers/whep_view.py"))
        .arg(gateway.http_url("/whep/cam"))
        .args(["--seconds", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the aiortc viewer");
    let mut lines = BufReader::new(stopped.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("CONNECTED")),
        "the viewer to stop never connected\n{}",
        gateway.log()
    );
    support::signal(stopped.id(), "-STOP");
    let report = support::node_report(
        "whep_play.mjs",
        &[&gateway.http_url("/whep/cam"), "8"],
        &gateway,
    );
    support::signal(stopped.id(), "-CONT");
    let _ = stopped.kill();
    let _ = stopped.wait();
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["packetsLost"], 0, "{report}");
    let history: Vec<f64> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    let half = &history[history.len() / 2..];
    assert!(half.last() > half.first(), "decoding stalled: {history:?}");
    let (_, metrics) = gateway.request("GET", "/metrics", None);
    println!(
        "skipped frames {:?}, send drops {:?}",
        sample(&metrics, "streamgate_webrtc_skipped_frames_total"),
        sample(&metrics, "streamgate_webrtc_send_drops_total")
    );
}
