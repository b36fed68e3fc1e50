//! The HTTP app: the management API (`/api/*`), `/healthz`, `/metrics`, the
//! dashboard at `/` and the HLS routes, in one axum [`Router`] built by [`app`]
//! so tests drive it with `tower::ServiceExt::oneshot`.
//!
//! The OpenAPI document is hand-written (`api/openapi.json`): five routes do not
//! justify a derive-macro dependency (utoipa) on every handler and view type, and
//! a test checks that every route the router serves is in it.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use streamgate_pipeline::Hub;
use streamgate_rtp::MediaKind;
use streamgate_rtsp::server::{ReaderInfo, Readers};

use crate::config::{Config, ConfigError, Secret, StreamName};
use crate::streams::{self, SourceState, Stream, Streams};

/// The stream registry as the HTTP app, the RTSP server and the API share it.
pub type SharedStreams = Arc<RwLock<Streams>>;

/// Largest `PUT /api/streams/NAME` body: a stream's table is a few lines.
const MAX_STREAM_BODY: usize = 64 * 1024;

const OPENAPI: &str = include_str!("api/openapi.json");

mod hls_viewers;
pub use hls_viewers::HlsViewers;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    pub streams: SharedStreams,
    /// Directory relative `pcap:` paths in API requests are resolved against
    /// (the config file's, as for the file's own streams).
    pub base: PathBuf,
    /// Required as `Authorization: Bearer` on `/api/*` when set.
    pub api_token: Option<Secret>,
    /// Port of the RTSP server, for the URLs the dashboard shows.
    pub rtsp_port: u16,
    bitrates: Arc<Mutex<HashMap<String, BitrateSample>>>,
    pub hls_viewers: HlsViewers,
    /// The RTSP server's playing sessions (the binary passes the server's).
    pub rtsp_readers: Readers,
}

impl AppState {
    pub fn new(config: &Config, streams: SharedStreams, base: PathBuf) -> AppState {
        AppState {
            streams,
            base,
            api_token: config.http.api_token.clone(),
            rtsp_port: config.rtsp.listen.port(),
            bitrates: Arc::default(),
            hls_viewers: HlsViewers::default(),
            rtsp_readers: Readers::default(),
        }
    }

    /// Read access to the registry; a panic elsewhere never locks the API out.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Streams> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Streams> {
        self.streams.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn hub(&self, name: &str) -> Option<Hub> {
        self.read().get(name).map(|stream| stream.hub.clone())
    }
}

/// The whole HTTP app on `[http] listen`.
pub fn app(state: AppState, hls: streamgate_hls::HlsConfig) -> Router {
    let lookup = {
        let state = state.clone();
        move |name: &str| state.hub(name)
    };
    let api = Router::new()
        .route("/api/streams", get(list_streams))
        .route(
            "/api/streams/{name}",
            get(get_stream).put(put_stream).delete(delete_stream),
        )
        .route("/api/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_STREAM_BODY))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::metrics::router())
        .merge(crate::dashboard::router())
        .with_state(state.clone())
        .merge(
            streamgate_hls::router(lookup, hls).layer(middleware::from_fn_with_state(
                state.hls_viewers.clone(),
                hls_viewers::track,
            )),
        )
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
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if matches!(self, AppError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"streamgate\""),
            );
        }
        response
    }
}

async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if let Some(Secret(expected)) = &state.api_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(AppError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

/// Compares without an early exit, so response time does not leak the token's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /api/streams/NAME`: what a stream is doing. Nothing in it holds a secret:
/// the source URL and errors are redacted by the registry and the source crates.
#[derive(Serialize, Debug)]
pub struct StreamView {
    pub name: String,
    pub source: String,
    /// `running` or `failed`.
    pub state: &'static str,
    /// The source client's own state (`playing`, `retrying`, `streaming`, ...).
    pub source_state: String,
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
    pub hls_viewers: Vec<std::net::IpAddr>,
}

#[derive(Serialize, Debug)]
pub struct ReadersView {
    pub rtsp: Vec<RtspReaderView>,
    pub hls: Vec<HlsReaderView>,
}

/// One playing RTSP session.
#[derive(Serialize, Debug)]
pub struct RtspReaderView {
    /// The client's address and port.
    pub address: std::net::SocketAddr,
    /// `tcp` (interleaved) or `udp`.
    pub transport: &'static str,
    /// When it started playing (RFC 3339, UTC).
    pub since: String,
    pub packets: u64,
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
#[derive(Serialize, Debug)]
pub struct HlsReaderView {
    pub address: std::net::IpAddr,
}

#[derive(Serialize, Debug)]
pub struct TrackView {
    pub kind: &'static str,
    pub codec: String,
    pub clock_rate: u32,
    pub channels: u16,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// A source's state in words, its last error and how often it reconnected.
pub struct SourceReport {
    pub state: &'static str,
    pub source_state: String,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

impl SourceReport {
    pub fn of(stream: &Stream) -> SourceReport {
        let (state, mut last_error) = match stream.state() {
            SourceState::Running => ("running", None),
            SourceState::Failed(message) => ("failed", Some(message)),
        };
        let (source_state, reconnects) = if let Some(rtsp) = stream.rtsp_status() {
            last_error = last_error.or(rtsp.last_error);
            (rtsp.state.to_string(), rtsp.sessions.saturating_sub(1))
        } else if let Some(whep) = stream.whep_status() {
            last_error = last_error.or(whep.last_error);
            let state = whep.state.to_string();
            let reconnects = whep
                .sessions_opened
                .saturating_sub(1)
                .saturating_sub(whep.rotations);
            (state, reconnects)
        } else {
            (state.to_owned(), 0)
        };
        SourceReport {
            state,
            source_state,
            last_error,
            reconnects,
        }
    }
}

/// One bitrate measurement point per stream, for [`StreamView::bitrate_bps`].
#[derive(Clone, Copy)]
struct BitrateSample {
    at: Instant,
    bytes: u64,
    bps: Option<u64>,
}

impl AppState {
    fn bitrate(&self, name: &str, bytes: u64) -> Option<u64> {
        let now = Instant::now();
        let mut samples = self.bitrates.lock().unwrap_or_else(PoisonError::into_inner);
        let sample = samples.entry(name.to_owned()).or_insert(BitrateSample {
            at: now,
            bytes,
            bps: None,
        });
        let elapsed = now.duration_since(sample.at).as_secs_f64();
        if bytes < sample.bytes {
            // A replaced stream: start over.
            *sample = BitrateSample {
                at: now,
                bytes,
                bps: None,
            };
        } else if elapsed >= 1.0 {
            let bps = (bytes - sample.bytes) as f64 * 8.0 / elapsed;
            *sample = BitrateSample {
                at: now,
                bytes,
                bps: Some(bps as u64),
            };
        }
        sample.bps
    }

    fn view(&self, name: &str, stream: &Stream) -> StreamView {
        let stats = stream.hub.stats();
        let report = SourceReport::of(stream);
        let hls_viewers = self.hls_viewers.of(name);
        StreamView {
            name: name.to_owned(),
            source: stream.source.to_string(),
            state: report.state,
            source_state: report.source_state,
            last_error: report.last_error,
            reconnects: report.reconnects,
            tracks: stream.hub.tracks().iter().map(track_view).collect(),
            frames: stats.frames,
            packets: stats.packets,
            bytes: stats.bytes,
            bitrate_bps: self.bitrate(name, stats.bytes),
            drops: stats.drops,
            subscribers: stats.subscribers,
            readers: ReadersView {
                rtsp: self
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
        }
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

async fn list_streams(State(state): State<AppState>) -> Json<serde_json::Value> {
    let views: Vec<StreamView> = state
        .read()
        .iter()
        .map(|(name, stream)| state.view(name.as_str(), stream))
        .collect();
    Json(serde_json::json!({ "streams": views }))
}

async fn get_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<StreamView>, AppError> {
    let streams = state.read();
    let stream = streams.get(&name).ok_or(AppError::NotFound(name.clone()))?;
    Ok(Json(state.view(&name, stream)))
}

/// `PUT /api/streams/NAME`: the body is the stream's table, exactly as under
/// `[streams.NAME]` in the config file (TOML) or the same keys as a JSON object.
/// It is checked like the file, then the stream starts (replacing one of that name).
async fn put_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
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
    let planned =
        tokio::task::spawn_blocking(move || streams::plan_stream(&name, &config, &base, &mut None))
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let name = planned.name.clone();
    let replaced = state.write().insert(planned);
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
    let streams = state.read();
    let stream = streams
        .get(name.as_str())
        .ok_or_else(|| AppError::NotFound(name.to_string()))?;
    Ok((status, Json(state.view(name.as_str(), stream))))
}

/// `DELETE /api/streams/NAME`: stops the source and closes the Hub, which ends
/// every reader's session.
async fn delete_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    let stream = state
        .write()
        .remove(&name)
        .ok_or(AppError::NotFound(name.clone()))?;
    state.hls_viewers.forget(&name);
    state.rtsp_readers.forget(&name);
    state
        .bitrates
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&name);
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
fn parse_stream_table(
    name: &StreamName,
    table: &str,
) -> Result<crate::config::StreamConfig, AppError> {
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
        assert_eq!(ok.source, crate::config::Source::Demo);
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
        assert!(matches!(config.source, crate::config::Source::Rtsp(_)));
        assert!(json_to_toml(b"[1]").is_err());
        assert!(json_to_toml(b"{").is_err());
    }
}
