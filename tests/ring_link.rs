//! Linking a Ring account, the whole flow over HTTP: the simulator plays Ring
//! (it POSTs an authorization code to the Token Exchange URL and hands out the
//! Account Link URL's `time` and `nonce`), a plain HTTP client plays the user's
//! browser. Refusals first (a wrong nonce, an old `time`, a replayed code: nothing
//! is stored or linked), then the link, the streams its devices become,
//! re-discovery of added and removed devices, and unlinking.

use crate::support;

use support::ring::{self, Sim, ACCOUNT, CLIENT_SECRET, HMAC_KEY};
use support::Gateway;

#[test]
fn linking_refuses_bad_nonces_old_times_and_replayed_codes_then_links_and_follows_devices() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&sim.ring_section(""));
    assert_eq!(ring::accounts(&gateway)["accounts"], serde_json::json!([]));

    // Ring delivers a code: the account is stored, unclaimed, with no stream yet.
    let offer = sim.deliver_code(&gateway);
    let accounts = ring::accounts(&gateway);
    assert_eq!(accounts["accounts"][0]["id"], ACCOUNT, "{accounts}");
    assert_eq!(accounts["accounts"][0]["state"], "unclaimed", "{accounts}");
    assert!(ring::ring_streams(&gateway).is_empty());

    // A wrong nonce, and a right one for a time 700 s ago, are refused.
    let (status, page) = ring::open_link(&gateway, offer.time, "bm90LXRoZS1ub25jZQ");
    assert_eq!(status, 400, "{page}");
    let old = ring::now_ms() - 700_000;
    let (status, page) = ring::open_link(&gateway, old, &ring::nonce(old, ACCOUNT));
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("old"), "{page}");
    let future = ring::now_ms() + 3_600_000;
    let (status, _) = ring::open_link(&gateway, future, &ring::nonce(future, ACCOUNT));
    assert_eq!(status, 400);
    // Replaying the spent code is refused by Ring's token endpoint: nothing changes.
    let replay = sim.post_code(&gateway, &offer.code);
    assert!(replay.is_err(), "a replayed code was accepted");
    assert_eq!(sim.stats().code_exchanges, 1);
    let accounts = ring::accounts(&gateway);
    assert_eq!(accounts["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(accounts["accounts"][0]["state"], "unclaimed", "{accounts}");
    assert_eq!(sim.stats().app_integration_posts, 0);

    // The right link: completed at Ring (POST, then PATCH), devices become streams.
    let (status, page) = ring::open_link(&gateway, offer.time, &offer.nonce);
    assert_eq!(status, 200, "{page}\n{}", gateway.log());
    assert!(page.contains("Sam Simulator"), "{page}");
    for stream in ["ring-front-door", "ring-driveway", "ring-backyard"] {
        assert!(
            page.contains(stream),
            "{stream} missing from the page:\n{page}"
        );
    }
    let stats = sim.stats();
    assert_eq!(
        (stats.app_integration_posts, stats.app_integration_patches),
        (1, 1)
    );
    assert_eq!(
        ring::ring_streams(&gateway),
        ["ring-backyard", "ring-driveway", "ring-front-door"]
    );
    // On demand: no Ring live session runs while nobody reads.
    assert_eq!(sim.stats().whep_sessions.opened, 0);
    let accounts = ring::accounts(&gateway);
    let account = &accounts["accounts"][0];
    assert_eq!(account["state"], "linked", "{accounts}");
    let devices = account["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3, "{accounts}");
    let front = devices
        .iter()
        .find(|d| d["id"] == ring::FRONT_DOOR)
        .expect("the front door");
    assert_eq!(front["power"], "battery");
    assert_eq!(front["stream"], "ring-front-door");
    // The same link page again: the account is no longer unclaimed.
    let (status, _) = ring::open_link(&gateway, offer.time, &offer.nonce);
    assert_eq!(status, 400);

    // Devices added and removed at Ring add and remove streams, no restart.
    sim.get()
        .add_device(
            Some(ACCOUNT),
            serde_json::from_value(serde_json::json!({
                "id": "ava1.ring.device.garage", "name": "Garage", "power": "wired"
            }))
            .unwrap(),
        )
        .expect("add a device");
    sim.get().remove_device(ring::DRIVEWAY);
    let (status, body) = gateway.request("POST", "/api/ring/discover", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ring::ring_streams(&gateway),
        ["ring-backyard", "ring-front-door", "ring-garage"]
    );

    // Unlinking deletes the account's tokens and its streams.
    let (status, body) = gateway.request("DELETE", &format!("/api/ring/accounts/{ACCOUNT}"), None);
    assert_eq!(status, 204, "{body}");
    assert!(ring::ring_streams(&gateway).is_empty());
    assert_eq!(ring::accounts(&gateway)["accounts"], serde_json::json!([]));

    // No secret reached the log.
    let log = gateway.log();
    for secret in [
        CLIENT_SECRET,
        HMAC_KEY,
        offer.code.as_str(),
        offer.nonce.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert!(
        !log.contains("Bearer "),
        "a bearer token in the log:\n{log}"
    );
}
