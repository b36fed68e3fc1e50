//! Linking a Ring account in headless Chromium (Debian's, driven by playwright-core
//! through tests/js/ring_link.mjs) with `[http] api_token` set: the simulator's
//! link page plays Ring, the gateway's Account Link URL sends the browser to the
//! sign-in page, the token signs it in, and the link completes; afterwards the
//! account's three devices are streams, and the dashboard's unlink button removes them.
//! The dashboard's Ring section, signed in by the same cookie, shows each
//! device's snapshot, the clips with a player, and events live over SSE.

use crate::support;

use serde_json::Value;
use support::ring::Sim;
use support::{node_report, peer, Gateway};

const TOKEN: &str = "browser-test-token";

#[test]
fn chromium_signs_in_and_links_a_ring_account() {
    peer("chromium");
    let sim = Sim::start("");
    // The API token is set through the environment, as a deployment would.
    let gateway =
        Gateway::start_with_env(&sim.ring_section(""), &[("STREAMGATE_API_TOKEN", TOKEN)]);
    let start = format!(
        "{}sim/link?token_exchange={}&account_link={}",
        sim.get().api_url(),
        gateway.http_url("/ring/token-exchange"),
        gateway.http_url("/ring/link")
    );
    let report = node_report("ring_link.mjs", &[start.as_str(), TOKEN, "90"], &gateway);
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["signInShown"], true, "{report}");
    assert_eq!(
        report["title"],
        "Ring account linked",
        "{report}\n{}",
        gateway.log()
    );
    assert!(
        report["text"]
            .as_str()
            .is_some_and(|t| t.contains("Sam Simulator")),
        "{report}"
    );

    // The link page listed the three devices as streams.
    for stream in ["ring-backyard", "ring-driveway", "ring-front-door"] {
        assert!(
            report["text"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("stream {stream}"))),
            "{stream}: {report}"
        );
    }
    assert!(!gateway.log().contains(TOKEN), "the API token was logged");

    // The dashboard listed the account as linked, and its unlink button (signed
    // in by the same cookie) removed it and its streams.
    assert_eq!(
        report["dashboardAccounts"],
        serde_json::json!([{ "id": support::ring::ACCOUNT, "state": "linked" }]),
        "{report}"
    );
    assert_eq!(
        report["dashboardAccountsAfterUnlink"],
        serde_json::json!([]),
        "{report}"
    );
    // The API needs the token; with it, no Ring stream is left.
    assert_eq!(gateway.request("GET", "/api/streams", None).0, 401);
    let (status, body) = support::http_with_headers(
        gateway.http_port,
        "GET",
        "/api/streams",
        None,
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("ring-"), "{body}");
}

#[test]
fn chromium_sees_the_ring_section_with_snapshots_clips_and_live_events() {
    peer("chromium");
    let sim = Sim::start("webhook_retry_scale = 0.01");
    let gateway =
        Gateway::start_with_env(&sim.ring_section(""), &[("STREAMGATE_API_TOKEN", TOKEN)]);
    let url = url::Url::parse(&gateway.http_url("/ring/webhook")).unwrap();
    sim.get().set_webhook_url(Some(url));
    // A recording for the clip the browser downloads.
    let clip_start = support::ring::now_ms() - 600_000;
    sim.get()
        .add_recording(support::ring::FRONT_DOOR, clip_start, clip_start + 4000);
    let start = format!(
        "{}sim/link?token_exchange={}&account_link={}",
        sim.get().api_url(),
        gateway.http_url("/ring/token-exchange"),
        gateway.http_url("/ring/link")
    );
    let report = node_report(
        "ring_dashboard.mjs",
        &[
            start.as_str(),
            TOKEN,
            sim.get().api_url().as_str(),
            support::ring::FRONT_DOOR,
            &clip_start.to_string(),
            "90",
        ],
        &gateway,
    );
    let log = gateway.log();
    assert_eq!(report["error"], Value::Null, "{report}\n{log}");
    assert_eq!(report["pageErrors"], serde_json::json!([]), "{report}");
    assert_eq!(report["linkTitle"], "Ring account linked", "{report}");
    assert_eq!(
        report["clipStatus"], 201,
        "the API takes the sign-in cookie: {report}\n{log}"
    );
    assert_eq!(report["ringSection"], true, "{report}");
    assert_eq!(report["signedIn"], "true", "{report}");
    assert_eq!(
        report["accounts"],
        serde_json::json!([{ "id": support::ring::ACCOUNT, "state": "linked" }]),
        "{report}"
    );
    let snapshots = report["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 3, "one per device: {report}");
    for snapshot in snapshots {
        assert!(
            snapshot["naturalWidth"].as_u64().unwrap_or(0) > 0,
            "a snapshot did not load: {report}\n{log}"
        );
    }
    assert!(
        snapshots
            .iter()
            .any(|s| s["src"] == "/api/streams/ring-front-door/snapshot.jpg"),
        "{report}"
    );
    let clips = report["clips"].as_array().expect("clips");
    assert_eq!(clips.len(), 1, "{report}");
    assert!(
        clips[0]["duration"].as_f64().unwrap_or(0.0) > 3.0,
        "the clip's player read its metadata: {report}"
    );
    assert!(
        report["liveEvents"]
            .as_array()
            .is_some_and(|e| e.iter().any(|t| t == "motion_detected")),
        "the motion event appeared live: {report}"
    );
    // Without the cookie or token, the API (snapshots included) still says 401.
    let (status, _) = gateway.request("GET", "/api/streams/ring-front-door/snapshot.jpg", None);
    assert_eq!(status, 401);
}
