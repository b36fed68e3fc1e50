//! Media and history as `RING_API.md` describes them: snapshots (a `303` to a
//! pre-signed URL on the simulator that refuses requests carrying an Authorization
//! header), clips (200, 206 partial, 416, an optional 301, `Range` resumption),
//! event history pages and subscriptions.
//!
//! What is "recorded" is a simulator notion: Ring records nothing unless a live
//! session ran, so a device's recorded time is when its WHEP sessions ran (the
//! last 1024 ended ones, and the open ones up to now), plus ranges added with
//! `POST /sim/devices/{id}/recordings` ([`crate::Simulator::add_recording`]). The
//! snapshots are a test picture drawn at the requested size (640x360 when none is
//! asked for; [`crate::picture`]); the clips are made from a 4 s MP4 (from
//! `scripts/gen-fixtures ring_media`) repeated to length ([`crate::clip`]):
//! - clips: a range fully recorded gets a clip of the duration asked (200), a range
//!   partly recorded one of the recorded time (206); `X-Media-Length` is the served
//!   clip's length and `X-Media-Timestamp` where the recording starts in the range.
//!
//! History items are `{type:"history-events", id, attributes{event_type, start,
//! end}}`, newest first, [`Books::history_page_size`] a page (10 by default). A full
//! page carries `links.next` = the same path and filters with `page[key]=<ISO time
//! of its last item>`; an empty page still carries one (as Ring was seen to do), a
//! short page none. Subscriptions: per account (default: one paid, active
//! subscription covering every device), 25 a page with `page[cursor]`.

// The helpers return a handler's error answer for `?`: built once per request.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clip::{ClipError, Clips, MAX_CLIP_MS};
use crate::documents;
use crate::picture::{self, Format};
use crate::state::Shared;

type AppState = Arc<Shared>;

/// What every clip is made of (H.264 with B-frames + AAC, 640x360, 25 fps).
static CLIP_SOURCE: &[u8] = include_bytes!("../../../fixtures/media/ring_clip_4s.mp4");

const DAY_MS: u64 = 24 * 3600 * 1000;
/// How long a pre-signed URL works.
const PRESIGNED_LIFE: Duration = Duration::from_secs(300);
/// Most pre-signed URLs and recorded ranges kept.
const MAX_PRESIGNED: usize = 1024;
const MAX_RANGES: usize = 1024;
const MAX_EVENTS: usize = 100_000;

/// One subscription of a simulated account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionConfig {
    /// `paid` | `trial`.
    pub sub_type: String,
    /// `active` | `inactive`.
    #[serde(default = "active")]
    pub status: String,
    #[serde(default)]
    pub plan_id: Option<String>,
    /// The devices it covers (ids).
    #[serde(default)]
    pub devices: Vec<String>,
}

fn active() -> String {
    "active".to_owned()
}

/// One event of a device's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEventConfig {
    /// `motion`, `motion.human`, `ding`, `on_demand`, …
    pub event_type: String,
    /// ms since the epoch.
    pub start: u64,
    pub end: u64,
}

/// What the media routes counted (`GET /sim/media/stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MediaStats {
    pub snapshot_requests: u64,
    pub snapshots_not_ready: u64,
    pub presigned_downloads: u64,
    /// Pre-signed downloads refused because they carried an Authorization header.
    pub presigned_with_authorization: u64,
    pub clip_requests: u64,
    pub clip_range_requests: u64,
    pub clips_cut: u64,
    pub history_pages: u64,
    pub subscription_pages: u64,
}

struct Presigned {
    sig: String,
    format: Format,
    /// Width and height.
    size: (u16, u16),
    timestamp: u64,
    origin: &'static str,
    expires: Instant,
}

/// The media books, behind their own lock.
pub(crate) struct Books {
    recordings: HashMap<String, Vec<(u64, u64)>>,
    events: HashMap<String, Vec<HistoryEventConfig>>,
    pub history_page_size: usize,
    subscriptions: HashMap<String, Vec<SubscriptionConfig>>,
    failing_subscriptions: HashSet<String>,
    not_ready: HashMap<String, u32>,
    cut_next_clip: bool,
    clip_redirect: bool,
    presigned: HashMap<String, Presigned>,
    stats: MediaStats,
}

impl Default for Books {
    fn default() -> Books {
        Books {
            recordings: HashMap::new(),
            events: HashMap::new(),
            history_page_size: 10,
            subscriptions: HashMap::new(),
            failing_subscriptions: HashSet::new(),
            not_ready: HashMap::new(),
            cut_next_clip: false,
            clip_redirect: false,
            presigned: HashMap::new(),
            stats: MediaStats::default(),
        }
    }
}

pub(crate) struct MediaState {
    books: Mutex<Books>,
    clips: Clips,
}

impl Default for MediaState {
    fn default() -> Self {
        MediaState {
            books: Mutex::new(Books::default()),
            clips: Clips::new(CLIP_SOURCE),
        }
    }
}

impl MediaState {
    pub fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Books {
    pub fn add_recording(&mut self, device: &str, start: u64, end: u64) {
        let ranges = self.recordings.entry(device.to_owned()).or_default();
        if ranges.len() < MAX_RANGES && end > start {
            ranges.push((start, end));
        }
    }

    pub fn add_events(&mut self, device: &str, events: Vec<HistoryEventConfig>) {
        let list = self.events.entry(device.to_owned()).or_default();
        list.extend(
            events
                .into_iter()
                .take(MAX_EVENTS.saturating_sub(list.len())),
        );
        list.sort_by_key(|e| std::cmp::Reverse(e.start));
    }

    pub fn set_subscriptions(&mut self, account: &str, subscriptions: Vec<SubscriptionConfig>) {
        self.subscriptions.insert(account.to_owned(), subscriptions);
    }

    pub fn fail_subscriptions(&mut self, account: &str, fail: bool) {
        if fail {
            self.failing_subscriptions.insert(account.to_owned());
        } else {
            self.failing_subscriptions.remove(account);
        }
    }

    pub fn set_not_ready(&mut self, device: &str, count: u32) {
        self.not_ready.insert(device.to_owned(), count);
    }

    pub fn cut_next_clip(&mut self) {
        self.cut_next_clip = true;
    }

    pub fn set_clip_redirect(&mut self, on: bool) {
        self.clip_redirect = on;
    }

    pub fn stats(&self) -> MediaStats {
        self.stats.clone()
    }

    /// The recorded ms of `[start, end)` and where the first recorded part begins;
    /// `live`: the device's live-session ranges, recorded too.
    fn recorded(
        &self,
        device: &str,
        start: u64,
        end: u64,
        live: &[(u64, u64)],
    ) -> (u64, Option<u64>) {
        let mut ranges: Vec<(u64, u64)> = self
            .recordings
            .get(device)
            .into_iter()
            .flatten()
            .chain(live)
            .copied()
            .collect();
        ranges.sort_unstable();
        // Merged, so overlapping ranges count once.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let mut total = 0;
        let mut first: Option<u64> = None;
        for &(a, b) in &merged {
            let (from, to) = (a.max(start), b.min(end));
            if to > from {
                total += to - from;
                first = Some(first.map_or(from, |f| f.min(from)));
            }
        }
        (total.min(end - start), first)
    }

    /// The latest recorded instant in `[start, end]`.
    fn latest_recorded(
        &self,
        device: &str,
        start: u64,
        end: u64,
        live: &[(u64, u64)],
    ) -> Option<u64> {
        self.recordings
            .get(device)
            .into_iter()
            .flatten()
            .chain(live)
            .filter(|&&(a, b)| a <= end && b >= start)
            .map(|&(_, b)| b.min(end))
            .max()
    }
}

pub(crate) fn api_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/devices/{id}/media/image/download",
            post(image_download),
        )
        .route(
            "/v1/devices/{id}/media/video/download",
            post(video_download),
        )
        .route("/v1/history/devices/{id}/events", get(history))
        .route("/v1/accounts/me/subscriptions", get(subscriptions))
}

pub(crate) fn sim_routes() -> Router<AppState> {
    Router::new()
        .route("/sim/media/images/{token}", get(presigned_image))
        .route(
            "/sim/media/clips/{token}",
            get(redirected_clip).post(redirected_clip),
        )
        .route("/sim/media/stats", get(media_stats))
        .route("/sim/devices/{id}/recordings", post(sim_recording))
        .route("/sim/devices/{id}/history", post(sim_history))
        .route("/sim/devices/{id}/not-ready", put(sim_not_ready))
        .route("/sim/accounts/{id}/subscriptions", put(sim_subscriptions))
        .route("/sim/history-page-size", put(sim_page_size))
        .route("/sim/cut-next-clip", post(sim_cut_next_clip))
        .route("/sim/clip-redirect", put(sim_clip_redirect))
}

/// A JSON:API error with `code`, `source.pointer` and `meta`, as the media API's are.
fn error(
    status: StatusCode,
    title: &str,
    code: &str,
    detail: &str,
    pointer: Option<&str>,
) -> Response {
    let mut body = documents::error(status.as_u16(), title, detail, Some(code));
    body["errors"][0]["meta"] = json!({ "request_id": random_token() });
    if let Some(pointer) = pointer {
        body["errors"][0]["source"] = json!({ "pointer": pointer });
    }
    (status, Json(body)).into_response()
}

fn invalid(detail: &str, pointer: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "Bad Request",
        "INVALID_PAYLOAD",
        detail,
        Some(pointer),
    )
}

fn not_found_device() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Not Found",
        "DEVICE_NOT_FOUND",
        "no such device on this account",
        None,
    )
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "UNAUTHORIZED",
        "the access token is missing, invalid or expired",
        None,
    )
}

fn random_token() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn iso_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn parse_iso(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// The account and device of a media request, or its error answer.
fn device_of(shared: &Shared, headers: &HeaderMap, device: &str) -> Result<String, Response> {
    let account = crate::http::account_of(shared, headers).ok_or_else(unauthorized)?;
    let state = shared.state();
    if state.device(&account, device).is_none() {
        return Err(not_found_device());
    }
    Ok(account)
}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(invalid("the body is not a JSON object", "/")),
    }
}

fn ms_field(object: &serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>, Response> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            invalid(
                &format!("{name} must be ms since the epoch"),
                &format!("/{name}"),
            )
        }),
    }
}

/// `{width, height}` or `"WxH"`.
fn resolution(value: Option<&Value>, pointer: &str) -> Result<Option<(u64, u64)>, Response> {
    let parsed = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o
            .get("width")
            .and_then(Value::as_u64)
            .zip(o.get("height").and_then(Value::as_u64)),
        Some(Value::String(s)) => s
            .split_once(['x', 'X'])
            .and_then(|(w, h)| w.trim().parse().ok().zip(h.trim().parse().ok())),
        Some(_) => None,
    };
    match parsed {
        Some((w, h)) if (1..=1920).contains(&w) && (1..=1080).contains(&h) => Ok(Some((w, h))),
        _ => Err(invalid(
            "resolution: width 1-1920 and height 1-1080",
            pointer,
        )),
    }
}

/// `POST /v1/devices/{id}/media/image/download`.
async fn image_download(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(device): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(response) = device_of(&shared, &headers, &device) {
        return response;
    }
    let online = shared.state().online(&device);
    let object = match json_object(&body) {
        Ok(object) => object,
        Err(response) => return response,
    };
    let now = now_ms();
    let oldest = now.saturating_sub(180 * DAY_MS);
    let check = |ms: u64, pointer: &str| -> Result<u64, Response> {
        if ms < oldest || ms > now + 60_000 {
            Err(invalid(
                "the time must be within the last 180 days",
                pointer,
            ))
        } else {
            Ok(ms)
        }
    };
    let range = match object.get("type").and_then(Value::as_str) {
        Some("latest_in_range") => {
            let start = match ms_field(&object, "start_timestamp") {
                Ok(Some(start)) => start,
                Ok(None) => return invalid("start_timestamp is required", "/start_timestamp"),
                Err(response) => return response,
            };
            let end = match ms_field(&object, "end_timestamp") {
                Ok(end) => end.unwrap_or(now),
                Err(response) => return response,
            };
            if let Err(response) =
                check(start, "/start_timestamp").and(check(end, "/end_timestamp"))
            {
                return response;
            }
            if end < start || end - start > DAY_MS {
                return invalid(
                    "the window must end after it starts and last at most 24 h",
                    "/end_timestamp",
                );
            }
            (start, end, true)
        }
        Some("at_timestamp") => match ms_field(&object, "timestamp") {
            Ok(Some(at)) => match check(at, "/timestamp") {
                Ok(at) => (at, at, false),
                Err(response) => return response,
            },
            Ok(None) => return invalid("timestamp is required", "/timestamp"),
            Err(response) => return response,
        },
        _ => return invalid("type must be latest_in_range or at_timestamp", "/type"),
    };
    let options = object.get("image_options").and_then(Value::as_object);
    let format = options
        .and_then(|o| o.get("format"))
        .and_then(Value::as_str)
        .unwrap_or("jpeg");
    let size = match resolution(
        options.and_then(|o| o.get("resolution")),
        "/image_options/resolution",
    ) {
        Ok(size) => size,
        Err(response) => return response,
    };
    let format = match format {
        "jpeg" | "jpg" => Format::Jpeg,
        "png" => Format::Png,
        _ => return invalid("format must be jpeg or png", "/image_options/format"),
    };
    // `resolution` keeps both within 1920 x 1080.
    let size = size.map_or(picture::DEFAULT_SIZE, |(w, h)| (w as u16, h as u16));
    let live = shared.state().sessions.recorded_on(&device, now);
    let mut books = shared.media_books.books();
    books.stats.snapshot_requests += 1;
    if let Some(left) = books.not_ready.get_mut(&device).filter(|n| **n > 0) {
        *left -= 1;
        books.stats.snapshots_not_ready += 1;
        let mut response = error(
            StatusCode::from_u16(425).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "Too Early",
            "RECORDING_NOT_READY",
            "the recording is not ready yet; try again",
            None,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let (start, end, latest) = range;
    let found = match books.latest_recorded(&device, start, end, &live) {
        Some(at) => Some((if latest { at } else { start }, "recording")),
        // A camera that is online takes a snapshot now, if now is in the range.
        None if online && latest && end + 60_000 >= now => Some((end.min(now), "snapshot")),
        None => None,
    };
    let Some((timestamp, origin)) = found else {
        return error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "Range Not Satisfiable",
            "MEDIA_NOT_FOUND",
            "no image in the requested range",
            None,
        );
    };
    let now_instant = Instant::now();
    books.presigned.retain(|_, p| p.expires > now_instant);
    if books.presigned.len() >= MAX_PRESIGNED {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "SERVER_BUSY",
            "too many downloads pending",
            None,
        );
    }
    let token = random_token();
    let sig = random_token();
    books.presigned.insert(
        token.clone(),
        Presigned {
            sig: sig.clone(),
            format,
            size,
            timestamp,
            origin,
            expires: now_instant + PRESIGNED_LIFE,
        },
    );
    let location = format!(
        "/sim/media/images/{token}?expires={}&sig={sig}",
        now / 1000 + PRESIGNED_LIFE.as_secs()
    );
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .header("x-request-id", random_token())
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The pre-signed image: refused with any Authorization header, as S3 does.
async fn presigned_image(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut books = shared.media_books.books();
    if headers.contains_key(header::AUTHORIZATION) {
        books.stats.presigned_with_authorization += 1;
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/xml")],
            "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; \
             only the signature query parameter or the Authorization header should be \
             specified</Message></Error>",
        )
            .into_response();
    }
    let pairs: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let Some(found) = books.presigned.get(&token).filter(|p| {
        p.expires > Instant::now()
            && pairs
                .get("sig")
                .is_some_and(|sig| crate::auth::secret_matches(sig, &p.sig))
    }) else {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/xml")],
            "<Error><Code>AccessDenied</Code><Message>Request has expired or the signature does not match</Message></Error>",
        )
            .into_response();
    };
    let (format, (width, height), timestamp, origin) =
        (found.format, found.size, found.timestamp, found.origin);
    books.stats.presigned_downloads += 1;
    drop(books);
    let image = match picture::render(format, width, height) {
        Ok(image) => image,
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .header("x-media-timestamp", timestamp.to_string())
        .header("x-media-origin", origin)
        .body(Body::from(image))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `POST /v1/devices/{id}/media/video/download`.
async fn video_download(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(device): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(response) = device_of(&shared, &headers, &device) {
        return response;
    }
    let object = match json_object(&body) {
        Ok(object) => object,
        Err(response) => return response,
    };
    let now = now_ms();
    let start = match ms_field(&object, "timestamp") {
        Ok(Some(start)) if start >= now.saturating_sub(180 * DAY_MS) && start <= now + 60_000 => {
            start
        }
        Ok(_) => {
            return invalid(
                "timestamp (ms) within the last 180 days is required",
                "/timestamp",
            )
        }
        Err(response) => return response,
    };
    let duration = match ms_field(&object, "duration") {
        Ok(Some(d)) if (1..=MAX_CLIP_MS).contains(&d) => d,
        Ok(_) => return invalid(&format!("duration must be 1-{MAX_CLIP_MS} ms"), "/duration"),
        Err(response) => return response,
    };
    if let Some(video) = object.get("video_options") {
        let Some(video) = video.as_object() else {
            return invalid("video_options must be an object", "/video_options");
        };
        if let Some(codec) = video.get("codec") {
            if !matches!(codec.as_str(), Some("avc" | "hevc")) {
                return invalid("codec must be avc or hevc", "/video_options/codec");
            }
        }
        if let Some(rate) = video.get("frame_rate") {
            if !rate.as_u64().is_some_and(|r| (1..=25).contains(&r)) {
                return invalid("frame_rate must be 1-25", "/video_options/frame_rate");
            }
        }
        if let Err(response) = resolution(video.get("resolution"), "/video_options/resolution") {
            return response;
        }
    }
    let live = shared.state().sessions.recorded_on(&device, now);
    let mut books = shared.media_books.books();
    books.stats.clip_requests += 1;
    let (recorded, first) = books.recorded(&device, start, start + duration, &live);
    let Some(first) = first.filter(|_| recorded > 0) else {
        return error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "Range Not Satisfiable",
            "TIMESTAMP_NOT_FOUND",
            "nothing was recorded in the requested range",
            None,
        );
    };
    let partial = recorded < duration;
    if books.clip_redirect {
        let token = format!("{}-{first}-{recorded}", if partial { "p" } else { "f" });
        return Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, format!("/sim/media/clips/{token}"))
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let cut = std::mem::take(&mut books.cut_next_clip);
    if cut {
        books.stats.clips_cut += 1;
    }
    if headers.contains_key(header::RANGE) {
        books.stats.clip_range_requests += 1;
    }
    drop(books);
    clip_answer(&shared, partial, first, recorded, &headers, cut)
}

/// Where a 301 points: `<p|f>-<first ms>-<length ms>`.
async fn redirected_clip(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let mut parts = token.splitn(3, '-');
    let (Some(kind @ ("p" | "f")), Some(Ok(first)), Some(Ok(length))) = (
        parts.next(),
        parts.next().map(str::parse),
        parts.next().map(str::parse),
    ) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !(1..=MAX_CLIP_MS).contains(&length) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if headers.contains_key(header::RANGE) {
        shared.media_books.books().stats.clip_range_requests += 1;
    }
    clip_answer(&shared, kind == "p", first, length, &headers, false)
}

/// A clip of `length` ms: 200 (or 206 when `partial`) with `X-Media-*`, honouring
/// `Range: bytes=N-`; `cut` ends the body halfway with an error.
fn clip_answer(
    shared: &Shared,
    partial: bool,
    first: u64,
    length: u64,
    headers: &HeaderMap,
    cut: bool,
) -> Response {
    let clip = match shared.media_books.clips.of(length) {
        Ok(clip) => clip,
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    };
    let total = clip.len();
    let from = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok());
    if from.is_some_and(|from| from >= total) {
        return Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{total}"))
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let start = from.unwrap_or(0);
    let bytes = clip.slice(start..);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-media-timestamp", first.to_string())
        .header("x-media-length", length.to_string());
    builder = if from.is_some() {
        builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        )
    } else if partial {
        builder.status(StatusCode::PARTIAL_CONTENT)
    } else {
        builder.status(StatusCode::OK)
    };
    let body = if cut {
        let half = bytes.slice(..bytes.len() / 2);
        Body::from_stream(futures_stream(half))
    } else {
        Body::from(bytes)
    };
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A body of `half`, then (once it has had time to reach the client) an error:
/// the connection is cut mid-body.
fn futures_stream(half: Bytes) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> {
    CutStream {
        half: Some(half),
        pause: Box::pin(tokio::time::sleep(Duration::from_millis(200))),
        errored: false,
    }
}

struct CutStream {
    half: Option<Bytes>,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
    errored: bool,
}

impl futures_core::Stream for CutStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        if let Some(half) = self.half.take() {
            return std::task::Poll::Ready(Some(Ok(half)));
        }
        if self.errored {
            return std::task::Poll::Ready(None);
        }
        if self.pause.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        self.errored = true;
        std::task::Poll::Ready(Some(Err(std::io::Error::other("simulated cut"))))
    }
}

/// `GET /v1/history/devices/{id}/events[?event_types=…][&page[key]=ISO]`.
async fn history(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(device): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(response) = device_of(&shared, &headers, &device) {
        return response;
    }
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
            Ok(pairs) => pairs,
            Err(_) => return invalid("the query string cannot be parsed", "/"),
        };
    let types: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "event_types")
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .collect();
    let key = match pairs.iter().find(|(k, _)| k == "page[key]") {
        Some((_, v)) => match parse_iso(v) {
            Some(ms) => Some(ms),
            None => return invalid("page[key] must be an ISO time", "/page[key]"),
        },
        None => None,
    };
    let mut books = shared.media_books.books();
    books.stats.history_pages += 1;
    let size = books.history_page_size.max(1);
    let matches = |event: &HistoryEventConfig| {
        types.is_empty()
            || types.iter().any(|t| {
                event.event_type == *t
                    || event
                        .event_type
                        .strip_prefix(t.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
    };
    let page: Vec<&HistoryEventConfig> = books
        .events
        .get(&device)
        .into_iter()
        .flatten()
        .filter(|e| key.is_none_or(|key| e.start < key))
        .filter(|e| matches(e))
        .take(size)
        .collect();
    let data: Vec<Value> = page
        .iter()
        .map(|e| {
            json!({
                "type": "history-events",
                "id": format!("{device}.event.{}", e.start),
                "attributes": {
                    "event_type": e.event_type,
                    "start": iso_ms(e.start),
                    "end": iso_ms(e.end),
                },
            })
        })
        .collect();
    let next_key = if page.is_empty() {
        key.map(iso_ms)
    } else if page.len() == size {
        page.last().map(|e| iso_ms(e.start))
    } else {
        None
    };
    let mut document = json!({
        "data": data,
        "meta": { "time": documents::rfc3339(SystemTime::now()) },
    });
    if let Some(next_key) = next_key {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if !types.is_empty() {
            query.append_pair("event_types", &types.join(","));
        }
        query.append_pair("page[key]", &next_key);
        document["links"] = json!({
            "next": format!("/v1/history/devices/{device}/events?{}", query.finish()),
        });
    }
    Json(document).into_response()
}

/// `GET /v1/accounts/me/subscriptions[?page[cursor]=…]`.
async fn subscriptions(
    State(shared): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(account) = crate::http::account_of(&shared, &headers) else {
        return unauthorized();
    };
    let pairs: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let devices: Vec<String> = shared
        .state()
        .account(&account)
        .map(|a| a.devices.iter().map(|d| d.id.clone()).collect())
        .unwrap_or_default();
    let mut books = shared.media_books.books();
    books.stats.subscription_pages += 1;
    if books.failing_subscriptions.contains(&account) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity",
            "UNPROCESSABLE_SUBSCRIPTION",
            "Unable to process subscription request",
            None,
        );
    }
    let list = books
        .subscriptions
        .get(&account)
        .cloned()
        .unwrap_or_else(|| {
            vec![SubscriptionConfig {
                sub_type: "paid".into(),
                status: active(),
                plan_id: Some("protect-basic".into()),
                devices,
            }]
        });
    let from = match pairs.get("page[cursor]") {
        Some(cursor) => match cursor
            .strip_prefix("c")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => {
                return invalid(
                    "page[cursor] is not a cursor this API gave",
                    "/page[cursor]",
                )
            }
        },
        None => 0,
    };
    const PAGE: usize = 25;
    let created = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    let data: Vec<Value> = list
        .iter()
        .enumerate()
        .skip(from)
        .take(PAGE)
        .map(|(i, s)| {
            let mut attributes = json!({
                "sub_type": s.sub_type,
                "status": s.status,
                "expires_at": documents::rfc3339(SystemTime::now() + Duration::from_secs(if s.sub_type == "trial" { 30 } else { 365 } * 24 * 3600)),
                "created_at": documents::rfc3339(created),
            });
            if let Some(plan) = &s.plan_id {
                attributes["plan_id"] = json!(plan);
            }
            json!({
                "type": "subscriptions",
                "id": format!("{account}.subscription.{i}"),
                "attributes": attributes,
                "relationships": { "devices": { "data":
                    s.devices.iter().map(|d| json!({"type": "devices", "id": d})).collect::<Vec<_>>() } },
            })
        })
        .collect();
    let mut document = json!({
        "data": data,
        "meta": { "time": documents::rfc3339(SystemTime::now()) },
    });
    if from + PAGE < list.len() {
        document["links"] = json!({
            "next": format!("/v1/accounts/me/subscriptions?page%5Bcursor%5D=c{}", from + PAGE),
        });
    }
    Json(document).into_response()
}

async fn media_stats(State(shared): State<AppState>) -> Json<MediaStats> {
    Json(shared.media_books.books().stats())
}

#[derive(Deserialize)]
struct RecordingBody {
    start: u64,
    end: u64,
}

async fn sim_recording(
    State(shared): State<AppState>,
    Path(device): Path<String>,
    Json(body): Json<RecordingBody>,
) -> StatusCode {
    shared
        .media_books
        .books()
        .add_recording(&device, body.start, body.end);
    StatusCode::NO_CONTENT
}

async fn sim_history(
    State(shared): State<AppState>,
    Path(device): Path<String>,
    Json(events): Json<Vec<HistoryEventConfig>>,
) -> StatusCode {
    shared.media_books.books().add_events(&device, events);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct CountBody {
    count: u32,
}

async fn sim_not_ready(
    State(shared): State<AppState>,
    Path(device): Path<String>,
    Json(body): Json<CountBody>,
) -> StatusCode {
    shared
        .media_books
        .books()
        .set_not_ready(&device, body.count.min(100));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct SubscriptionsBody {
    #[serde(default)]
    subscriptions: Vec<SubscriptionConfig>,
    /// Answer 422 "Unable to process subscription request".
    #[serde(default)]
    fail: bool,
}

async fn sim_subscriptions(
    State(shared): State<AppState>,
    Path(account): Path<String>,
    Json(body): Json<SubscriptionsBody>,
) -> StatusCode {
    let mut books = shared.media_books.books();
    books.set_subscriptions(
        &account,
        body.subscriptions.into_iter().take(1000).collect(),
    );
    books.fail_subscriptions(&account, body.fail);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct SizeBody {
    size: usize,
}

async fn sim_page_size(State(shared): State<AppState>, Json(body): Json<SizeBody>) -> StatusCode {
    shared.media_books.books().history_page_size = body.size.clamp(1, 1000);
    StatusCode::NO_CONTENT
}

async fn sim_cut_next_clip(State(shared): State<AppState>) -> StatusCode {
    shared.media_books.books().cut_next_clip();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct OnBody {
    on: bool,
}

async fn sim_clip_redirect(State(shared): State<AppState>, Json(body): Json<OnBody>) -> StatusCode {
    shared.media_books.books().set_clip_redirect(body.on);
    StatusCode::NO_CONTENT
}

/// The media controls for in-process tests (the same as the `/sim/*` routes).
impl crate::Simulator {
    /// Marks `[start_ms, end_ms)` of `device` as recorded (a live session ran).
    pub fn add_recording(&self, device: &str, start_ms: u64, end_ms: u64) {
        self.shared
            .media_books
            .books()
            .add_recording(device, start_ms, end_ms);
    }

    /// Adds events to `device`'s history.
    pub fn add_history(&self, device: &str, events: Vec<HistoryEventConfig>) {
        self.shared.media_books.books().add_events(device, events);
    }

    /// History items per page (1-1000; 10 by default).
    pub fn set_history_page_size(&self, size: usize) {
        self.shared.media_books.books().history_page_size = size.clamp(1, 1000);
    }

    /// The account's subscriptions (instead of one paid subscription of every device).
    pub fn set_subscriptions(&self, account: &str, subscriptions: Vec<SubscriptionConfig>) {
        self.shared
            .media_books
            .books()
            .set_subscriptions(account, subscriptions);
    }

    /// The account's subscriptions answer 422 while `fail` is set.
    pub fn fail_subscriptions(&self, account: &str, fail: bool) {
        self.shared
            .media_books
            .books()
            .fail_subscriptions(account, fail);
    }

    /// The next `count` snapshot requests of `device` get 425 RECORDING_NOT_READY.
    pub fn set_not_ready(&self, device: &str, count: u32) {
        self.shared.media_books.books().set_not_ready(device, count);
    }

    /// The next clip's body is cut halfway (the connection fails mid-body).
    pub fn cut_next_clip(&self) {
        self.shared.media_books.books().cut_next_clip();
    }

    /// Clip requests answer 301 to a URL on the simulator that serves the clip.
    pub fn set_clip_redirect(&self, on: bool) {
        self.shared.media_books.books().set_clip_redirect(on);
    }

    pub fn media_stats(&self) -> MediaStats {
        self.shared.media_books.books().stats()
    }

    /// The MP4 a clip of `length_ms` is served as (what a download must store).
    pub fn clip(&self, length_ms: u64) -> Result<Bytes, ClipError> {
        self.shared.media_books.clips.of(length_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_time_is_the_overlap() {
        let mut books = Books::default();
        books.add_recording("d", 1000, 3000);
        books.add_recording("d", 5000, 6000);
        assert_eq!(books.recorded("d", 0, 10_000, &[]), (3000, Some(1000)));
        assert_eq!(books.recorded("d", 2000, 4000, &[]), (1000, Some(2000)));
        assert_eq!(books.recorded("d", 3000, 5000, &[]), (0, None));
        assert_eq!(books.latest_recorded("d", 0, 5500, &[]), Some(5500));
        assert_eq!(books.latest_recorded("d", 7000, 8000, &[]), None);
        assert_eq!(books.recorded("other", 0, 10, &[]), (0, None));
        // Live sessions are recorded time too; overlaps count once.
        assert_eq!(
            books.recorded("d", 0, 10_000, &[(2000, 4000)]),
            (4000, Some(1000))
        );
        assert_eq!(
            books.latest_recorded("d", 7000, 8000, &[(7000, 7500)]),
            Some(7500)
        );
    }

    #[test]
    fn iso_keys_round_trip_with_millis() {
        let ms = 1_780_000_000_123;
        assert_eq!(parse_iso(&iso_ms(ms)), Some(ms));
    }
}
