//! WHEP (RFC 9725) for viewers: `POST /whep/NAME` with an SDP offer creates a
//! session at an unguessable URL (`/whep/NAME/ID`, with an ETag); `PATCH` on it
//! trickles candidates, `DELETE` ends it; `OPTIONS` answers CORS preflights;
//! `GET /whep/NAME` is a minimal player page. The WebRTC side is
//! `crate::webrtc` (one UDP port for every viewer).
//!
//! Auth: with `[http] api_token` or the stream's `viewer_token` set, the POST
//! needs one of them as a bearer token. The session URL itself is the
//! capability for PATCH and DELETE.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use streamgate_redact::{constant_time_eq, Secret};
use streamgate_webrtc::SessionId;

use super::state::AppState;
use crate::webrtc::{Answer, PatchRefused, Patched, Refused};

/// Largest SDP offer or sdpfrag accepted (browsers send a few KiB).
pub(super) const MAX_BODY: usize = 64 * 1024;
/// How long a POST waits for the stream's codec parameters (its source may
/// just be starting) before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Retry-After of a 503.
const RETRY_AFTER_SECS: &str = "5";

const PLAYER: &str = include_str!("whep_player.html");

/// The WHEP routes, each with its `#[utoipa::path]` so the API document lists
/// them. Untimed: a POST may wait for a starting source (`READY_TIMEOUT`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(player, offer, preflight))
        .routes(routes!(trickle, end, session_preflight))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// A WHEP error: a status and a one-line reason, with the CORS headers so a
/// page on another origin can read it.
pub(super) struct WhepError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for WhepError {
    fn into_response(self) -> Response {
        let mut response = (self.0, format!("{}\n", self.1)).into_response();
        let headers = response.headers_mut();
        cors(headers);
        match self.0 {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"streamgate\""),
                );
            }
            _ => {}
        }
        response
    }
}

pub(super) fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Accept-Patch, Link"),
    );
}

/// CORS preflight of the WHEP endpoint.
#[utoipa::path(options, path = "/whep/{name}", tag = "whep", security(()), params(StreamPath),
    responses((status = NO_CONTENT, description = "CORS: the methods and headers allowed",
        headers(("Accept-Post" = String, description = "`application/sdp`"),
                ("Accept-Patch" = String, description = "`application/trickle-ice-sdpfrag`"),
                ("Access-Control-Expose-Headers" = String, description = "Location, ETag, Accept-Patch, Link")))))]
pub(super) async fn preflight() -> Response {
    let mut headers = HeaderMap::new();
    cors(&mut headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    headers.insert("accept-post", HeaderValue::from_static("application/sdp"));
    headers.insert(
        "accept-patch",
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// CORS preflight of a session URL.
#[utoipa::path(options, path = "/whep/{name}/{id}", tag = "whep", security(()), params(SessionPath),
    responses((status = NO_CONTENT, description = "CORS: the methods and headers allowed",
        headers(("Accept-Patch" = String, description = "`application/trickle-ice-sdpfrag`")))))]
async fn session_preflight() -> Response {
    preflight().await
}

/// The `{name}` of `/whep/{name}`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct StreamPath {
    /// The stream.
    pub(super) name: String,
}

/// The `{name}` and `{id}` of a session URL, `/whep/{name}/{id}`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SessionPath {
    /// The stream.
    pub(super) name: String,
    /// The session, as the POST's Location gave it.
    pub(super) id: String,
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("")
}

/// Whether the request may play `stream`: no token is set, or it carries the
/// API token or the stream's viewer token.
pub(super) fn allowed(
    state: &AppState,
    viewer_token: Option<&Secret>,
    headers: &HeaderMap,
) -> bool {
    let tokens: Vec<&Secret> = state.api_token.iter().chain(viewer_token).collect();
    if tokens.is_empty() {
        return true;
    }
    let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    tokens
        .iter()
        .any(|t| constant_time_eq(bearer.as_bytes(), t.expose().as_bytes()))
}

/// Play the stream: post a WebRTC offer, get the answer and a session URL.
///
/// The offer must be recvonly; the viewer starts at the stream's latest
/// keyframe. With `[http] api_token` or the stream's `viewer_token` set, the
/// request needs one of them as a bearer token.
#[utoipa::path(post, path = "/whep/{name}", tag = "whep", params(StreamPath),
    security((), ("bearer" = [])),
    request_body(description = "The SDP offer (at most 64 KiB)", content = String, content_type = "application/sdp"),
    responses((status = CREATED, description = "The SDP answer", content_type = "application/sdp", body = String,
                headers(("Location" = String, description = "The session URL, `/whep/{name}/{id}` (unguessable)"),
                        ("ETag" = String, description = "The ICE session's tag, for PATCH's If-Match"),
                        ("Accept-Patch" = String, description = "`application/trickle-ice-sdpfrag`"))),
              (status = BAD_REQUEST, description = "Not an SDP offer, or nothing in it can be played", content_type = "text/plain", body = String),
              (status = UNAUTHORIZED, description = "A bearer token is required", content_type = "text/plain", body = String),
              (status = NOT_FOUND, description = "No stream of that name", content_type = "text/plain", body = String),
              (status = PAYLOAD_TOO_LARGE, description = "Offer over 64 KiB"),
              (status = UNSUPPORTED_MEDIA_TYPE, description = "Content-Type is not application/sdp", content_type = "text/plain", body = String),
              (status = SERVICE_UNAVAILABLE, description = "Too many viewers, the WebRTC server is not running, or the stream has no media yet",
                content_type = "text/plain", body = String,
                headers(("Retry-After" = String, description = "Seconds to wait")))))]
async fn offer(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhepError> {
    sdp_content_type(&headers)?;
    let (hub, viewer_token) = {
        let streams = state.streams.read();
        let stream = streams
            .get(&name)
            .ok_or_else(|| WhepError(StatusCode::NOT_FOUND, format!("no stream {name:?}")))?;
        (stream.hub.clone(), stream.config.viewer_token.clone())
    };
    if !allowed(&state, viewer_token.as_ref(), &headers) {
        return Err(WhepError(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required".into(),
        ));
    }
    let sdp = offer_text(&body)?;
    let whep = running(&state)?;
    // Subscribing first starts an on-demand source; the subscription then
    // starts the viewer at the GOP cache's keyframe.
    let subscription = hub.subscribe();
    let tracks = hub.wait_ready(READY_TIMEOUT).await.ok_or_else(|| {
        WhepError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stream {name:?} has no media yet"),
        )
    })?;
    let answer = whep
        .offer(&name, subscription, tracks, sdp.to_owned())
        .await
        .map_err(refused)?;
    created(&format!("/whep/{name}/{}", answer.id.as_str()), answer)
}

/// 415 unless the body is `application/sdp`.
pub(super) fn sdp_content_type(headers: &HeaderMap) -> Result<(), WhepError> {
    let ct = content_type(headers);
    if !ct.eq_ignore_ascii_case("application/sdp") {
        return Err(WhepError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type application/sdp, got {ct:?}"),
        ));
    }
    Ok(())
}

/// The body as an SDP offer's text (400 when it cannot be one).
pub(super) fn offer_text(body: &[u8]) -> Result<&str, WhepError> {
    let sdp = std::str::from_utf8(body)
        .map_err(|_| WhepError(StatusCode::BAD_REQUEST, "the offer is not UTF-8".into()))?;
    if !sdp.trim_start().starts_with("v=0") {
        return Err(WhepError(
            StatusCode::BAD_REQUEST,
            "the body is not an SDP offer".into(),
        ));
    }
    Ok(sdp)
}

/// The WebRTC server (503 when it is not running).
pub(super) fn running(state: &AppState) -> Result<crate::webrtc::WhepHandle, WhepError> {
    state.whep.clone().ok_or_else(|| {
        WhepError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the WebRTC server is not running".into(),
        )
    })
}

/// Why the WebRTC server gave an offer no session, as the answer.
pub(super) fn refused(refused: Refused) -> WhepError {
    match refused {
        Refused::Full => WhepError(StatusCode::SERVICE_UNAVAILABLE, "too many viewers".into()),
        Refused::Stopped => WhepError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the WebRTC server is stopping".into(),
        ),
        Refused::Offer(error) => WhepError(StatusCode::BAD_REQUEST, error.to_string()),
    }
}

/// The 201 of a new session at `location`, with its ETag and SDP answer.
pub(super) fn created(location: &str, answer: Answer) -> Result<Response, WhepError> {
    let mut headers = HeaderMap::new();
    cors(&mut headers);
    let value = |s: &str| {
        HeaderValue::from_str(s)
            .map_err(|_| WhepError(StatusCode::INTERNAL_SERVER_ERROR, "bad header".into()))
    };
    headers.insert(header::LOCATION, value(location)?);
    headers.insert(header::ETAG, value(&answer.etag)?);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    headers.insert(
        "accept-patch",
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    Ok((StatusCode::CREATED, headers, answer.sdp).into_response())
}

fn session(id: &str) -> Result<SessionId, WhepError> {
    SessionId::parse(id).ok_or_else(|| WhepError(StatusCode::NOT_FOUND, "no such session".into()))
}

/// Trickle ICE candidates, or restart ICE, on a session (RFC 8840).
///
/// `If-Match` carries the session's ETag, or `*` for an ICE restart: the
/// answer then holds the new credentials and a new ETag.
#[utoipa::path(patch, path = "/whep/{name}/{id}", tag = "whep", security(()), params(SessionPath,
        ("If-Match" = String, Header, description = "The session's ETag, or `*` to restart ICE")),
    request_body(description = "Candidates, or new ICE credentials for a restart", content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses((status = NO_CONTENT, description = "Candidates taken"),
              (status = OK, description = "ICE restarted: the server's new credentials", content_type = "application/trickle-ice-sdpfrag", body = String,
                headers(("ETag" = String, description = "The restarted ICE session's tag"))),
              (status = BAD_REQUEST, description = "Not an sdpfrag", content_type = "text/plain", body = String),
              (status = NOT_FOUND, description = "No such session", content_type = "text/plain", body = String),
              (status = PRECONDITION_FAILED, description = "If-Match does not match the session's ETag", content_type = "text/plain", body = String),
              (status = UNSUPPORTED_MEDIA_TYPE, description = "Content-Type is not application/trickle-ice-sdpfrag", content_type = "text/plain", body = String),
              (status = PRECONDITION_REQUIRED, description = "If-Match is missing", content_type = "text/plain", body = String)))]
pub(super) async fn trickle(
    State(state): State<AppState>,
    Path(SessionPath { name, id }): Path<SessionPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhepError> {
    let id = session(&id)?;
    let ct = content_type(&headers);
    if !ct.eq_ignore_ascii_case("application/trickle-ice-sdpfrag") {
        return Err(WhepError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type application/trickle-ice-sdpfrag, got {ct:?}"),
        ));
    }
    let Some(if_match) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Err(WhepError(
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match is required".into(),
        ));
    };
    let sdpfrag = std::str::from_utf8(&body)
        .map_err(|_| WhepError(StatusCode::BAD_REQUEST, "the sdpfrag is not UTF-8".into()))?;
    let whep = state
        .whep
        .clone()
        .ok_or_else(|| WhepError(StatusCode::NOT_FOUND, "no such session".into()))?;
    match whep
        .trickle(&name, id, if_match.trim().to_owned(), sdpfrag.to_owned())
        .await
    {
        Ok(Patched::Trickled) => {
            let mut headers = HeaderMap::new();
            cors(&mut headers);
            Ok((StatusCode::NO_CONTENT, headers).into_response())
        }
        Ok(Patched::Restarted { sdpfrag, etag }) => {
            let mut headers = HeaderMap::new();
            cors(&mut headers);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/trickle-ice-sdpfrag"),
            );
            let etag = HeaderValue::from_str(&etag)
                .map_err(|_| WhepError(StatusCode::INTERNAL_SERVER_ERROR, "bad ETag".into()))?;
            headers.insert(header::ETAG, etag);
            Ok((StatusCode::OK, headers, sdpfrag).into_response())
        }
        Err(PatchRefused::NotFound) => {
            Err(WhepError(StatusCode::NOT_FOUND, "no such session".into()))
        }
        Err(PatchRefused::EtagMismatch) => Err(WhepError(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the session's ETag".into(),
        )),
        Err(PatchRefused::Bad(reason)) => Err(WhepError(StatusCode::BAD_REQUEST, reason)),
    }
}

/// End a session.
#[utoipa::path(delete, path = "/whep/{name}/{id}", tag = "whep", security(()), params(SessionPath),
    responses((status = OK, description = "Ended"),
              (status = NOT_FOUND, description = "No such session", content_type = "text/plain", body = String)))]
pub(super) async fn end(
    State(state): State<AppState>,
    Path(SessionPath { name, id }): Path<SessionPath>,
) -> Result<Response, WhepError> {
    let id = session(&id)?;
    let deleted = match &state.whep {
        Some(whep) => whep.delete(&name, id).await,
        None => false,
    };
    if !deleted {
        return Err(WhepError(StatusCode::NOT_FOUND, "no such session".into()));
    }
    let mut headers = HeaderMap::new();
    cors(&mut headers);
    Ok((StatusCode::OK, headers).into_response())
}

/// The player page: plays the stream over WHEP.
#[utoipa::path(get, path = "/whep/{name}", tag = "whep", security(()), params(StreamPath),
    responses((status = OK, description = "HTML", content_type = "text/html"),
              (status = NOT_FOUND, description = "No stream of that name", content_type = "text/plain", body = String)))]
async fn player(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
) -> Result<Html<String>, WhepError> {
    if state.streams.read().get(&name).is_none() {
        return Err(WhepError(
            StatusCode::NOT_FOUND,
            format!("no stream {name:?}"),
        ));
    }
    let name = html_escape::encode_double_quoted_attribute(&name).into_owned();
    Ok(Html(PLAYER.replace("{{NAME}}", &name)))
}
