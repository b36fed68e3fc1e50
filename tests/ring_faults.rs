//! Ring accounts and devices when things go wrong, against the simulator: a
//! restart keeps the linked account (SQLite store), an expired refresh token
//! turns the account to "needs re-linking" (in the API, the dashboard and its
//! streams), and a device that goes offline reports it and plays again when it
//! comes back.

mod support;

use std::process::{Child, Command, Stdio};

use support::ring::{self, Sim, ACCOUNT};
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
        std::thread::sleep(std::time::Duration::from_millis(50));
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
