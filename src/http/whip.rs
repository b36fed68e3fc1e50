//! WHIP (RFC 9725) for publishers: `POST /whip/NAME` with a sendonly SDP
//! offer makes the WebRTC peer the publisher of a `source = "publish"` stream,
//! with the same semantics as an RTSP publisher (one at a time unless
//! `publish_replace`, the grace when it leaves). The session URL
//! (`/whip/NAME/ID`, with an ETag) takes `PATCH` (trickle) and `DELETE` as
//! WHEP's does; the session lives on the WHEP server's UDP port.
//!
//! Auth: with `[http] api_token` or the stream's `publish_password` set, the
//! POST needs one of them as a bearer token (a WHIP client has no other way
//! to send a password).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use streamgate_redact::Secret;
use streamgate_rtsp::server::publish::PublishRefused;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;
use super::whep::{self, SessionPath, StreamPath, WhepError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish, preflight))
        .routes(routes!(trickle, end, session_preflight))
        .layer(DefaultBodyLimit::max(whep::MAX_BODY))
}

/// CORS preflight of the WHIP endpoint.
#[utoipa::path(options, path = "/whip/{name}", tag = "whip", security(()), params(StreamPath),
    responses((status = NO_CONTENT, description = "CORS: the methods and headers allowed")))]
async fn preflight() -> Response {
    whep::preflight().await
}

/// CORS preflight of a publisher's session URL.
#[utoipa::path(options, path = "/whip/{name}/{id}", tag = "whip", security(()), params(SessionPath),
    responses((status = NO_CONTENT, description = "CORS: the methods and headers allowed")))]
async fn session_preflight() -> Response {
    whep::preflight().await
}

/// Publish to the stream: post a sendonly WebRTC offer (H.264, H.265, Opus,
/// G.711), get the answer and a session URL.
///
/// The stream must be `source = "publish"`. With `[http] api_token` or the
/// stream's `publish_password` set, the request needs one of them as a bearer
/// token.
#[utoipa::path(post, path = "/whip/{name}", tag = "whip", params(StreamPath),
    security((), ("bearer" = [])),
    request_body(description = "The SDP offer (at most 64 KiB)", content = String, content_type = "application/sdp"),
    responses((status = CREATED, description = "The SDP answer", content_type = "application/sdp", body = String,
                headers(("Location" = String, description = "The session URL, `/whip/{name}/{id}` (unguessable)"),
                        ("ETag" = String, description = "The ICE session's tag, for PATCH's If-Match"))),
              (status = BAD_REQUEST, description = "Not an SDP offer, or nothing in it can be ingested", content_type = "text/plain", body = String),
              (status = UNAUTHORIZED, description = "A bearer token is required", content_type = "text/plain", body = String),
              (status = NOT_FOUND, description = "No stream of that name", content_type = "text/plain", body = String),
              (status = METHOD_NOT_ALLOWED, description = "The stream is not `source = \"publish\"`", content_type = "text/plain", body = String),
              (status = CONFLICT, description = "The stream has a publisher (and `publish_replace` is off)", content_type = "text/plain", body = String),
              (status = UNSUPPORTED_MEDIA_TYPE, description = "Content-Type is not application/sdp", content_type = "text/plain", body = String),
              (status = SERVICE_UNAVAILABLE, description = "The WebRTC server is not running", content_type = "text/plain", body = String)))]
async fn publish(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
    // Absent only when the app is served without connect info (tests).
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhepError> {
    whep::sdp_content_type(&headers)?;
    let point = {
        let streams = state.streams.read();
        let stream = streams
            .get(&name)
            .ok_or_else(|| WhepError(StatusCode::NOT_FOUND, format!("no stream {name:?}")))?;
        stream.publish_point().ok_or_else(|| {
            WhepError(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("stream {name:?} is not source = \"publish\""),
            )
        })?
    };
    let token = point
        .config()
        .credentials
        .as_ref()
        .map(|c| Secret::new(c.password.clone()));
    if !whep::allowed(&state, token.as_ref(), &headers) {
        return Err(WhepError(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required".into(),
        ));
    }
    let sdp = whep::offer_text(&body)?;
    let server = whep::running(&state)?;
    let peer = connect_info.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0 .0);
    let publisher = point.claim(peer).map_err(|refused| match refused {
        PublishRefused::Busy => WhepError(StatusCode::CONFLICT, refused.to_string()),
        _ => WhepError(StatusCode::NOT_FOUND, refused.to_string()),
    })?;
    let answer = server
        .publish(&name, publisher, sdp.to_owned())
        .await
        .map_err(whep::refused)?;
    whep::created(&format!("/whip/{name}/{}", answer.id.as_str()), answer)
}

/// Trickle ICE candidates on a publisher's session (RFC 8840).
#[utoipa::path(patch, path = "/whip/{name}/{id}", tag = "whip", security(()), params(SessionPath,
        ("If-Match" = String, Header, description = "The session's ETag")),
    request_body(description = "Candidates", content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses((status = NO_CONTENT, description = "Candidates taken"),
              (status = BAD_REQUEST, description = "Not an sdpfrag", content_type = "text/plain", body = String),
              (status = NOT_FOUND, description = "No such session", content_type = "text/plain", body = String),
              (status = PRECONDITION_FAILED, description = "If-Match does not match the session's ETag", content_type = "text/plain", body = String)))]
async fn trickle(
    state: State<AppState>,
    path: Path<SessionPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhepError> {
    whep::trickle(state, path, headers, body).await
}

/// End a publisher's session: the stream's grace starts.
#[utoipa::path(delete, path = "/whip/{name}/{id}", tag = "whip", security(()), params(SessionPath),
    responses((status = OK, description = "Ended"),
              (status = NOT_FOUND, description = "No such session", content_type = "text/plain", body = String)))]
async fn end(state: State<AppState>, path: Path<SessionPath>) -> Result<Response, WhepError> {
    whep::end(state, path).await
}
