//! The simulated media and history API over real HTTP: snapshots through a
//! pre-signed URL that refuses bearer tokens, clips (200, 206, 416, 301, Range),
//! history pages and subscriptions.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use streamgate_ringsim::{HistoryEventConfig, SimConfig, SubscriptionConfig};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn post(
    sim: &streamgate_ringsim::Simulator,
    path: &str,
    token: &str,
    body: Value,
    range: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .post(url(sim, path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

const IMAGE: &str = "/v1/devices/ava1.ring.device.front-door/media/image/download";
const VIDEO: &str = "/v1/devices/ava1.ring.device.front-door/media/video/download";

#[tokio::test]
async fn snapshots_redirect_to_a_presigned_url_that_refuses_bearer_tokens() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let now = now_ms();
    let body = json!({"type": "latest_in_range", "start_timestamp": now - 60_000,
        "image_options": {"format": "jpeg", "resolution": {"width": 320, "height": 180}}});
    let answer = post(&sim, IMAGE, &token, body.clone(), None).await;
    assert_eq!(answer.status(), 303);
    assert!(answer.headers().contains_key("x-request-id"));
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/sim/media/images/") && location.contains("sig="));
    // With the bearer token: refused.
    let refused = client()
        .get(url(&sim, &location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // Without: the JPEG, with its media headers.
    let image = client().get(url(&sim, &location)).send().await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/jpeg");
    assert_eq!(image.headers()["x-media-origin"], "snapshot");
    assert!(image.headers().contains_key("x-media-timestamp"));
    let bytes = image.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0xff, 0xd8], "a JPEG");
    // A bad signature is refused.
    let forged = location.replace("sig=", "sig=x");
    assert_eq!(
        client()
            .get(url(&sim, &forged))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let stats = sim.media_stats();
    assert_eq!(
        (
            stats.presigned_downloads,
            stats.presigned_with_authorization
        ),
        (1, 1)
    );

    // A recording in range: origin recording, at the recording's end.
    sim.add_recording(FRONT_DOOR, now - 50_000, now - 40_000);
    let answer = post(&sim, IMAGE, &token, body, None).await;
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let image = client().get(url(&sim, &location)).send().await.unwrap();
    assert_eq!(image.headers()["x-media-origin"], "recording");
    assert_eq!(
        image.headers()["x-media-timestamp"],
        (now - 40_000).to_string().as_str()
    );

    // 425 while not ready, then the 303.
    sim.set_not_ready(FRONT_DOOR, 1);
    let at = json!({"type": "at_timestamp", "timestamp": now - 45_000, "image_options": {"format": "png"}});
    let answer = post(&sim, IMAGE, &token, at.clone(), None).await;
    assert_eq!(answer.status(), 425);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["errors"][0]["code"], "RECORDING_NOT_READY");
    assert_eq!(post(&sim, IMAGE, &token, at, None).await.status(), 303);

    // Bad payloads: INVALID_PAYLOAD with a pointer; nothing in range: 416.
    for (body, pointer) in [
        (json!({"type": "sometime"}), "/type"),
        (
            json!({"type": "latest_in_range", "start_timestamp": now - 200 * 86_400_000u64}),
            "/start_timestamp",
        ),
        (
            json!({"type": "latest_in_range", "start_timestamp": now - 90_000_000, "end_timestamp": now}),
            "/end_timestamp",
        ),
        (
            json!({"type": "at_timestamp", "timestamp": now, "image_options": {"resolution": "1921x10"}}),
            "/image_options/resolution",
        ),
    ] {
        let answer = post(&sim, IMAGE, &token, body, None).await;
        assert_eq!(answer.status(), 400);
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["errors"][0]["code"], "INVALID_PAYLOAD");
        assert_eq!(error["errors"][0]["source"]["pointer"], pointer);
    }
    let nothing = json!({"type": "at_timestamp", "timestamp": now - 3_600_000});
    assert_eq!(post(&sim, IMAGE, &token, nothing, None).await.status(), 416);
    sim.stop().await;
}

#[tokio::test]
async fn clips_are_200_206_or_416_and_resume_with_range() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let now = now_ms();
    let start = now - 120_000;
    let clip = |duration: u64| {
        json!({"timestamp": start, "duration": duration, "video_options": {"codec": "avc", "frame_rate": 25},
            "audio_options": {"audio_enabled": true}})
    };
    assert_eq!(
        post(&sim, VIDEO, &token, clip(4000), None).await.status(),
        416
    );
    sim.add_recording(FRONT_DOOR, start, start + 4000);
    let full = post(&sim, VIDEO, &token, clip(4000), None).await;
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.headers()["x-media-length"], "4000");
    let full_bytes = full.bytes().await.unwrap();
    assert_eq!(&full_bytes[4..8], b"ftyp");
    assert_eq!(full_bytes, sim.clip(4000).unwrap());
    // Half recorded: 206, a clip of the recorded length.
    let partial = post(&sim, VIDEO, &token, clip(8000), None).await;
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.headers()["x-media-length"], "4000");
    assert_eq!(
        partial.headers()["x-media-timestamp"],
        start.to_string().as_str()
    );
    assert_eq!(partial.bytes().await.unwrap(), full_bytes);
    let shorter = post(&sim, VIDEO, &token, clip(2500), None).await;
    assert_eq!(shorter.status(), 200);
    assert_eq!(shorter.bytes().await.unwrap(), sim.clip(2500).unwrap());
    // A Range request gets the rest.
    let rest = post(&sim, VIDEO, &token, clip(4000), Some("bytes=100-")).await;
    assert_eq!(rest.status(), 206);
    assert_eq!(
        rest.headers()["content-range"],
        format!("bytes 100-{}/{}", full_bytes.len() - 1, full_bytes.len()).as_str()
    );
    assert_eq!(rest.bytes().await.unwrap(), full_bytes.slice(100..));
    // Limits.
    for body in [
        clip(900_001),
        json!({"timestamp": start, "duration": 1000, "video_options": {"frame_rate": 30}}),
    ] {
        assert_eq!(post(&sim, VIDEO, &token, body, None).await.status(), 400);
    }
    // A 301 to the simulator's own clip URL.
    sim.set_clip_redirect(true);
    let moved = post(&sim, VIDEO, &token, clip(4000), None).await;
    assert_eq!(moved.status(), 301);
    let location = moved.headers()["location"].to_str().unwrap().to_owned();
    let followed = client().post(url(&sim, &location)).send().await.unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(followed.bytes().await.unwrap(), full_bytes);
    sim.set_clip_redirect(false);
    // A cut body fails mid-way.
    sim.cut_next_clip();
    let cut = post(&sim, VIDEO, &token, clip(4000), None).await;
    assert!(cut.bytes().await.is_err(), "the body is cut short");
    sim.stop().await;
}

#[tokio::test]
async fn history_pages_carry_the_filters_and_end_on_an_empty_page() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let base = now_ms() - 3_600_000;
    let events = (0..7)
        .map(|i| HistoryEventConfig {
            event_type: ["motion.human", "ding", "on_demand"][i % 3].into(),
            start: base + i as u64 * 1000,
            end: base + i as u64 * 1000 + 500,
        })
        .collect();
    sim.add_history(FRONT_DOOR, events);
    sim.set_history_page_size(2);
    let mut path =
        "/v1/history/devices/ava1.ring.device.front-door/events?event_types=motion,ding".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, _, page) = get(&sim, &path, &token).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let data = page["data"].as_array().unwrap();
        for item in data {
            assert_eq!(item["type"], "history-events");
            seen.push(
                item["attributes"]["event_type"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        match page["links"]["next"].as_str() {
            Some(next) if !data.is_empty() => {
                assert!(
                    next.contains("event_types=motion%2Cding") && next.contains("page%5Bkey%5D"),
                    "{next}"
                );
                path = next.to_owned();
            }
            Some(_) => break, // the empty page still has a next link
            None => break,
        }
    }
    // 5 of 7 match (motion.* and ding), newest first, 2 a page: 2 + 2 + 1 (short: no link).
    assert_eq!(
        seen,
        [
            "motion.human",
            "ding",
            "motion.human",
            "ding",
            "motion.human"
        ]
    );
    assert_eq!(pages, 3);
    // A page that comes out exactly full is followed by an empty one with a link.
    sim.set_history_page_size(5);
    let (_, _, first) = get(
        &sim,
        "/v1/history/devices/ava1.ring.device.front-door/events?event_types=motion,ding",
        &token,
    )
    .await;
    let next = first["links"]["next"].as_str().unwrap().to_owned();
    let (_, _, empty) = get(&sim, &next, &token).await;
    assert!(empty["data"].as_array().unwrap().is_empty());
    assert!(empty["links"]["next"].is_string());
    sim.stop().await;
}

#[tokio::test]
async fn subscriptions_page_by_cursor_and_can_fail() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let (status, _, page) = get(&sim, "/v1/accounts/me/subscriptions", &token).await;
    assert_eq!(status, 200);
    let first = &page["data"][0];
    assert_eq!(first["attributes"]["sub_type"], "paid");
    assert_eq!(first["attributes"]["status"], "active");
    assert!(first["attributes"]["plan_id"].is_string());
    assert_eq!(
        first["relationships"]["devices"]["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(page["meta"]["time"].is_string());

    let account = "ava1.ring.account.sim-1";
    let many = (0..30)
        .map(|i| SubscriptionConfig {
            sub_type: if i % 2 == 0 { "paid" } else { "trial" }.into(),
            status: "active".into(),
            plan_id: None,
            devices: vec![],
        })
        .collect();
    sim.set_subscriptions(account, many);
    let (_, _, page) = get(&sim, "/v1/accounts/me/subscriptions", &token).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 25);
    let next = page["links"]["next"].as_str().unwrap().to_owned();
    assert!(next.contains("page%5Bcursor%5D="));
    let (_, _, page) = get(&sim, &next, &token).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    assert!(page.get("links").is_none());
    sim.fail_subscriptions(account, true);
    let (status, _, error) = get(&sim, "/v1/accounts/me/subscriptions", &token).await;
    assert_eq!(status, 422);
    assert_eq!(
        error["errors"][0]["detail"],
        "Unable to process subscription request"
    );
    sim.stop().await;
}
