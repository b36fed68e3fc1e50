//! Ring accounts and devices when things go wrong, against the simulator: a
//! restart keeps the linked account (SQLite store), an expired refresh token
//! turns the account to "needs re-linking" (in the API, the dashboard and its
//! streams), a device that goes offline reports it and plays again when it
//! comes back, a kill -9 in the middle of a token refresh loses no token, and
//! under a 429 storm the client waits out `Retry-After` and never goes over
//! Ring's rate.

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::ring::{self, Sim, ACCOUNT, CLIENT_ID};
use support::{ffprobe_streams, peer, signal, text, Gateway, TempDir};

/// `GET /api/streams/NAME` as JSON.
fn stream(gateway: &Gateway, name: &str) -> serde_json::Value {
    let (status, body) = gateway.request("GET", &format!("/api/streams/{name}"), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stream JSON")
}

fn account_state(gateway: &Gateway) -> String {
    ring::accounts(gateway)["accounts"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// ffprobe sees the stream's H.264 video.
fn assert_plays(gateway: &Gateway, name: &str) {
    let output = ffprobe_streams(&gateway.rtsp_url(name), &[]);
    let shown = text(&output.stdout);
    assert!(
        output.status.success() && shown.contains("codec_name=h264"),
        "ffprobe {name}: {shown}{}\n{}",
        text(&output.stderr),
        gateway.log()
    );
}

#[test]
fn a_linked_account_survives_a_restart_and_plays_without_relinking() {
    let sim = Sim::start("");
    let store = TempDir::new("ring-store");
    let section = sim.ring_section(&format!(
        "database = \"{}\"",
        store.path().join("ring.db").display()
    ));
    let mut gateway = Gateway::start(&section);
    ring::link_sample_account(&sim, &gateway);
    signal(gateway.pid(), "-TERM");
    while gateway.is_running() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let exchanges = sim.stats().code_exchanges;

    let gateway = Gateway::start(&section);
    assert_eq!(account_state(&gateway), "linked");
    gateway.wait_for(
        || ring::ring_streams(&gateway).len() == 3,
        "the Ring streams after a restart",
    );
    assert_plays(&gateway, "ring-front-door");
    assert_eq!(
        sim.stats().code_exchanges,
        exchanges,
        "no new link was needed"
    );
}

#[test]
fn an_expired_refresh_token_turns_the_account_to_needs_relinking() {
    // Access tokens live 4 s, so the gateway refreshes while it discovers every second.
    let sim = Sim::start("access_token_ttl = \"4s\"");
    let gateway = Gateway::start(&sim.ring_section("rediscover = \"1s\""));
    ring::link_sample_account(&sim, &gateway);
    gateway.wait_for(|| sim.stats().token_refreshes >= 1, "a token refresh");
    assert_eq!(account_state(&gateway), "linked");

    sim.get().expire_refresh_tokens();
    gateway.wait_for(
        || account_state(&gateway) == "needs_relinking",
        "the account to need re-linking",
    );
    let accounts = ring::accounts(&gateway);
    assert!(
        accounts["accounts"][0]["last_error"].is_string(),
        "{accounts}"
    );
    // Its streams stay, and say why they cannot play.
    let front = stream(&gateway, "ring-front-door");
    assert_eq!(front["state"], "failed", "{front}");
    assert_eq!(front["source_state"], "needs_relinking", "{front}");
    assert!(
        front["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("re-linking")),
        "{front}"
    );
    let (status, page) = gateway.request("GET", "/", None);
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!(
            "data-id=\"{ACCOUNT}\" data-state=\"needs_relinking\""
        )),
        "{page}"
    );
}

/// ffmpeg reading `url` to nothing for `seconds`: a reader that keeps the stream wanted.
fn reader(url: &str, seconds: u32) -> Child {
    Command::new(peer("ffmpeg"))
        .args(["-nostdin", "-v", "error", "-rtsp_transport", "tcp"])
        .args(["-t", &seconds.to_string(), "-i", url, "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ffmpeg")
}

#[test]
fn a_device_that_goes_offline_reports_it_and_plays_again_when_back() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&sim.ring_section(""));
    ring::link_sample_account(&sim, &gateway);
    let name = "ring-driveway";
    let mut first = reader(&gateway.rtsp_url(name), 120);
    gateway.wait_for(
        || stream(&gateway, name)["source_state"] == "playing",
        "the driveway playing",
    );

    assert!(sim.get().set_online(ring::DRIVEWAY, false));
    gateway.wait_for(
        || {
            let view = stream(&gateway, name);
            view["state"] == "failed"
                && view["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("offline"))
        },
        "the stream to report the device offline",
    );
    assert!(sim.get().set_online(ring::DRIVEWAY, true));
    // A second reader, in case the first gave up while the camera was away.
    let mut second = reader(&gateway.rtsp_url(name), 120);
    let frames = stream(&gateway, name)["frames"].as_u64().unwrap();
    gateway.wait_for(
        || {
            let view = stream(&gateway, name);
            view["source_state"] == "playing" && view["frames"].as_u64().unwrap() > frames + 50
        },
        "the driveway playing again",
    );
    for reader in [&mut first, &mut second] {
        let _ = reader.kill();
        let _ = reader.wait();
    }
    assert_plays(&gateway, name);
}

#[test]
fn a_kill_during_a_token_refresh_loses_no_token() {
    // Access tokens live 6 s: discovery every half second refreshes them half-way.
    let sim = Sim::start("access_token_ttl = \"6s\"");
    let store = TempDir::new("ring-store");
    let section = sim.ring_section(&format!(
        "database = \"{}\"\nrediscover = \"500ms\"",
        store.path().join("ring.db").display()
    ));
    let gateway = Gateway::start(&section);
    ring::link_sample_account(&sim, &gateway);
    // Ring records the next refresh and holds its answer: the gateway dies waiting.
    sim.get().set_token_delay(Duration::from_secs(30));
    gateway.wait_for(
        || sim.stats().token_requests_in_flight >= 1,
        "a token refresh in flight",
    );
    signal(gateway.pid(), "-KILL");
    drop(gateway);
    sim.get().set_token_delay(Duration::ZERO);

    // The store still has the pair it had before the refresh: the rotated-out
    // refresh token is still good until its successor is used (which never
    // happened), so the restarted gateway refreshes with it and plays.
    let gateway = Gateway::start(&section);
    gateway.wait_for(
        || sim.stats().refresh_token_grace_uses >= 1,
        "a refresh with the stored token",
    );
    assert_eq!(account_state(&gateway), "linked");
    gateway.wait_for(
        || ring::ring_streams(&gateway).len() == 3,
        "the Ring streams",
    );
    assert_plays(&gateway, "ring-front-door");
    let refreshes = sim.stats().token_refreshes;
    gateway.wait_for(
        || sim.stats().token_refreshes > refreshes + 1,
        "refreshes with the new tokens",
    );
    assert_eq!(account_state(&gateway), "linked");
}

#[test]
fn under_a_429_storm_the_client_waits_out_retry_after_and_stays_below_rings_rate() {
    // Ring allows 8 requests a second here; the gateway keeps to 5 while
    // discovery asks for a pass every 100 ms.
    let sim = Sim::start("rate_limit = 8");
    let gateway =
        Gateway::start(&sim.ring_section("rediscover = \"100ms\"\nmax_requests_per_second = 5"));
    ring::link_sample_account(&sim, &gateway);
    let listed = || {
        sim.stats()
            .requests
            .get("/v1/devices")
            .copied()
            .unwrap_or(0)
    };
    let before = listed();
    gateway.wait_for(|| listed() >= before + 10, "discovery passes");

    let storm = Duration::from_secs(4);
    let storm_ends = Instant::now() + storm;
    sim.get().storm(storm, 2);
    gateway.wait_for(|| sim.stats().rate_limited >= 1, "the storm's 429s");
    gateway.wait_for(|| Instant::now() > storm_ends, "the storm to end");
    let (after_storm, refused) = (listed(), sim.stats().rate_limited);
    gateway.wait_for(
        || listed() >= after_storm + 10,
        "discovery passes after the storm",
    );

    let stats = sim.stats();
    assert_eq!(
        stats
            .retry_after_violations
            .get(CLIENT_ID)
            .copied()
            .unwrap_or(0),
        0,
        "requests before Retry-After had passed: {stats:?}"
    );
    let peak = stats
        .peak_requests_per_second
        .get(CLIENT_ID)
        .copied()
        .unwrap_or(0);
    assert!(peak <= 8, "{peak} requests in one second: {stats:?}");
    assert_eq!(
        stats.rate_limited, refused,
        "429s after the storm: {stats:?}"
    );
    // Discovery kept its devices through the storm.
    assert_eq!(ring::ring_streams(&gateway).len(), 3);
    assert_eq!(account_state(&gateway), "linked");
}
