//! The faults end-to-end tests rely on, over real HTTP: the refresh-token grace,
//! the token delay, 429 storms with `Retry-After` bookkeeping, and the count of
//! requests made with expired access tokens.

mod common;

use std::future::Future;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use streamgate_ringsim::{SimConfig, Simulator};

/// Hang guard: generous, never a pass/fail threshold on speed.
async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within 60 s"))
}

async fn sim_stats(sim: &Simulator) -> Value {
    client()
        .get(url(sim, "/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `/sim/stats` until `done` holds.
async fn stats_until(sim: &Simulator, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    guarded(what, async {
        loop {
            let stats = sim_stats(sim).await;
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn control(sim: &Simulator, method: reqwest::Method, path: &str, body: Value) -> u16 {
    client()
        .request(method, url(sim, path))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn linked(sim: &Simulator) -> (String, String) {
    let link = sim.issue_link(None).unwrap();
    let (status, body) = exchange(sim, &link.code).await;
    assert_eq!(status, 200, "{body}");
    tokens(&body)
}

fn invalid_grant(answer: &(u16, Value)) -> bool {
    answer.0 == 400 && answer.1["error"] == "invalid_grant"
}

#[tokio::test]
async fn a_rotated_refresh_token_works_until_the_new_pair_is_used() {
    let sim = start(SimConfig::default()).await;
    let (_, r0) = linked(&sim).await;
    let (status, body) = refresh(&sim, &r0).await;
    assert_eq!(status, 200, "{body}");
    let (lost_access, lost_refresh) = tokens(&body);

    // The client lost that answer and refreshes with the old token again: a
    // fresh pair, and the unused one is revoked.
    let (status, body) = refresh(&sim, &r0).await;
    assert_eq!(status, 200, "{body}");
    let (a2, r2) = tokens(&body);
    assert_ne!(r2, lost_refresh);
    let (status, _, _) = get(&sim, "/v1/devices", &lost_access).await;
    assert_eq!(status, 401);
    assert!(invalid_grant(&refresh(&sim, &lost_refresh).await));

    // First use of the new access token ends the old token's grace.
    let (status, _, _) = get(&sim, "/v1/devices", &a2).await;
    assert_eq!(status, 200);
    assert!(invalid_grant(&refresh(&sim, &r0).await));

    // First use of the new refresh token ends it too.
    let (status, body) = refresh(&sim, &r2).await;
    assert_eq!(status, 200, "{body}");
    let (_, r3) = tokens(&body);
    let (status, body) = refresh(&sim, &r3).await;
    assert_eq!(status, 200, "{body}");
    assert!(invalid_grant(&refresh(&sim, &r2).await));

    let stats = sim_stats(&sim).await;
    assert_eq!(stats["token_refreshes"], 4, "{stats}");
    assert_eq!(stats["refresh_token_grace_uses"], 1, "{stats}");
    sim.stop().await;
}

#[tokio::test]
async fn the_token_delay_holds_answers_after_recording_the_grant() {
    let sim = start(SimConfig::default()).await;
    let (_, r0) = linked(&sim).await;
    // An hour: the answer never arrives within the test.
    let put = reqwest::Method::PUT;
    assert_eq!(
        control(
            &sim,
            put.clone(),
            "/sim/token-delay",
            json!({"millis": 3_600_000})
        )
        .await,
        200
    );
    let pending = tokio::spawn({
        let (token_url, r0) = (sim.token_url(), r0.clone());
        async move {
            client()
                .post(token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    serde_urlencoded::to_string([
                        ("grant_type", "refresh_token"),
                        ("client_id", CLIENT),
                        ("client_secret", SECRET),
                        ("refresh_token", r0.as_str()),
                    ])
                    .unwrap(),
                )
                .send()
                .await
        }
    });
    // The grant is recorded while the answer is still held.
    let held = stats_until(&sim, "the refresh to be recorded", |s| {
        s["token_refreshes"] == 1 && s["token_requests_in_flight"] == 1
    })
    .await;
    assert_eq!(held["token_requests"], 2, "{held}");
    assert!(!pending.is_finished());

    // The client dies before the answer: its connection goes, and so does the
    // request.
    pending.abort();
    let _ = pending.await;
    stats_until(&sim, "the dropped request to leave the count", |s| {
        s["token_requests_in_flight"] == 0
    })
    .await;

    // Restarted, it still holds only the old token: the grace lets it in.
    assert_eq!(
        control(&sim, put, "/sim/token-delay", json!({"millis": 0})).await,
        200
    );
    let (status, body) = refresh(&sim, &r0).await;
    assert_eq!(status, 200, "{body}");
    let (access, _) = tokens(&body);
    let (status, _, _) = get(&sim, "/v1/users/me", &access).await;
    assert_eq!(status, 200);
    assert!(invalid_grant(&refresh(&sim, &r0).await));
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["refresh_token_grace_uses"], 1, "{stats}");
    assert_eq!(stats["token_requests"], 4, "{stats}");
    sim.stop().await;
}

#[tokio::test]
async fn a_short_token_delay_still_answers() {
    let sim = start(SimConfig {
        token_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let (access, refresh_token) = guarded("a delayed exchange", linked(&sim)).await;
    let (status, _, _) = get(&sim, "/v1/users/me", &access).await;
    assert_eq!(status, 200);
    let (status, body) = guarded("a delayed refresh", refresh(&sim, &refresh_token)).await;
    assert_eq!(status, 200, "{body}");
    let stats = sim_stats(&sim).await;
    assert_eq!(
        (
            stats["token_requests"].as_u64(),
            stats["token_requests_in_flight"].as_u64()
        ),
        (Some(2), Some(0)),
        "{stats}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_storm_answers_429_with_retry_after_and_counts_violations() {
    let sim = start(SimConfig::default()).await;
    let (access, refresh_token) = linked(&sim).await;
    let post = reqwest::Method::POST;
    assert_eq!(
        control(
            &sim,
            post.clone(),
            "/sim/storm",
            json!({"seconds": 3600, "retry_after": 7})
        )
        .await,
        200
    );
    let (status, headers, body) = get(&sim, "/v1/devices", &access).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body["errors"][0]["status"], "429");
    assert_eq!(body["errors"][0]["title"], "Rate Limit Exceeded");
    // Straight back, long before 7 s: a violation, and refused again.
    let (status, _, _) = get(&sim, "/v1/users/me", &access).await;
    assert_eq!(status, 429);
    // Requests without a valid token are refused too, in their own bucket.
    let (status, _, _) = get(&sim, "/v1/devices", "not-a-token").await;
    assert_eq!(status, 429);
    // The token endpoint is not in the storm.
    let (status, body) = refresh(&sim, &refresh_token).await;
    assert_eq!(status, 200, "{body}");
    let (new_access, _) = tokens(&body);

    // Ending the storm does not forgive the wait still owed.
    assert_eq!(
        control(
            &sim,
            post,
            "/sim/storm",
            json!({"seconds": 0, "retry_after": 1})
        )
        .await,
        200
    );
    let (status, _, _) = get(&sim, "/v1/devices", &new_access).await;
    assert_eq!(status, 200);
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["retry_after_violations"]["sim-client"], 2, "{stats}");
    assert_eq!(stats["retry_after_violations"]["unauthenticated"], 0);
    assert_eq!(stats["rate_limited"], 3);

    sim.stop().await;

    // A client that waits out Retry-After is never counted.
    let sim = start(SimConfig::default()).await;
    let new_access = access_token(&sim).await;
    let post = reqwest::Method::POST;
    assert_eq!(
        control(
            &sim,
            post,
            "/sim/storm",
            json!({"seconds": 1, "retry_after": 1})
        )
        .await,
        200
    );
    let (status, headers, _) = get(&sim, "/v1/devices", &new_access).await;
    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, _, _) = get(&sim, "/v1/devices", &new_access).await;
    assert_eq!(status, 200);
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["retry_after_violations"]["sim-client"], 0, "{stats}");
    sim.stop().await;
}

#[tokio::test]
async fn rate_limit_429s_count_retry_after_violations() {
    let sim = start(SimConfig {
        rate_limit: 5,
        ..SimConfig::default()
    })
    .await;
    let access = access_token(&sim).await;
    // As in the plain 429 test: 30 requests in a row cannot all fit under 5/s.
    let mut refused = false;
    for _ in 0..30 {
        let (status, _, _) = get(&sim, "/v1/devices", &access).await;
        if status == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "a 429 above the rate");
    assert_eq!(
        sim_stats(&sim).await["retry_after_violations"]["sim-client"],
        0
    );
    // Straight back: if the window is still full, the request came before
    // Retry-After (at least the window's remainder) had passed.
    let (status, _, _) = get(&sim, "/v1/devices", &access).await;
    let violations = sim_stats(&sim).await["retry_after_violations"]["sim-client"]
        .as_u64()
        .unwrap();
    assert!(violations <= 1);
    if status == 429 {
        assert_eq!(violations, 1);
    }
    sim.stop().await;
}

#[tokio::test]
async fn requests_with_expired_access_tokens_are_counted() {
    let sim = start(SimConfig {
        access_token_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let expired = access_token(&sim).await;
    let (status, _, _) = get(&sim, "/v1/users/me", &expired).await;
    assert_eq!(status, 403);
    let (status, _, _) = get(&sim, "/v1/devices", &expired).await;
    assert_eq!(status, 401);
    // Unknown tokens are not expired ones.
    let (status, _, _) = get(&sim, "/v1/devices", "not-a-token").await;
    assert_eq!(status, 401);
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["requests_with_expired_token"], 2, "{stats}");
    // Attributed to the token's client.
    assert!(stats["peak_requests_per_second"]["sim-client"].as_u64() >= Some(2));
    sim.stop().await;

    // A client that refreshes before expiry never causes one.
    let sim = start(SimConfig::default()).await;
    let (access, refresh_token) = linked(&sim).await;
    let (status, _, _) = get(&sim, "/v1/devices", &access).await;
    assert_eq!(status, 200);
    let (_, body) = refresh(&sim, &refresh_token).await;
    let (status, _, _) = get(&sim, "/v1/devices", &tokens(&body).0).await;
    assert_eq!(status, 200);
    assert_eq!(sim_stats(&sim).await["requests_with_expired_token"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn fault_controls_validate_their_input() {
    let sim = start(SimConfig::default()).await;
    let (put, post) = (reqwest::Method::PUT, reqwest::Method::POST);
    for (method, path, body) in [
        (put.clone(), "/sim/token-delay", json!({"millis": -1})),
        (
            put.clone(),
            "/sim/token-delay",
            json!({"millis": 86_400_001}),
        ),
        (put.clone(), "/sim/token-delay", json!({"seconds": 1})),
        (post.clone(), "/sim/storm", json!({"seconds": 5})),
        (
            post.clone(),
            "/sim/storm",
            json!({"seconds": 86_401, "retry_after": 1}),
        ),
        (
            post.clone(),
            "/sim/storm",
            json!({"seconds": 1, "retry_after": "soon"}),
        ),
    ] {
        assert_eq!(
            control(&sim, method, path, body.clone()).await,
            400,
            "{body}"
        );
    }
    // Nothing took effect.
    let access = access_token(&sim).await;
    let (status, _, _) = get(&sim, "/v1/devices", &access).await;
    assert_eq!(status, 200);
    sim.stop().await;
}

#[tokio::test]
async fn stopping_releases_held_token_answers() {
    let sim = start(SimConfig {
        token_delay: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await;
    let link = sim.issue_link(None).unwrap();
    let pending = tokio::spawn({
        let token_url = sim.token_url();
        async move {
            client()
                .post(token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    serde_urlencoded::to_string([
                        ("grant_type", "authorization_code"),
                        ("client_id", CLIENT),
                        ("client_secret", SECRET),
                        ("code", link.code.as_str()),
                    ])
                    .unwrap(),
                )
                .send()
                .await
                .map(|response| response.status().as_u16())
        }
    });
    stats_until(&sim, "the exchange to be held", |s| {
        s["code_exchanges"] == 1 && s["token_requests_in_flight"] == 1
    })
    .await;
    guarded("stop with a held answer", sim.stop()).await;
    let answer = guarded("the held answer", pending).await.unwrap();
    assert_eq!(answer.ok(), Some(200));
}
