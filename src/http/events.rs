//! Ring's Webhook URL and the event API:
//!
//! - `POST /ring/webhook`: the signature (`X-Signature: sha256=<hex>`, the
//!   current or the previous HMAC key) is checked over the raw body before
//!   anything is parsed. Answers:
//!   - 401: missing or wrong signature; 413: a body over [`MAX_WEBHOOK_BODY`];
//!     400: not JSON or not a Ring webhook (these can never succeed, so a 4xx).
//!   - 200 `{"status":"stored","id":N}` once the event and its request id are in
//!     the store; 200 `{"status":"duplicate"}` for a request id seen before
//!     (even before a restart: nothing is stored or sent again); 200
//!     `{"status":"stale"}` when `meta.time` is older than `[ring]
//!     webhook_max_age` (acknowledged and dropped: a redelivery would be staler).
//!   - An event type Ring does not document is stored as type `unknown` (its
//!     name as the subtype) and answered 200, so a new type Ring adds is kept.
//!   - 503 when the store could not be written, so that Ring retries.
//!   - `device_added`, `device_removed` and `app_integration_removed` ask for a
//!     discovery pass at once; `app_integration_removed` first marks the account
//!     `needs_relinking` (Ring revoked its tokens; its streams stay and say so,
//!     and linking again brings it back).
//! - `GET /api/events`: Server-Sent Events (each `id:` the store id, `event:`
//!   the type, `data:` the event as JSON), replaying from the store after
//!   `Last-Event-ID` (header, or `?last_event_id=`); with `Accept:
//!   application/json` or `?format=json`, the history as JSON. Both take
//!   `device`, `type`; the history also `limit` and `after`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use streamgate_ring::webhooks::{self, Event};
use streamgate_ring::{EventFilter, NewEvent, StoredEvent};
use tokio::sync::broadcast;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{require_token, AppError, ErrorBody};
use super::state::AppState;
use crate::events::{Delivery, EventBus};

/// Largest webhook body accepted (Ring's payloads are well under 1 KiB).
pub const MAX_WEBHOOK_BODY: usize = 256 * 1024;
/// Most events a history answer holds.
const MAX_HISTORY: usize = 1000;
/// Events a history answer holds when `limit` is not given.
const DEFAULT_HISTORY: usize = 100;
/// Events read from the store per step of an SSE replay.
const REPLAY_PAGE: usize = 500;
/// SSE comment lines while no event comes, so proxies keep the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    OpenApiRouter::new()
        .routes(routes!(webhook))
        .layer(super::limits::body(MAX_WEBHOOK_BODY))
        .merge(api)
}

fn bus(state: &AppState) -> Result<&EventBus, AppError> {
    state
        .events
        .as_ref()
        .ok_or_else(|| AppError::NotFound("events ([ring] is not configured)".into()))
}

#[derive(Serialize, ToSchema)]
struct WebhookAnswer {
    /// `stored`, `duplicate` or `stale`.
    status: &'static str,
    /// The stored event's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
}

fn answer(status: StatusCode, text: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: text.to_owned(),
        }),
    )
        .into_response()
}

/// Ring's Webhook URL.
///
/// A signed event from Ring (see the module docs for every answer).
#[utoipa::path(post, path = "/ring/webhook", tag = "ring", security(()),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "Ring's version 1.1 payload, signed in `X-Signature: sha256=<hex>`"),
    responses((status = OK, description = "Stored, a duplicate, or stale (acknowledged)", body = WebhookAnswer),
              (status = BAD_REQUEST, description = "Not JSON, or not a Ring webhook", body = ErrorBody),
              (status = UNAUTHORIZED, description = "Missing or wrong signature", body = ErrorBody),
              (status = NOT_FOUND, description = "[ring] is not configured", body = ErrorBody),
              (status = PAYLOAD_TOO_LARGE, description = "Body over 256 KiB"),
              (status = SERVICE_UNAVAILABLE, description = "The event could not be stored: Ring retries", body = ErrorBody)))]
async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let bus = match bus(&state) {
        Ok(bus) => bus.clone(),
        Err(error) => return error.into_response(),
    };
    let signature = headers
        .get(webhooks::SIGNATURE_HEADER)
        .map(|value| value.as_bytes());
    if let Err(error) = webhooks::verify(&bus.settings().webhook_keys, signature, &body) {
        tracing::warn!("Ring webhook refused: {error}");
        return answer(StatusCode::UNAUTHORIZED, &error.to_string());
    }
    let webhook = match webhooks::parse(&body) {
        Ok(webhook) => webhook,
        Err(error) => {
            tracing::warn!("Ring webhook refused: {error}");
            return answer(StatusCode::BAD_REQUEST, &error.to_string());
        }
    };
    if webhooks::is_stale(
        webhook.time,
        SystemTime::now(),
        bus.settings().webhook_max_age,
    ) {
        tracing::info!(request_id = %webhook.request_id, "stale Ring webhook dropped");
        return Json(WebhookAnswer {
            status: "stale",
            id: None,
        })
        .into_response();
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return answer(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let event = NewEvent {
        time: webhook.time,
        account: webhook.account.as_ref().map(ToString::to_string),
        device: webhook.event.device().map(ToString::to_string),
        kind: webhook.event.type_name().to_owned(),
        subtype: webhook.event.subtype().map(str::to_owned),
        body: payload,
    };
    let stored = match bus.deliver_webhook(webhook.request_id.clone(), event).await {
        Ok(Delivery::Stored(stored)) => stored,
        Ok(Delivery::Duplicate) => {
            tracing::debug!(request_id = %webhook.request_id, "duplicate Ring webhook");
            return Json(WebhookAnswer {
                status: "duplicate",
                id: None,
            })
            .into_response();
        }
        Err(error) => {
            tracing::error!("storing a Ring webhook failed: {error}");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be stored",
            );
        }
    };
    if let (Event::AppIntegrationRemoved, Some(account)) = (&webhook.event, &webhook.account) {
        let bus = bus.clone();
        let account = account.clone();
        let _ = tokio::task::spawn_blocking(move || bus.integration_removed(&account)).await;
    }
    if webhook.event.changes_devices() {
        if let Some(ring) = &state.ring {
            ring.rediscover();
        }
    }
    Json(WebhookAnswer {
        status: "stored",
        id: Some(stored.id),
    })
    .into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only this device's events (`ava1.ring.device.…`).
    device: Option<String>,
    /// Only events of this type (`motion_detected`, `stream_up`, …).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// History: at most this many (default 100, at most 1000).
    limit: Option<usize>,
    /// History: only events with a greater id (oldest first); without it the newest.
    after: Option<i64>,
    /// `json` for the history instead of the live stream.
    format: Option<String>,
    /// SSE: replay the stored events after this id (as the `Last-Event-ID` header).
    last_event_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = EventHistory)]
struct History {
    events: Vec<EventView>,
}

/// A stored event.
#[derive(Serialize, ToSchema)]
struct EventView {
    id: i64,
    /// When it happened, ms since the epoch.
    time_ms: i64,
    account: Option<String>,
    device: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    /// The webhook's payload, or the gateway event's details.
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

impl From<&StoredEvent> for EventView {
    fn from(event: &StoredEvent) -> Self {
        EventView {
            id: event.id,
            time_ms: event.time,
            account: event.account.clone(),
            device: event.device.clone(),
            kind: event.kind.clone(),
            subtype: event.subtype.clone(),
            body: event.body.clone(),
        }
    }
}

/// Events: live (SSE) or history (JSON).
///
/// Server-Sent Events by default: each event's `id:` is its store id, and a
/// `Last-Event-ID` header (or `?last_event_id=`) replays the stored events after
/// it first. With `Accept: application/json` or `?format=json`: the stored
/// events as JSON, oldest first.
#[utoipa::path(get, path = "/api/events", tag = "events", params(EventsQuery),
    responses((status = OK, description = "The event stream, or the history", content(
                 ("text/event-stream"), (History = "application/json"))),
              (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody),
              (status = NOT_FOUND, description = "[ring] is not configured", body = ErrorBody),
              (status = INTERNAL_SERVER_ERROR, description = "The store could not be read", body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Response, AppError> {
    let bus = bus(&state)?.clone();
    let json = query.format.as_deref() == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| {
                accept.contains("application/json") && !accept.contains("text/event-stream")
            });
    let filter = EventFilter {
        after: query.after,
        device: query.device.filter(|d| !d.is_empty()),
        kind: query.kind.filter(|k| !k.is_empty()),
        limit: query.limit.unwrap_or(DEFAULT_HISTORY).min(MAX_HISTORY),
    };
    if json {
        let events = blocking(move || bus.history(&filter)).await?;
        let events = events.iter().map(EventView::from).collect();
        return Ok(Json(History { events }).into_response());
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(query.last_event_id);
    // Subscribe before reading the store: nothing stored meanwhile is missed.
    let receiver = bus.subscribe();
    let last_sent = match last_event_id {
        Some(id) => id,
        None => {
            let reading = bus.clone();
            blocking(move || reading.last_id()).await?
        }
    };
    let live = Live {
        bus,
        receiver,
        last_sent,
        replaying: last_event_id.is_some(),
        pending: std::collections::VecDeque::new(),
        device: filter.device,
        kind: filter.kind,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok::<_, Infallible>(event), live))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, streamgate_ring::StoreError> + Send + 'static,
) -> Result<T, AppError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(AppError::Internal(error.to_string())),
        Err(error) => Err(AppError::Internal(error.to_string())),
    }
}

/// One SSE reader: the store after `last_sent` while replaying (or after a
/// lag), then the broadcast channel, every id once and in order.
struct Live {
    bus: EventBus,
    receiver: broadcast::Receiver<Arc<StoredEvent>>,
    last_sent: i64,
    replaying: bool,
    pending: std::collections::VecDeque<StoredEvent>,
    device: Option<String>,
    kind: Option<String>,
}

impl Live {
    fn wanted(&self, event: &StoredEvent) -> bool {
        self.device
            .as_ref()
            .is_none_or(|d| event.device.as_ref() == Some(d))
            && self.kind.as_ref().is_none_or(|k| &event.kind == k)
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last_sent = self.last_sent.max(event.id);
                return Some(sse_event(&event));
            }
            if self.replaying {
                let bus = self.bus.clone();
                let filter = EventFilter {
                    after: Some(self.last_sent),
                    device: self.device.clone(),
                    kind: self.kind.clone(),
                    limit: REPLAY_PAGE,
                };
                match tokio::task::spawn_blocking(move || bus.history(&filter)).await {
                    Ok(Ok(events)) => {
                        self.replaying = events.len() == REPLAY_PAGE;
                        self.pending.extend(events);
                        continue;
                    }
                    _ => {
                        tracing::warn!("reading the event store for an SSE reader failed");
                        return None;
                    }
                }
            }
            match self.receiver.recv().await {
                Ok(event) if event.id <= self.last_sent => {}
                Ok(event) => {
                    if self.wanted(&event) {
                        self.last_sent = event.id;
                        return Some(sse_event(&event));
                    }
                }
                // Fell behind the channel: catch up from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => self.replaying = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn sse_event(event: &StoredEvent) -> SseEvent {
    let data = serde_json::to_string(&EventView::from(event)).unwrap_or_default();
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.as_str())
        .data(data)
}
