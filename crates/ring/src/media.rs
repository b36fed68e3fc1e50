//! Media and history (`RING_API.md` "Media and history"), the sans-IO half: the
//! request bodies of snapshots and clips with Ring's limits checked before anything is
//! sent, the headers of a media answer, and the pages of event history and
//! subscriptions. [`crate::RingClient`] sends them (`client/media.rs`).
//!
//! Shapes Ring leaves open, accepted both ways or chosen ([guess]):
//! - `image_options.resolution` is sent as `{"width": W, "height": H}`.
//! - History `start`/`end` and subscription times are kept as Ring sent them (ISO
//!   text or milliseconds).
//! - A history item may be a JSON:API resource (`{type:"history-events", id,
//!   attributes{event_type, start, end, …}}`) or a flat object
//!   `{event_type, start, end, …}`; both are read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::RingError;
use crate::jsonapi::{Link, Links};

/// Snapshots: no older than 180 days [doc-copy].
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(180 * 24 * 3600);
/// Snapshots: a `latest_in_range` window of at most 24 h [doc-copy].
pub const SNAPSHOT_MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const MAX_IMAGE_WIDTH: u32 = 1920;
pub const MAX_IMAGE_HEIGHT: u32 = 1080;
/// Clips: at most 15 minutes [doc].
pub const CLIP_MAX_DURATION: Duration = Duration::from_millis(900_000);
/// Clips: at most 25 frames per second [doc].
pub const CLIP_MAX_FRAME_RATE: u32 = 25;
/// Subscriptions come 25 a page [doc-copy].
pub const SUBSCRIPTIONS_PAGE: usize = 25;

/// Which image a snapshot request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSelect {
    /// The latest image between `start` and `end` (now when `None`).
    LatestInRange {
        start: SystemTime,
        end: Option<SystemTime>,
    },
    AtTimestamp(SystemTime),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

/// A snapshot request: what image, in which format and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub select: ImageSelect,
    pub format: ImageFormat,
    /// `None`: the device's own size.
    pub resolution: Option<Resolution>,
}

/// A request refused before it was sent (Ring would answer INVALID_PAYLOAD).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaRequestError {
    #[error("the time is more than 180 days ago")]
    TooOld,
    #[error("the time is in the future")]
    InFuture,
    #[error("the window ends before it starts")]
    EndBeforeStart,
    #[error("the window is longer than 24 h")]
    WindowTooLong,
    #[error("width must be 1-1920 and height 1-1080, not {0}x{1}")]
    BadResolution(u32, u32),
    #[error("a clip lasts 1 ms to 15 min")]
    BadDuration,
    #[error("the frame rate must be 1-25")]
    BadFrameRate,
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How far in the future a time may be (clock skew between us and Ring).
const SKEW: Duration = Duration::from_secs(60);

fn check_time(time: SystemTime, now: SystemTime) -> Result<(), MediaRequestError> {
    if time > now + SKEW {
        return Err(MediaRequestError::InFuture);
    }
    match now.duration_since(time) {
        Ok(age) if age > SNAPSHOT_MAX_AGE => Err(MediaRequestError::TooOld),
        _ => Ok(()),
    }
}

impl SnapshotRequest {
    /// The JSON body, or why Ring would refuse it.
    pub fn body(&self, now: SystemTime) -> Result<Value, MediaRequestError> {
        let mut body = Map::new();
        match self.select {
            ImageSelect::LatestInRange { start, end } => {
                check_time(start, now)?;
                let until = end.unwrap_or(now);
                if let Some(end) = end {
                    check_time(end, now)?;
                }
                let window = until
                    .duration_since(start)
                    .map_err(|_| MediaRequestError::EndBeforeStart)?;
                if window > SNAPSHOT_MAX_WINDOW {
                    return Err(MediaRequestError::WindowTooLong);
                }
                body.insert("type".into(), "latest_in_range".into());
                body.insert("start_timestamp".into(), epoch_ms(start).into());
                if let Some(end) = end {
                    body.insert("end_timestamp".into(), epoch_ms(end).into());
                }
            }
            ImageSelect::AtTimestamp(at) => {
                check_time(at, now)?;
                body.insert("type".into(), "at_timestamp".into());
                body.insert("timestamp".into(), epoch_ms(at).into());
            }
        }
        let mut options = Map::new();
        options.insert(
            "format".into(),
            serde_json::to_value(self.format).unwrap_or_default(),
        );
        if let Some(r) = self.resolution {
            if !(1..=MAX_IMAGE_WIDTH).contains(&r.width)
                || !(1..=MAX_IMAGE_HEIGHT).contains(&r.height)
            {
                return Err(MediaRequestError::BadResolution(r.width, r.height));
            }
            options.insert("resolution".into(), serde_json::json!(r));
        }
        body.insert("image_options".into(), Value::Object(options));
        Ok(Value::Object(body))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    #[default]
    Avc,
    Hevc,
}

/// A clip request (`POST /v1/devices/{id}/media/video/download`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipRequest {
    pub start: SystemTime,
    pub duration: Duration,
    pub codec: VideoCodec,
    /// 1-25; `None` lets Ring choose.
    pub frame_rate: Option<u32>,
    pub resolution: Option<Resolution>,
    pub audio: bool,
}

impl ClipRequest {
    pub fn new(start: SystemTime, duration: Duration) -> ClipRequest {
        ClipRequest {
            start,
            duration,
            codec: VideoCodec::Avc,
            frame_rate: None,
            resolution: None,
            audio: true,
        }
    }

    pub fn body(&self, now: SystemTime) -> Result<Value, MediaRequestError> {
        check_time(self.start, now)?;
        if self.duration.is_zero() || self.duration > CLIP_MAX_DURATION {
            return Err(MediaRequestError::BadDuration);
        }
        let mut video = Map::new();
        video.insert(
            "codec".into(),
            serde_json::to_value(self.codec).unwrap_or_default(),
        );
        if let Some(rate) = self.frame_rate {
            if !(1..=CLIP_MAX_FRAME_RATE).contains(&rate) {
                return Err(MediaRequestError::BadFrameRate);
            }
            video.insert("frame_rate".into(), rate.into());
        }
        if let Some(r) = self.resolution {
            if !(1..=MAX_IMAGE_WIDTH).contains(&r.width)
                || !(1..=MAX_IMAGE_HEIGHT).contains(&r.height)
            {
                return Err(MediaRequestError::BadResolution(r.width, r.height));
            }
            video.insert("resolution".into(), serde_json::json!(r));
        }
        Ok(serde_json::json!({
            "timestamp": epoch_ms(self.start),
            "duration": self.duration.as_millis() as u64,
            "video_options": video,
            "audio_options": {"audio_enabled": self.audio},
        }))
    }
}

/// Where a recording or image came from (`X-Media-Origin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaOrigin {
    Recording,
    Snapshot,
}

/// The media headers of a download: `X-Media-Timestamp` (ms, or the text Ring sent),
/// `X-Media-Length` (ms), `X-Media-Origin`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaHeaders {
    pub timestamp: Option<String>,
    pub length_ms: Option<u64>,
    pub origin: Option<MediaOrigin>,
}

impl MediaHeaders {
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> MediaHeaders {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        MediaHeaders {
            timestamp: text("x-media-timestamp"),
            length_ms: text("x-media-length").and_then(|v| v.parse().ok()),
            origin: text("x-media-origin").and_then(|v| match v.to_ascii_lowercase().as_str() {
                "recording" => Some(MediaOrigin::Recording),
                "snapshot" => Some(MediaOrigin::Snapshot),
                _ => None,
            }),
        }
    }
}

/// A downloaded image.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub bytes: Vec<u8>,
    /// The download's `Content-Type`, else the format asked for.
    pub content_type: String,
    pub media: MediaHeaders,
}

/// A clip written to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipDownload {
    /// 206: Ring had only part of the range.
    pub partial: bool,
    pub bytes: u64,
    pub media: MediaHeaders,
    /// Range requests made to finish an interrupted download.
    pub resumed: u32,
}

/// One event of a device's history (newest first).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEvent {
    pub id: Option<String>,
    /// `motion`, `motion.human`, `ding`, `on_demand`, …
    pub event_type: String,
    pub start: Option<Value>,
    pub end: Option<Value>,
    /// Every other attribute, as Ring sent it.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A history event type's kind and subtype: `motion.human` is (`motion`,
/// `human`), `ding` is (`ding`, none).
pub fn split_event_type(event_type: &str) -> (&str, Option<&str>) {
    match event_type.split_once('.') {
        Some((kind, subtype)) => (kind, Some(subtype)),
        None => (event_type, None),
    }
}

/// One page: its items and the next page's link, if any.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    data: Vec<Value>,
    #[serde(default)]
    links: Option<Links>,
    #[serde(default)]
    meta: Option<Value>,
}

fn next_link(links: &Option<Links>, meta: &Option<Value>) -> Option<String> {
    let from_links = links
        .as_ref()
        .and_then(|l| l.get("next"))
        .and_then(Link::href)
        .map(str::to_owned);
    // A cursor in `meta` ([guess]: `meta.next_cursor`/`meta.cursor`) for cursor paging.
    from_links
        .or_else(|| {
            let meta = meta.as_ref()?;
            let cursor = meta
                .get("next_cursor")
                .or_else(|| meta.get("cursor"))
                .and_then(Value::as_str)?;
            Some(format!("?page%5Bcursor%5D={}", urlencode(cursor)))
        })
        .filter(|s| !s.trim().is_empty())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn malformed(what: &str, e: impl std::fmt::Display) -> RingError {
    RingError::Malformed(format!("{what}: {e}"))
}

/// A page of `GET /v1/history/devices/{id}/events`.
pub fn parse_history_page(body: &[u8]) -> Result<Page<HistoryEvent>, RingError> {
    let page: RawPage = serde_json::from_slice(body).map_err(|e| malformed("history", e))?;
    let mut items = Vec::with_capacity(page.data.len());
    for item in page.data {
        let Value::Object(mut object) = item else {
            return Err(malformed("history", "an item is not an object"));
        };
        let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
        let mut attributes = match object.remove("attributes") {
            Some(Value::Object(attributes)) => attributes,
            _ => {
                object.remove("id");
                object.remove("type");
                object
            }
        };
        let Some(Value::String(event_type)) = attributes.remove("event_type") else {
            return Err(malformed("history", "an item has no event_type"));
        };
        items.push(HistoryEvent {
            id,
            event_type,
            start: attributes.remove("start"),
            end: attributes.remove("end"),
            other: attributes,
        });
    }
    Ok(Page {
        next: next_link(&page.links, &page.meta),
        items,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionKind {
    Paid,
    Trial,
    /// A `sub_type` this client does not know.
    Other,
}

/// One subscription of the account.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Subscription {
    pub id: String,
    pub sub_type: SubscriptionKind,
    /// `active` | `inactive` (or whatever Ring sent).
    pub status: Option<String>,
    /// Paid only.
    pub plan_id: Option<String>,
    pub expires_at: Option<Value>,
    pub created_at: Option<Value>,
    /// The devices it covers.
    pub devices: Vec<String>,
}

impl Subscription {
    pub fn is_active(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("active"))
    }
}

#[derive(Deserialize)]
struct RawSubscription {
    id: String,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    relationships: Map<String, Value>,
}

/// A page of `GET /v1/accounts/me/subscriptions`.
pub fn parse_subscriptions_page(body: &[u8]) -> Result<Page<Subscription>, RingError> {
    let page: RawPage = serde_json::from_slice(body).map_err(|e| malformed("subscriptions", e))?;
    let mut items = Vec::with_capacity(page.data.len());
    for item in page.data {
        let raw: RawSubscription =
            serde_json::from_value(item).map_err(|e| malformed("subscriptions", e))?;
        let text = |name: &str| {
            raw.attributes
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let sub_type = match text("sub_type")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("paid") => SubscriptionKind::Paid,
            Some("trial") => SubscriptionKind::Trial,
            _ => SubscriptionKind::Other,
        };
        let devices = match raw.relationships.get("devices").and_then(|r| r.get("data")) {
            Some(Value::Array(ids)) => ids
                .iter()
                .filter_map(|id| id.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            Some(Value::Object(one)) => one
                .get("id")
                .and_then(Value::as_str)
                .map(|id| vec![id.to_owned()])
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        items.push(Subscription {
            status: text("status"),
            plan_id: text("plan_id"),
            expires_at: raw.attributes.get("expires_at").cloned(),
            created_at: raw.attributes.get("created_at").cloned(),
            id: raw.id,
            sub_type,
            devices,
        });
    }
    Ok(Page {
        next: next_link(&page.links, &page.meta),
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn snapshot_bodies_follow_the_limits() {
        let now = at(NOW);
        let request = SnapshotRequest {
            select: ImageSelect::LatestInRange {
                start: at(NOW - 60_000),
                end: None,
            },
            format: ImageFormat::Jpeg,
            resolution: Some(Resolution {
                width: 640,
                height: 360,
            }),
        };
        assert_eq!(
            request.body(now).unwrap(),
            serde_json::json!({"type": "latest_in_range", "start_timestamp": NOW - 60_000,
                "image_options": {"format": "jpeg", "resolution": {"width": 640, "height": 360}}})
        );
        let at_time = SnapshotRequest {
            select: ImageSelect::AtTimestamp(at(NOW - 5)),
            format: ImageFormat::Png,
            resolution: None,
        };
        assert_eq!(
            at_time.body(now).unwrap(),
            serde_json::json!({"type": "at_timestamp", "timestamp": NOW - 5, "image_options": {"format": "png"}})
        );
        let with = |select, resolution| SnapshotRequest {
            select,
            format: ImageFormat::Jpeg,
            resolution,
        };
        let day = 24 * 3600 * 1000;
        let range = |start, end| ImageSelect::LatestInRange { start, end };
        for (request, error) in [
            (
                with(range(at(NOW - 181 * day), None), None),
                MediaRequestError::TooOld,
            ),
            (
                with(range(at(NOW - day - 1), None), None),
                MediaRequestError::WindowTooLong,
            ),
            (
                with(range(at(NOW - 10), Some(at(NOW - 20))), None),
                MediaRequestError::EndBeforeStart,
            ),
            (
                with(ImageSelect::AtTimestamp(at(NOW + 3_600_000)), None),
                MediaRequestError::InFuture,
            ),
            (
                with(
                    ImageSelect::AtTimestamp(at(NOW)),
                    Some(Resolution {
                        width: 1921,
                        height: 1,
                    }),
                ),
                MediaRequestError::BadResolution(1921, 1),
            ),
            (
                with(
                    ImageSelect::AtTimestamp(at(NOW)),
                    Some(Resolution {
                        width: 1,
                        height: 0,
                    }),
                ),
                MediaRequestError::BadResolution(1, 0),
            ),
        ] {
            assert_eq!(request.body(now), Err(error));
        }
        let exactly_a_day = with(
            range(at(NOW - day), Some(at(NOW))),
            Some(Resolution {
                width: 1920,
                height: 1080,
            }),
        );
        assert!(exactly_a_day.body(now).is_ok());
    }

    #[test]
    fn clip_bodies_follow_the_limits() {
        let now = at(NOW);
        let mut clip = ClipRequest::new(at(NOW - 10_000), Duration::from_secs(4));
        clip.frame_rate = Some(25);
        assert_eq!(
            clip.body(now).unwrap(),
            serde_json::json!({"timestamp": NOW - 10_000, "duration": 4000,
                "video_options": {"codec": "avc", "frame_rate": 25},
                "audio_options": {"audio_enabled": true}})
        );
        clip.frame_rate = Some(26);
        assert_eq!(clip.body(now), Err(MediaRequestError::BadFrameRate));
        clip.frame_rate = None;
        clip.duration = Duration::from_millis(900_001);
        assert_eq!(clip.body(now), Err(MediaRequestError::BadDuration));
        clip.duration = Duration::from_millis(900_000);
        assert!(clip.body(now).is_ok());
    }

    #[test]
    fn media_headers_are_read() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-media-timestamp", "1700000000000".parse().unwrap());
        headers.insert("x-media-length", "2000".parse().unwrap());
        headers.insert("x-media-origin", "Recording".parse().unwrap());
        assert_eq!(
            MediaHeaders::from_headers(&headers),
            MediaHeaders {
                timestamp: Some("1700000000000".into()),
                length_ms: Some(2000),
                origin: Some(MediaOrigin::Recording),
            }
        );
    }

    #[test]
    fn history_pages_take_both_item_shapes_and_every_link_shape() {
        let page = parse_history_page(
            br#"{"data":[{"type":"history-events","id":"e1","attributes":{"event_type":"motion.human","start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:10Z","cv":1}},
                {"event_type":"ding","start":1,"end":2}],
                "links":{"next":"/v1/history/devices/d/events?page%5Bkey%5D=2026-01-01T00%3A00%3A00Z&event_types=motion"}}"#,
        )
        .unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(
            split_event_type(&page.items[0].event_type),
            ("motion", Some("human"))
        );
        assert_eq!(split_event_type(&page.items[1].event_type), ("ding", None));
        assert_eq!(page.items[0].id.as_deref(), Some("e1"));
        assert_eq!(page.items[0].other["cv"], 1);
        assert_eq!(page.items[1].event_type, "ding");
        assert!(page.next.unwrap().contains("page%5Bkey%5D"));
        // No links at all [seen]; a null next; a link object.
        assert!(parse_history_page(br#"{"data":[]}"#)
            .unwrap()
            .next
            .is_none());
        assert!(parse_history_page(br#"{"data":[],"links":{"next":null}}"#)
            .unwrap()
            .next
            .is_none());
        let object = parse_history_page(br#"{"data":[],"links":{"next":{"href":"/n"}}}"#).unwrap();
        assert_eq!(object.next.as_deref(), Some("/n"));
        assert!(parse_history_page(br#"{"data":[{"start":1}]}"#).is_err());
    }

    #[test]
    fn subscription_pages() {
        let page = parse_subscriptions_page(
            br#"{"data":[{"type":"subscriptions","id":"s1","attributes":{"sub_type":"paid","status":"active","plan_id":"basic","expires_at":"2027-01-01T00:00:00Z","created_at":"2026-01-01T00:00:00Z"},
                 "relationships":{"devices":{"data":[{"type":"devices","id":"d1"},{"type":"devices","id":"d2"}]}}},
                {"type":"subscriptions","id":"s2","attributes":{"sub_type":"trial","status":"inactive"}}],
                "meta":{"time":"x"},"links":{"next":"/v1/accounts/me/subscriptions?page%5Bcursor%5D=abc"}}"#,
        )
        .unwrap();
        assert_eq!(page.items[0].sub_type, SubscriptionKind::Paid);
        assert!(page.items[0].is_active());
        assert_eq!(page.items[0].devices, ["d1", "d2"]);
        assert_eq!(page.items[1].sub_type, SubscriptionKind::Trial);
        assert!(!page.items[1].is_active());
        assert!(page.items[1].devices.is_empty());
        assert!(page.next.is_some());
        let cursor =
            parse_subscriptions_page(br#"{"data":[],"meta":{"next_cursor":"a b"}}"#).unwrap();
        assert_eq!(cursor.next.as_deref(), Some("?page%5Bcursor%5D=a+b"));
    }
}
