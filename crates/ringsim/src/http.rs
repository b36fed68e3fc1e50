//! The simulator's HTTP surface: thin axum handlers over [`Shared`]. Every
//! request body is read through a size cap first; API requests then pass the
//! rate limit (per client id) and are counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use crate::auth::secret_matches;
use crate::config::DeviceConfig;
use crate::documents::{self, INCLUDES};
use crate::limit::{Decision, Surface};
use crate::sessions::Ended;
use crate::state::{AddDeviceError, Shared, MAX_DEVICES};
use crate::whep::{self, StreamEnd, WhepError};

/// Largest request body on any route (an SDP offer is a few KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// The rate-limit bucket of requests that carry no valid token or client id.
const UNAUTHENTICATED: &str = "unauthenticated";

type AppState = Arc<Shared>;

/// An error response: JSON:API `errors[]` for the API, `{error,
/// error_description}` for the token endpoint.
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
    headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    fn jsonapi(status: StatusCode, title: &str, detail: impl AsRef<str>) -> ApiError {
        ApiError {
            status,
            body: documents::error(status.as_u16(), title, detail.as_ref(), None),
            headers: Vec::new(),
        }
    }

    fn oauth(status: StatusCode, error: &str, description: &str) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": error, "error_description": description }),
            headers: Vec::new(),
        }
    }

    fn bad_request(detail: impl AsRef<str>) -> ApiError {
        ApiError::jsonapi(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    fn not_found(detail: impl AsRef<str>) -> ApiError {
        ApiError::jsonapi(StatusCode::NOT_FOUND, "Not Found", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

pub(crate) fn router(shared: AppState) -> Router {
    let api = Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/users/me", get(users_me))
        .route("/v1/devices", get(list_devices))
        .route("/v1/devices/{id}", get(one_device))
        .route("/v1/devices/{id}/{related}", get(related))
        .route(
            "/v1/devices/{id}/media/streaming/whep/sessions",
            post(whep_post),
        )
        .route(
            "/v1/devices/{id}/media/streaming/whep/sessions/{session}",
            delete(whep_delete),
        )
        .route(
            "/v1/accounts/me/app-integrations",
            post(integration_post).patch(integration_patch),
        )
        .merge(crate::media::api_routes())
        .fallback(|| async { ApiError::not_found("no such resource") })
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), gate));
    let sim = Router::new()
        .route("/sim/stats", get(sim_stats))
        .route("/sim/links", post(sim_links))
        .route("/sim/link", get(sim_link_page))
        .route("/sim/devices", post(sim_add_device))
        .route("/sim/devices/{id}", delete(sim_remove_device))
        .route("/sim/devices/{id}/offline", post(sim_offline))
        .route("/sim/devices/{id}/online", post(sim_online))
        .route("/sim/rate-limit", put(sim_rate_limit))
        .route("/sim/expire-refresh-tokens", post(sim_expire))
        .route("/sim/token-delay", put(sim_token_delay))
        .route("/sim/storm", post(sim_storm))
        .merge(crate::media::sim_routes())
        .route(
            "/sim/webhooks",
            post(crate::webhooks::sim_send).get(crate::webhooks::sim_stats),
        )
        .route(
            "/sim/webhooks/{request_id}/redeliver",
            post(crate::webhooks::sim_redeliver),
        )
        .route("/sim/webhook-url", put(crate::webhooks::sim_set_url))
        .layer(middleware::from_fn(cap_body));
    sim.merge(api).with_state(shared)
}

/// Reads the body under [`MAX_BODY`], or answers 413.
async fn buffered(request: Request) -> Result<(axum::http::request::Parts, Bytes), Response> {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => Ok((parts, bytes)),
        Err(_) => Err(ApiError::jsonapi(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            format!("the request body is unreadable or over {MAX_BODY} bytes"),
        )
        .into_response()),
    }
}

async fn cap_body(request: Request, next: Next) -> Response {
    match buffered(request).await {
        Ok((parts, bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(response) => response,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The API's gate: body cap, request count, rate limit (and storm) per client
/// id, the `X-RateLimit-*` headers, and the use of access tokens (expired ones
/// counted; a rotated pair's first use ends its predecessor's grace).
async fn gate(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, bytes) = match buffered(request).await {
        Ok(buffered) => buffered,
        Err(response) => return response,
    };
    let now = Instant::now();
    let configured = shared.config.client_id.as_str();
    let path = parts.uri.path();
    let surface = if path == "/oauth/token" {
        Surface::Token
    } else {
        Surface::Api
    };
    let (decision, limit) = {
        let mut state = shared.state();
        let presented = bearer(&parts.headers).and_then(|token| state.auth.present(token, now));
        let by_form = || {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .is_some_and(|pairs| {
                    pairs
                        .iter()
                        .any(|(k, v)| k == "client_id" && v == configured)
                })
        };
        let client = match &presented {
            Some(presented) => presented.client_id.clone(),
            None if surface == Surface::Token && by_form() => configured.to_owned(),
            None => UNAUTHENTICATED.to_owned(),
        };
        if surface == Surface::Api && presented.is_some_and(|p| p.expired) {
            state.counters.requests_with_expired_token += 1;
        }
        state.counters.count_path(path);
        let decision = state.limiter.check(&client, surface, now);
        if matches!(decision, Decision::Refuse { .. }) {
            state.counters.rate_limited += 1;
        }
        (decision, state.limiter.limit)
    };
    match decision {
        Decision::Refuse { retry_after, storm } => {
            let detail = if storm {
                "the API is refusing requests for now (simulated storm)".to_owned()
            } else {
                format!("more than {limit} requests per second")
            };
            let mut error =
                ApiError::jsonapi(StatusCode::TOO_MANY_REQUESTS, "Rate Limit Exceeded", detail);
            error.headers = vec![
                (header::RETRY_AFTER, retry_after.to_string()),
                (
                    HeaderName::from_static("x-ratelimit-remaining"),
                    "0".to_owned(),
                ),
            ];
            if limit > 0 {
                error.headers.push((
                    HeaderName::from_static("x-ratelimit-limit"),
                    limit.to_string(),
                ));
            }
            error.into_response()
        }
        Decision::Allow { remaining } => {
            let mut response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            if let Some(remaining) = remaining {
                let headers = response.headers_mut();
                headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
                headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            }
            response
        }
    }
}

/// The account behind the request's bearer token.
pub(crate) fn account_of(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    let token = bearer(headers)?;
    let state = shared.state();
    state
        .auth
        .authorize(token, Instant::now())
        .map(|grant| grant.account.clone())
}

fn unauthorized() -> ApiError {
    ApiError::jsonapi(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "the access token is missing, invalid or expired",
    )
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<String, ApiError> {
    account_of(shared, headers).ok_or_else(unauthorized)
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    refresh_token: Option<String>,
}

/// Counts a token request from arrival until its answer is handed over (or the
/// client goes away and the request is dropped).
struct TokenInFlight(AppState);

impl TokenInFlight {
    fn enter(shared: &AppState) -> TokenInFlight {
        let mut state = shared.state();
        state.counters.token_requests += 1;
        state.counters.token_requests_in_flight += 1;
        TokenInFlight(Arc::clone(shared))
    }
}

impl Drop for TokenInFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.counters.token_requests_in_flight =
            state.counters.token_requests_in_flight.saturating_sub(1);
    }
}

/// Longest token delay (`/sim/token-delay`, `token_delay`).
const MAX_TOKEN_DELAY: Duration = Duration::from_secs(24 * 3600);

/// `POST /oauth/token`: decides (and records) the grant, then holds the answer
/// for the token delay, so a client that dies meanwhile loses it.
async fn token(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = TokenInFlight::enter(&shared);
    let answer = decide_token(&shared, &headers, &body);
    let delay = shared.state().token_delay.min(MAX_TOKEN_DELAY);
    if !delay.is_zero() {
        let mut stopping = shared.shutdown.subscribe();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
    answer.unwrap_or_else(IntoResponse::into_response)
}

fn decide_token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let invalid =
        |description| ApiError::oauth(StatusCode::BAD_REQUEST, "invalid_request", description);
    if !content_type_is(headers, "application/x-www-form-urlencoded") {
        return Err(invalid(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form: TokenForm = serde_urlencoded::from_bytes(body)
        .map_err(|_| invalid("the form body cannot be parsed"))?;
    let config = &shared.config;
    let client_ok = form.client_id.as_deref() == Some(config.client_id.as_str())
        && form
            .client_secret
            .as_deref()
            .is_some_and(|s| secret_matches(s, config.client_secret.expose()));
    if !client_ok {
        return Err(ApiError::oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    let now = Instant::now();
    let pair = {
        let mut state = shared.state();
        let result = match form.grant_type.as_deref() {
            Some("authorization_code") => {
                let code = form
                    .code
                    .as_deref()
                    .ok_or_else(|| invalid("code is missing"))?;
                let result = state.auth.exchange_code(&config.client_id, code, now);
                state.counters.code_exchanges += u64::from(result.is_ok());
                result
            }
            Some("refresh_token") => {
                let token = form
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| invalid("refresh_token is missing"))?;
                let result = state.auth.refresh(&config.client_id, token, now);
                if let Ok(refreshed) = &result {
                    state.counters.token_refreshes += 1;
                    state.counters.refresh_token_grace_uses += u64::from(refreshed.grace);
                }
                result.map(|refreshed| refreshed.pair)
            }
            Some(_) => {
                return Err(ApiError::oauth(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "grant_type must be authorization_code or refresh_token",
                ))
            }
            None => return Err(invalid("grant_type is missing")),
        };
        result.map_err(|e| {
            ApiError::oauth(StatusCode::BAD_REQUEST, "invalid_grant", e.description())
        })?
    };
    let body = json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "scope": config.scope,
        "expires_in": pair.expires_in,
        "token_type": "Bearer",
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// `GET /v1/users/me`: 403 (not 401) on a bad token, as Ring documents.
async fn users_me(
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let account = account_of(&shared, &headers).ok_or_else(|| {
        ApiError::jsonapi(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the access token is missing, invalid or expired",
        )
    })?;
    let state = shared.state();
    let account = state
        .account(&account)
        .ok_or_else(|| ApiError::not_found("the account no longer exists"))?;
    Ok(Json(documents::user(account, SystemTime::now())))
}

/// `GET /v1/devices[?include=…]`.
async fn list_devices(
    State(shared): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let account = authorized(&shared, &headers)?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|_| ApiError::bad_request("the query string cannot be parsed"))?;
    let mut include = Vec::new();
    for (_, value) in pairs.iter().filter(|(k, _)| k == "include") {
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let known = INCLUDES
                .iter()
                .find(|known| **known == name)
                .ok_or_else(|| ApiError::bad_request(format!("include={name} is not supported")))?;
            include.push(*known);
        }
    }
    let state = shared.state();
    let devices: Vec<(&DeviceConfig, bool)> = state
        .account(&account)
        .map(|a| a.devices.iter().map(|d| (d, state.online(&d.id))).collect())
        .unwrap_or_default();
    Ok(Json(documents::devices(
        &devices,
        &include,
        SystemTime::now(),
    )))
}

fn device_not_found() -> ApiError {
    ApiError::not_found("no such device on this account")
}

/// `GET /v1/devices/{id}`.
async fn one_device(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = authorized(&shared, &headers)?;
    let state = shared.state();
    let device = state.device(&account, &id).ok_or_else(device_not_found)?;
    Ok(Json(documents::device(device, SystemTime::now())))
}

/// `GET /v1/devices/{id}/{status|capabilities|location|configurations}`.
async fn related(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((id, related)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let account = authorized(&shared, &headers)?;
    if !INCLUDES.contains(&related.as_str()) {
        return Err(ApiError::not_found("no such resource"));
    }
    let state = shared.state();
    let device = state.device(&account, &id).ok_or_else(device_not_found)?;
    Ok(Json(documents::related_document(
        device,
        &related,
        state.online(&id),
        SystemTime::now(),
    )))
}

fn sessions_path(device: &str) -> String {
    format!("/v1/devices/{device}/media/streaming/whep/sessions")
}

/// `POST /v1/devices/{id}/media/streaming/whep/sessions`: SDP offer in, 201 + answer out.
async fn whep_post(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let account = authorized(&shared, &headers)?;
    let cap = {
        let state = shared.state();
        let device = state.device(&account, &id).ok_or_else(device_not_found)?;
        if !state.online(&id) {
            return Err(ApiError::jsonapi(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "Device is currently offline",
            ));
        }
        shared.config.session_cap(device)
    };
    if !content_type_is(&headers, "application/sdp") {
        return Err(ApiError::jsonapi(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "the offer must be application/sdp",
        ));
    }
    let offer = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the SDP offer is not UTF-8"))?;
    let answered = whep::answer(offer, shared.config.media_ip, shared.config.audio)
        .await
        .map_err(|error| match error {
            WhepError::BadOffer(_) => ApiError::bad_request(error.to_string()),
            WhepError::NoHighProfile | WhepError::WebRtc { .. } => ApiError::jsonapi(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                error.to_string(),
            ),
        })?;
    let opened = shared
        .state()
        .sessions
        .open(&id, &account, cap, Instant::now());
    let Some((session, deadline)) = opened else {
        answered.close().await;
        return Err(ApiError::jsonapi(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "too many live sessions are open",
        ));
    };
    let location = format!("{}/{session}", sessions_path(&id));
    let answer = answered.answer.clone();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    shared
        .session_stops
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(session.clone(), stop_tx);
    let hub = shared.media.hub(&id);
    let task_shared = Arc::clone(&shared);
    tokio::spawn(async move {
        let end = answered
            .stream(hub, tokio::time::Instant::from_std(deadline), stop)
            .await;
        let why = match end {
            StreamEnd::Deadline => Ended::Cap,
            StreamEnd::Stopped => Ended::Dropped,
            StreamEnd::PeerGone => Ended::PeerGone,
        };
        // The first cause recorded wins (a DELETE ends the session before it stops it).
        task_shared.state().sessions.end(&session, why);
        task_shared
            .session_stops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&session);
        tracing::info!(device = %id, ?why, "simulated WHEP session ended");
    });
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response())
}

/// `DELETE …/whep/sessions/{session}`.
async fn whep_delete(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((id, session)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let account = authorized(&shared, &headers)?;
    {
        let mut state = shared.state();
        let owned = state
            .sessions
            .get(&session)
            .is_some_and(|s| s.device == id && s.account == account);
        if !owned {
            return Err(ApiError::not_found("no such session"));
        }
        state.sessions.end(&session, Ended::Deleted);
    }
    shared.stop_session(&session);
    Ok(StatusCode::OK)
}

fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    if !content_type_is(headers, "application/json") {
        return Err(ApiError::jsonapi(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "the body must be application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the JSON body is not valid: {e}")))
}

#[derive(Deserialize)]
struct IntegrationPost {
    account_identifier: Option<String>,
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct IntegrationPatch {
    account_identifier: Option<String>,
    status: Option<String>,
}

fn missing_fields(detail: &str) -> ApiError {
    ApiError::jsonapi(StatusCode::BAD_REQUEST, "Missing Required Fields", detail)
}

/// `POST /v1/accounts/me/app-integrations` `{account_identifier?, nonce}` → `{"status":"awaiting"}`.
async fn integration_post(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let account = authorized(&shared, &headers)?;
    shared.state().counters.app_integration_posts += 1;
    let request: IntegrationPost = json_body(&headers, &body)?;
    let nonce = request
        .nonce
        .filter(|n| !n.is_empty())
        .ok_or_else(|| missing_fields("nonce is required"))?;
    let mut state = shared.state();
    if !state.nonce_matches(shared.config.hmac_key.expose().as_bytes(), &account, &nonce) {
        return Err(ApiError::jsonapi(
            StatusCode::BAD_REQUEST,
            "Invalid Nonce",
            "the nonce does not match a link of this account",
        ));
    }
    state.integrations.insert(
        account,
        crate::state::Integration {
            status: "awaiting".to_owned(),
            account_identifier: request.account_identifier,
            updated_at: SystemTime::now(),
        },
    );
    Ok(Json(json!({ "status": "awaiting" })))
}

/// `PATCH /v1/accounts/me/app-integrations` `{account_identifier?, status?}` (at least one).
async fn integration_patch(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let account = authorized(&shared, &headers)?;
    shared.state().counters.app_integration_patches += 1;
    let request: IntegrationPatch = json_body(&headers, &body)?;
    if request.account_identifier.is_none() && request.status.is_none() {
        return Err(missing_fields("account_identifier or status is required"));
    }
    if let Some(status) = request.status.as_deref() {
        if status != "completed" {
            return Err(ApiError::bad_request("status must be \"completed\""));
        }
    }
    let mut state = shared.state();
    let integration = state
        .integrations
        .get_mut(&account)
        .ok_or_else(|| ApiError::not_found("no app integration to update: POST it first"))?;
    if let Some(status) = request.status {
        integration.status = status;
    }
    if let Some(identifier) = request.account_identifier {
        integration.account_identifier = Some(identifier);
    }
    integration.updated_at = SystemTime::now();
    Ok(Json(json!({
        "account_identifier": integration.account_identifier,
        "status": integration.status,
        "updated_at": documents::rfc3339(integration.updated_at),
    })))
}

// ---- /sim/*: simulator controls (no auth) ----

async fn sim_stats(State(shared): State<AppState>) -> Json<crate::state::Stats> {
    Json(shared.stats())
}

#[derive(Deserialize, Default)]
struct LinkRequest {
    account: Option<String>,
}

/// `POST /sim/links` `{"account"?}` → `{account_id, code, time, nonce}`.
async fn sim_links(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<crate::state::LinkOffer>, ApiError> {
    let request: LinkRequest = if body.is_empty() {
        LinkRequest::default()
    } else {
        json_body(&headers, &body)?
    };
    shared
        .issue_link(request.account.as_deref())
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such account"))
}

/// `GET /sim/link?token_exchange=URL&account_link=URL[&account=ID]`: the link flow
/// for a browser, ending in a redirect to the Account Link URL.
async fn sim_link_page(State(shared): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let page = |status: StatusCode, text: String| {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response()
    };
    let pairs: HashMap<String, String> =
        match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
            Ok(pairs) => pairs,
            Err(_) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    "the query string cannot be parsed\n".to_owned(),
                )
            }
        };
    let url = |name: &str| -> Result<Url, String> {
        let value = pairs
            .get(name)
            .ok_or_else(|| format!("{name}=URL is missing\n"))?;
        Url::parse(value)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| format!("{name} is not an http(s) URL\n"))
    };
    let (token_exchange, account_link) = match (url("token_exchange"), url("account_link")) {
        (Ok(t), Ok(a)) => (t, a),
        (Err(e), _) | (_, Err(e)) => return page(StatusCode::BAD_REQUEST, e),
    };
    let Some(offer) = shared.issue_link(pairs.get("account").map(String::as_str)) else {
        return page(StatusCode::NOT_FOUND, "no such account\n".to_owned());
    };
    if let Err(error) = crate::link::deliver_code(&shared.http, &token_exchange, &offer.code).await
    {
        return page(StatusCode::BAD_GATEWAY, format!("{error}\n"));
    }
    let target = crate::link::account_link_url(&account_link, &offer);
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, target.to_string())],
    )
        .into_response()
}

fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `POST /sim/devices[?account=ID]` with a device as JSON (`{id, name, power?, …}`).
async fn sim_add_device(
    State(shared): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let pairs: HashMap<String, String> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::bad_request("the query string cannot be parsed"))?;
    let device: DeviceConfig = json_body(&headers, &body)?;
    if !valid_device_id(&device.id) {
        return Err(ApiError::bad_request(
            "a device id is 1-128 characters of letters, digits, '.', '-' and '_'",
        ));
    }
    shared
        .add_device(pairs.get("account").map(String::as_str), device)
        .map(|()| StatusCode::CREATED)
        .map_err(|e| match e {
            AddDeviceError::NoAccount => ApiError::not_found("no such account"),
            AddDeviceError::Exists => {
                ApiError::jsonapi(StatusCode::CONFLICT, "Conflict", "the device exists")
            }
            AddDeviceError::Full => {
                ApiError::bad_request(format!("an account has at most {MAX_DEVICES} devices"))
            }
        })
}

async fn sim_remove_device(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if shared.remove_device(&id) {
        Ok(StatusCode::OK)
    } else {
        Err(device_not_found())
    }
}

async fn sim_offline(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    shared
        .set_online(&id, false)
        .then_some(StatusCode::OK)
        .ok_or_else(device_not_found)
}

async fn sim_online(
    State(shared): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    shared
        .set_online(&id, true)
        .then_some(StatusCode::OK)
        .ok_or_else(device_not_found)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    per_second: u32,
}

/// `PUT /sim/rate-limit` `{"per_second": N}` (0: unlimited).
async fn sim_rate_limit(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: RateLimit = json_body(&headers, &body)?;
    shared.state().limiter.limit = request.per_second;
    Ok(StatusCode::OK)
}

async fn sim_expire(State(shared): State<AppState>) -> StatusCode {
    shared.state().auth.expire_refresh_tokens(Instant::now());
    StatusCode::OK
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenDelay {
    millis: u64,
}

/// `PUT /sim/token-delay` `{"millis": N}` (0: none; at most a day).
async fn sim_token_delay(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: TokenDelay = json_body(&headers, &body)?;
    let delay = Duration::from_millis(request.millis);
    if delay > MAX_TOKEN_DELAY {
        return Err(ApiError::bad_request("millis is at most 86400000 (a day)"));
    }
    shared.state().token_delay = delay;
    Ok(StatusCode::OK)
}

/// Longest storm, and longest `Retry-After` a storm may give.
pub(crate) const MAX_STORM_SECONDS: u64 = 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StormRequest {
    seconds: u64,
    retry_after: u64,
}

/// `POST /sim/storm` `{"seconds": S, "retry_after": R}`: every `/v1` request gets
/// 429 with `Retry-After: R` for S seconds from now (S = 0 ends a storm).
async fn sim_storm(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: StormRequest = json_body(&headers, &body)?;
    if request.seconds > MAX_STORM_SECONDS || request.retry_after > MAX_STORM_SECONDS {
        return Err(ApiError::bad_request(format!(
            "seconds and retry_after are at most {MAX_STORM_SECONDS}"
        )));
    }
    shared.state().limiter.storm(
        Instant::now(),
        Duration::from_secs(request.seconds),
        request.retry_after,
    );
    Ok(StatusCode::OK)
}
