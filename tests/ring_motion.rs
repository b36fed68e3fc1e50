//! Motion-started live view against the Ring simulator: with `on_motion =
//! "start"`, a signed `motion_detected` webhook starts the device's live view with
//! nobody reading (a WHEP session opens at the simulator and the stream plays),
//! and a reader connecting 2 s after the event gets a keyframe at once, from the
//! GOP cache. A stream without `on_motion` opens no session on an event.

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use streamgate_ringsim::WebhookRequest;
use support::ring::{self, Sim, DRIVEWAY, FRONT_DOOR};
use support::{peer, run, text, Gateway};

fn stream(gateway: &Gateway, name: &str) -> serde_json::Value {
    let (status, body) = gateway.request("GET", &format!("/api/streams/{name}"), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stream JSON")
}

fn state(gateway: &Gateway, name: &str) -> String {
    stream(gateway, name)["source_state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn motion(sim: &Sim, device: &str) {
    sim.get()
        .send_webhook(&WebhookRequest {
            kind: "motion_detected".to_owned(),
            device: Some(device.to_owned()),
            ..Default::default()
        })
        .expect("send the webhook");
}

/// The events the gateway stored for `device`.
fn stored(gateway: &Gateway, device: &str) -> usize {
    let (status, body) = gateway.request(
        "GET",
        &format!("/api/events?format=json&device={device}&type=motion_detected"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["events"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_motion_event_starts_the_live_view_and_a_late_reader_gets_a_keyframe_at_once() {
    let sim = Sim::start("webhook_retry_scale = 0.01");
    // The discovered driveway stream keeps the default (nothing on motion); the
    // front door's configured stream starts on motion.
    let gateway = Gateway::start(&format!(
        "{}\n[streams.door]\nsource = \"ring:{FRONT_DOOR}\"\non_motion = \"start\"\nmotion_hold = \"60s\"\n",
        sim.ring_section("devices = [\"Driveway\"]")
    ));
    let url = url::Url::parse(&gateway.http_url("/ring/webhook")).unwrap();
    sim.get().set_webhook_url(Some(url));
    let offer = sim.deliver_code(&gateway);
    let (status, page) = ring::open_link(&gateway, offer.time, &offer.nonce);
    assert_eq!(status, 200, "{page}\n{}", gateway.log());
    gateway.wait_for(
        || {
            ring::ring_streams(&gateway).contains(&"ring-driveway".to_owned())
                && state(&gateway, "door") == "idle"
                && state(&gateway, "ring-driveway") == "idle"
        },
        "both Ring streams idle",
    );
    assert_eq!(sim.stats().whep_sessions.opened, 0, "nobody reads yet");

    // Without on_motion: the event is stored, and no session opens.
    motion(&sim, DRIVEWAY);
    gateway.wait_for(
        || stored(&gateway, DRIVEWAY) == 1,
        "the driveway event stored",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sim.stats().whep_sessions.opened,
        0,
        "an event of a stream without on_motion opens no session\n{}",
        gateway.log()
    );
    assert_eq!(state(&gateway, "ring-driveway"), "idle");

    // With on_motion = "start": the event starts the live view, nobody reading.
    motion(&sim, FRONT_DOOR);
    let event_at = Instant::now();
    gateway.wait_for(
        || sim.stats().whep_sessions.opened >= 1 && state(&gateway, "door") == "playing",
        "the motion-started live view playing",
    );
    let view = stream(&gateway, "door");
    println!("motion-started: {view}");
    assert_eq!(
        state(&gateway, "ring-driveway"),
        "idle",
        "only the door's device"
    );

    // The NVR connects 2 s after the event: its first video packet is a keyframe.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(event_at.elapsed()));
    let output = run(
        Command::new(peer("ffprobe"))
            .args(["-v", "error", "-rtsp_transport", "tcp"])
            .args(["-select_streams", "v:0", "-read_intervals", "%+#3"])
            .args(["-show_entries", "packet=flags,pts", "-of", "csv=p=0"])
            .arg(gateway.rtsp_url("door")),
        ring::PATIENCE,
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "ffprobe failed: {}\n{}",
        text(&output.stderr),
        gateway.log()
    );
    let first = stdout.lines().next().unwrap_or_default();
    println!("first video packets after the event: {stdout:?}");
    // `flags` is like `K__` for a keyframe, `___` otherwise.
    assert!(
        first.split(',').any(|field| field.starts_with('K')),
        "the first video packet is not a keyframe: {stdout:?}\n{}",
        gateway.log()
    );
    assert!(gateway.log().contains("motion: live view held"));
}
