//! Trickle ICE by PATCH against the aiortc server: candidates reach aiortc's
//! addIceCandidate when the server announces `Accept-Patch`, and a server that does not
//! is offered every candidate up front.

mod common;

use std::time::Duration;

use common::{config, WhepServer};
use serde_json::Value;
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_rtp::MediaKind;
use streamgate_whep::{TrickleMode, WhepSource};

/// Waits for `count` video frames in the Hub, the first a keyframe.
async fn video_frames_arrive(hub: &Hub, count: usize) {
    let mut frames = hub.subscribe();
    let mut video = Vec::new();
    while video.len() < count {
        let frame = tokio::time::timeout(Duration::from_secs(15), frames.recv())
            .await
            .expect("frames keep coming")
            .expect("hub open");
        if frame.kind == MediaKind::Video {
            video.push(frame.keyframe);
        }
    }
    assert!(video[0], "the first video frame is a keyframe");
}

fn events_where(server: &WhepServer, key: &str, value: &str) -> Vec<Value> {
    server
        .events()
        .into_iter()
        .filter(|e| e[key] == value)
        .collect()
}

fn patches_of(server: &WhepServer, session: &Value) -> Vec<Value> {
    events_where(server, "event", "patch")
        .into_iter()
        .filter(|p| p["session"] == session["session"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickles_candidates_by_patch_and_media_flows() {
    let server = WhepServer::start(&["--trickle"]);
    let hub = Hub::new("whep-trickle", HubConfig::default());
    let mut config = config(&server, "/whep/live");
    config.trickle = TrickleMode::On;
    let source = WhepSource::start(config, hub.clone()).unwrap();
    video_frames_arrive(&hub, 50).await;
    source.stop().await;

    let created = events_where(&server, "event", "session-created");
    assert_eq!(created.len(), 1, "{:?}", server.events());
    assert_eq!(
        created[0]["offer_candidates"], 0,
        "the offer left before gathering: {created:?}"
    );
    let patches = patches_of(&server, &created[0]);
    assert!(
        patches
            .iter()
            .any(|p| p["answer"] == 204 && p["candidates"].as_u64() >= Some(1)),
        "a PATCH carried candidates: {patches:?}"
    );
    assert!(
        patches.iter().all(|p| p["answer"] == 204),
        "every PATCH was accepted (ufrag, ETag, media type): {patches:?}"
    );
    let etag = format!("\"{}\"", created[0]["session"].as_str().unwrap());
    assert!(
        patches.iter().all(|p| p["if_match"] == etag.as_str()),
        "If-Match carries the ETag: {patches:?}"
    );
    assert_eq!(
        patches.iter().filter(|p| p["end"] == true).count(),
        1,
        "end-of-candidates sent once, last: {patches:?}"
    );
    assert_eq!(patches.last().map(|p| p["end"] == true), Some(true));
    assert_eq!(server.count("method", "DELETE"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_patch_gets_a_complete_offer() {
    let server = WhepServer::start(&[]);
    let hub = Hub::new("whep-full", HubConfig::default());
    let config = config(&server, "/whep/live");
    assert_eq!(config.trickle, TrickleMode::Auto, "the default");
    let source = WhepSource::start(config, hub.clone()).unwrap();
    video_frames_arrive(&hub, 50).await;
    source.stop().await;

    let created = events_where(&server, "event", "session-created");
    assert_eq!(created.len(), 1, "{:?}", server.events());
    assert!(
        created[0]["offer_candidates"].as_u64() >= Some(1),
        "full gathering: {created:?}"
    );
    assert_eq!(
        server.count("method", "PATCH"),
        0,
        "no PATCH: {:?}",
        server.events()
    );
}

/// `Auto` gathers fully until a 201 announces `Accept-Patch`; the next session (here a
/// rotation) trickles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_trickles_once_the_server_announces_it() {
    let server = WhepServer::start(&["--trickle", "--max-session", "6"]);
    let hub = Hub::new("whep-auto", HubConfig::default());
    let mut config = config(&server, "/whep/live");
    config.max_session = Some(Duration::from_secs(6));
    config.always_on = true;
    let source = WhepSource::start(config, hub.clone()).unwrap();
    let status = common::wait_status(&source, Duration::from_secs(20), |s| s.rotations >= 1).await;
    video_frames_arrive(&hub, 25).await;
    source.stop().await;
    assert!(status.rotations >= 1, "{status:?}");

    let created = events_where(&server, "event", "session-created");
    assert!(created.len() >= 2, "{:?}", server.events());
    assert!(
        created[0]["offer_candidates"].as_u64() >= Some(1),
        "the first offer is complete: {created:?}"
    );
    assert!(
        patches_of(&server, &created[0]).is_empty(),
        "nothing to trickle for a complete offer"
    );
    assert_eq!(
        created[1]["offer_candidates"], 0,
        "the second offer trickles: {created:?}"
    );
    let patches = patches_of(&server, &created[1]);
    assert!(
        patches
            .iter()
            .any(|p| p["answer"] == 204 && p["candidates"].as_u64() >= Some(1)),
        "{patches:?}"
    );
}

/// Forced trickle against a server without PATCH: one PATCH, answered 405, then none;
/// ICE still connects (aiortc learns the client's address from its checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_stops_at_405() {
    let server = WhepServer::start(&[]);
    let hub = Hub::new("whep-405", HubConfig::default());
    let mut config = config(&server, "/whep/live");
    config.trickle = TrickleMode::On;
    let source = WhepSource::start(config, hub.clone()).unwrap();
    video_frames_arrive(&hub, 50).await;
    source.stop().await;

    let patches = events_where(&server, "event", "patch");
    assert_eq!(patches.len(), 1, "{:?}", server.events());
    assert_eq!(patches[0]["answer"], 405);
}

/// Consumes the Hub's frames until `done` holds for the server's events and 50 more video
/// frames arrived after it; fails after 40 s.
async fn media_flows_after(server: &WhepServer, hub: &Hub, done: impl Fn(&[Value]) -> bool) {
    let mut frames = hub.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut after = None;
    while after.is_none_or(|n| n < 50) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{after:?} frames after the event: {:?}",
            server.events()
        );
        let frame = tokio::time::timeout(Duration::from_secs(15), frames.recv())
            .await
            .expect("frames keep coming")
            .expect("hub open");
        if frame.kind != MediaKind::Video {
            continue;
        }
        match after.as_mut() {
            Some(n) => *n += 1,
            None if done(&server.events()) => after = Some(0),
            None => {}
        }
    }
}

fn restart_patches(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "patch" && e["if_match"] == "*")
        .collect()
}

/// The path breaks (the server's ICE goes silent); the client restarts ICE by PATCH
/// (`If-Match: "*"`, new ufrag/pwd), applies the server's new credentials and keeps the
/// same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_by_patch_keeps_the_session() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("streamgate_whep=debug")
        .with_test_writer()
        .try_init();
    let server = WhepServer::start(&["--trickle", "--ice-restart", "--freeze-after", "3"]);
    let hub = Hub::new("whep-restart", HubConfig::default());
    let source = WhepSource::start(config(&server, "/whep/live"), hub.clone()).unwrap();
    media_flows_after(&server, &hub, |events| {
        restart_patches(events).iter().any(|p| p["answer"] == 200)
    })
    .await;
    let status = source.status();
    source.stop().await;

    let events = server.events();
    assert_eq!(
        events.iter().filter(|e| e["event"] == "frozen").count(),
        1,
        "{events:?}"
    );
    let created: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "session-created")
        .collect();
    assert_eq!(created.len(), 1, "no new session: {events:?}");
    assert_eq!(
        (status.sessions_opened, status.rotations),
        (1, 0),
        "{status:?}"
    );
    let restart = restart_patches(&events)[0];
    assert_eq!(restart["session"], created[0]["session"]);
    assert!(restart["candidates"].as_u64() >= Some(1), "{restart:?}");
    assert_eq!(restart["end"], true);
    assert!(
        restart["ufrag"].is_string() && restart["ufrag"] != created[0]["ufrag"],
        "new ICE credentials: {restart:?} {:?}",
        created[0]
    );
    assert_eq!(server.count("method", "DELETE"), 1);
}

/// A server that refuses the restart (501): the source opens a new session instead and
/// switches to it; media goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ice_restart_falls_back_to_a_new_session() {
    let server = WhepServer::start(&["--trickle", "--freeze-after", "3"]);
    let hub = Hub::new("whep-no-restart", HubConfig::default());
    let source = WhepSource::start(config(&server, "/whep/live"), hub.clone()).unwrap();
    media_flows_after(&server, &hub, |events| {
        !restart_patches(events).is_empty()
            && events
                .iter()
                .filter(|e| e["event"] == "session-created")
                .count()
                >= 2
    })
    .await;
    let status = source.status();
    source.stop().await;

    let events = server.events();
    let restarts = restart_patches(&events);
    assert_eq!(restarts.len(), 1, "{events:?}");
    assert_eq!(restarts[0]["answer"], 501);
    assert!(status.sessions_opened >= 2, "{status:?}");
    let created = events
        .iter()
        .filter(|e| e["event"] == "session-created")
        .count();
    assert_eq!(
        server.count("method", "DELETE"),
        created,
        "every session DELETEd, the broken one included"
    );
}

/// A trickle PATCH answered 412 (the server's ETag moved on) makes the client restart ICE
/// (`If-Match: "*"`); the session connects with the new credentials and media flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_etag_leads_to_an_ice_restart() {
    let server = WhepServer::start(&["--trickle", "--ice-restart", "--stale-etag"]);
    let hub = Hub::new("whep-412", HubConfig::default());
    let mut config = config(&server, "/whep/live");
    config.trickle = TrickleMode::On;
    let source = WhepSource::start(config, hub.clone()).unwrap();
    media_flows_after(&server, &hub, |events| {
        restart_patches(events).iter().any(|p| p["answer"] == 200)
    })
    .await;
    let status = source.status();
    source.stop().await;

    let events = server.events();
    let patches: Vec<_> = events.iter().filter(|e| e["event"] == "patch").collect();
    assert_eq!(patches[0]["answer"], 412, "{patches:?}");
    assert_eq!(patches[1]["if_match"], "*", "{patches:?}");
    assert_eq!(patches[1]["answer"], 200, "{patches:?}");
    assert_eq!(status.sessions_opened, 1, "{status:?}");
}
