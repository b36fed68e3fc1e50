//! The client against a small Ring-shaped HTTP server (axum on loopback) that
//! answers from a script: rotating refresh tokens, single-use codes, 429 with
//! `Retry-After`, 503, malformed bodies. The end-to-end tests against the simulator
//! live with the binary.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::*;
use crate::devices::PowerSource;
use crate::error::ApiError;
use crate::linking;
use crate::store::AccountState;

const CLIENT_SECRET: &str = "CLIENT-SECRET-7f3a";
const HMAC_KEY: &str = "HMAC-KEY-91bc";
const ACCOUNT: &str = "ava1.ring.account.sim-1";

/// What the fake answers next on `/v1/devices` (then normally).
#[derive(Clone, Copy)]
enum Scripted {
    TooMany(&'static str),
    Unavailable,
    Offline,
    Malformed,
    Slow(Duration),
}

#[derive(Default)]
struct Fake {
    codes: HashSet<String>,
    access: HashSet<String>,
    refresh: HashSet<String>,
    issued: u32,
    refreshes: u32,
    expires_in: u64,
    /// Answered to the next token request instead of a token.
    token_answer: Option<(u16, String)>,
    refresh_delay: Duration,
    devices: VecDeque<Scripted>,
    device_requests: u32,
    integrations: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<Fake>>;

fn json_answer(status: u16, body: impl Into<String>) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

fn jsonapi_error(status: u16, title: &str) -> Response {
    json_answer(
        status,
        json!({"errors": [{"status": status.to_string(), "title": title}]}).to_string(),
    )
}

fn issue(fake: &mut Fake) -> Response {
    fake.issued += 1;
    let (access, refresh) = (
        format!("ACCESS-TOKEN-{}", fake.issued),
        format!("REFRESH-TOKEN-{}", fake.issued),
    );
    fake.access.insert(access.clone());
    fake.refresh.insert(refresh.clone());
    json_answer(
        200,
        json!({"access_token": access, "refresh_token": refresh, "scope": "ava.v1:read",
               "expires_in": fake.expires_in, "token_type": "Bearer"})
        .to_string(),
    )
}

async fn token(State(fake): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let delay = fake.lock().unwrap().refresh_delay;
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        tokio::time::sleep(delay).await;
    }
    let mut fake = fake.lock().unwrap();
    if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
        return json_answer(401, r#"{"error":"invalid_client"}"#);
    }
    if let Some((status, body)) = fake.token_answer.take() {
        return json_answer(status, body);
    }
    let refused = || {
        json_answer(
            400,
            r#"{"error":"invalid_grant","error_description":"unknown or used grant"}"#,
        )
    };
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            if !fake
                .codes
                .remove(form.get("code").map_or("", String::as_str))
            {
                return refused();
            }
            issue(&mut fake)
        }
        Some("refresh_token") => {
            if !fake
                .refresh
                .remove(form.get("refresh_token").map_or("", String::as_str))
            {
                return refused();
            }
            fake.refreshes += 1;
            issue(&mut fake)
        }
        _ => json_answer(400, r#"{"error":"unsupported_grant_type"}"#),
    }
}

fn authorized(fake: &Fake, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| fake.access.contains(token))
}

async fn users_me(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&fake.lock().unwrap(), &headers) {
        return jsonapi_error(403, "Out of Scope Access");
    }
    json_answer(
        200,
        json!({"data": {"type": "users", "id": ACCOUNT, "attributes": {
            "first_name": "Sam", "last_name": "Simulator", "email": "sam@example.com",
            "phone_number": null}}})
        .to_string(),
    )
}

async fn devices(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    let next = {
        let mut fake = fake.lock().unwrap();
        fake.device_requests += 1;
        if !authorized(&fake, &headers) {
            return jsonapi_error(401, "Unauthorized");
        }
        fake.devices.pop_front()
    };
    match next {
        Some(Scripted::TooMany(retry_after)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, retry_after),
                (header::CONTENT_TYPE, "application/json"),
            ],
            json!({"errors": [{"status": "429", "title": "Rate Limit Exceeded"}]}).to_string(),
        )
            .into_response(),
        Some(Scripted::Unavailable) => jsonapi_error(503, "Service Unavailable"),
        Some(Scripted::Offline) => jsonapi_error(503, "Device is currently offline"),
        Some(Scripted::Malformed) => json_answer(200, r#"{"data": [{"type": "devices""#),
        Some(Scripted::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            json_answer(200, r#"{"data": []}"#)
        }
        None => json_answer(
            200,
            json!({"data": [{"type": "devices", "id": "ava1.ring.device.front-door",
                             "attributes": {"name": "Front Door"},
                             "relationships": {"status": {"data": {"type": "device-status",
                                                                   "id": "s1"}}}}],
                   "included": [{"type": "device-status", "id": "s1",
                                 "attributes": {"online": true, "power_source": "battery"}}]})
            .to_string(),
        ),
    }
}

async fn device(
    State(fake): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&fake.lock().unwrap(), &headers) {
        return jsonapi_error(401, "Unauthorized");
    }
    json_answer(
        200,
        json!({"data": {"type": "devices", "id": id, "attributes": {"name": "One"}}}).to_string(),
    )
}

async fn integrations(
    State(fake): State<Shared>,
    method: axum::http::Method,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut fake = fake.lock().unwrap();
    if !authorized(&fake, &headers) {
        return jsonapi_error(401, "Unauthorized");
    }
    fake.integrations.push((method.to_string(), body.clone()));
    if method == axum::http::Method::POST {
        if body["nonce"].as_str().is_none_or(str::is_empty) {
            return jsonapi_error(400, "Invalid Nonce");
        }
        json_answer(200, r#"{"status":"awaiting"}"#)
    } else {
        json_answer(
            200,
            json!({"account_identifier": body["account_identifier"], "status": body["status"],
                   "updated_at": "2025-05-01T10:00:00Z"})
            .to_string(),
        )
    }
}

struct Harness {
    fake: Shared,
    client: RingClient,
    _dir: tempfile::TempDir,
}

async fn harness(configure: impl FnOnce(&mut RingConfig)) -> Harness {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        expires_in: 14_400,
        ..Fake::default()
    }));
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/users/me", get(users_me))
        .route("/v1/devices", get(devices))
        .route("/v1/devices/{id}", get(device))
        .route(
            "/v1/accounts/me/app-integrations",
            post(integrations).patch(integrations),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = RingConfig::new(
        "test-client".into(),
        Secret::new(CLIENT_SECRET),
        Secret::new(HMAC_KEY),
    );
    config.api_url = Url::parse(&format!("http://{addr}")).unwrap();
    config.token_url = Url::parse(&format!("http://{addr}/oauth/token")).unwrap();
    config.retry_base = Duration::from_millis(10);
    config.max_retries = 2;
    config.http_timeout = Duration::from_secs(5);
    configure(&mut config);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("ring.sqlite")).unwrap();
    Harness {
        fake,
        client: RingClient::new(config, store).unwrap(),
        _dir: dir,
    }
}

impl Harness {
    async fn exchanged(&self) -> AccountId {
        self.fake.lock().unwrap().codes.insert("code-1".into());
        self.client.exchange_code("code-1").await.unwrap().id
    }

    /// Makes the stored access token due for a refresh (issued 4 h ago, 5 min left).
    fn age_tokens(&self, account: &AccountId) {
        let store = self.client.store();
        let mut tokens = store.tokens(account).unwrap().unwrap();
        let now = SystemTime::now();
        tokens.updated_at = now - Duration::from_secs(4 * 3600);
        tokens.access_expires_at = now + Duration::from_secs(300);
        assert!(store.replace_tokens(account, &tokens).unwrap());
    }
}

/// No error text or debug output shows a secret of the test.
fn assert_no_secrets(error: &dyn std::fmt::Debug, shown: String) {
    let all = format!("{shown} {error:?}");
    for secret in [
        CLIENT_SECRET,
        HMAC_KEY,
        "ACCESS-TOKEN-",
        "REFRESH-TOKEN-",
        "code-1",
    ] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
}

fn no_secrets(error: &RingError) {
    assert_no_secrets(error, error.to_string());
}

#[tokio::test]
async fn exchange_link_and_discover() {
    let h = harness(|_| {}).await;
    let mut changes = h.client.watch_accounts();
    h.fake.lock().unwrap().codes.insert("code-1".into());
    let account = h.client.exchange_code("code-1").await.unwrap();
    assert_eq!(account.id.as_str(), ACCOUNT);
    assert_eq!(account.name, "Sam Simulator");
    assert_eq!(account.email.as_deref(), Some("sam@example.com"));
    assert_eq!(account.state, AccountState::Unclaimed);
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();

    // The code is single use: a replay is refused and changes nothing.
    let replay = h.client.exchange_code("code-1").await.unwrap_err();
    assert!(replay.is_invalid_grant(), "{replay}");
    no_secrets(&replay);
    let stored = h.client.store().tokens(&account.id).unwrap().unwrap();
    assert_eq!(stored.access_token.expose(), "ACCESS-TOKEN-1");
    assert!(!changes.has_changed().unwrap());

    let time = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let nonce = linking::nonce(&Secret::new(HMAC_KEY), &time, &account.id);
    let matched = h
        .client
        .match_link(&time, &nonce, SystemTime::now())
        .unwrap();
    assert_eq!(matched, account.id);
    let wrong = h
        .client
        .match_link(
            &time,
            &linking::nonce(&Secret::new("other"), &time, &account.id),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(matches!(wrong, LinkError::NoMatch));
    assert_no_secrets(&wrong, wrong.to_string());
    let late = h
        .client
        .match_link(&time, &nonce, SystemTime::now() + Duration::from_secs(601))
        .unwrap_err();
    assert!(matches!(late, LinkError::Expired { .. }));

    let linked = h.client.complete_link(&account.id, &nonce).await.unwrap();
    assert_eq!(linked.state, AccountState::Linked);
    assert!(linked.linked_at.is_some());
    assert!(changes.has_changed().unwrap());
    {
        let fake = h.fake.lock().unwrap();
        assert_eq!(fake.integrations.len(), 2);
        assert_eq!(fake.integrations[0].0, "POST");
        assert_eq!(
            fake.integrations[0].1,
            json!({"account_identifier": ACCOUNT, "nonce": nonce})
        );
        assert_eq!(fake.integrations[1].0, "PATCH");
        assert_eq!(fake.integrations[1].1["status"], "completed");
    }
    // A linked account is no longer matched by a nonce.
    assert!(matches!(
        h.client.match_link(&time, &nonce, SystemTime::now()),
        Err(LinkError::NoMatch)
    ));

    let devices = h.client.devices(&account.id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].name, "Front Door");
    assert_eq!(devices[0].online, Some(true));
    assert_eq!(devices[0].power, Some(PowerSource::Battery));
    assert_eq!(h.client.accounts(), [linked]);
    let stats = h.client.limiter_stats();
    assert_eq!((stats.retries, stats.rate_limited), (0, 0));
    assert!(stats.sent >= 5);
}

#[tokio::test]
async fn refused_or_malformed_exchanges_store_nothing() {
    let h = harness(|_| {}).await;
    let unknown = h.client.exchange_code("never-issued").await.unwrap_err();
    assert!(unknown.is_invalid_grant());

    h.fake.lock().unwrap().codes.insert("code-1".into());
    h.fake.lock().unwrap().token_answer = Some((
        200,
        json!({"access_token": "ACCESS-TOKEN-x", "expires_in": "REFRESH-TOKEN-y"}).to_string(),
    ));
    let malformed = h.client.exchange_code("code-1").await.unwrap_err();
    assert!(matches!(malformed, RingError::Malformed(_)), "{malformed}");
    no_secrets(&malformed);

    // users/me refusing the fresh token (403 per the doc) stores nothing either.
    // The fake hands out a token it does not know.
    h.fake.lock().unwrap().token_answer = Some((
        200,
        json!({"access_token": "ACCESS-TOKEN-z", "refresh_token": "REFRESH-TOKEN-z",
               "expires_in": 14400})
        .to_string(),
    ));
    let forbidden = h.client.exchange_code("code-1").await.unwrap_err();
    assert_eq!(forbidden.status(), Some(403), "{forbidden}");
    no_secrets(&forbidden);
    assert!(h.client.accounts().is_empty());

    // A wrong client secret: invalid_client, and the secret is not in the error.
    let bad = harness(|c| c.client_secret = Secret::new("CLIENT-SECRET-wrong")).await;
    bad.fake.lock().unwrap().codes.insert("code-1".into());
    let error = bad.client.exchange_code("code-1").await.unwrap_err();
    assert!(
        matches!(error, RingError::Token { ref error, status: 401, .. } if error == "invalid_client")
    );
    assert!(!format!("{error} {error:?}").contains("CLIENT-SECRET-wrong"));
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh_and_the_rotated_pair_is_stored() {
    let h = harness(|_| {}).await;
    let account = h.exchanged().await;
    h.age_tokens(&account);
    h.fake.lock().unwrap().refresh_delay = Duration::from_millis(200);

    let calls: Vec<_> = (0..10)
        .map(|_| {
            let client = h.client.clone();
            let account = account.clone();
            tokio::spawn(async move { client.access_token(&account).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().expose(), "ACCESS-TOKEN-2");
    }
    assert_eq!(h.fake.lock().unwrap().refreshes, 1);
    let stored = h.client.store().tokens(&account).unwrap().unwrap();
    assert_eq!(stored.access_token.expose(), "ACCESS-TOKEN-2");
    assert_eq!(stored.refresh_token.expose(), "REFRESH-TOKEN-2");
    // The new token is fresh: no further refresh.
    h.client.access_token(&account).await.unwrap();
    assert_eq!(h.fake.lock().unwrap().refreshes, 1);
}

#[tokio::test]
async fn invalid_grant_in_either_shape_means_relinking() {
    let shapes = [
        r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#,
        r#"{"errors":[{"status":"400","title":"Invalid Grant","detail":"expired"}]}"#,
    ];
    for shape in shapes {
        let h = harness(|_| {}).await;
        let account = h.exchanged().await;
        h.age_tokens(&account);
        let changes = h.client.watch_accounts();
        h.fake.lock().unwrap().token_answer = Some((400, shape.into()));
        let error = h.client.access_token(&account).await.unwrap_err();
        assert!(matches!(error, RingError::NeedsRelinking { .. }), "{error}");
        no_secrets(&error);
        assert!(changes.has_changed().unwrap());
        let stored = h.client.store().account(&account).unwrap().unwrap();
        assert_eq!(stored.state, AccountState::NeedsRelinking);
        assert!(stored.last_error.unwrap().contains("invalid_grant"));
        // Later calls fail at once, without asking Ring.
        let requests = h.fake.lock().unwrap().issued;
        assert!(matches!(
            h.client.devices(&account).await,
            Err(RingError::NeedsRelinking { .. })
        ));
        assert_eq!(h.fake.lock().unwrap().issued, requests);
    }
}

#[tokio::test]
async fn an_expired_refresh_token_means_relinking_without_asking_ring() {
    let h = harness(|_| {}).await;
    let account = h.exchanged().await;
    let store = h.client.store();
    let mut tokens = store.tokens(&account).unwrap().unwrap();
    tokens.access_expires_at = SystemTime::now() - Duration::from_secs(1);
    tokens.refresh_expires_at = SystemTime::now() - Duration::from_secs(1);
    store.replace_tokens(&account, &tokens).unwrap();
    let error = h.client.access_token(&account).await.unwrap_err();
    assert!(matches!(error, RingError::NeedsRelinking { .. }));
    assert_eq!(h.fake.lock().unwrap().refreshes, 0);
    assert_eq!(
        store.account(&account).unwrap().unwrap().state,
        AccountState::NeedsRelinking
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_a_still_valid_token() {
    let h = harness(|_| {}).await;
    let account = h.exchanged().await;
    h.age_tokens(&account);
    h.fake.lock().unwrap().token_answer = Some((400, r#"{"error":"invalid_request"}"#.into()));
    let token = h.client.access_token(&account).await.unwrap();
    assert_eq!(token.expose(), "ACCESS-TOKEN-1");
    assert_eq!(
        h.client.store().account(&account).unwrap().unwrap().state,
        AccountState::Unclaimed
    );
}

#[tokio::test]
async fn retry_after_is_honoured_then_the_answer_used() {
    let h = harness(|_| {}).await;
    let account = h.exchanged().await;
    h.fake
        .lock()
        .unwrap()
        .devices
        .extend([Scripted::TooMany("1"), Scripted::Unavailable]);
    let started = Instant::now();
    let devices = h.client.devices(&account).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 waited"
    );
    assert_eq!(h.fake.lock().unwrap().device_requests, 3);
    let stats = h.client.limiter_stats();
    assert_eq!((stats.rate_limited, stats.retries), (1, 2));
}

#[tokio::test]
async fn retries_end_with_the_last_error() {
    let h = harness(|_| {}).await;
    let account = h.exchanged().await;
    let script = |s: &[Scripted]| h.fake.lock().unwrap().devices.extend(s.iter().copied());

    script(&[Scripted::Unavailable; 3]);
    let error = h.client.devices(&account).await.unwrap_err();
    assert!(
        matches!(error, RingError::Api(ApiError { status: 503, .. })),
        "{error}"
    );
    no_secrets(&error);
    assert_eq!(h.fake.lock().unwrap().device_requests, 3, "1 + max_retries");

    script(&[Scripted::TooMany("0"); 3]);
    let error = h.client.devices(&account).await.unwrap_err();
    assert!(
        matches!(error, RingError::RateLimited { retries: 2, .. }),
        "{error}"
    );
    no_secrets(&error);

    script(&[Scripted::Offline]);
    let before = h.fake.lock().unwrap().device_requests;
    let error = h.client.devices(&account).await.unwrap_err();
    assert!(matches!(error, RingError::DeviceOffline { .. }), "{error}");
    assert_eq!(
        h.fake.lock().unwrap().device_requests,
        before + 1,
        "not retried"
    );

    script(&[Scripted::Malformed]);
    let error = h.client.devices(&account).await.unwrap_err();
    assert!(matches!(error, RingError::Malformed(_)), "{error}");
    no_secrets(&error);
}

#[tokio::test]
async fn slow_and_large_answers_are_cut_off() {
    let h = harness(|c| {
        c.http_timeout = Duration::from_millis(200);
        c.max_retries = 0;
    })
    .await;
    let account = h.exchanged().await;
    h.fake
        .lock()
        .unwrap()
        .devices
        .push_back(Scripted::Slow(Duration::from_secs(2)));
    let error = h.client.devices(&account).await.unwrap_err();
    assert!(matches!(error, RingError::Timeout { .. }), "{error}");
    no_secrets(&error);

    let small = harness(|c| c.max_body_bytes = 64).await;
    small.fake.lock().unwrap().codes.insert("code-1".into());
    // The token answer itself is over 64 bytes.
    let error = small.client.exchange_code("code-1").await.unwrap_err();
    assert!(
        matches!(error, RingError::BodyTooLarge { limit: 64, .. }),
        "{error}"
    );
    no_secrets(&error);
}

#[tokio::test]
async fn unlink_forgets_the_account_and_its_tokens() {
    let h = harness(|_| {}).await;
    let account = h.exchanged().await;
    let changes = h.client.watch_accounts();
    assert!(h.client.unlink(&account).unwrap());
    assert!(changes.has_changed().unwrap());
    assert!(h.client.store().tokens(&account).unwrap().is_none());
    assert!(!h.client.unlink(&account).unwrap());
    let error = h.client.access_token(&account).await.unwrap_err();
    assert!(matches!(error, RingError::UnknownAccount(_)));
}

#[tokio::test]
async fn urls_are_built_under_the_api_base_with_escaped_ids() {
    let h = harness(|c| c.api_url = Url::parse("https://proxy.example/ring/?x=1").unwrap()).await;
    assert_eq!(
        h.client
            .whep_sessions_url(&DeviceId::new("ava1.ring.device.a/b c"))
            .as_str(),
        "https://proxy.example/ring/v1/devices/ava1.ring.device.a%2Fb%20c/media/streaming/whep/sessions"
    );
    let default = RingClient::new(
        RingConfig::new("id".into(), Secret::new("s"), Secret::new("k")),
        Store::open(&h._dir.path().join("other.sqlite")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        default
            .whep_sessions_url(&DeviceId::new("ava1.ring.device.front-door"))
            .as_str(),
        "https://api.amazonvision.com/v1/devices/ava1.ring.device.front-door/media/streaming/whep/sessions"
    );
    let mut bad = RingConfig::new("id".into(), Secret::new("s"), Secret::new("k"));
    bad.api_url = Url::parse("mailto:x@example.com").unwrap();
    assert!(matches!(
        RingClient::new(bad, Store::open(&h._dir.path().join("bad.sqlite")).unwrap()),
        Err(RingError::Config(_))
    ));
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_tries_again() {
    let h = harness(|_| {}).await;
    let account = h.exchanged().await;
    let revoke = || {
        let store = h.client.store();
        let mut tokens = store.tokens(&account).unwrap().unwrap();
        tokens.access_token = Secret::new("revoked-but-not-expired");
        store.replace_tokens(&account, &tokens).unwrap();
    };
    revoke();
    let devices = h.client.devices(&account).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(h.fake.lock().unwrap().refreshes, 1);
    assert_eq!(
        h.client.access_token(&account).await.unwrap().expose(),
        "ACCESS-TOKEN-2"
    );
    let one = h
        .client
        .device(&account, &DeviceId::new("ava1.ring.device.front-door"))
        .await
        .unwrap();
    assert_eq!(
        (one.id.as_str(), one.name.as_str()),
        ("ava1.ring.device.front-door", "One")
    );

    // Still refused after the refresh: the 401 is reported, not retried forever.
    revoke();
    h.fake.lock().unwrap().token_answer = Some((
        200,
        json!({"access_token": "ACCESS-TOKEN-unknown", "refresh_token": "REFRESH-TOKEN-u",
               "expires_in": 14400})
        .to_string(),
    ));
    let error = h
        .client
        .device(&account, &DeviceId::new("ava1.ring.device.front-door"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
    no_secrets(&error);
    assert_eq!(
        h.fake.lock().unwrap().refreshes,
        1,
        "the forced refresh was a scripted answer"
    );

    // Refused again, its refresh token unknown to Ring: the user must link again.
    let error = h
        .client
        .device(&account, &DeviceId::new("ava1.ring.device.front-door"))
        .await
        .unwrap_err();
    assert!(matches!(error, RingError::NeedsRelinking { .. }), "{error}");
}
