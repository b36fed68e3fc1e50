//! streamgate's client of the Ring Partner API (see `RING_API.md` for what Ring
//! documents): OAuth tokens kept in a SQLite store, account linking, JSON:API
//! documents, a client-side rate limit with retries, and device discovery. The live
//! video itself goes through `streamgate-whep` with [`RingClient::whep_sessions_url`]
//! and [`RingClient::access_token`].
//!
//! ```text
//! RingClient (client.rs) ─ exchange_code, match_link, complete_link, devices, access_token
//!   ├─ http.rs      request loop: limiter.rs (sliding 1 s window), bearer, retries, body cap
//!   ├─ oauth.rs     token forms and answers, both error shapes
//!   ├─ tokens.rs    when to refresh (sans-IO, time as input)
//!   ├─ store.rs     SQLite: accounts, tokens, webhook_deliveries, events (0600, WAL, FULL sync)
//!   ├─ webhooks.rs  signature check (two keys, constant time) and typed events (sans-IO)
//!   ├─ linking.rs   nonce = base64url(HMAC-SHA256(key, "<time>:<account>")), time window
//!   ├─ jsonapi.rs   documents: users/me, devices, status, capabilities, location, configurations
//!   ├─ devices.rs   included sub-documents resolved through relationships, power source
//!   ├─ media.rs     snapshot/clip bodies with Ring's limits, media headers, history and
//!                   subscription pages; sent by client/media.rs (snapshot, download_clip,
//!                   history, subscriptions)
//!   └─ history.rs   Ring's history merged with the stored webhook events (sans-IO)
//! ```
//!
//! Choices where Ring documents nothing ([guess], each configurable or tolerant):
//! - Refresh tokens expire `RingConfig::refresh_token_life` (30 days) after they are
//!   issued; Ring returns no expiry for them.
//! - Token endpoint errors: `{error, error_description}` and JSON:API `errors[]` (an
//!   OAuth error name in `code` or `title`, e.g. "Invalid Grant"); `invalid_grant` on
//!   refresh means the user must link again. A missing `expires_in` means 4 h.
//! - The HMAC key is used as the bytes of its text; `account_identifier` in the
//!   app-integration calls is the Ring account id.
//! - The power source: see [`devices`] for the names searched.
//! - The location's label: its `name`, else a string `address`.
//! - A 503 whose error title or detail says "offline" is final
//!   ([`RingError::DeviceOffline`]); other 5xx are retried.
//!
//! Secrets: the client secret, the HMAC key and the tokens are
//! [`streamgate_redact::Secret`]s, shown as `***`; no error, log line or `Debug`
//! output carries them. The store file holds the tokens and is mode 0600.

pub mod config;
pub mod devices;
pub mod error;
pub mod history;
mod http;
pub mod ids;
pub mod jsonapi;
pub mod limiter;
pub mod linking;
pub mod media;
pub mod oauth;
pub mod store;
pub mod tokens;
pub mod webhooks;

mod client;

pub use client::RingClient;
pub use config::RingConfig;
pub use devices::{Device, PowerSource};
pub use error::{ApiError, RingError};
pub use ids::{AccountId, DeviceId};
pub use limiter::LimiterStats;
pub use linking::LinkError;
pub use store::{Account, AccountState, EventFilter, NewEvent, Store, StoreError, StoredEvent};
pub use streamgate_redact::Secret;
pub use tokens::TokenSet;
