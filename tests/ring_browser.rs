//! Linking a Ring account in headless Chromium (Debian's, driven by playwright-core
//! through tests/js/ring_link.mjs) with `[http] api_token` set: the simulator's
//! link page plays Ring, the gateway's Account Link URL sends the browser to the
//! sign-in page, the token signs it in, and the link completes; afterwards the
//! account's three devices are streams, and the dashboard's unlink button removes them.

mod support;

use std::process::Command;

use serde_json::Value;
use support::ring::Sim;
use support::{peer, run, text, Gateway};

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
    let output = run(
        Command::new(peer("node"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/js/ring_link.mjs"
            ))
            .args([start.as_str(), TOKEN, "90"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        std::time::Duration::from_secs(150),
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "ring_link.mjs failed: {}\n{stdout}\n{}",
        text(&output.stderr),
        gateway.log()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad report ({e}): {stdout}"));
    println!("ring link report: {report}");
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
