//! Webhooks as Ring sends them: a version 1.1 payload, signed with the HMAC key
//! (`X-Signature: sha256=<hex>` over the raw body), POSTed to the partner's
//! Webhook URL and retried on Ring's schedule.
//!
//! - Payload: `meta{version:"1.1", time (RFC 3339, ms), request_id, account_id}`,
//!   `data{id, type, attributes{source, source_type, timestamp (ms)},
//!   relationships.devices.links.self:"/v1/devices/<id>"}`; `app_integration_*`
//!   have `source_type:"users"` (the account as source) and no relationships.
//!   A motion subtype goes in `data.subType` (default) or
//!   `data.attributes.sub_type` (`subtype_in: "attributes"`).
//! - Delivery: the first attempt at once; after a 5xx, a failed connection or
//!   no answer within [`SimConfig::webhook_timeout`] (Ring: 5 s), retries after
//!   1 s, 5 s, 30 s, 2 min, 10 min and 1 h (7 attempts in all), each wait
//!   multiplied by [`SimConfig::webhook_retry_scale`]. A 2xx is delivered, a 4xx
//!   is final. (Ring then keeps a 72 h dead-letter queue: not simulated.)
//! - Every delivery is kept (the newest [`MAX_KEPT`]) so a test can redeliver
//!   it (`POST /sim/webhooks/{request_id}/redeliver`: the same body and
//!   signature again, as a Ring retry or replay would be).
//!
//! [`SimConfig::webhook_timeout`]: crate::SimConfig::webhook_timeout
//! [`SimConfig::webhook_retry_scale`]: crate::SimConfig::webhook_retry_scale

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use url::Url;

use crate::state::Shared;

/// Ring's waits before each retry [doc-copy].
pub const RETRY_SCHEDULE: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];
/// Deliveries kept for redelivery.
pub const MAX_KEPT: usize = 20_000;

/// What `POST /sim/webhooks` (and [`crate::Simulator::send_webhook`]) sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `motion_detected`, `button_press`, … (any text: unknown types too).
    #[serde(rename = "type")]
    pub kind: String,
    /// The device (required for device events; its account is the sender).
    #[serde(default)]
    pub device: Option<String>,
    /// The account of `app_integration_*` events (default: the first).
    #[serde(default)]
    pub account: Option<String>,
    /// The motion subtype (`motion`, `human`, `vehicle`, `other_motion`).
    #[serde(default)]
    pub sub_type: Option<String>,
    /// Where the subtype goes.
    #[serde(default)]
    pub subtype_in: SubtypeIn,
}

/// `data.subType` or `data.attributes.sub_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtypeIn {
    #[default]
    Data,
    Attributes,
}

/// Why a webhook was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    #[error("no webhook URL is set")]
    NoUrl,
    #[error("no such device")]
    UnknownDevice,
    #[error("no such account")]
    UnknownAccount,
    #[error("no such delivery")]
    UnknownDelivery,
    #[error("a device event needs a device")]
    NoDevice,
}

/// Delivery counts (`GET /sim/webhooks`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookStats {
    /// Webhooks sent (redeliveries included).
    pub deliveries: u64,
    /// POSTs made (retries included).
    pub attempts: u64,
    /// Answers by status code, plus `timeout` and `error` (no answer).
    pub answers: BTreeMap<String, u64>,
    /// Deliveries that got a 2xx.
    pub delivered: u64,
    /// Deliveries that got a 4xx or ran out of attempts.
    pub failed: u64,
    /// Deliveries still being attempted.
    pub in_flight: u64,
}

/// A sent webhook, kept for redelivery.
#[derive(Debug, Clone)]
struct Sent {
    body: Bytes,
}

#[derive(Default)]
struct Inner {
    /// The simulator's runtime (deliveries run there, whoever asks for them).
    runtime: Option<tokio::runtime::Handle>,
    url: Option<Url>,
    stats: WebhookStats,
    sent: HashMap<String, Sent>,
    order: VecDeque<String>,
}

/// The simulator's webhook sender.
#[derive(Clone, Default)]
pub struct Webhooks {
    inner: Arc<Mutex<Inner>>,
}

impl Webhooks {
    pub fn new(url: Option<Url>) -> Webhooks {
        let webhooks = Webhooks::default();
        let mut inner = webhooks.lock();
        inner.url = url;
        inner.runtime = tokio::runtime::Handle::try_current().ok();
        drop(inner);
        webhooks
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_url(&self, url: Option<Url>) {
        self.lock().url = url;
    }

    pub fn stats(&self) -> WebhookStats {
        self.lock().stats.clone()
    }
}

/// `sha256=<hex>` of HMAC-SHA256(key, body).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The payload of `request` at `now`, as Ring shapes it; its request id.
pub(crate) fn payload(
    shared: &Shared,
    request: &WebhookRequest,
    now: SystemTime,
) -> Result<(String, serde_json::Value), WebhookError> {
    let users = request.kind.starts_with("app_integration");
    let accounts = shared.state().accounts.clone();
    let (account, source) = if users {
        let account = match &request.account {
            Some(id) => accounts.iter().find(|a| &a.id == id),
            None => accounts.first(),
        }
        .ok_or(WebhookError::UnknownAccount)?;
        (account.id.clone(), account.id.clone())
    } else {
        let device = request.device.as_ref().ok_or(WebhookError::NoDevice)?;
        // A removed device is in no account any more: then the named or first one.
        let account = accounts
            .iter()
            .find(|a| a.devices.iter().any(|d| &d.id == device))
            .or_else(|| match &request.account {
                Some(id) => accounts.iter().find(|a| &a.id == id),
                None => accounts.first(),
            })
            .ok_or(WebhookError::UnknownDevice)?;
        (account.id.clone(), device.clone())
    };
    let millis = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let request_id = random_id();
    let mut attributes = json!({
        "source": source,
        "source_type": if users { "users" } else { "devices" },
        "timestamp": millis,
    });
    let mut data = json!({
        "id": random_id(),
        "type": request.kind,
        "attributes": {},
    });
    if let Some(sub_type) = &request.sub_type {
        match request.subtype_in {
            SubtypeIn::Data => data["subType"] = json!(sub_type),
            SubtypeIn::Attributes => attributes["sub_type"] = json!(sub_type),
        }
    }
    data["attributes"] = attributes;
    if !users {
        data["relationships"] =
            json!({"devices": {"links": {"self": format!("/v1/devices/{source}")}}});
    }
    let body = json!({
        "meta": {
            "version": "1.1",
            "time": humantime::format_rfc3339_millis(now).to_string(),
            "request_id": request_id,
            "account_id": account,
        },
        "data": data,
    });
    Ok((request_id, body))
}

/// Sends `request` now (retrying in the background); its request id.
pub(crate) fn send(shared: &Arc<Shared>, request: &WebhookRequest) -> Result<String, WebhookError> {
    let url = shared
        .webhooks
        .lock()
        .url
        .clone()
        .ok_or(WebhookError::NoUrl)?;
    let (request_id, body) = payload(shared, request, SystemTime::now())?;
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    {
        let mut inner = shared.webhooks.lock();
        inner
            .sent
            .insert(request_id.clone(), Sent { body: body.clone() });
        inner.order.push_back(request_id.clone());
        while inner.order.len() > MAX_KEPT {
            if let Some(old) = inner.order.pop_front() {
                inner.sent.remove(&old);
            }
        }
    }
    deliver(shared, url, body);
    Ok(request_id)
}

/// Sends a past delivery again, byte for byte.
pub(crate) fn redeliver(shared: &Arc<Shared>, request_id: &str) -> Result<(), WebhookError> {
    let (url, body) = {
        let inner = shared.webhooks.lock();
        let url = inner.url.clone().ok_or(WebhookError::NoUrl)?;
        let sent = inner
            .sent
            .get(request_id)
            .ok_or(WebhookError::UnknownDelivery)?;
        (url, sent.body.clone())
    };
    deliver(shared, url, body);
    Ok(())
}

/// POSTs `body` on Ring's retry schedule, in the background.
fn deliver(shared: &Arc<Shared>, url: Url, body: Bytes) {
    let config = &shared.config;
    let signature = signature(config.hmac_key.expose().as_bytes(), &body);
    let timeout = config.webhook_timeout;
    let scale = config.webhook_retry_scale.max(0.0);
    let http = shared.http.clone();
    let webhooks = shared.webhooks.clone();
    let runtime = {
        let mut inner = webhooks.lock();
        inner.stats.deliveries += 1;
        inner.stats.in_flight += 1;
        inner
            .runtime
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current)
    };
    runtime.spawn(async move {
        let waits = std::iter::once(Duration::ZERO).chain(RETRY_SCHEDULE);
        let mut delivered = false;
        for wait in waits {
            tokio::time::sleep(wait.mul_f64(scale)).await;
            let answer = http
                .post(url.clone())
                .header("content-type", "application/json")
                .header("x-signature", &signature)
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            let (label, retry) = match &answer {
                Ok(response) => {
                    let status = response.status();
                    delivered = status.is_success();
                    (status.as_u16().to_string(), status.is_server_error())
                }
                Err(error) if error.is_timeout() => ("timeout".to_owned(), true),
                Err(_) => ("error".to_owned(), true),
            };
            {
                let mut inner = webhooks.lock();
                inner.stats.attempts += 1;
                *inner.stats.answers.entry(label).or_default() += 1;
            }
            if !retry {
                break;
            }
        }
        let mut inner = webhooks.lock();
        inner.stats.in_flight -= 1;
        if delivered {
            inner.stats.delivered += 1;
        } else {
            inner.stats.failed += 1;
        }
    });
}

type AppState = Arc<Shared>;

fn refused(error: WebhookError) -> (StatusCode, Json<serde_json::Value>) {
    let status = match error {
        WebhookError::NoUrl | WebhookError::NoDevice => StatusCode::BAD_REQUEST,
        _ => StatusCode::NOT_FOUND,
    };
    (status, Json(json!({"error": error.to_string()})))
}

/// `POST /sim/webhooks` [`WebhookRequest`] → `{"request_id"}`.
pub(crate) async fn sim_send(
    State(shared): State<AppState>,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let request: WebhookRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": error.to_string()})),
            )
        }
    };
    match send(&shared, &request) {
        Ok(request_id) => (StatusCode::OK, Json(json!({"request_id": request_id}))),
        Err(error) => refused(error),
    }
}

/// `POST /sim/webhooks/{request_id}/redeliver`.
pub(crate) async fn sim_redeliver(
    State(shared): State<AppState>,
    Path(request_id): Path<String>,
) -> (StatusCode, Json<serde_json::Value>) {
    match redeliver(&shared, &request_id) {
        Ok(()) => (StatusCode::OK, Json(json!({"request_id": request_id}))),
        Err(error) => refused(error),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlBody {
    url: Option<String>,
}

/// `PUT /sim/webhook-url` `{"url": "http://…" | null}`.
pub(crate) async fn sim_set_url(
    State(shared): State<AppState>,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    match serde_json::from_slice::<UrlBody>(&body) {
        Ok(UrlBody { url }) => match url.map(|url| Url::parse(&url)).transpose() {
            Ok(url) => {
                shared.webhooks.set_url(url);
                (StatusCode::OK, Json(json!({})))
            }
            Err(error) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": error.to_string()})),
            ),
        },
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error.to_string()})),
        ),
    }
}

/// `GET /sim/webhooks`: [`WebhookStats`].
pub(crate) async fn sim_stats(State(shared): State<AppState>) -> Json<WebhookStats> {
    Json(shared.webhooks.stats())
}
