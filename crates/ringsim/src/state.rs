//! The simulator's shared state: the sans-IO books (tokens, rate limit,
//! sessions) behind one lock, the accounts and devices, the link nonces issued,
//! app-integration states and the counters `/sim/stats` shows.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::auth::{Auth, Lifetimes};
use crate::config::{AccountConfig, DeviceConfig, SimConfig};
use crate::limit::RateLimiter;
use crate::sessions::{SessionStats, Sessions};
use crate::whep::Media;

/// Links remembered per account for the nonce check (the newest).
const MAX_NONCES: usize = 16;
/// Distinct request paths counted; further paths count under `other`.
const MAX_PATHS: usize = 256;
/// Most devices one account may have (added through `/sim/devices`).
pub(crate) const MAX_DEVICES: usize = 1000;

/// What `GET /sim/stats` reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Requests per path (API and token endpoint, not `/sim/*`).
    pub requests: BTreeMap<String, u64>,
    /// The most requests seen within any one second, per client id (refused ones included).
    pub peak_requests_per_second: BTreeMap<String, usize>,
    /// 429 responses sent (rate limit and storm).
    pub rate_limited: u64,
    /// Per client id, `/v1` requests that arrived before the `Retry-After` of
    /// the last 429 it was given had passed.
    pub retry_after_violations: BTreeMap<String, u64>,
    /// `/v1` requests carrying an access token past its life (a client that
    /// refreshes ahead of expiry never causes one).
    pub requests_with_expired_token: u64,
    /// Requests the token endpoint handled (whatever the answer).
    pub token_requests: u64,
    /// Token requests received and not yet answered (held by the token delay).
    pub token_requests_in_flight: u64,
    /// Successful `authorization_code` grants.
    pub code_exchanges: u64,
    /// Successful `refresh_token` grants (grace refreshes included).
    pub token_refreshes: u64,
    /// Refreshes with a rotated refresh token still in its grace (the client
    /// had lost the answer that rotated it).
    pub refresh_token_grace_uses: u64,
    pub whep_sessions: SessionStats,
    pub app_integration_posts: u64,
    pub app_integration_patches: u64,
}

/// One link Ring made: the code it POSTs to the Token Exchange URL and the
/// `time` and `nonce` it puts on the Account Link URL.
#[derive(Clone, Serialize, Deserialize)]
pub struct LinkOffer {
    pub account_id: String,
    pub code: String,
    pub time: u64,
    pub nonce: String,
}

/// An account's app integration, as the POST/PATCH flow left it.
pub(crate) struct Integration {
    pub status: String,
    pub account_identifier: Option<String>,
    pub updated_at: SystemTime,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: BTreeMap<String, u64>,
    pub rate_limited: u64,
    pub requests_with_expired_token: u64,
    pub token_requests: u64,
    pub token_requests_in_flight: u64,
    pub code_exchanges: u64,
    pub token_refreshes: u64,
    pub refresh_token_grace_uses: u64,
    pub app_integration_posts: u64,
    pub app_integration_patches: u64,
}

impl Counters {
    pub fn count_path(&mut self, path: &str) {
        let key = if self.requests.len() < MAX_PATHS || self.requests.contains_key(path) {
            path
        } else {
            "other"
        };
        *self.requests.entry(key.to_owned()).or_default() += 1;
    }
}

pub(crate) struct State {
    pub auth: Auth,
    pub limiter: RateLimiter,
    pub sessions: Sessions,
    pub counters: Counters,
    /// How long the token endpoint holds each answer after deciding it.
    pub token_delay: Duration,
    pub accounts: Vec<AccountConfig>,
    pub offline: HashSet<String>,
    pub integrations: HashMap<String, Integration>,
    /// When each account's recent links were made (their nonces are recomputed to check).
    pub link_times: HashMap<String, VecDeque<u64>>,
}

impl State {
    pub fn account(&self, id: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// `device` if `account` owns it.
    pub fn device(&self, account: &str, device: &str) -> Option<&DeviceConfig> {
        self.account(account)?
            .devices
            .iter()
            .find(|d| d.id == device)
    }

    /// Whether `nonce` belongs to one of `account`'s recent links.
    pub fn nonce_matches(&self, key: &[u8], account: &str, nonce: &str) -> bool {
        self.link_times.get(account).is_some_and(|times| {
            times
                .iter()
                .any(|t| crate::nonce::verify(key, *t, account, nonce))
        })
    }

    pub fn online(&self, device: &str) -> bool {
        !self.offline.contains(device)
    }
}

/// Why a device could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddDeviceError {
    NoAccount,
    Exists,
    Full,
}

/// Everything the handlers share.
pub(crate) struct Shared {
    pub config: SimConfig,
    state: Mutex<State>,
    pub media: Media,
    /// Stop signals of the open WHEP sessions, by session id.
    pub session_stops: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Posts link codes to partners' Token Exchange URLs (`/sim/link`).
    pub http: reqwest::Client,
    /// Raised by `Simulator::stop`: held token answers go out at once.
    pub shutdown: watch::Sender<bool>,
    /// Recordings, history, subscriptions and pre-signed URLs (`media.rs`).
    pub media_books: crate::media::MediaState,
    /// The webhook sender: its URL, kept deliveries and counts.
    pub webhooks: crate::webhooks::Webhooks,
}

impl Shared {
    pub fn new(config: SimConfig, media: Media, http: reqwest::Client) -> Shared {
        let offline = config
            .accounts
            .iter()
            .flat_map(|a| &a.devices)
            .filter(|d| d.offline)
            .map(|d| d.id.clone())
            .collect();
        let state = State {
            auth: Auth::new(Lifetimes {
                code: config.code_ttl,
                access: config.access_token_ttl,
                refresh: config.refresh_token_ttl,
            }),
            limiter: RateLimiter::new(config.rate_limit),
            sessions: Sessions::default(),
            counters: Counters::default(),
            token_delay: config.token_delay,
            accounts: config.accounts.clone(),
            offline,
            integrations: HashMap::new(),
            link_times: HashMap::new(),
        };
        let webhook_url = config.webhook_url.as_deref().and_then(|url| {
            url::Url::parse(url)
                .inspect_err(|e| tracing::warn!("webhook_url is not a URL: {e}"))
                .ok()
        });
        Shared {
            webhooks: crate::webhooks::Webhooks::new(webhook_url),
            config,
            state: Mutex::new(state),
            media,
            session_stops: Mutex::new(HashMap::new()),
            http,
            shutdown: watch::channel(false).0,
            media_books: Default::default(),
        }
    }

    /// The books. Held briefly, never across an await.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stats(&self) -> Stats {
        let state = self.state();
        let c = &state.counters;
        Stats {
            requests: c.requests.clone(),
            peak_requests_per_second: state.limiter.peaks(),
            rate_limited: c.rate_limited,
            retry_after_violations: state.limiter.retry_after_violations(),
            requests_with_expired_token: c.requests_with_expired_token,
            token_requests: c.token_requests,
            token_requests_in_flight: c.token_requests_in_flight,
            code_exchanges: c.code_exchanges,
            token_refreshes: c.token_refreshes,
            refresh_token_grace_uses: c.refresh_token_grace_uses,
            whep_sessions: state.sessions.stats(),
            app_integration_posts: c.app_integration_posts,
            app_integration_patches: c.app_integration_patches,
        }
    }

    /// Makes a link for `account` (the first account when None): a fresh code and
    /// the nonce for now, remembered for the app-integrations check.
    pub fn issue_link(&self, account: Option<&str>) -> Option<LinkOffer> {
        let now = Instant::now();
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut state = self.state();
        let account_id = match account {
            Some(id) => state.account(id)?.id.clone(),
            None => state.accounts.first()?.id.clone(),
        };
        let code = state
            .auth
            .issue_code(&account_id, &self.config.client_id, now);
        let nonce =
            crate::nonce::nonce(self.config.hmac_key.expose().as_bytes(), time, &account_id);
        let issued = state.link_times.entry(account_id.clone()).or_default();
        if issued.len() >= MAX_NONCES {
            issued.pop_front();
        }
        issued.push_back(time);
        Some(LinkOffer {
            account_id,
            code,
            time,
            nonce,
        })
    }

    /// Adds `device` to `account` (the first account when None).
    pub fn add_device(
        &self,
        account: Option<&str>,
        device: DeviceConfig,
    ) -> Result<(), AddDeviceError> {
        let mut state = self.state();
        if state
            .accounts
            .iter()
            .flat_map(|a| &a.devices)
            .any(|d| d.id == device.id)
        {
            return Err(AddDeviceError::Exists);
        }
        if device.offline {
            state.offline.insert(device.id.clone());
        }
        let owner = match account {
            Some(id) => state.accounts.iter_mut().find(|a| a.id == id),
            None => state.accounts.first_mut(),
        }
        .ok_or(AddDeviceError::NoAccount)?;
        if owner.devices.len() >= MAX_DEVICES {
            return Err(AddDeviceError::Full);
        }
        owner.devices.push(device);
        Ok(())
    }

    /// Removes a device (its sessions end); false if there was none.
    pub fn remove_device(&self, device: &str) -> bool {
        let removed = {
            let mut state = self.state();
            let mut removed = false;
            for account in &mut state.accounts {
                let before = account.devices.len();
                account.devices.retain(|d| d.id != device);
                removed |= account.devices.len() != before;
            }
            state.offline.remove(device);
            removed
        };
        if removed {
            self.drop_sessions(device);
        }
        removed
    }

    /// Takes a device offline (its sessions end) or back online; false if unknown.
    pub fn set_online(&self, device: &str, online: bool) -> bool {
        {
            let mut state = self.state();
            if !state
                .accounts
                .iter()
                .flat_map(|a| &a.devices)
                .any(|d| d.id == device)
            {
                return false;
            }
            if online {
                state.offline.remove(device);
            } else {
                state.offline.insert(device.to_owned());
            }
        }
        if !online {
            self.drop_sessions(device);
        }
        true
    }

    fn drop_sessions(&self, device: &str) {
        let sessions = self.state().sessions.on_device(device);
        for session in sessions {
            self.stop_session(&session);
        }
    }

    /// Raises the stop signal of `session` (its task closes the peer connection).
    pub fn stop_session(&self, session: &str) {
        let stops = self
            .session_stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(stop) = stops.get(session) {
            stop.send_replace(true);
        }
    }

    pub fn stop_all_sessions(&self) {
        let stops = self
            .session_stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for stop in stops.values() {
            stop.send_replace(true);
        }
    }
}
