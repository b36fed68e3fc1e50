//! The management API (`/api/*`): stream views, adding, replacing and removing
//! streams, and the OpenAPI document, all behind the bearer token when one is
//! set. Each handler is registered with its `#[utoipa::path]` through
//! [`OpenApiRouter`], so the document lists exactly the routes served.

use std::path::Path as FsPath;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Serialize;
use streamgate_rtp::MediaKind;
use streamgate_rtsp::server::ReaderInfo;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use super::error_body::ErrorBody;
use super::state::AppState;
use crate::config::{Config, ConfigError, StreamConfig, StreamName};
use crate::streams::{self, Stream};
use streamgate_redact::{constant_time_eq, Secret};

/// Largest `PUT /api/streams/NAME` body: a stream's table is a few lines.
const MAX_STREAM_BODY: usize = 64 * 1024;

/// The `/api/*` routes, each guarded by the token.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_streams))
        .routes(routes!(get_stream, put_stream, delete_stream))
        .routes(routes!(openapi))
        .layer(super::limits::body(MAX_STREAM_BODY))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
}

/// Every API failure: a status and a message for the client, as `{"error": "..."}`.
#[derive(thiserror::Error, Debug)]
pub enum AppError {
    #[error("no stream named {0:?}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("send the stream's table as application/toml or application/json, not {0:?}")]
    UnsupportedMediaType(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Internal(detail) => {
                tracing::error!(%detail, "API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, AppError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"streamgate\""),
            );
        }
        response
    }
}

/// The API's one rule: with `[http] api_token` set, a request must carry it as a
/// bearer token, or carry a browser's sign-in cookie (`/ring/sign-in`: the
/// dashboard's snapshots, events and clips load with it). The cookie is
/// SameSite=Lax, so other sites' scripts cannot send it with their requests.
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if !signed_in(&state, request.headers()) {
        return Err(AppError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// The sign-in cookie's name.
pub(super) const SESSION_COOKIE: &str = "streamgate_session";

/// Whether the request comes from the gateway's user: no token is set, or it
/// carries the API token, or a sign-in cookie.
pub(super) fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = state.api_token.as_ref().map(Secret::expose) else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes())) {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == SESSION_COOKIE && state.sign_ins.contains(value))
}

/// The generated OpenAPI document, added to the app after the routes are collected.
#[derive(Clone)]
pub struct Document(pub Bytes);

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "api",
    responses((status = OK, description = "OpenAPI 3.1 JSON", content_type = "application/json"),
              (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody)))]
async fn openapi(Extension(Document(json)): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// `GET /api/streams/NAME`: what a stream is doing. Nothing in it holds a secret:
/// the source URL and errors are redacted by the registry and the source crates.
#[derive(Serialize, Debug, ToSchema)]
#[schema(as = Stream)]
pub struct StreamView {
    pub name: String,
    /// The source, passwords and query strings replaced by `***`.
    pub source: String,
    /// `running` or `failed`.
    pub state: &'static str,
    /// The source client's own state (RTSP and WHEP alike: `idle`, `connecting`,
    /// `playing`, `rotating`, `retrying` or `stopped`); for replays the same as `state`.
    pub source_state: String,
    /// Redacted.
    pub last_error: Option<String>,
    pub reconnects: u64,
    pub tracks: Vec<TrackView>,
    pub frames: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Ingest rate over the time since the previous look (at least a second), if any.
    pub bitrate_bps: Option<u64>,
    pub drops: u64,
    /// Hub subscribers: RTSP sessions plus one per running HLS muxer.
    pub subscribers: usize,
    /// Who reads the stream, per output protocol.
    pub readers: ReadersView,
    /// Addresses that fetched the stream's HLS playlists or media in the last 10 s
    /// (the same as `readers.hls`, as plain addresses).
    #[schema(value_type = Vec<String>)]
    pub hls_viewers: Vec<std::net::IpAddr>,
    /// In a cluster: the node running the source (this one); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `GET /api/streams`.
#[derive(Serialize, ToSchema)]
pub struct StreamList {
    pub streams: Vec<StreamView>,
    /// In a cluster: the streams whose sources run on other nodes (readers
    /// that reach this node are redirected there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub elsewhere: Vec<super::placement::RemoteStreamView>,
}

#[derive(Serialize, Debug, ToSchema)]
#[schema(as = Readers)]
pub struct ReadersView {
    /// Sessions playing now (from PLAY until PAUSE, TEARDOWN or the connection's end).
    pub rtsp: Vec<RtspReaderView>,
    /// Clients that fetched the stream's HLS playlists or media in the last 10 s.
    pub hls: Vec<HlsReaderView>,
}

/// One playing RTSP session.
#[derive(Serialize, Debug, ToSchema)]
#[schema(as = RtspReader)]
pub struct RtspReaderView {
    /// The client's address and port.
    #[schema(value_type = String, example = "192.0.2.7:51234")]
    pub address: std::net::SocketAddr,
    /// `tcp` (interleaved) or `udp`.
    pub transport: &'static str,
    /// When it started playing (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub since: String,
    /// RTP and RTCP packets sent to it.
    pub packets: u64,
    /// Bytes sent to it (TCP: with the 4-byte interleave prefix).
    pub bytes: u64,
}

impl From<ReaderInfo> for RtspReaderView {
    fn from(reader: ReaderInfo) -> Self {
        RtspReaderView {
            address: reader.peer,
            transport: reader.transport.as_str(),
            since: humantime::format_rfc3339_seconds(reader.since).to_string(),
            packets: reader.packets,
            bytes: reader.bytes,
        }
    }
}

/// An HLS client seen in the last 10 s (HLS has no sessions: no port, no counters).
#[derive(Serialize, Debug, ToSchema)]
#[schema(as = HlsReader)]
pub struct HlsReaderView {
    /// The client's IP address (HLS has no sessions).
    #[schema(value_type = String)]
    pub address: std::net::IpAddr,
}

#[derive(Serialize, Debug, ToSchema)]
#[schema(as = Track)]
pub struct TrackView {
    /// `video` or `audio`.
    pub kind: &'static str,
    #[schema(example = "h264")]
    pub codec: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// The view of `stream` (named `name`) as the API shows it.
fn view(state: &AppState, name: &str, stream: &Stream) -> StreamView {
    let stats = stream.hub.stats();
    let report = stream.report();
    let hls_viewers = state.hls_viewers.of(name);
    StreamView {
        name: name.to_owned(),
        source: stream.config.source.to_string(),
        state: report.health.as_str(),
        source_state: report.source_state,
        last_error: report.last_error,
        reconnects: report.reconnects,
        tracks: stream.hub.tracks().iter().map(track_view).collect(),
        frames: stats.frames,
        packets: stats.packets,
        bytes: stats.bytes,
        bitrate_bps: state.bitrates.sample(name, stats.bytes),
        drops: stats.drops,
        subscribers: stats.subscribers,
        readers: ReadersView {
            rtsp: state
                .rtsp_readers
                .list(Some(name))
                .into_iter()
                .map(RtspReaderView::from)
                .collect(),
            hls: hls_viewers
                .iter()
                .map(|&address| HlsReaderView { address })
                .collect(),
        },
        hls_viewers,
        owner: super::placement::this_node(state),
    }
}

fn track_view(track: &streamgate_rtp::TrackInfo) -> TrackView {
    TrackView {
        kind: match track.kind() {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        },
        codec: format!("{:?}", track.codec).to_lowercase(),
        clock_rate: track.clock_rate,
        channels: track.channels,
        width: track.params.width,
        height: track.params.height,
    }
}

/// Every stream.
#[utoipa::path(get, path = "/api/streams", tag = "api",
    responses((status = OK, description = "Every stream", body = StreamList), (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody)))]
async fn list_streams(State(state): State<AppState>) -> Json<StreamList> {
    let streams = state
        .streams
        .read()
        .iter()
        .map(|(name, stream)| view(&state, name.as_str(), stream))
        .collect();
    let elsewhere = super::placement::remote_streams(&state);
    Json(StreamList { streams, elsewhere })
}

/// One stream.
#[utoipa::path(get, path = "/api/streams/{name}", tag = "api", params(StreamPath),
    responses((status = OK, description = "The stream", body = StreamView), (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody),
              (status = NOT_FOUND, description = "No stream of that name", body = ErrorBody)))]
async fn get_stream(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
) -> Result<Json<StreamView>, AppError> {
    let streams = state.streams.read();
    let stream = streams.get(&name).ok_or(AppError::NotFound(name.clone()))?;
    Ok(Json(view(&state, &name, stream)))
}

/// The `{name}` of `/api/streams/{name}`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct StreamPath {
    /// 1–64 ASCII letters, digits, `_` or `-`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    name: String,
}

/// A `[streams.NAME]` table as JSON, for the document: `source` and every key the
/// config takes (which ones a stream may set depends on its source's kind).
enum StreamTable {}

impl utoipa::PartialSchema for StreamTable {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
        let source = ObjectBuilder::new()
            .schema_type(Type::String)
            .examples(["rtsp://user:pass@192.0.2.1/stream1"]);
        let table = crate::config::stream_keys()
            .filter(|key| *key != "source")
            .fold(ObjectBuilder::new(), |table, key| {
                table.property(key, Schema::default())
            })
            .property("source", source)
            .required("source")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "The keys of a [streams.NAME] table of gateway.toml (see the README), checked the same way.",
            ));
        Schema::Object(table.build()).into()
    }
}

impl ToSchema for StreamTable {}

/// Add or replace a stream.
///
/// The body is the stream's table, exactly as under `[streams.NAME]` in the
/// config file (TOML) or the same keys as a JSON object. It is checked like the
/// file, then the stream starts (replacing one of that name).
#[utoipa::path(put, path = "/api/streams/{name}", tag = "api", params(StreamPath),
    request_body(description = "The stream's table, as under `[streams.NAME]` in gateway.toml",
        content((String = "application/toml", example = "source = \"pcap:captures/cam.pcap\"\n"),
                (StreamTable = "application/json"))),
    responses((status = OK, description = "Replaced", body = StreamView),
              (status = CREATED, description = "Added", body = StreamView),
              (status = BAD_REQUEST, description = "The table fails the config file's checks", body = ErrorBody), (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody),
              (status = PAYLOAD_TOO_LARGE, description = "Body over 64 KiB"),
              (status = UNSUPPORTED_MEDIA_TYPE, description = "Neither TOML nor JSON", body = ErrorBody)))]
async fn put_stream(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<StreamView>), AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/toml");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let table = match mime.as_str() {
        "application/json" => json_to_toml(&body)?,
        "application/toml" | "text/toml" | "text/plain" | "" => std::str::from_utf8(&body)
            .map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))?
            .to_owned(),
        _ => return Err(AppError::UnsupportedMediaType(content_type.to_owned())),
    };
    let name = StreamName::try_from(name).map_err(AppError::BadRequest)?;
    let config = parse_stream_table(&name, &table)?;
    let base = state.base.clone();
    let planned = tokio::task::spawn_blocking(move || streams::plan_stream(&name, &config, &base))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let name = planned.name.clone();
    let replaced = state.streams.write().insert(planned);
    state.hls_viewers.forget(name.as_str());
    let status = match replaced {
        Some(old) => {
            old.stop().await;
            tracing::info!(stream = %name, "stream replaced through the API");
            StatusCode::OK
        }
        None => {
            tracing::info!(stream = %name, "stream added through the API");
            StatusCode::CREATED
        }
    };
    let streams = state.streams.read();
    let stream = streams
        .get(name.as_str())
        .ok_or_else(|| AppError::NotFound(name.to_string()))?;
    Ok((status, Json(view(&state, name.as_str(), stream))))
}

/// Stop and remove a stream; its readers are disconnected.
///
/// Stops the source and closes the Hub, which ends every reader's session.
#[utoipa::path(delete, path = "/api/streams/{name}", tag = "api", params(StreamPath),
    responses((status = NO_CONTENT, description = "Removed"), (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody),
              (status = NOT_FOUND, description = "No stream of that name", body = ErrorBody)))]
async fn delete_stream(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
) -> Result<StatusCode, AppError> {
    let stream = state
        .streams
        .write()
        .remove(&name)
        .ok_or(AppError::NotFound(name.clone()))?;
    state.hls_viewers.forget(&name);
    state.rtsp_readers.forget(&name);
    state.bitrates.forget(&name);
    stream.stop().await;
    tracing::info!(stream = %name, "stream removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON object body as TOML text, so both go through the config file's checks.
fn json_to_toml(body: &[u8]) -> Result<String, AppError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AppError::BadRequest(format!("bad JSON: {e}")))?;
    if !value.is_object() {
        return Err(AppError::BadRequest(
            "the body must be a JSON object of the stream's keys".into(),
        ));
    }
    toml::to_string(&value).map_err(|e| AppError::BadRequest(format!("bad stream table: {e}")))
}

/// Checks a stream's table the way the config file is checked; errors give the
/// line in the body.
fn parse_stream_table(name: &StreamName, table: &str) -> Result<StreamConfig, AppError> {
    // A body holding `[rtsp]` or `[streams.other]` would otherwise configure those.
    let parsed: toml::Table = table
        .parse()
        .map_err(|e: toml::de::Error| AppError::BadRequest(e.message().trim().to_owned()))?;
    if let Some(key) = parsed.iter().find_map(|(k, v)| v.is_table().then_some(k)) {
        return Err(AppError::BadRequest(format!(
            "unexpected table `{key}`: send only the stream's keys (source = ..., ...)"
        )));
    }
    let text = format!("[streams.{name}]\n{table}");
    let config = Config::parse(&text, FsPath::new("request body")).map_err(|e| match e {
        ConfigError::Invalid {
            line: line @ 2..,
            column,
            message,
            ..
        } => AppError::BadRequest(format!("line {}, column {column}: {message}", line - 1)),
        ConfigError::Invalid { message, .. } => AppError::BadRequest(message),
        other => AppError::BadRequest(other.to_string()),
    })?;
    config
        .streams
        .into_values()
        .next()
        .ok_or_else(|| AppError::Internal("parsed stream table vanished".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn stream_tables_are_checked_like_the_file() {
        let name = StreamName::try_from("cam".to_owned()).unwrap();
        let ok = parse_stream_table(&name, "source = \"demo\"\n").unwrap();
        assert_eq!(ok.source.label(), "demo");
        let cases = [
            (
                "sorce = \"demo\"\n",
                "line 1, column 1: unknown field `sorce`",
            ),
            (
                "source = \"demo\"\nsdp = \"x.sdp\"\n",
                "line 2, column 7: stream cam: `sdp` is only used by pcap: sources",
            ),
            (
                "source = \"http://x/y\"\n",
                "line 1, column 10: unknown source scheme",
            ),
            (
                "[rtsp]\nlisten = \"0.0.0.0:1\"\n",
                "unexpected table `rtsp`",
            ),
            ("", "missing field `source`"),
        ];
        for (body, expected) in cases {
            let err = parse_stream_table(&name, body).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{body:?}: got {err:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn json_bodies_become_the_same_table() {
        let toml = json_to_toml(br#"{"source": "rtsp://u:p@cam/s", "transport": "udp"}"#).unwrap();
        let name = StreamName::try_from("cam".to_owned()).unwrap();
        let config = parse_stream_table(&name, &toml).unwrap();
        assert_eq!(config.source.label(), "rtsp(s)://");
        assert_eq!(format!("{:?}", config.options), "[\"transport\"]");
        assert!(json_to_toml(b"[1]").is_err());
        assert!(json_to_toml(b"{").is_err());
    }
}
