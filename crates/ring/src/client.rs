//! [`RingClient`]: the Partner API calls the gateway makes, over the token store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use reqwest::Method;
use streamgate_redact::Secret;
use tokio::sync::watch;
use url::Url;

use crate::config::RingConfig;
use crate::devices::{self, Device, DEVICES_INCLUDE};
use crate::error::RingError;
use crate::http::{Answer, Body, Http, Request};
use crate::ids::{AccountId, DeviceId};
use crate::jsonapi::{Document, Resource, UserAttributes};
use crate::limiter::LimiterStats;
use crate::linking::{self, IntegrationRequest, IntegrationStatus, IntegrationUpdate, LinkError};
use crate::oauth;
use crate::store::{Account, AccountState, Store};
use crate::tokens::{TokenAction, TokenSet};

/// Pages of the devices list followed at most (the list is not documented as paged;
/// a `links.next` is followed in case it is).
const MAX_DEVICE_PAGES: usize = 100;

/// The Ring Partner API client of one partner app (client id); cheap to clone.
#[derive(Clone)]
pub struct RingClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: RingConfig,
    store: Store,
    http: Http,
    /// One refresh in flight per account: the rest wait here and take its result.
    refresh_locks: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<()>>>>,
    accounts_changed: watch::Sender<u64>,
}

impl std::fmt::Debug for RingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingClient")
            .field("api_url", &self.inner.config.api_url.as_str())
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

impl RingClient {
    pub fn new(config: RingConfig, store: Store) -> Result<RingClient, RingError> {
        for (name, url) in [
            ("api_url", &config.api_url),
            ("token_url", &config.token_url),
        ] {
            if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
                return Err(RingError::Config(format!("{name} is not an http(s) URL")));
            }
        }
        let http = Http::new(&config)?;
        Ok(RingClient {
            inner: Arc::new(Inner {
                config,
                store,
                http,
                refresh_locks: Mutex::new(HashMap::new()),
                accounts_changed: watch::Sender::new(0),
            }),
        })
    }

    pub fn config(&self) -> &RingConfig {
        &self.inner.config
    }

    /// The token store (for the webhook de-duplication table).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Token Exchange URL: exchanges `code` (within its minute), reads `users/me` and
    /// stores the account as unclaimed. A refused code (replayed, expired) or a
    /// malformed answer stores nothing.
    pub async fn exchange_code(&self, code: &str) -> Result<Account, RingError> {
        let config = &self.inner.config;
        let form = oauth::authorization_code_form(config, code);
        let answer = self
            .send(Request {
                what: "authorization code exchange",
                method: Method::POST,
                url: config.token_url.clone(),
                bearer: None,
                body: Body::Form(&form),
            })
            .await?;
        if !answer.is_success() {
            return Err(oauth::parse_token_error(answer.status, &answer.body));
        }
        let response = oauth::parse_token_response(&answer.body)?;
        let now = SystemTime::now();
        let tokens = TokenSet::issued(response, now, config.refresh_token_life);

        let body = self
            .send(Request {
                what: "GET /v1/users/me",
                method: Method::GET,
                url: self.api(&["users", "me"]),
                bearer: Some(&tokens.access_token),
                body: Body::Empty,
            })
            .await?
            .into_api_body()?;
        let user: Document<Resource<UserAttributes>> = serde_json::from_slice(&body)
            .map_err(|e| RingError::Malformed(format!("users/me: {e}")))?;
        let user = user.data;
        if user.id.trim().is_empty() {
            return Err(RingError::Malformed("users/me: empty account id".into()));
        }
        let id = AccountId::new(user.id);
        let attributes = user.attributes;
        let full_name = [
            attributes.first_name.as_deref(),
            attributes.last_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        let name = Some(full_name)
            .filter(|name| !name.is_empty())
            .or_else(|| attributes.email.clone())
            .unwrap_or_else(|| id.to_string());
        let account =
            self.inner
                .store
                .save_unclaimed(&id, &name, attributes.email.as_deref(), &tokens)?;
        tracing::info!(account = %id, "Ring account exchanged, waiting to be linked");
        self.changed();
        Ok(account)
    }

    /// Account Link URL: which unclaimed account `nonce` was made for at `time`
    /// (refused when too old or in the future; compared in constant time).
    pub fn match_link(
        &self,
        time: &str,
        nonce: &str,
        now: SystemTime,
    ) -> Result<AccountId, LinkError> {
        let config = &self.inner.config;
        linking::check_time(time, now, config.link_max_age, config.link_max_skew)?;
        let unclaimed: Vec<AccountId> = self
            .inner
            .store
            .accounts()?
            .into_iter()
            .filter(|account| account.state == AccountState::Unclaimed)
            .map(|account| account.id)
            .collect();
        linking::match_nonce(&config.hmac_key, time, nonce, &unclaimed).cloned()
    }

    /// POSTs the nonce, then PATCHes the integration to `completed` (required [doc]);
    /// the account becomes Linked.
    pub async fn complete_link(
        &self,
        account: &AccountId,
        nonce: &str,
    ) -> Result<Account, RingError> {
        let url = self.api(&["accounts", "me", "app-integrations"]);
        let identifier = Some(account.as_str());
        let post = IntegrationRequest {
            account_identifier: identifier,
            nonce,
        };
        let answer = self
            .call(
                account,
                "POST /v1/accounts/me/app-integrations",
                Method::POST,
                &url,
                Some(json_body(&post)?),
            )
            .await?;
        tracing::debug!(account = %account, status = ?integration_status(&answer), "app integration posted");
        let patch = IntegrationUpdate {
            account_identifier: identifier,
            status: "completed",
        };
        let answer = self
            .call(
                account,
                "PATCH /v1/accounts/me/app-integrations",
                Method::PATCH,
                &url,
                Some(json_body(&patch)?),
            )
            .await?;
        tracing::debug!(account = %account, status = ?integration_status(&answer), "app integration completed");
        if !self.inner.store.mark_linked(account, SystemTime::now())? {
            return Err(RingError::UnknownAccount(account.clone()));
        }
        tracing::info!(account = %account, "Ring account linked");
        self.changed();
        self.inner
            .store
            .account(account)?
            .ok_or_else(|| RingError::UnknownAccount(account.clone()))
    }

    /// The account's devices, with status, capabilities, location and configurations.
    pub async fn devices(&self, account: &AccountId) -> Result<Vec<Device>, RingError> {
        let mut url = self.api(&["devices"]);
        url.query_pairs_mut()
            .append_pair("include", DEVICES_INCLUDE);
        let mut found = Vec::new();
        for _ in 0..MAX_DEVICE_PAGES {
            let body = self
                .call(account, "GET /v1/devices", Method::GET, &url, None)
                .await?;
            let page = devices::parse_devices(account, &body)?;
            let empty = page.devices.is_empty();
            found.extend(page.devices);
            match page.next {
                Some(next) if !empty => {
                    url =
                        self.inner.config.api_url.join(&next).map_err(|_| {
                            RingError::Malformed("devices list: bad links.next".into())
                        })?;
                }
                _ => return Ok(found),
            }
        }
        tracing::warn!(account = %account, pages = MAX_DEVICE_PAGES, "Ring devices list cut short");
        Ok(found)
    }

    /// One device (`GET /v1/devices/{id}`, with the same includes as the list).
    pub async fn device(
        &self,
        account: &AccountId,
        device: &DeviceId,
    ) -> Result<Device, RingError> {
        let mut url = self.api(&["devices", device.as_str()]);
        url.query_pairs_mut()
            .append_pair("include", DEVICES_INCLUDE);
        let body = self
            .call(account, "GET /v1/devices/{id}", Method::GET, &url, None)
            .await?;
        devices::parse_device(account, &body)
    }

    /// One API call with the account's token; a 401 (token revoked or expired early)
    /// refreshes the token once and tries again. The body of a 2xx answer, else the
    /// API error.
    async fn call(
        &self,
        account: &AccountId,
        what: &'static str,
        method: Method,
        url: &Url,
        json: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, RingError> {
        let mut token = self.access_token(account).await?;
        let mut refreshed = false;
        loop {
            let answer = self
                .send(Request {
                    what,
                    method: method.clone(),
                    url: url.clone(),
                    bearer: Some(&token),
                    body: json.clone().map_or(Body::Empty, Body::Json),
                })
                .await?;
            if answer.status == 401 && !refreshed {
                refreshed = true;
                tracing::debug!(account = %account, call = what, "401: refreshing the access token");
                token = self.token(account, Some(&token)).await?;
                continue;
            }
            return answer.into_api_body();
        }
    }

    /// A valid access token: refreshed when within `refresh_before` of expiry, one
    /// refresh in flight per account (the others wait and take its token); the rotated
    /// pair is committed to the store before the new token is returned to anyone. A
    /// refused (`invalid_grant`) or expired refresh token marks the account
    /// NeedsRelinking. When a refresh fails otherwise, a still-valid token is used.
    pub async fn access_token(&self, account: &AccountId) -> Result<Secret, RingError> {
        self.token(account, None).await
    }

    /// The token for a request the caller sends itself (the WHEP client's POST and
    /// DELETE of a live view): it waits for the shared rate limiter first, so those
    /// requests count toward the client id's rate and wait out a `Retry-After`
    /// another call was given.
    pub async fn token_for_request(&self, account: &AccountId) -> Result<Secret, RingError> {
        self.inner.http.admit().await;
        self.access_token(account).await
    }

    /// [`Self::access_token`], refreshing in any case if the stored token is `refused`
    /// (Ring answered 401 to it).
    async fn token(
        &self,
        account: &AccountId,
        refused: Option<&Secret>,
    ) -> Result<Secret, RingError> {
        let refresh_before = self.inner.config.refresh_before;
        let seen = self.usable_tokens(account)?;
        let was_refused = refused == Some(&seen.access_token);
        if !was_refused && seen.action(SystemTime::now(), refresh_before) == TokenAction::Use {
            return Ok(seen.access_token);
        }
        let lock = self.refresh_lock(account);
        let _refreshing = lock.lock().await;
        let current = self.usable_tokens(account)?;
        let now = SystemTime::now();
        if current.access_token != seen.access_token && current.access_valid_at(now) {
            // Refreshed by the caller we waited for.
            return Ok(current.access_token);
        }
        let action = match current.action(now, refresh_before) {
            TokenAction::Use if was_refused => TokenAction::Refresh,
            action => action,
        };
        match action {
            TokenAction::Use => Ok(current.access_token),
            _ if now >= current.refresh_expires_at => {
                Err(self.needs_relinking(account, "the refresh token has expired"))
            }
            _ => self.refresh(account, current, !was_refused).await,
        }
    }

    /// Refreshes `current`; when that fails for another reason than `invalid_grant`
    /// and `fall_back` allows, the still-valid current token is used.
    async fn refresh(
        &self,
        account: &AccountId,
        current: TokenSet,
        fall_back: bool,
    ) -> Result<Secret, RingError> {
        let config = &self.inner.config;
        let form = oauth::refresh_token_form(config, &current.refresh_token);
        let result = match self
            .send(Request {
                what: "token refresh",
                method: Method::POST,
                url: config.token_url.clone(),
                bearer: None,
                body: Body::Form(&form),
            })
            .await
        {
            Ok(answer) if answer.is_success() => oauth::parse_token_response(&answer.body),
            Ok(answer) => Err(oauth::parse_token_error(answer.status, &answer.body)),
            Err(e) => Err(e),
        };
        match result {
            Ok(response) => {
                let tokens =
                    TokenSet::issued(response, SystemTime::now(), config.refresh_token_life);
                if !self.inner.store.replace_tokens(account, &tokens)? {
                    return Err(RingError::UnknownAccount(account.clone()));
                }
                tracing::debug!(account = %account, "Ring access token refreshed");
                Ok(tokens.access_token)
            }
            Err(error) if error.is_invalid_grant() => {
                Err(self.needs_relinking(account, "Ring refused the refresh token (invalid_grant)"))
            }
            Err(error) if fall_back && current.access_valid_at(SystemTime::now()) => {
                tracing::warn!(account = %account, %error, "Ring token refresh failed; the current token is still valid");
                Ok(current.access_token)
            }
            Err(error) => Err(error),
        }
    }

    /// The account's tokens, or why there are none to use.
    fn usable_tokens(&self, account: &AccountId) -> Result<TokenSet, RingError> {
        let store = &self.inner.store;
        let found = store
            .account(account)?
            .ok_or_else(|| RingError::UnknownAccount(account.clone()))?;
        if found.state == AccountState::NeedsRelinking {
            return Err(RingError::NeedsRelinking {
                account: account.clone(),
                reason: found
                    .last_error
                    .unwrap_or_else(|| "the account must be linked again".into()),
            });
        }
        store
            .tokens(account)?
            .ok_or_else(|| RingError::NeedsRelinking {
                account: account.clone(),
                reason: "no tokens are stored".into(),
            })
    }

    fn refresh_lock(&self, account: &AccountId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .refresh_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(account.clone()).or_default().clone()
    }

    /// Marks the account NeedsRelinking for `reason` and returns the error saying so.
    fn needs_relinking(&self, account: &AccountId, reason: &str) -> RingError {
        match self
            .inner
            .store
            .mark_needs_relinking(account, reason, SystemTime::now())
        {
            Ok(_) => {
                tracing::warn!(account = %account, reason, "Ring account must be linked again");
                self.changed();
            }
            Err(error) => return RingError::Store(error),
        }
        RingError::NeedsRelinking {
            account: account.clone(),
            reason: reason.to_owned(),
        }
    }

    /// Every stored account (empty, and logged, if the store cannot be read).
    pub fn accounts(&self) -> Vec<Account> {
        self.inner.store.accounts().unwrap_or_else(|error| {
            tracing::error!(%error, "cannot read the Ring accounts");
            Vec::new()
        })
    }

    /// Forgets the account and deletes its tokens; false if it was not stored.
    pub fn unlink(&self, account: &AccountId) -> Result<bool, RingError> {
        let removed = self.inner.store.delete_account(account)?;
        if removed {
            tracing::info!(account = %account, "Ring account unlinked");
            self.changed();
        }
        Ok(removed)
    }

    /// Ring revoked the account's tokens (an `app_integration_removed` webhook): it
    /// needs linking again. False if the account is not stored.
    pub fn revoked(&self, account: &AccountId, reason: &str) -> Result<bool, RingError> {
        let marked = self
            .inner
            .store
            .mark_needs_relinking(account, reason, SystemTime::now())?;
        if marked {
            self.changed();
        }
        Ok(marked)
    }

    /// `…/v1/devices/{id}/media/streaming/whep/sessions`, the id escaped as a segment.
    pub fn whep_sessions_url(&self, device: &DeviceId) -> Url {
        self.api(&[
            "devices",
            device.as_str(),
            "media",
            "streaming",
            "whep",
            "sessions",
        ])
    }

    /// Bumped on every account change (exchanged, linked, needs relinking, unlinked).
    pub fn watch_accounts(&self) -> watch::Receiver<u64> {
        self.inner.accounts_changed.subscribe()
    }

    pub fn limiter_stats(&self) -> LimiterStats {
        self.inner.http.stats()
    }

    fn changed(&self) {
        self.inner
            .accounts_changed
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// `api_url` + `/v1/` + segments (escaped).
    fn api(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.config.api_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        url
    }

    async fn send(&self, request: Request<'_>) -> Result<Answer, RingError> {
        self.inner.http.send(&request).await
    }
}

fn json_body<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, RingError> {
    serde_json::to_vec(body).map_err(|e| RingError::Malformed(format!("request body: {e}")))
}

/// The `status` of an app-integrations answer; its shape is only a copy of the docs,
/// so an empty or odd body is no error.
fn integration_status(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<IntegrationStatus>(body)
        .ok()
        .and_then(|answer| answer.status)
}

mod media;

#[cfg(test)]
mod tests;
