//! streamgate-ringsim: a local simulator of Ring's Partner API, so streamgate's
//! Ring support can be tried and tested without a Ring account. It follows
//! `RING_API.md` (Ring's documented surface), not the convenience of our client.
//!
//! # What is simulated
//!
//! - **OAuth** at `POST /oauth/token` (form-encoded): `authorization_code`
//!   (`client_id`, `client_secret`, `code`; codes live [`SimConfig::code_ttl`],
//!   60 s, and are spent by any exchange attempt) and `refresh_token` (rotating:
//!   each refresh returns a new refresh token; the old one stops working once
//!   the new pair is used, see the grace below).
//!   Responses `{access_token, refresh_token, scope, expires_in, token_type}`;
//!   errors `{"error":"invalid_grant"|"invalid_request"|"unsupported_grant_type",
//!   "error_description"}` (400) and `invalid_client` (401).
//! - **Users**: `GET /v1/users/me` (403 on a bad token, as Ring documents; the
//!   other API routes answer 401).
//! - **Devices**: `GET /v1/devices[?include=status,capabilities,location,configurations]`
//!   (JSON:API `data[]`, `relationships` with `data` identifiers and `links.related`,
//!   `included[]` for what was asked, each related document once), `GET
//!   /v1/devices/{id}` and `/{id}/status|capabilities|location|configurations`.
//!   Every document carries `meta.time`; responses are labelled `application/json`.
//! - **Linking**: `POST /v1/accounts/me/app-integrations` `{account_identifier?,
//!   nonce}` → `{"status":"awaiting"}` (the nonce must be one of the account's
//!   recent links, recomputed as `base64url_nopad(HMAC-SHA256(hmac_key,
//!   "<time_ms>:<account_id>"))`; 400 Invalid Nonce / Missing Required Fields),
//!   then `PATCH` `{account_identifier?, status?}` → `{account_identifier, status,
//!   updated_at}` (404 before the POST). Plain JSON bodies, JSON:API errors.
//! - **Live view (WHEP)**: `POST /v1/devices/{id}/media/streaming/whep/sessions`
//!   with an `application/sdp` offer (non-trickle) → `201`, the answer (every
//!   candidate inline) and `Location: /v1/devices/{id}/media/streaming/whep/sessions/{session}`;
//!   `DELETE` that path ends it. An offer without H.264 High (`profile-level-id
//!   64xxxx`) gets 500, as Ring was seen to answer. The answer is H.264
//!   `profile-level-id=64001f;packetization-mode=1`, plus Opus `sendonly` when the
//!   offer has a `recvonly` `opus/48000/2` and [`SimConfig::audio`] is on. Media
//!   is the bundled capture `fixtures/ffmpeg_h264_opus.pcap` (720p H.264 + Opus)
//!   replayed in a loop into one Hub per device; each session forwards the Hub's
//!   packets from its cached keyframe on. The simulator closes the peer connection
//!   at the device's cap (30 s battery, 60 s wired, configurable). ICE binds to
//!   [`SimConfig::media_ip`] (loopback by default, loopback candidates included).
//! - **Media and history** (`media.rs`, which documents the fixtures and the
//!   simulator's notion of "recorded"): snapshots `POST
//!   /v1/devices/{id}/media/image/download` → `303` to a pre-signed
//!   `/sim/media/images/…?sig=…` that refuses any Authorization header (400);
//!   clips `POST /v1/devices/{id}/media/video/download` → 200 / 206 partial
//!   (`X-Media-Timestamp`, `X-Media-Length`) / 416, an optional 301, `Range`, each
//!   an MP4 of the length announced (`clip.rs`);
//!   `GET /v1/history/devices/{id}/events` pages (`page[key]`); `GET
//!   /v1/accounts/me/subscriptions` (`page[cursor]`, 25 a page, 422 fault).
//! - **Faults**: device offline (WHEP POST → 503 "Device is currently offline",
//!   status `online: false`, open sessions end), 429 `Rate Limit Exceeded` with
//!   `Retry-After` above [`SimConfig::rate_limit`] requests in any sliding second
//!   per client id (every allowed API response carries `X-RateLimit-Limit` and
//!   `X-RateLimit-Remaining`), expiring every refresh token at once, a **token
//!   delay** (the token endpoint decides and records the grant, then holds the
//!   answer [`SimConfig::token_delay`], so a client killed meanwhile loses it),
//!   and a **429 storm** (every `/v1` request refused for a while, whatever the
//!   rate).
//! - **Judging clients**: `/sim/stats` counts, per client id, `/v1` requests that
//!   came before the `Retry-After` of the last 429 that client got had passed
//!   (storm and rate limit alike), and `/v1` requests made with an access token
//!   past its life. Requests are attributed to the client id of their access
//!   token (expired ones included); the token endpoint's to the form's
//!   `client_id`; anything else to `unauthenticated`.
//!
//! - **Webhooks** (see the `webhooks` module): version 1.1 payloads signed
//!   `X-Signature: sha256=<hex>` with the HMAC key, POSTed to the Webhook URL;
//!   a 5xx, a failed connection or no answer within 5 s is retried after 1 s,
//!   5 s, 30 s, 2 min, 10 min and 1 h (7 attempts; the waits scaled by
//!   [`SimConfig::webhook_retry_scale`]); a 4xx is final.
//!
//! Every body is capped ([`MAX_BODY`]) and bad input gets a JSON error, never a
//! panic. The client secret, HMAC key, codes and tokens are never logged.
//!
//! # [guess] choices (shapes Ring leaves open)
//!
//! - Related document types and ids: `device-status` (`<device>.status`, from
//!   Ring's status page), `device-capabilities` (`<device>.capabilities`),
//!   `locations` (`ava1.ring.location.<slug>`, attribute `name`),
//!   `device-configurations` (`ava1.ring.device.configurations.<suffix>`, from
//!   Ring's configurations page).
//! - **Power source** is shown in the capabilities document:
//!   `included[type=device-capabilities].attributes.power_source` =
//!   `"battery"` | `"wired"` (also at `GET /v1/devices/{id}/capabilities`).
//! - The Token Exchange URL receives `POST` with `Content-Type: application/json`
//!   and body `{"code": "<authorization code>"}`; any 2xx counts as delivered.
//! - The Account Link URL gets `time` (ms since the epoch) and `nonce` appended to
//!   its query.
//! - Token errors use the OAuth shape; `invalid_grant` for unknown, spent,
//!   expired or rotated codes and refresh tokens.
//! - PATCH app-integrations accepts only `status: "completed"`.
//! - **Refresh-token grace.** Ring documents rotation but not what happens to a
//!   client that dies before storing the answer. As OAuth servers commonly do
//!   (RFC 6819 5.2.2.3; the OAuth 2.0 security BCP lets rotation keep a grace),
//!   a rotated refresh token keeps working until the new pair is first used:
//!   the new access token on any request, or the new refresh token at the token
//!   endpoint. From then on it gets `invalid_grant`. Refreshing with it during
//!   the grace revokes the unused pair it was rotated to and returns a **fresh
//!   pair** that supersedes it (full `expires_in`; counted in
//!   `refresh_token_grace_uses`). The grace ends at the latest with the old
//!   token's own life, and "expire all refresh tokens" ends it too. A client
//!   that stores each new pair before using it never notices.
//! - `Retry-After` is judged on `/v1` only. The token endpoint is Ring's other
//!   host (`oauth.ring.com`): storms leave it alone, and its 429s (same rate
//!   limit) neither set nor check a client's wait.
//!
//! # Simulator controls (`/sim/*`, no auth, not part of Ring's API)
//!
//! | route | effect |
//! | --- | --- |
//! | `GET /sim/stats` | [`Stats`] as JSON: requests per path, the peak requests in any one second per client id, 429s sent, `Retry-After` violations per client id, requests with an expired access token, token requests (total, in flight), code exchanges, token refreshes (and grace uses), WHEP sessions (opened, active, closed at cap, deleted, peer gone, dropped), app-integration calls |
//! | `POST /sim/links` `{"account"?}` | a new link: `{account_id, code, time, nonce}` (the `link` subcommand uses it) |
//! | `GET /sim/link?token_exchange=URL&account_link=URL[&account=ID]` | the link flow for a browser: delivers a code, then `303` to the Account Link URL |
//! | `POST /sim/devices/{id}/offline`, `…/online` | the offline fault |
//! | `PUT /sim/rate-limit` `{"per_second": N}` | the rate limit (0: none) |
//! | `POST /sim/expire-refresh-tokens` | every refresh token expires (next refresh: `invalid_grant`) |
//! | `PUT /sim/token-delay` `{"millis": N}` | the token endpoint holds every answer N ms after deciding it (0: none; at most a day) |
//! | `POST /sim/storm` `{"seconds": S, "retry_after": R}` | for S seconds from now every `/v1` request gets 429 `Rate Limit Exceeded` with `Retry-After: R` (S = 0 ends a storm; both at most 86400) |
//! | `POST /sim/devices[?account=ID]` `{id, name, power?, session_cap?, offline?, location?}` | adds a device |
//! | `DELETE /sim/devices/{id}` | removes a device |
//! | `POST /sim/devices/{id}/recordings` `{start, end}` (ms) | marks a time range recorded (clips and snapshots come from recorded time) |
//! | `POST /sim/devices/{id}/history` `[{event_type, start, end}]` | adds history events |
//! | `PUT /sim/history-page-size` `{"size": N}` | history items per page (10) |
//! | `PUT /sim/devices/{id}/not-ready` `{"count": N}` | the next N snapshot requests get 425 RECORDING_NOT_READY |
//! | `PUT /sim/accounts/{id}/subscriptions` `{subscriptions: [{sub_type, status?, plan_id?, devices}], fail?}` | the account's subscriptions (default: one paid, active, every device); `fail`: 422 |
//! | `POST /sim/cut-next-clip` | the next clip body is cut halfway |
//! | `PUT /sim/clip-redirect` `{"on": bool}` | clip requests answer 301 |
//! | `GET /sim/media/stats` | media counters ([`MediaStats`]) |
//! | `POST /sim/webhooks` `{"type", "device"?, "account"?, "sub_type"?, "subtype_in": "data"\|"attributes"?}` | signs and sends a webhook to the Webhook URL (retried on Ring's schedule): `{request_id}` |
//! | `POST /sim/webhooks/{request_id}/redeliver` | sends a past delivery again, byte for byte |
//! | `PUT /sim/webhook-url` `{"url": "http://…" \| null}` | the partner's Webhook URL (also `webhook_url` in the config) |
//! | `GET /sim/webhooks` | [`WebhookStats`]: deliveries, attempts, answers by status, delivered, failed, in flight |
//!
//! The same controls are methods of [`Simulator`] for in-process tests.

mod auth;
mod clip;
mod config;
mod documents;
mod http;
mod limit;
pub mod link;
mod media;
mod nonce;
mod picture;
mod sessions;
mod state;
mod webhooks;
mod whep;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use url::Url;

pub use clip::{ClipError, MAX_CLIP_MS};
pub use config::{AccountConfig, DeviceConfig, PowerSource, SimConfig, SAMPLE_ACCOUNT};
pub use http::MAX_BODY;
pub use link::LinkError;
pub use media::{HistoryEventConfig, MediaStats, SubscriptionConfig};
pub use nonce::nonce;
pub use sessions::SessionStats;
pub use state::{AddDeviceError, LinkOffer, Stats};
pub use webhooks::{
    signature as webhook_signature, SubtypeIn, WebhookError, WebhookRequest, WebhookStats,
    RETRY_SCHEDULE,
};

/// A running simulator: its HTTP server and simulated cameras.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<state::Shared>,
    server: tokio::task::JoinHandle<io::Result<()>>,
}

impl Simulator {
    /// Binds `listen` (port 0 picks one) and serves the simulated API.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> io::Result<Simulator> {
        let media = whep::Media::new()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(io::Error::other)?;
        let shared = Arc::new(state::Shared::new(config, media, http));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let mut stopping = shared.shutdown.subscribe();
        let app = http::router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopping.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, "Ring simulator listening");
        Ok(Simulator {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base (`http://addr`); API paths are under `/v1`.
    pub fn api_url(&self) -> Url {
        base_url(self.addr)
    }

    /// The token endpoint (`http://addr/oauth/token`).
    pub fn token_url(&self) -> Url {
        let mut url = base_url(self.addr);
        url.set_path("/oauth/token");
        url
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Makes a link as Ring does when a user adds the partner app: a code for the
    /// Token Exchange URL and the Account Link URL's `time` and `nonce`. None when
    /// the account is unknown (None: the first account).
    pub fn issue_link(&self, account: Option<&str>) -> Option<LinkOffer> {
        self.shared.issue_link(account)
    }

    /// Takes a device offline or back online; false if there is no such device.
    pub fn set_online(&self, device: &str, online: bool) -> bool {
        self.shared.set_online(device, online)
    }

    /// Requests per second allowed per client id (0: no limit).
    pub fn set_rate_limit(&self, per_second: u32) {
        self.shared.state().limiter.limit = per_second;
    }

    /// Every refresh token expires now.
    pub fn expire_refresh_tokens(&self) {
        self.shared
            .state()
            .auth
            .expire_refresh_tokens(std::time::Instant::now());
    }

    /// How long the token endpoint holds each answer after deciding it (capped
    /// at a day).
    pub fn set_token_delay(&self, delay: std::time::Duration) {
        self.shared.state().token_delay = delay;
    }

    /// Every `/v1` request gets 429 with `Retry-After: retry_after` (seconds) for
    /// `length` from now; a zero `length` ends a storm. Both are capped at a day.
    pub fn storm(&self, length: std::time::Duration, retry_after: u64) {
        let cap = http::MAX_STORM_SECONDS;
        self.shared.state().limiter.storm(
            std::time::Instant::now(),
            length.min(std::time::Duration::from_secs(cap)),
            retry_after.min(cap),
        );
    }

    /// Signs and sends a webhook (retried in the background); its request id.
    pub fn send_webhook(&self, request: &WebhookRequest) -> Result<String, WebhookError> {
        webhooks::send(&self.shared, request)
    }

    /// Sends a past delivery again, byte for byte (a Ring retry or replay).
    pub fn redeliver_webhook(&self, request_id: &str) -> Result<(), WebhookError> {
        webhooks::redeliver(&self.shared, request_id)
    }

    /// The partner's Webhook URL (None: webhooks are refused).
    pub fn set_webhook_url(&self, url: Option<Url>) {
        self.shared.webhooks.set_url(url);
    }

    pub fn webhook_stats(&self) -> WebhookStats {
        self.shared.webhooks.stats()
    }

    pub fn add_device(
        &self,
        account: Option<&str>,
        device: DeviceConfig,
    ) -> Result<(), AddDeviceError> {
        self.shared.add_device(account, device)
    }

    pub fn remove_device(&self, device: &str) -> bool {
        self.shared.remove_device(device)
    }

    /// Stops serving: open WHEP sessions end, in-flight requests finish, the
    /// cameras stop.
    pub async fn stop(self) {
        self.shared.stop_all_sessions();
        self.shared.shutdown.send_replace(true);
        match self.server.await {
            Ok(Err(error)) => tracing::warn!(%error, "Ring simulator server failed"),
            Err(error) => tracing::warn!(%error, "Ring simulator server task failed"),
            Ok(Ok(())) => {}
        }
        self.shared.media.stop();
    }
}

fn base_url(addr: SocketAddr) -> Url {
    // A socket address always makes a valid http URL.
    Url::parse(&format!("http://{addr}")).unwrap_or_else(|_| unreachable!())
}
