//! Ring media and history in the API (`RING_API.md` "Media and history"):
//!
//! - `GET /api/streams/{name}/snapshot.jpg[?width=&height=]`: for a Ring stream, the
//!   latest image of the last `[ring] snapshot_window` (5 min) from Ring's Image
//!   Snapshots API, cached `[ring] snapshot_cache` (10 s) per stream and size, with
//!   `X-Media-Timestamp` and `X-Media-Origin` passed on. Other streams get the
//!   GOP cache's keyframe decoded (`super::snapshot`, feature `ffmpeg`). Like every `/api/*` route it needs the API
//!   token when `[http] api_token` is set; without one (the default, as go2rtc's
//!   `frame.jpeg`) Home Assistant's generic camera reads it as is.
//! - `POST /api/ring/devices/{id}/clips {start, duration}`: downloads an MP4 into
//!   `[ring] clips_dir`; `GET /api/ring/clips` lists, `GET /api/ring/clips/{name}`
//!   serves with range requests. Clips are pruned by `clips_max_age` and
//!   `clips_max_bytes` after each download and on listing.
//! - `GET /api/ring/devices/{id}/history?types=…`: Ring's event history merged
//!   with the stored webhook events (`streamgate_ring::history`).
//! - `GET /api/ring/accounts/{id}/subscriptions`: the account's subscriptions and,
//!   per device, which one covers it (`"none"`: why its clips and history are empty).

pub(super) mod books;

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use streamgate_ring::history::{self, MergedEvent, Seen};
use streamgate_ring::media::{
    ClipRequest, ImageFormat, ImageSelect, MediaOrigin, Resolution, SnapshotRequest,
    SubscriptionKind,
};
use streamgate_ring::store::EventFilter;
use streamgate_ring::{AccountId, Device, DeviceId, RingError};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::books::{list_clips, prune_plan, valid_clip_name, CachedSnapshot};
use super::api::{require_token, ErrorBody};
use super::state::AppState;
use crate::ring::RingDiscovery;
use crate::sources::RING_PREFIX;

/// Most stored events of a device merged into its history (the newest).
const MAX_STORED_IN_HISTORY: usize = 1000;

/// Largest `POST …/clips` body: `{start, duration}`.
const MAX_CLIP_BODY: usize = 4 * 1024;

/// The routes, all behind the API token, but the clip download (see [`downloads`]).
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(snapshot))
        .routes(routes!(list_clips_route))
        .routes(routes!(serve_clip))
        .routes(routes!(history))
        .routes(routes!(subscriptions))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
}

/// The clip download, apart: it takes as long as the clip (up to 15 min), so it
/// is outside `[http] request_timeout` (the in-flight cap still counts it).
pub fn downloads(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(download_clip))
        .layer(super::limits::body(MAX_CLIP_BODY))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
}

/// An error answer `{"error": …}` with its status.
struct MediaError(StatusCode, String);

impl IntoResponse for MediaError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

fn err(status: StatusCode, message: impl Into<String>) -> MediaError {
    MediaError(status, message.into())
}

/// Ring's refusal as our answer: its status where it says something to the user
/// (400, 404, 416, 422, 503), else 502. The text is Ring's error fields, never a
/// token or a pre-signed URL.
fn ring_error(error: RingError) -> MediaError {
    let status = match &error {
        RingError::InvalidMediaRequest(_) => StatusCode::BAD_REQUEST,
        RingError::DeviceOffline { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RingError::NeedsRelinking { .. } => StatusCode::CONFLICT,
        RingError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => match error.status() {
            Some(s @ (400 | 404 | 416 | 422 | 425 | 503)) => {
                StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            _ => StatusCode::BAD_GATEWAY,
        },
    };
    if status == StatusCode::BAD_GATEWAY {
        tracing::warn!(%error, "Ring media request failed");
    }
    err(status, error.to_string())
}

fn ring(state: &AppState) -> Result<&RingDiscovery, MediaError> {
    state
        .ring
        .as_ref()
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "Ring is not configured ([ring])"))
}

/// A discovered device by id.
fn device(ring: &RingDiscovery, id: &str) -> Result<Device, MediaError> {
    ring.link
        .devices()
        .into_iter()
        .find(|d| d.id.as_str() == id)
        .ok_or_else(|| {
            err(
                StatusCode::NOT_FOUND,
                format!("no Ring device {id} (not discovered)"),
            )
        })
}

fn origin_name(origin: MediaOrigin) -> &'static str {
    match origin {
        MediaOrigin::Recording => "recording",
        MediaOrigin::Snapshot => "snapshot",
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SnapshotQuery {
    /// Ring: 1-1920, with `height`; other streams: 1-8192, alone keeping the
    /// aspect ratio. Default: the picture's own size.
    width: Option<u32>,
    /// Ring: 1-1080, with `width`; other streams: 1-8192.
    height: Option<u32>,
    /// The image at this time (RFC 3339 or ms; within 180 days) instead of the
    /// latest one.
    at: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct StreamPath {
    /// The stream's name.
    name: String,
}

/// A JPEG of the stream.
///
/// For other streams, built with the `ffmpeg` feature: the latest keyframe of
/// the GOP cache, decoded once per keyframe and size; 503 with `Retry-After`
/// while too many decodes run, 503 before the first keyframe.
/// For a Ring stream: the latest image of the last `[ring] snapshot_window` from
/// Ring's snapshot API, cached `[ring] snapshot_cache`, with Ring's
/// `X-Media-Timestamp` (ms) and `X-Media-Origin` (`recording`|`snapshot`).
#[utoipa::path(get, path = "/api/streams/{name}/snapshot.jpg", tag = "ring", params(StreamPath, SnapshotQuery),
    responses((status = OK, description = "The image", content_type = "image/jpeg", body = Vec<u8>),
              (status = BAD_REQUEST, description = "Bad size", body = ErrorBody),
              (status = NOT_FOUND, description = "No such stream, or no image in the window (416 from Ring)", body = ErrorBody),
              (status = NOT_IMPLEMENTED, description = "Not a Ring stream, and built without the ffmpeg feature", body = ErrorBody),
              (status = SERVICE_UNAVAILABLE, description = "The device is offline or not discovered yet; no keyframe yet, or too many decodes at once (Retry-After)", body = ErrorBody),
              (status = BAD_GATEWAY, description = "Ring failed, or the keyframe did not decode", body = ErrorBody)))]
async fn snapshot(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
    Query(query): Query<SnapshotQuery>,
) -> Result<Response, MediaError> {
    let source = {
        let streams = state.streams.read();
        let stream = streams
            .get(&name)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no stream named {name:?}")))?;
        stream.config.source.to_string()
    };
    let Some(device_id) = source.strip_prefix(RING_PREFIX) else {
        if query.at.is_some() {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "at: only Ring streams keep past images",
            ));
        }
        let encoding = super::snapshot::Encoding::Jpeg;
        return Ok(
            super::snapshot::picture(&state, &name, query.width, query.height, encoding).await,
        );
    };
    let resolution = match (query.width, query.height) {
        (None, None) => None,
        (Some(width), Some(height)) => Some(Resolution { width, height }),
        _ => return Err(err(StatusCode::BAD_REQUEST, "give both width and height")),
    };
    let ring = ring(&state)?;
    let device =
        device(ring, device_id).map_err(|e| MediaError(StatusCode::SERVICE_UNAVAILABLE, e.1))?;
    let media = &state.ring_media;
    let at = match &query.at {
        Some(at) => Some(parse_time(&Value::from(at.as_str())).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                "at: an RFC 3339 time or ms since the epoch",
            )
        })?),
        None => None,
    };
    let key = format!(
        "{name}@{}@{}",
        resolution.map_or("native".to_owned(), |r| format!("{}x{}", r.width, r.height)),
        at.map_or("latest".to_owned(), |t| streamgate_ring::media::epoch_ms(t)
            .to_string())
    );
    let found = match media.cached(&key, Instant::now()) {
        Some(found) => found,
        None => {
            let lock = media.fetch_lock(&key);
            let _one = lock.lock().await;
            match media.cached(&key, Instant::now()) {
                Some(found) => found,
                None => {
                    let now = SystemTime::now();
                    let request = SnapshotRequest {
                        select: match at {
                            Some(at) => ImageSelect::AtTimestamp(at),
                            None => ImageSelect::LatestInRange {
                                start: now - media.settings.snapshot_window,
                                end: None,
                            },
                        },
                        format: ImageFormat::Jpeg,
                        resolution,
                    };
                    let image = ring
                        .link
                        .client
                        .snapshot(&device.account, &device.id, &request)
                        .await
                        .map_err(|e| match e.status() {
                            Some(416) if at.is_some() => err(
                                StatusCode::NOT_FOUND,
                                format!("Ring has no image of {name} at that time"),
                            ),
                            Some(416) => err(
                                StatusCode::NOT_FOUND,
                                format!(
                                    "Ring has no image of {name} in the last {}",
                                    humantime::format_duration(media.settings.snapshot_window)
                                ),
                            ),
                            _ => ring_error(e),
                        })?;
                    let cached = CachedSnapshot {
                        fetched: Instant::now(),
                        bytes: Bytes::from(image.bytes),
                        content_type: image.content_type,
                        timestamp: image.media.timestamp,
                        origin: image.media.origin.map(origin_name),
                    };
                    media.store(&key, cached.clone());
                    cached
                }
            }
        }
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, found.content_type.clone()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        found.bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(timestamp) = found.timestamp.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("x-media-timestamp", timestamp);
    }
    if let Some(origin) = found.origin {
        headers.insert("x-media-origin", HeaderValue::from_static(origin));
    }
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct DevicePath {
    /// The Ring device id (`ava1.ring.device.…`).
    id: String,
}

/// `{start, duration}`.
#[derive(Deserialize, ToSchema)]
struct ClipBody {
    /// RFC 3339 time, or ms since the epoch.
    #[schema(value_type = Object)]
    start: Value,
    /// `"30s"`, `"2m"`, or ms (at most 15 min).
    #[schema(value_type = Object)]
    duration: Value,
}

#[derive(Serialize, ToSchema)]
struct ClipView {
    name: String,
    /// `/api/ring/clips/{name}`.
    url: String,
    bytes: u64,
    /// RFC 3339.
    modified: String,
}

#[derive(Serialize, ToSchema)]
struct DownloadedClip {
    #[serde(flatten)]
    clip: ClipView,
    /// Ring had only part of the range (206).
    partial: bool,
    /// `X-Media-Timestamp`: where the clip starts (ms).
    media_timestamp: Option<String>,
    /// `X-Media-Length`: how long it is (ms).
    media_length_ms: Option<u64>,
    /// Range requests made to finish an interrupted download.
    resumed: u32,
}

fn parse_time(value: &Value) -> Option<SystemTime> {
    match value {
        Value::Number(n) => n.as_u64().map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        Value::String(s) => humantime::parse_rfc3339_weak(s.trim().trim_end_matches('Z'))
            .ok()
            .or_else(|| {
                s.trim()
                    .parse::<u64>()
                    .ok()
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
            }),
        _ => None,
    }
}

fn parse_duration(value: &Value) -> Option<Duration> {
    match value {
        Value::Number(n) => n.as_u64().map(Duration::from_millis),
        Value::String(s) => humantime::parse_duration(s.trim()).ok(),
        _ => None,
    }
}

fn clip_view(clip: &books::ClipFile) -> ClipView {
    ClipView {
        url: format!("/api/ring/clips/{}", clip.name),
        bytes: clip.bytes,
        modified: humantime::format_rfc3339_seconds(clip.modified).to_string(),
        name: clip.name.clone(),
    }
}

/// Deletes clips beyond the age and size limits.
async fn prune(state: &AppState) {
    let media = &state.ring_media;
    let _one = media.pruning.lock().await;
    let dir = media.settings.clips_dir.clone();
    let settings = media.settings.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for part in books::stale_parts(&dir, SystemTime::now(), Duration::from_secs(3600)) {
            let _ = std::fs::remove_file(part);
        }
        let clips = list_clips(&dir);
        for name in prune_plan(
            &clips,
            SystemTime::now(),
            settings.clips_max_age,
            settings.clips_max_bytes,
        ) {
            match std::fs::remove_file(dir.join(&name)) {
                Ok(()) => tracing::info!(clip = %name, "Ring clip pruned"),
                Err(error) => tracing::warn!(clip = %name, %error, "cannot prune a Ring clip"),
            }
        }
    })
    .await;
}

/// Downloads a clip from Ring into `[ring] clips_dir`.
///
/// At most 15 minutes. A range Ring recorded only in part gives a shorter clip
/// (`partial`, `media_length_ms`); nothing recorded gives 416. An interrupted
/// download is resumed with a range request.
#[utoipa::path(post, path = "/api/ring/devices/{id}/clips", tag = "ring", params(DevicePath),
    request_body = ClipBody,
    responses((status = CREATED, description = "Downloaded", body = DownloadedClip),
              (status = BAD_REQUEST, description = "Bad start or duration", body = ErrorBody),
              (status = NOT_FOUND, description = "No such device", body = ErrorBody),
              (status = CONFLICT, description = "The same clip is being downloaded", body = ErrorBody),
              (status = RANGE_NOT_SATISFIABLE, description = "Nothing was recorded in the range (a live session must have run; a subscription may be needed)", body = ErrorBody),
              (status = BAD_GATEWAY, description = "Ring failed", body = ErrorBody)))]
async fn download_clip(
    State(state): State<AppState>,
    Path(DevicePath { id }): Path<DevicePath>,
    body: Bytes,
) -> Result<(StatusCode, Json<DownloadedClip>), MediaError> {
    // JSON whatever the Content-Type says (curl -d sends a form type).
    let body: ClipBody = serde_json::from_slice(&body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("the body is not {{start, duration}} JSON: {e}"),
        )
    })?;
    let ring = ring(&state)?;
    let device = device(ring, &id)?;
    let start = parse_time(&body.start).ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            "start: an RFC 3339 time or ms since the epoch",
        )
    })?;
    let duration = parse_duration(&body.duration)
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, "duration: \"30s\", \"2m\" or ms"))?;
    let dir = state.ring_media.settings.clips_dir.clone();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the clips folder");
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot create the clips folder",
        )
    })?;
    let start_ms = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let safe_id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!(
        "{}-{start_ms}-{}.mp4",
        safe_id.trim_start_matches('.'),
        duration.as_millis()
    );
    let path: PathBuf = dir.join(&name);
    let _claimed = state
        .ring_media
        .start_download(&name)
        .ok_or_else(|| err(StatusCode::CONFLICT, format!("{name} is being downloaded")))?;
    let download = ring
        .link
        .client
        .download_clip(
            &device.account,
            &DeviceId::new(id.clone()),
            &ClipRequest::new(start, duration),
            &path,
        )
        .await
        .map_err(ring_error)?;
    tracing::info!(clip = %name, bytes = download.bytes, partial = download.partial, "Ring clip downloaded");
    prune(&state).await;
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let clip = books::ClipFile {
        name,
        bytes: download.bytes,
        modified,
    };
    Ok((
        StatusCode::CREATED,
        Json(DownloadedClip {
            clip: clip_view(&clip),
            partial: download.partial,
            media_timestamp: download.media.timestamp,
            media_length_ms: download.media.length_ms,
            resumed: download.resumed,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
struct ClipList {
    /// Newest first.
    clips: Vec<ClipView>,
}

/// The downloaded clips, newest first (pruned first).
#[utoipa::path(get, path = "/api/ring/clips", tag = "ring",
    responses((status = OK, description = "The clips", body = ClipList)))]
async fn list_clips_route(State(state): State<AppState>) -> Json<ClipList> {
    prune(&state).await;
    let dir = state.ring_media.settings.clips_dir.clone();
    let clips = tokio::task::spawn_blocking(move || list_clips(&dir))
        .await
        .unwrap_or_default();
    Json(ClipList {
        clips: clips.iter().map(clip_view).collect(),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct ClipPath {
    /// The clip's file name (`….mp4`).
    name: String,
}

/// `bytes=A-B`, `bytes=A-`, `bytes=-N` of a `len`-byte file: the first and last
/// byte; `Err` when it cannot be satisfied, `Ok(None)` for no (or a multi-) range.
fn parse_range(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let first: u64 = a.parse().map_err(|_| ())?;
        let last = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        if first >= len || last < first {
            return Err(());
        }
        (first, last)
    };
    Ok(Some(range))
}

/// Serves a clip (`video/mp4`), with single range requests (206).
#[utoipa::path(get, path = "/api/ring/clips/{name}", tag = "ring", params(ClipPath),
    responses((status = OK, description = "The MP4", content_type = "video/mp4", body = Vec<u8>),
              (status = PARTIAL_CONTENT, description = "The requested range", content_type = "video/mp4", body = Vec<u8>),
              (status = NOT_FOUND, description = "No such clip", body = ErrorBody),
              (status = RANGE_NOT_SATISFIABLE, description = "Bad range")))]
async fn serve_clip(
    State(state): State<AppState>,
    Path(ClipPath { name }): Path<ClipPath>,
    headers: HeaderMap,
) -> Result<Response, MediaError> {
    let missing = || err(StatusCode::NOT_FOUND, format!("no clip {name:?}"));
    if !valid_clip_name(&name) {
        return Err(missing());
    }
    let path = state.ring_media.settings.clips_dir.join(&name);
    let mut file = tokio::fs::File::open(&path).await.map_err(|_| missing())?;
    let len = file.metadata().await.map_err(|_| missing())?.len();
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, first, last) = match range {
        Err(()) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response())
        }
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Ok(Some((first, last))) => (StatusCode::PARTIAL_CONTENT, first, last),
    };
    let count = if len == 0 { 0 } else { last - first + 1 };
    file.seek(SeekFrom::Start(first))
        .await
        .map_err(|_| missing())?;
    let stream = futures_util::stream::unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buffer = vec![0u8; left.min(64 * 1024) as usize];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buffer)),
                    (file, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, count);
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"));
    }
    response
        .body(Body::from_stream(stream))
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the answer"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Comma-separated event types (`motion,ding,on_demand`); default: all.
    types: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct HistoryEventView {
    /// Ring's id of the event (absent for one only the gateway knows of).
    id: Option<String>,
    /// Who knows of it: `ring`, `gateway` (its webhook came, Ring's history does
    /// not list it yet) or `both`.
    #[schema(value_type = String)]
    seen: Seen,
    /// The gateway's stored event (its `/api/events` and SSE id).
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<i64>,
    /// `motion`, `motion.human`, `ding`, …
    event_type: String,
    /// `motion` for `motion.human`.
    kind: String,
    /// `human` for `motion.human`.
    subtype: Option<String>,
    #[schema(value_type = Object)]
    start: Option<Value>,
    #[schema(value_type = Object)]
    end: Option<Value>,
}

impl From<MergedEvent> for HistoryEventView {
    fn from(merged: MergedEvent) -> Self {
        let (kind, subtype, seen) = (
            merged.base_type().to_owned(),
            merged.subtype().map(str::to_owned),
            merged.seen(),
        );
        let event = merged.stored.as_ref().map(|stored| stored.id);
        let (id, start, end) = match merged.ring {
            Some(ring) => (ring.id, ring.start, ring.end),
            None => (
                None,
                merged
                    .time
                    .map(|t| Value::String(humantime::format_rfc3339_millis(t).to_string())),
                None,
            ),
        };
        HistoryEventView {
            id,
            seen,
            event,
            event_type: merged.event_type,
            kind,
            subtype,
            start,
            end,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct HistoryView {
    device: String,
    /// Newest first.
    events: Vec<HistoryEventView>,
    /// Pages read from Ring.
    pages: usize,
    /// False when `[ring] history_max_pages` stopped the paging.
    complete: bool,
    /// When there are no events: `"none"` if no active subscription covers the
    /// device (why Ring keeps no history), else `"paid"`/`"trial"`; absent when
    /// there are events or the subscriptions could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<&'static str>,
}

/// A device's event history from Ring, merged with the webhook events the
/// gateway stored for it, newest first; an event both know of shows once.
///
/// Follows Ring's `links.next` until there is none, a page is empty, or
/// `[ring] history_max_pages` pages were read (then stored events older than the
/// pages read are left out too).
#[utoipa::path(get, path = "/api/ring/devices/{id}/history", tag = "ring", params(DevicePath, HistoryQuery),
    responses((status = OK, description = "The events", body = HistoryView),
              (status = NOT_FOUND, description = "No such device", body = ErrorBody),
              (status = BAD_GATEWAY, description = "Ring failed", body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    Path(DevicePath { id }): Path<DevicePath>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, MediaError> {
    let ring = ring(&state)?;
    let device = device(ring, &id)?;
    let types: Vec<String> = query
        .types
        .unwrap_or_default()
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let history = ring
        .link
        .client
        .history(
            &device.account,
            &device.id,
            &types,
            state.ring_media.settings.history_max_pages,
        )
        .await
        .map_err(ring_error)?;
    let stored = match state.events.clone() {
        Some(bus) => {
            let filter = EventFilter {
                device: Some(id.clone()),
                limit: MAX_STORED_IN_HISTORY,
                ..EventFilter::default()
            };
            tokio::task::spawn_blocking(move || bus.history(&filter))
                .await
                .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        }
        None => Vec::new(),
    };
    let events = history::merge(history.events, history.complete, stored, &types);
    let subscription = if events.is_empty() {
        match ring.link.client.subscriptions(&device.account).await {
            Ok(found) => Some(covering(&found, &device)),
            Err(error) => {
                tracing::debug!(%error, "cannot read the Ring subscriptions");
                None
            }
        }
    } else {
        None
    };
    Ok(Json(HistoryView {
        device: id,
        pages: history.pages,
        complete: history.complete,
        subscription,
        events: events.into_iter().map(HistoryEventView::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
struct SubscriptionView {
    id: String,
    /// `paid` | `trial` | `other`.
    sub_type: &'static str,
    status: Option<String>,
    plan_id: Option<String>,
    #[schema(value_type = Object)]
    expires_at: Option<Value>,
    #[schema(value_type = Object)]
    created_at: Option<Value>,
    devices: Vec<String>,
}

#[derive(Serialize, ToSchema)]
struct DeviceSubscription {
    id: String,
    name: String,
    /// `paid` | `trial` (an active subscription covers it) | `none`: Ring records no
    /// clips or history for it, which is why they are empty.
    subscription: &'static str,
}

#[derive(Serialize, ToSchema)]
struct SubscriptionList {
    account: String,
    subscriptions: Vec<SubscriptionView>,
    devices: Vec<DeviceSubscription>,
}

/// The best active subscription covering `device`: `paid`, `trial`, `other`, or `none`.
fn covering(found: &[streamgate_ring::media::Subscription], device: &Device) -> &'static str {
    let best = found
        .iter()
        .filter(|s| s.is_active() && s.devices.iter().any(|id| id == device.id.as_str()))
        .map(|s| s.sub_type)
        .min_by_key(|k| match k {
            SubscriptionKind::Paid => 0,
            SubscriptionKind::Trial => 1,
            _ => 2,
        });
    match best {
        Some(SubscriptionKind::Paid) => "paid",
        Some(SubscriptionKind::Trial) => "trial",
        Some(_) => "other",
        None => "none",
    }
}

fn kind_name(kind: SubscriptionKind) -> &'static str {
    match kind {
        SubscriptionKind::Paid => "paid",
        SubscriptionKind::Trial => "trial",
        _ => "other",
    }
}

/// The account's Ring subscriptions, and which covers each of its devices.
#[utoipa::path(get, path = "/api/ring/accounts/{id}/subscriptions", tag = "ring", params(DevicePath),
    responses((status = OK, description = "The subscriptions", body = SubscriptionList),
              (status = NOT_FOUND, description = "No such account", body = ErrorBody),
              (status = UNPROCESSABLE_ENTITY, description = "Ring could not process the subscription request", body = ErrorBody),
              (status = BAD_GATEWAY, description = "Ring failed", body = ErrorBody)))]
async fn subscriptions(
    State(state): State<AppState>,
    Path(DevicePath { id }): Path<DevicePath>,
) -> Result<Json<SubscriptionList>, MediaError> {
    let ring = ring(&state)?;
    let account = AccountId::new(id.clone());
    if !ring.link.client.accounts().iter().any(|a| a.id == account) {
        return Err(err(StatusCode::NOT_FOUND, format!("no Ring account {id}")));
    }
    let found = ring
        .link
        .client
        .subscriptions(&account)
        .await
        .map_err(ring_error)?;
    let devices = ring
        .link
        .devices()
        .into_iter()
        .filter(|d| d.account == account)
        .map(|d| DeviceSubscription {
            subscription: covering(&found, &d),
            id: d.id.to_string(),
            name: d.name,
        })
        .collect();
    Ok(Json(SubscriptionList {
        account: id,
        subscriptions: found
            .into_iter()
            .map(|s| SubscriptionView {
                sub_type: kind_name(s.sub_type),
                id: s.id,
                status: s.status,
                plan_id: s.plan_id,
                expires_at: s.expires_at,
                created_at: s.created_at,
                devices: s.devices,
            })
            .collect(),
        devices,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=10-19"), 100), Ok(Some((10, 19))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=90-500"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=5-1"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
    }

    #[test]
    fn clip_times_and_durations() {
        assert_eq!(
            parse_time(&Value::from(1_700_000_000_000u64)),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000))
        );
        assert_eq!(
            parse_time(&Value::from("2023-11-14T22:13:20Z")),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            parse_duration(&Value::from("30s")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration(&Value::from(4000)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(parse_time(&Value::from("yesterday")), None);
    }
}
