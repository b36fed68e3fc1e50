//! The URLs a Ring partner app registers, and the API and pages around them:
//!
//! - `POST /ring/token-exchange` (Token Exchange URL): Ring posts an
//!   authorization code; it is exchanged within the minute and the account
//!   stored as unclaimed.
//! - `GET /ring/link?time=&nonce=` (Account Link URL): the signed-in user claims
//!   the account whose nonce matches; the link is completed at Ring and a page
//!   names the account and the devices it brings.
//! - `GET`/`POST /ring/sign-in`: with `[http] api_token` set, a browser signs in
//!   with the token once and gets a session cookie (HttpOnly, SameSite=Lax, so
//!   Ring's redirect to the Account Link URL carries it). Without a token the
//!   gateway is single-user and open.
//! - `POST /ring/accounts/{id}/unlink`: the dashboard's unlink button.
//! - `GET /api/ring/accounts`, `DELETE /api/ring/accounts/{id}`,
//!   `POST /api/ring/discover`: the same behind the API's bearer token.
//!
//! The App Homepage URL is the dashboard (`/`); the Webhook URL,
//! `POST /ring/webhook`, is in `events.rs` with `/api/events`.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streamgate_redact::{constant_time_eq, Secret};
use streamgate_ring::{Account, AccountId, PowerSource};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{require_token, signed_in, AppError, ErrorBody, SESSION_COOKIE};
use super::state::{AppState, SESSION_LIFE};
use crate::ring::RingDiscovery;
use crate::sources::RING_PREFIX;

/// Largest body of the Token Exchange URL and the sign-in form.
const MAX_FORM_BODY: usize = 16 * 1024;
/// Longest a link page waits for the new account's devices.
const LINK_DISCOVERY_WAIT: Duration = Duration::from_secs(30);

/// The routes; the `/api/ring/*` ones behind the API token.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(list_accounts))
        .routes(routes!(delete_account))
        .routes(routes!(discover))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    OpenApiRouter::new()
        .routes(routes!(token_exchange))
        .routes(routes!(link))
        .routes(routes!(sign_in_page, sign_in))
        .routes(routes!(unlink_form))
        .layer(super::limits::body(MAX_FORM_BODY))
        .merge(api)
}

fn ring(state: &AppState) -> Result<&RingDiscovery, AppError> {
    state
        .ring
        .as_ref()
        .ok_or_else(|| AppError::NotFound("Ring ([ring] is not configured)".into()))
}

/// A small HTML page (the text is escaped here).
fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let title = html_escape::encode_text(title);
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto}}</style>\
             </head><body><h1>{title}</h1>{body_html}<p><a href=\"/\">Dashboard</a></p></body></html>"
        )),
    )
        .into_response()
}

/// `{"code": …}` or `code=…`.
#[derive(Deserialize, ToSchema)]
struct CodeBody {
    code: String,
}

#[derive(Serialize, ToSchema)]
struct Exchanged {
    /// `unclaimed` until the user opens the Account Link URL.
    state: &'static str,
}

/// Ring's Token Exchange URL.
///
/// Receives the authorization code of a user who is linking their Ring account,
/// as JSON `{"code": …}` or form-encoded `code=…`; exchanges it for tokens,
/// reads the account (users/me) and stores it as unclaimed.
#[utoipa::path(post, path = "/ring/token-exchange", tag = "ring", security(()),
    request_body(content((CodeBody = "application/json"), (CodeBody = "application/x-www-form-urlencoded"))),
    responses((status = OK, description = "Stored as unclaimed", body = Exchanged),
              (status = BAD_REQUEST, description = "No code, or Ring refused it (expired, replayed)", body = ErrorBody),
              (status = NOT_FOUND, description = "[ring] is not configured", body = ErrorBody)))]
async fn token_exchange(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Exchanged>, AppError> {
    let ring = ring(&state)?;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body: CodeBody = if form {
        serde_urlencoded::from_bytes(&body)
            .map_err(|e| AppError::BadRequest(format!("bad form: {e}")))?
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest(format!("bad JSON: {e}")))?
    };
    let account = ring
        .link
        .client
        .exchange_code(body.code.trim())
        .await
        .map_err(|e| {
            tracing::warn!("Ring token exchange refused: {e}");
            AppError::BadRequest(format!("token exchange failed: {e}"))
        })?;
    tracing::info!(account = %account.name, "Ring account stored, waiting for its link");
    Ok(Json(Exchanged {
        state: account.state.as_str(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LinkQuery {
    /// Milliseconds since the epoch, when Ring made the nonce.
    time: Option<String>,
    /// base64url(HMAC-SHA256(hmac_key, "<time>:<account_id>")), no padding.
    nonce: Option<String>,
}

/// Ring's Account Link URL.
///
/// The signed-in user claims the unclaimed account the nonce was made for; the
/// link is completed at Ring (app-integrations POST, then PATCH to `completed`)
/// and the page lists the devices that became streams.
#[utoipa::path(get, path = "/ring/link", tag = "ring", security(()), params(LinkQuery),
    responses((status = OK, description = "Linked: a page naming the account and its devices", content_type = "text/html"),
              (status = SEE_OTHER, description = "Not signed in: to the sign-in page"),
              (status = BAD_REQUEST, description = "Wrong or old nonce", content_type = "text/html"),
              (status = BAD_GATEWAY, description = "Ring refused to complete the link", content_type = "text/html")))]
async fn link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LinkQuery>,
    uri: axum::http::Uri,
) -> Response {
    if !signed_in(&state, &headers) {
        let next = uri.path_and_query().map_or("/ring/link", |p| p.as_str());
        let target = format!("/ring/sign-in?next={}", urlencoding(next));
        return Redirect::to(&target).into_response();
    }
    let ring = match ring(&state) {
        Ok(ring) => ring,
        Err(error) => return error.into_response(),
    };
    let (Some(time), Some(nonce)) = (query.time, query.nonce) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Cannot link",
            "<p>The link needs <code>time</code> and <code>nonce</code>.</p>",
        );
    };
    let client = &ring.link.client;
    let account = match client.match_link(&time, &nonce, SystemTime::now()) {
        Ok(account) => account,
        Err(error) => {
            tracing::warn!("Ring account link refused: {error}");
            let text = html_escape::encode_text(&error.to_string()).into_owned();
            return page(
                StatusCode::BAD_REQUEST,
                "Cannot link",
                &format!("<p>{text}</p>"),
            );
        }
    };
    let account = match client.complete_link(&account, &nonce).await {
        Ok(account) => account,
        Err(error) => {
            tracing::warn!("completing the Ring account link failed: {error}");
            let text = html_escape::encode_text(&error.to_string()).into_owned();
            return page(
                StatusCode::BAD_GATEWAY,
                "Ring refused the link",
                &format!("<p>{text}</p>"),
            );
        }
    };
    tracing::info!(account = %account.name, "Ring account linked");
    let _ = tokio::time::timeout(LINK_DISCOVERY_WAIT, ring.rediscover_and_wait()).await;
    let devices = account_devices(&state, ring, &account.id);
    let mut list = String::new();
    for device in &devices {
        let name = html_escape::encode_text(&device.name);
        match &device.stream {
            Some(stream) => list.push_str(&format!(
                "<li>{name}: stream <code>{stream}</code> (<a href=\"/hls/{stream}/\">watch</a>)</li>"
            )),
            None => list.push_str(&format!("<li>{name} (not selected by <code>[ring] devices</code>)</li>")),
        }
    }
    let who = html_escape::encode_text(&account.name);
    page(
        StatusCode::OK,
        "Ring account linked",
        &format!(
            "<p>Linked <strong>{who}</strong>, with {} device(s):</p><ul>{list}</ul>",
            devices.len()
        ),
    )
}

/// A path and query for a `next=` parameter.
fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SignInQuery {
    /// Where to go once signed in (a path on this gateway).
    next: Option<String>,
}

/// The sign-in page (when `[http] api_token` is set).
#[utoipa::path(get, path = "/ring/sign-in", tag = "ring", security(()), params(SignInQuery),
    responses((status = OK, description = "A form asking for the API token", content_type = "text/html")))]
async fn sign_in_page(Query(query): Query<SignInQuery>) -> Response {
    let next =
        html_escape::encode_double_quoted_attribute(safe_next(query.next.as_deref())).into_owned();
    page(
        StatusCode::OK,
        "Sign in to streamgate",
        &format!(
            "<form method=\"post\" action=\"/ring/sign-in\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <label>API token <input type=\"password\" name=\"token\" autocomplete=\"current-password\"></label> \
             <button type=\"submit\">Sign in</button></form>"
        ),
    )
}

/// Only a path on this gateway (no `//host` or scheme): no open redirect.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next
        }
        _ => "/",
    }
}

#[derive(Deserialize, ToSchema)]
struct SignInForm {
    token: String,
    next: Option<String>,
}

/// Signs a browser in with the API token.
#[utoipa::path(post, path = "/ring/sign-in", tag = "ring", security(()),
    request_body(content = SignInForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = SEE_OTHER, description = "Signed in (a session cookie), on to `next`"),
              (status = UNAUTHORIZED, description = "Wrong token", content_type = "text/html")))]
async fn sign_in(State(state): State<AppState>, Form(form): Form<SignInForm>) -> Response {
    let expected = state.api_token.as_ref().map(Secret::expose);
    let next = safe_next(form.next.as_deref()).to_owned();
    if expected
        .is_some_and(|expected| !constant_time_eq(form.token.as_bytes(), expected.as_bytes()))
    {
        return page(
            StatusCode::UNAUTHORIZED,
            "Wrong token",
            "<p><a href=\"javascript:history.back()\">Try again</a></p>",
        );
    }
    let session = state.sign_ins.create();
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        SESSION_LIFE.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

/// An account as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = RingAccount)]
struct AccountView {
    id: String,
    name: String,
    email: Option<String>,
    /// `unclaimed`, `linked` or `needs_relinking`.
    state: &'static str,
    /// RFC 3339, UTC.
    linked_at: Option<String>,
    last_error: Option<String>,
    devices: Vec<DeviceView>,
}

/// A device of a linked account, and the stream it became.
#[derive(Serialize, ToSchema)]
#[schema(as = RingDevice)]
struct DeviceView {
    id: String,
    name: String,
    online: Option<bool>,
    /// `battery`, `wired`, or none when the device data does not say.
    power: Option<&'static str>,
    /// The stream that reads it, if any.
    stream: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RingAccounts)]
struct AccountList {
    accounts: Vec<AccountView>,
}

fn account_devices(state: &AppState, ring: &RingDiscovery, account: &AccountId) -> Vec<DeviceView> {
    let streams = state.streams.read();
    ring.link
        .devices()
        .into_iter()
        .filter(|device| device.account == *account)
        .map(|device| {
            let source = format!("{RING_PREFIX}{}", device.id);
            let stream = streams
                .iter()
                .find(|(_, stream)| stream.config.source.to_string() == source)
                .map(|(name, _)| name.to_string());
            DeviceView {
                id: device.id.to_string(),
                name: device.name.clone(),
                online: device.online,
                power: device.power.map(|power| match power {
                    PowerSource::Battery => "battery",
                    PowerSource::Wired => "wired",
                }),
                stream,
            }
        })
        .collect()
}

fn account_view(state: &AppState, ring: &RingDiscovery, account: Account) -> AccountView {
    AccountView {
        devices: account_devices(state, ring, &account.id),
        id: account.id.to_string(),
        name: account.name,
        email: account.email,
        state: account.state.as_str(),
        linked_at: account
            .linked_at
            .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
        last_error: account.last_error,
    }
}

/// Every Ring account: linked, waiting for its link, or needing re-linking.
#[utoipa::path(get, path = "/api/ring/accounts", tag = "ring",
    responses((status = OK, description = "The accounts", body = AccountList),
              (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody),
              (status = NOT_FOUND, description = "[ring] is not configured", body = ErrorBody)))]
async fn list_accounts(State(state): State<AppState>) -> Result<Json<AccountList>, AppError> {
    let ring = ring(&state)?;
    let accounts = ring
        .link
        .client
        .accounts()
        .into_iter()
        .map(|account| account_view(&state, ring, account))
        .collect();
    Ok(Json(AccountList { accounts }))
}

/// The `{id}` of `/api/ring/accounts/{id}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct AccountPath {
    /// The account id (`ava1.ring.account.…`).
    id: String,
}

/// Unlinks an account: its tokens are deleted and its streams removed.
#[utoipa::path(delete, path = "/api/ring/accounts/{id}", tag = "ring", params(AccountPath),
    responses((status = NO_CONTENT, description = "Unlinked"),
              (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody),
              (status = NOT_FOUND, description = "No such account", body = ErrorBody)))]
async fn delete_account(
    State(state): State<AppState>,
    Path(AccountPath { id }): Path<AccountPath>,
) -> Result<StatusCode, AppError> {
    unlink(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The dashboard's unlink button (signed in).
#[utoipa::path(post, path = "/ring/accounts/{id}/unlink", tag = "ring", security(()), params(AccountPath),
    responses((status = SEE_OTHER, description = "Unlinked: back to the dashboard"),
              (status = UNAUTHORIZED, description = "Not signed in", body = ErrorBody),
              (status = NOT_FOUND, description = "No such account", body = ErrorBody)))]
async fn unlink_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(AccountPath { id }): Path<AccountPath>,
) -> Result<Redirect, AppError> {
    if !signed_in(&state, &headers) {
        return Err(AppError::Unauthorized);
    }
    unlink(&state, &id).await?;
    Ok(Redirect::to("/"))
}

async fn unlink(state: &AppState, id: &str) -> Result<(), AppError> {
    let ring = ring(state)?;
    let account = AccountId::new(id);
    let removed = ring
        .link
        .client
        .unlink(&account)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    if !removed {
        return Err(AppError::NotFound(format!("Ring account {id}")));
    }
    ring.link.forget_account(&account);
    ring.rediscover_and_wait().await;
    tracing::info!(account = %id, "Ring account unlinked: tokens deleted, streams removed");
    Ok(())
}

#[derive(Serialize, ToSchema)]
struct Discovered {
    /// The Ring streams running after the pass.
    streams: Vec<String>,
}

/// Lists every linked account's devices now (discovery also runs on a timer).
#[utoipa::path(post, path = "/api/ring/discover", tag = "ring",
    responses((status = OK, description = "Discovery ran", body = Discovered),
              (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody),
              (status = NOT_FOUND, description = "[ring] is not configured", body = ErrorBody)))]
async fn discover(State(state): State<AppState>) -> Result<Json<Discovered>, AppError> {
    let ring = ring(&state)?;
    ring.rediscover_and_wait().await;
    let streams = state
        .streams
        .read()
        .iter()
        .filter(|(_, stream)| stream.config.source.label() == RING_PREFIX)
        .map(|(name, _)| name.to_string())
        .collect();
    Ok(Json(Discovered { streams }))
}
