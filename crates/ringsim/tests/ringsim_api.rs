//! The simulated API over real HTTP: tokens, users/me, devices, linking, faults.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use streamgate_ringsim::SimConfig;

#[tokio::test]
async fn token_flow_codes_refresh_rotation_and_expiry() {
    let sim = start(SimConfig {
        code_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    // A code that has already expired (zero life) is refused.
    let stale = sim.issue_link(None).unwrap();
    let (status, body) = exchange(&sim, &stale.code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    sim.stop().await;

    let sim = start(SimConfig::default()).await;
    let link = sim.issue_link(None).unwrap();
    // Wrong client credentials: invalid_client, and the code is still good.
    let (status, body) = token_request(
        &sim,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", "wrong"),
            ("code", &link.code),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let (status, first) = exchange(&sim, &link.code).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 14_400);
    assert!(first["scope"].is_string());
    // Codes are single use.
    let (status, body) = exchange(&sim, &link.code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Refresh rotates: a new refresh token, and once the new pair is used the
    // old one is refused.
    let old = first["refresh_token"].as_str().unwrap();
    let (status, second) = refresh(&sim, old).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, _, _) = get(
        &sim,
        "/v1/users/me",
        second["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = refresh(&sim, old).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Expired refresh tokens: invalid_grant (the user must link again).
    sim.expire_refresh_tokens();
    let (status, body) = refresh(&sim, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // Bad forms get OAuth errors, not panics.
    let (status, body) =
        token_request(&sim, &[("client_id", CLIENT), ("client_secret", SECRET)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = token_request(
        &sim,
        &[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let response = client()
        .post(sim.token_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let stats = sim.stats();
    assert_eq!((stats.code_exchanges, stats.token_refreshes), (1, 1));
    sim.stop().await;
}

#[tokio::test]
async fn access_tokens_expire_after_their_configured_life() {
    let sim = start(SimConfig {
        access_token_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let token = access_token(&sim).await;
    let (status, _, body) = get(&sim, "/v1/users/me", &token).await;
    assert_eq!(status, 403, "{body}");
    sim.stop().await;
}

#[tokio::test]
async fn users_me_and_bad_tokens() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let (status, headers, body) = get(&sim, "/v1/users/me", &token).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["data"]["type"], "users");
    assert_eq!(body["data"]["id"], "ava1.ring.account.sim-1");
    assert_eq!(body["data"]["attributes"]["first_name"], "Sam");
    assert_eq!(body["data"]["attributes"]["last_name"], "Simulator");
    assert!(body["data"]["attributes"]["email"].is_string());

    // users/me answers 403 on a bad token (as Ring documents); other routes 401.
    let (status, _, body) = get(&sim, "/v1/users/me", "not-a-token").await;
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["status"], "403");
    let (status, _, body) = get(&sim, "/v1/devices", "not-a-token").await;
    assert_eq!(status, 401);
    assert!(body["errors"][0]["detail"].is_string());
    let response = client()
        .get(url(&sim, "/v1/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    sim.stop().await;
}

fn find<'a>(included: &'a [Value], identifier: &Value) -> &'a Value {
    included
        .iter()
        .find(|r| r["type"] == identifier["type"] && r["id"] == identifier["id"])
        .unwrap_or_else(|| panic!("{identifier} not included"))
}

#[tokio::test]
async fn devices_with_includes_are_json_api_documents() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let (status, _, doc) = get(
        &sim,
        "/v1/devices?include=status,capabilities,location,configurations",
        &token,
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let data = doc["data"].as_array().unwrap();
    let names: Vec<_> = data
        .iter()
        .map(|d| d["attributes"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Front Door", "Driveway", "Backyard"]);
    let included = doc["included"].as_array().unwrap();
    let mut powers = Vec::new();
    for device in data {
        assert_eq!(device["type"], "devices");
        assert!(device["id"]
            .as_str()
            .unwrap()
            .starts_with("ava1.ring.device."));
        let rel = &device["relationships"];
        let status = find(included, &rel["status"]["data"]);
        assert_eq!(status["type"], "device-status");
        assert_eq!(status["attributes"]["online"], true);
        assert!(status["attributes"]["reported_at"].is_string());
        let capabilities = find(included, &rel["capabilities"]["data"]);
        assert_eq!(
            capabilities["attributes"]["video"]["codecs"],
            json!(["h264"])
        );
        powers.push(
            capabilities["attributes"]["power_source"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        assert!(find(included, &rel["location"]["data"])["attributes"]["name"].is_string());
        let configurations = find(included, &rel["configurations"]["data"]);
        assert_eq!(configurations["type"], "device-configurations");
    }
    assert_eq!(powers, ["battery", "wired", "battery"]);

    // Without include: no included[]; only what is asked otherwise.
    let (_, _, plain) = get(&sim, "/v1/devices", &token).await;
    assert!(plain.get("included").is_none());
    let (_, _, some) = get(&sim, "/v1/devices?include=status", &token).await;
    assert_eq!(some["included"].as_array().unwrap().len(), 3);
    let (status, _, body) = get(&sim, "/v1/devices?include=bogus", &token).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["status"], "400");

    // One device and its related documents.
    let (status, _, one) = get(&sim, &format!("/v1/devices/{FRONT_DOOR}"), &token).await;
    assert_eq!(
        (status, one["data"]["id"].as_str()),
        (200, Some(FRONT_DOOR))
    );
    for related in ["status", "capabilities", "location", "configurations"] {
        let (status, _, doc) =
            get(&sim, &format!("/v1/devices/{FRONT_DOOR}/{related}"), &token).await;
        assert_eq!(status, 200, "{related}: {doc}");
        assert!(doc["data"]["attributes"].is_object(), "{related}");
    }
    let (status, _, body) = get(&sim, "/v1/devices/ava1.ring.device.nope", &token).await;
    assert_eq!(
        (status, body["errors"][0]["status"].as_str()),
        (404, Some("404"))
    );
    let (status, _, _) = get(&sim, &format!("/v1/devices/{FRONT_DOOR}/bogus"), &token).await;
    assert_eq!(status, 404);

    // Offline shows in the status document.
    assert!(sim.set_online(FRONT_DOOR, false));
    let (_, _, status_doc) = get(&sim, &format!("/v1/devices/{FRONT_DOOR}/status"), &token).await;
    assert_eq!(status_doc["data"]["attributes"]["online"], false);
    sim.stop().await;
}

async fn send_json(
    sim: &streamgate_ringsim::Simulator,
    method: reqwest::Method,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let response = client()
        .request(method, url(sim, "/v1/accounts/me/app-integrations"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn app_integrations_check_the_nonce() {
    let sim = start(SimConfig::default()).await;
    let link = sim.issue_link(None).unwrap();
    assert_eq!(
        link.nonce,
        streamgate_ringsim::nonce(b"sim-hmac-key", link.time, &link.account_id)
    );
    let (_, tokens) = exchange(&sim, &link.code).await;
    let token = tokens["access_token"].as_str().unwrap();

    // PATCH before POST: nothing to complete.
    let (status, _) = send_json(
        &sim,
        reqwest::Method::PATCH,
        token,
        json!({"status": "completed"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = send_json(
        &sim,
        reqwest::Method::POST,
        token,
        json!({"nonce": "bm90LXRoZS1ub25jZQ"}),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["title"].as_str()),
        (400, Some("Invalid Nonce"))
    );
    let (status, body) = send_json(&sim, reqwest::Method::POST, token, json!({})).await;
    assert_eq!(
        (status, body["errors"][0]["title"].as_str()),
        (400, Some("Missing Required Fields"))
    );
    let (status, _) = send_json(&sim, reqwest::Method::POST, token, json!("not an object")).await;
    assert_eq!(status, 400);

    let (status, body) = send_json(
        &sim,
        reqwest::Method::POST,
        token,
        json!({"account_identifier": "sam@example.invalid", "nonce": link.nonce}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"status": "awaiting"})));
    let (status, body) = send_json(&sim, reqwest::Method::PATCH, token, json!({})).await;
    assert_eq!(
        (status, body["errors"][0]["title"].as_str()),
        (400, Some("Missing Required Fields"))
    );
    let (status, body) = send_json(
        &sim,
        reqwest::Method::PATCH,
        token,
        json!({"status": "completed"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["account_identifier"], "sam@example.invalid");
    assert!(body["updated_at"].is_string());
    let stats = sim.stats();
    assert_eq!(
        (stats.app_integration_posts, stats.app_integration_patches),
        (4, 3)
    );
    sim.stop().await;
}

#[tokio::test]
async fn requests_above_the_rate_get_429_with_retry_after() {
    let sim = start(SimConfig {
        rate_limit: 5,
        ..SimConfig::default()
    })
    .await;
    let token = access_token(&sim).await;
    // However slow the machine, 30 requests in a row cannot all fit under 5 per
    // second unless each took over 200 ms; the sliding window refuses the rest.
    let mut refused = None;
    for _ in 0..30 {
        let (status, headers, body) = get(&sim, "/v1/users/me", &token).await;
        if status == 429 {
            refused = Some((headers, body));
            break;
        }
        assert_eq!(status, 200);
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert!(headers.contains_key("x-ratelimit-remaining"));
    }
    let (headers, body) = refused.expect("a 429 above the rate");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(body["errors"][0]["status"], "429");
    let stats = sim.stats();
    assert!(stats.rate_limited >= 1);
    assert!(
        stats.peak_requests_per_second["sim-client"] >= 6,
        "{stats:?}"
    );

    // Lifting the limit through /sim/rate-limit lets requests through again.
    let response = client()
        .put(url(&sim, "/sim/rate-limit"))
        .json(&json!({"per_second": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _, _) = get(&sim, "/v1/users/me", &token).await;
    assert_eq!(status, 200);
    sim.stop().await;
}

#[tokio::test]
async fn offline_devices_refuse_whep_with_503() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let response = client()
        .post(url(&sim, &format!("/sim/devices/{FRONT_DOOR}/offline")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client()
        .post(url(
            &sim,
            &format!("/v1/devices/{FRONT_DOOR}/media/streaming/whep/sessions"),
        ))
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["detail"], "Device is currently offline");
    sim.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let whep = url(
        &sim,
        &format!("/v1/devices/{FRONT_DOOR}/media/streaming/whep/sessions"),
    );
    let post = |content_type: &'static str, body: Vec<u8>| {
        client()
            .post(&whep)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // Too large for any route: 413 JSON.
    let response = post(
        "application/sdp",
        vec![b'a'; streamgate_ringsim::MAX_BODY + 1],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.json::<Value>().await.unwrap()["errors"].is_array());
    assert_eq!(
        post("text/plain", b"v=0".to_vec()).await.unwrap().status(),
        415
    );
    assert_eq!(
        post("application/sdp", vec![0xff, 0xfe])
            .await
            .unwrap()
            .status(),
        400
    );
    // An offer without H.264 High profile: 500, as Ring answers.
    let baseline = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n";
    let response = post("application/sdp", baseline.as_bytes().to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let garbage =
        "m=video 9 x 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=64001f\r\n";
    let status = post("application/sdp", garbage.as_bytes().to_vec())
        .await
        .unwrap()
        .status();
    assert!(status == 400 || status == 500, "{status}");
    // Unknown paths and sessions: JSON:API 404s.
    let (status, _, body) = get(&sim, "/v1/nothing/here", &token).await;
    assert_eq!(
        (status, body["errors"][0]["status"].as_str()),
        (404, Some("404"))
    );
    let response = client()
        .delete(format!("{whep}/no-such-session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // /sim controls validate too.
    let response = client()
        .post(url(&sim, "/sim/devices"))
        .json(&json!({"id": "bad id/../", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = client()
        .put(url(&sim, "/sim/rate-limit"))
        .json(&json!({"per_second": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    sim.stop().await;
}

#[tokio::test]
async fn sim_controls_add_remove_devices_and_report_stats() {
    let sim = start(SimConfig::default()).await;
    let token = access_token(&sim).await;
    let response = client()
        .post(url(&sim, "/sim/devices"))
        .json(&json!({"id": "ava1.ring.device.garage", "name": "Garage", "power": "wired"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (_, _, doc) = get(&sim, "/v1/devices", &token).await;
    assert_eq!(doc["data"].as_array().unwrap().len(), 4);
    let response = client()
        .delete(url(&sim, "/sim/devices/ava1.ring.device.garage"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, _, doc) = get(&sim, "/v1/devices", &token).await;
    assert_eq!(doc["data"].as_array().unwrap().len(), 3);
    let response = client()
        .post(url(&sim, "/sim/expire-refresh-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let stats: Value = client()
        .get(url(&sim, "/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"]["/v1/devices"], 2);
    assert_eq!(stats["requests"]["/oauth/token"], 1);
    assert!(
        stats["peak_requests_per_second"]["sim-client"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(stats["whep_sessions"]["opened"], 0);
    sim.stop().await;
}
