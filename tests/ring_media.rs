//! Ring media and history through the gateway, against the simulator: snapshots
//! (decoded by ffprobe at the size asked for), clips (downloaded, read by ffprobe,
//! a 206 gives a shorter clip of the length Ring announced, an interrupted download
//! is resumed, the folder is pruned), event history across pages and merged
//! with the webhook events the gateway stored, subscriptions.

use crate::support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use streamgate_ringsim::{HistoryEventConfig, SubscriptionConfig, WebhookRequest};
use support::ring::{self, now_ms, Sim, ACCOUNT, DRIVEWAY, FRONT_DOOR};
use support::{ffprobe, get, request, Gateway};

fn json_of(status_body: (u16, String), expected: u16) -> Value {
    let (status, body) = status_body;
    assert_eq!(status, expected, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn duration_of(path: &Path) -> f64 {
    ffprobe(path, "format=duration")
        .lines()
        .find_map(|l| l.strip_prefix("duration=")?.parse().ok())
        .expect("a duration")
}

fn post_clip(gateway: &Gateway, device: &str, body: Value) -> (u16, String) {
    gateway.request(
        "POST",
        &format!("/api/ring/devices/{device}/clips"),
        Some(&body.to_string()),
    )
}

#[test]
fn snapshots_of_a_ring_stream_decode_at_the_requested_size_and_are_cached() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&format!(
        "{}\n[streams.demo]\nsource = \"demo\"\n",
        sim.ring_section("snapshot_cache = \"1h\"")
    ));
    ring::link_sample_account(&sim, &gateway);

    let path = "/api/streams/ring-front-door/snapshot.jpg?width=320&height=180";
    let first = get(gateway.http_port, path);
    assert_eq!(first.status, 200, "{}\n{}", first.text(), gateway.log());
    assert_eq!(first.header("content-type"), Some("image/jpeg"));
    let timestamp = first
        .header("x-media-timestamp")
        .expect("X-Media-Timestamp")
        .to_owned();
    assert!(timestamp.parse::<u64>().is_ok(), "{timestamp}");
    assert_eq!(first.header("x-media-origin"), Some("snapshot"));
    let file = gateway.dir.path().join("snapshot.jpg");
    std::fs::write(&file, &first.body).unwrap();
    let probe = ffprobe(&file, "stream=codec_name,width,height");
    assert!(
        probe.contains("codec_name=mjpeg")
            && probe.contains("width=320")
            && probe.contains("height=180"),
        "{probe}"
    );

    // Cached: the same image, no second request to Ring.
    let again = get(gateway.http_port, path);
    assert_eq!((again.status, again.body.len()), (200, first.body.len()));
    assert_eq!(again.header("x-media-timestamp"), Some(timestamp.as_str()));
    assert_eq!(sim.get().media_stats().snapshot_requests, 1);

    // 425 RECORDING_NOT_READY is retried; another size is another image.
    sim.get().set_not_ready(FRONT_DOOR, 2);
    let big = get(
        gateway.http_port,
        "/api/streams/ring-front-door/snapshot.jpg?width=854&height=480",
    );
    assert_eq!(big.status, 200, "{}\n{}", big.text(), gateway.log());
    std::fs::write(&file, &big.body).unwrap();
    let probe = ffprobe(&file, "stream=width,height");
    assert!(
        probe.contains("width=854") && probe.contains("height=480"),
        "{probe}"
    );
    let stats = sim.get().media_stats();
    assert_eq!(stats.snapshots_not_ready, 2);
    assert_eq!(stats.presigned_downloads, 2);
    // The pre-signed URL was always fetched without the bearer token.
    assert_eq!(stats.presigned_with_authorization, 0);

    // Limits are checked before Ring is asked; other streams need the ffmpeg
    // feature (tests/snapshot_ffmpeg.rs shows them with it).
    let (status, body) = gateway.request(
        "GET",
        "/api/streams/ring-front-door/snapshot.jpg?width=4000&height=10",
        None,
    );
    assert_eq!(status, 400, "{body}");
    #[cfg(not(feature = "ffmpeg"))]
    {
        let (status, body) = gateway.request("GET", "/api/streams/demo/snapshot.jpg", None);
        assert_eq!(status, 501, "{body}");
        assert!(body.contains("built without the ffmpeg feature"), "{body}");
    }
    // Ring's images are JPEG.
    let (status, body) = gateway.request("GET", "/api/streams/ring-front-door/snapshot.png", None);
    assert_eq!(status, 400, "{body}");
    let (status, _) = gateway.request("GET", "/api/streams/nope/snapshot.jpg", None);
    assert_eq!(status, 404);
    // An image at a time: none was recorded then.
    let at = format!(
        "/api/streams/ring-front-door/snapshot.jpg?at={}",
        now_ms() - 3_600_000
    );
    let (status, body) = gateway.request("GET", &at, None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("at that time"), "{body}");
    assert!(
        !gateway.log().contains("sig="),
        "no pre-signed URL in the log"
    );
}

/// ffprobe's duration of a downloaded clip is the length Ring announced.
fn assert_announced_length(path: &Path, clip: &Value) {
    let announced = clip["media_length_ms"].as_u64().expect("media_length_ms") as f64 / 1000.0;
    let seconds = duration_of(path);
    assert!((seconds - announced).abs() < 0.05, "{seconds} s: {clip}");
}

#[test]
fn clips_download_partial_clips_are_shorter_interrupted_ones_resume_and_old_ones_are_pruned() {
    let sim = Sim::start("");
    // Room for the resumed clip and the partial one, not for the first full one too.
    let size = |ms| sim.get().clip(ms).unwrap().len();
    let (full_size, partial_size, resumed_size) = (size(6000), size(2500), size(5999));
    let max_bytes = resumed_size + partial_size + full_size / 2;
    let gateway = Gateway::start(&sim.ring_section(&format!("clips_max_bytes = {max_bytes}")));
    ring::link_sample_account(&sim, &gateway);
    let start = now_ms() - 600_000;
    sim.get().add_recording(FRONT_DOOR, start, start + 6000);
    let partial_start = start + 100_000;
    sim.get()
        .add_recording(FRONT_DOOR, partial_start, partial_start + 2500);

    // Fully recorded: 200, a 6 s MP4 (the fixture is 4 s: repeated).
    let full = json_of(
        post_clip(
            &gateway,
            FRONT_DOOR,
            json!({"start": start, "duration": 6000}),
        ),
        201,
    );
    assert_eq!(full["partial"], false, "{full}");
    assert_eq!(full["media_length_ms"], 6000, "{full}");
    let full_name = full["name"].as_str().unwrap().to_owned();
    let served = get(gateway.http_port, full["url"].as_str().unwrap());
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("video/mp4"));
    assert_eq!(served.body.len(), full_size);
    let file = gateway.dir.path().join("full.mp4");
    std::fs::write(&file, &served.body).unwrap();
    let probe = ffprobe(&file, "stream=codec_name");
    assert!(probe.contains("codec_name=h264"), "{probe}");
    assert_announced_length(&file, &full);

    // Range requests.
    let ranged = request(
        gateway.http_port,
        "GET",
        full["url"].as_str().unwrap(),
        None,
        "Range: bytes=0-99\r\n",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, served.body[..100]);
    assert_eq!(
        ranged.header("content-range"),
        Some(format!("bytes 0-99/{}", served.body.len()).as_str())
    );

    // Half recorded: 206 from Ring, a clip of the length it announced.
    let partial = json_of(
        post_clip(
            &gateway,
            FRONT_DOOR,
            json!({"start": humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(partial_start)).to_string(), "duration": "6s"}),
        ),
        201,
    );
    assert_eq!(partial["partial"], true, "{partial}");
    assert_eq!(partial["media_length_ms"], 2500, "{partial}");
    assert_eq!(partial["media_timestamp"], partial_start.to_string());
    let served = get(gateway.http_port, partial["url"].as_str().unwrap());
    assert_eq!(served.body.len(), partial_size);
    std::fs::write(&file, &served.body).unwrap();
    assert_announced_length(&file, &partial);

    // Nothing recorded: 416.
    let (status, body) = post_clip(
        &gateway,
        FRONT_DOOR,
        json!({"start": start + 300_000, "duration": 4000}),
    );
    assert_eq!(status, 416, "{body}");
    // Too long: refused before Ring is asked.
    let (status, body) = post_clip(
        &gateway,
        FRONT_DOOR,
        json!({"start": start, "duration": "16m"}),
    );
    assert_eq!(status, 400, "{body}");

    // Cut halfway: resumed with a Range request, the same bytes as a whole download.
    sim.get().cut_next_clip();
    let resumed = json_of(
        post_clip(
            &gateway,
            FRONT_DOOR,
            json!({"start": start, "duration": 5999}),
        ),
        201,
    );
    assert!(resumed["resumed"].as_u64().unwrap() >= 1, "{resumed}");
    let again = get(gateway.http_port, resumed["url"].as_str().unwrap());
    assert_eq!(again.body, sim.get().clip(5999).unwrap());
    let whole = std::fs::read(gateway.dir.path().join("clips").join(&full_name));
    // The first full clip was pruned (it does not fit beside the two newer ones) ...
    assert!(whole.is_err(), "the oldest clip is pruned");
    std::fs::write(&file, &again.body).unwrap();
    assert_announced_length(&file, &resumed);
    assert!(sim.get().media_stats().clip_range_requests >= 1);
    // ... so the list has the resumed clip and the partial one, newest first.
    let list = json_of(gateway.request("GET", "/api/ring/clips", None), 200);
    let names: Vec<&str> = list["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            resumed["name"].as_str().unwrap(),
            partial["name"].as_str().unwrap()
        ],
        "{list}"
    );
    assert_eq!(
        get(gateway.http_port, &format!("/api/ring/clips/{full_name}")).status,
        404
    );
    assert_eq!(
        gateway
            .request("GET", "/api/ring/clips/..%2Fgateway.toml", None)
            .0,
        404
    );

    // A 301 is followed.
    sim.get().set_clip_redirect(true);
    let moved = json_of(
        post_clip(
            &gateway,
            FRONT_DOOR,
            json!({"start": start, "duration": 5998}),
        ),
        201,
    );
    assert_eq!(moved["partial"], false, "{moved}");
    assert_eq!(moved["media_length_ms"], 5998, "{moved}");
    assert_eq!(
        moved["bytes"].as_u64(),
        Some(sim.get().clip(5998).unwrap().len() as u64),
        "{moved}"
    );
}

#[test]
fn history_pages_are_followed_to_the_end() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&sim.ring_section(""));
    ring::link_sample_account(&sim, &gateway);
    let base = now_ms() - 3_600_000;
    let events = (0..7u64)
        .map(|i| HistoryEventConfig {
            event_type: ["motion.human", "ding", "on_demand"][i as usize % 3].into(),
            start: base + i * 1000,
            end: base + i * 1000 + 500,
        })
        .collect();
    sim.get().add_history(FRONT_DOOR, events);
    sim.get().set_history_page_size(2);
    let path = format!("/api/ring/devices/{FRONT_DOOR}/history?types=motion,ding");
    let history = json_of(gateway.request("GET", &path, None), 200);
    // motion.* and ding: 5 of the 7, newest first, 2 + 2 + 1 over three pages.
    assert_eq!(history["pages"], 3, "{history}");
    assert_eq!(history["complete"], true);
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "motion.human",
            "ding",
            "motion.human",
            "ding",
            "motion.human"
        ],
        "{history}"
    );
    assert_eq!(events[0]["kind"], "motion");
    assert_eq!(events[0]["subtype"], "human");
    assert!(events[0]["start"].is_string());
    // A last page that came out full is followed by an empty one carrying a next
    // link: the paging stops there.
    sim.get().set_history_page_size(5);
    let history = json_of(gateway.request("GET", &path, None), 200);
    assert_eq!(
        (
            history["pages"].as_u64(),
            history["events"].as_array().unwrap().len()
        ),
        (Some(2), 5),
        "{history}"
    );
    // Every type, and a device with no history.
    let all = json_of(
        gateway.request(
            "GET",
            &format!("/api/ring/devices/{FRONT_DOOR}/history"),
            None,
        ),
        200,
    );
    assert_eq!(all["events"].as_array().unwrap().len(), 7);
    let none = json_of(
        gateway.request(
            "GET",
            &format!("/api/ring/devices/{DRIVEWAY}/history"),
            None,
        ),
        200,
    );
    assert_eq!(
        (
            none["pages"].as_u64(),
            none["events"].as_array().unwrap().len()
        ),
        (Some(1), 0)
    );
    assert_eq!(
        gateway
            .request(
                "GET",
                "/api/ring/devices/ava1.ring.device.nope/history",
                None
            )
            .0,
        404
    );
}

#[test]
fn history_merges_the_webhook_events_the_gateway_stored() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&sim.ring_section(""));
    ring::link_sample_account(&sim, &gateway);
    let url = url::Url::parse(&gateway.http_url("/ring/webhook")).unwrap();
    sim.get().set_webhook_url(Some(url));
    let before = now_ms();
    // Ring lists an old ding, and the motion its webhook tells of below.
    sim.get().add_history(
        FRONT_DOOR,
        vec![
            HistoryEventConfig {
                event_type: "ding".into(),
                start: before - 3_600_000,
                end: before - 3_590_000,
            },
            HistoryEventConfig {
                event_type: "motion.human".into(),
                start: before,
                end: before + 10_000,
            },
        ],
    );
    let webhook = |kind: &str, sub_type: Option<&str>| WebhookRequest {
        kind: kind.into(),
        device: Some(FRONT_DOOR.into()),
        sub_type: sub_type.map(str::to_owned),
        ..Default::default()
    };
    for request in [
        webhook("motion_detected", Some("human")),
        // Not in Ring's history (yet).
        webhook("button_press", None),
        // Not a history type.
        webhook("device_online", None),
    ] {
        sim.get().send_webhook(&request).unwrap();
    }
    gateway.wait_for(
        || {
            let stats = sim.get().webhook_stats();
            stats.in_flight == 0 && stats.delivered >= 3
        },
        "the webhooks delivered",
    );
    let path = format!("/api/ring/devices/{FRONT_DOOR}/history");
    let history = json_of(gateway.request("GET", &path, None), 200);
    let events = history["events"].as_array().unwrap();
    let mut summary: Vec<(&str, &str, bool)> = events
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap(),
                e["seen"].as_str().unwrap(),
                e["event"].is_i64(),
            )
        })
        .collect();
    summary.sort_unstable();
    assert_eq!(
        summary,
        [
            ("ding", "gateway", true),
            ("ding", "ring", false),
            ("motion.human", "both", true),
        ],
        "{history}"
    );
    // Newest first (the times are RFC 3339 text in one format).
    let starts: Vec<&str> = events
        .iter()
        .map(|e| e["start"].as_str().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "{history}");
    let both = events.iter().find(|e| e["seen"] == "both").unwrap();
    assert!(both["id"].is_string(), "Ring's id kept: {history}");
    // The types filter applies to the stored events too.
    let motion = json_of(
        gateway.request("GET", &format!("{path}?types=motion"), None),
        200,
    );
    assert_eq!(motion["events"].as_array().unwrap().len(), 1, "{motion}");
}

#[test]
fn subscriptions_are_shown_and_uncovered_devices_flagged() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&sim.ring_section(""));
    ring::link_sample_account(&sim, &gateway);
    let path = format!("/api/ring/accounts/{ACCOUNT}/subscriptions");
    let list = json_of(gateway.request("GET", &path, None), 200);
    assert_eq!(list["subscriptions"][0]["sub_type"], "paid", "{list}");
    assert_eq!(list["subscriptions"][0]["status"], "active");
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3, "{list}");
    assert!(
        devices.iter().all(|d| d["subscription"] == "paid"),
        "{list}"
    );

    // 25 inactive ones fill the first page; the trial covering the front door is on the second.
    let mut subscriptions: Vec<SubscriptionConfig> = (0..25)
        .map(|_| SubscriptionConfig {
            sub_type: "paid".into(),
            status: "inactive".into(),
            plan_id: Some("old".into()),
            devices: vec![DRIVEWAY.into()],
        })
        .collect();
    subscriptions.push(SubscriptionConfig {
        sub_type: "trial".into(),
        status: "active".into(),
        plan_id: None,
        devices: vec![FRONT_DOOR.into()],
    });
    sim.get().set_subscriptions(ACCOUNT, subscriptions);
    let list = json_of(gateway.request("GET", &path, None), 200);
    assert_eq!(
        list["subscriptions"].as_array().unwrap().len(),
        26,
        "{list}"
    );
    let flag = |id: &str| {
        list["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()["subscription"]
            .clone()
    };
    assert_eq!(flag(FRONT_DOOR), "trial", "{list}");
    assert_eq!(flag(DRIVEWAY), "none", "{list}");

    sim.get().fail_subscriptions(ACCOUNT, true);
    let (status, body) = gateway.request("GET", &path, None);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("Unable to process subscription request"),
        "{body}"
    );
    assert_eq!(
        gateway
            .request(
                "GET",
                "/api/ring/accounts/ava1.ring.account.nope/subscriptions",
                None
            )
            .0,
        404
    );
}

#[test]
fn a_clip_covers_the_time_a_live_view_ran() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&sim.ring_section(""));
    ring::link_sample_account(&sim, &gateway);
    let before = now_ms();
    // Ring records only while a live session runs: nothing yet.
    let (status, body) = post_clip(
        &gateway,
        DRIVEWAY,
        json!({"start": before - 60_000, "duration": 30_000}),
    );
    assert_eq!(status, 416, "{body}");
    // An RTSP reader (ffmpeg) starts the driveway's live view for a few seconds.
    let decoded = support::decode_av(&gateway.rtsp_url("ring-driveway"), 3, gateway.dir.path());
    assert!(!decoded.video_dts.is_empty(), "{}", gateway.log());
    let clip = json_of(
        post_clip(
            &gateway,
            DRIVEWAY,
            json!({"start": before - 60_000, "duration": 120_000}),
        ),
        201,
    );
    // The session covered only part of the two minutes: a partial clip.
    assert_eq!(clip["partial"], true, "{clip}");
    let served = get(gateway.http_port, clip["url"].as_str().unwrap());
    let file = gateway.dir.path().join("live.mp4");
    std::fs::write(&file, &served.body).unwrap();
    assert!(ffprobe(&file, "stream=codec_name").contains("codec_name=h264"));
    assert_announced_length(&file, &clip);
}
