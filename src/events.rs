//! The event bus: Ring's webhook events and the gateway's own (a stream up or
//! down, an account that needs re-linking), each stored in the Ring store's
//! `events` table first and then sent on a tokio broadcast channel to the
//! live readers (`GET /api/events` as Server-Sent Events).
//!
//! - Storing and broadcasting happen under one lock, so readers see ids in
//!   increasing order; a reader that falls behind (the channel lags) or starts
//!   after a `Last-Event-ID` reads the store from the last id it saw.
//! - A webhook is stored with its request id in one transaction: a redelivery
//!   (Ring retries, or a replay after a restart) stores and sends nothing.
//! - The store is bounded: every [`PRUNE_EVERY`] events older than
//!   `[ring] events_max_age` and beyond the newest `[ring] events_keep` go.
//! - The bus lives with `[ring]` (its store is the Ring store); without
//!   `[ring]` there is no bus and `/api/events` answers 404.
//!
//! The gateway's own event types: `stream_up` (the source's client state became
//! `playing`/`rotating`, or a replay source `running`), `stream_down` (it left
//! those, or the stream was removed), `account_needs_relinking`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use streamgate_ring::{
    AccountId, AccountState, EventFilter, NewEvent, RingClient, Secret, StoreError, StoredEvent,
};
use tokio::sync::broadcast;

use crate::streams::SharedStreams;

/// Events buffered per live reader before it lags (and re-reads the store).
const CHANNEL_CAPACITY: usize = 1024;
/// Pruning runs once per this many stored events (and at start).
pub const PRUNE_EVERY: u64 = 1000;
/// How often the stream reports are looked at for up/down transitions.
const STREAM_POLL: Duration = Duration::from_secs(1);

/// What the bus and the webhook URL are configured with.
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// `hmac_key`, then `previous_hmac_key` while a key rotates.
    pub webhook_keys: Vec<Secret>,
    pub webhook_max_age: Duration,
    pub keep: usize,
    pub max_age: Duration,
}

/// The bus; cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: RingClient,
    settings: EventSettings,
    sender: broadcast::Sender<Arc<StoredEvent>>,
    /// Held while storing and broadcasting, so ids go out in order.
    publish: Mutex<()>,
    /// Webhook events stored, by (type, device): `streamgate_ring_events_total`.
    counts: Mutex<BTreeMap<(String, String), u64>>,
    stored: AtomicU64,
}

/// What became of a webhook delivery.
#[derive(Debug)]
pub enum Delivery {
    Stored(Arc<StoredEvent>),
    Duplicate,
}

impl EventBus {
    pub fn new(client: RingClient, settings: EventSettings) -> EventBus {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let bus = EventBus {
            inner: Arc::new(Inner {
                client,
                settings,
                sender,
                publish: Mutex::new(()),
                counts: Mutex::new(BTreeMap::new()),
                stored: AtomicU64::new(0),
            }),
        };
        bus.prune();
        bus
    }

    pub fn settings(&self) -> &EventSettings {
        &self.inner.settings
    }

    pub fn client(&self) -> &RingClient {
        &self.inner.client
    }

    /// A live reader of every event stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.inner.sender.subscribe()
    }

    /// Stores a webhook's event under its request id and sends it on; a request
    /// id seen before stores and sends nothing. Blocks on the disk (call it
    /// from `spawn_blocking`).
    pub fn deliver_webhook(
        &self,
        request_id: &str,
        event: &NewEvent,
    ) -> Result<Delivery, StoreError> {
        let store = self.inner.client.store();
        let order = self
            .inner
            .publish
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(stored) = store.record_webhook_event(request_id, SystemTime::now(), event)? else {
            return Ok(Delivery::Duplicate);
        };
        let stored = Arc::new(stored);
        let _ = self.inner.sender.send(Arc::clone(&stored));
        drop(order);
        let key = (
            stored.kind.clone(),
            stored.device.clone().unwrap_or_default(),
        );
        *self
            .inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default() += 1;
        self.stored_one();
        Ok(Delivery::Stored(stored))
    }

    /// Stores one of the gateway's own events and sends it on (blocks on the disk).
    pub fn publish(&self, event: &NewEvent) -> Result<Arc<StoredEvent>, StoreError> {
        let store = self.inner.client.store();
        let order = self
            .inner
            .publish
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stored = Arc::new(store.record_event(event)?);
        let _ = self.inner.sender.send(Arc::clone(&stored));
        drop(order);
        self.stored_one();
        Ok(stored)
    }

    /// Stored events (blocks on the disk).
    pub fn history(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.client.store().events(filter)
    }

    /// The newest stored event's id (blocks on the disk).
    pub fn last_id(&self) -> Result<i64, StoreError> {
        self.inner.client.store().last_event_id()
    }

    /// `streamgate_ring_events_total`: webhook events stored by (type, device).
    pub fn counts(&self) -> Vec<((String, String), u64)> {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, count)| (key.clone(), *count))
            .collect()
    }

    fn stored_one(&self) {
        if self.inner.stored.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
    }

    fn prune(&self) {
        let settings = &self.inner.settings;
        let now = SystemTime::now();
        let store = self.inner.client.store();
        let older = now
            .checked_sub(settings.max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Err(error) = store.prune_events(settings.keep, older) {
            tracing::warn!("pruning the event store failed: {error}");
        }
        // Request ids are kept for as long as a delivery can come back: Ring
        // retries for hours and keeps a 72 h dead-letter queue [doc-copy].
        let ids = now
            .checked_sub(
                settings
                    .webhook_max_age
                    .max(Duration::from_secs(4 * 24 * 3600)),
            )
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Err(error) = store.prune_webhook_deliveries(ids) {
            tracing::warn!("pruning the webhook request ids failed: {error}");
        }
    }

    /// Ring revoked the account's tokens (`app_integration_removed`): the account
    /// needs linking again; its streams stay and say so.
    pub fn integration_removed(&self, account: &AccountId) {
        match self.inner.client.revoked(
            account,
            "Ring removed the app integration (app_integration_removed): link the account again",
        ) {
            Ok(true) => tracing::warn!(account = %account, "Ring removed the app integration"),
            Ok(false) => {}
            Err(error) => tracing::warn!(account = %account, "marking the account failed: {error}"),
        }
    }

    /// Starts the tasks that turn the gateway's own changes into events: stream
    /// up/down transitions and accounts that need re-linking. They stop with the
    /// runtime.
    pub fn start_watchers(&self, streams: SharedStreams) {
        tokio::spawn(self.clone().watch_streams(streams));
        tokio::spawn(self.clone().watch_accounts());
    }

    async fn publish_async(&self, event: NewEvent) {
        let bus = self.clone();
        match tokio::task::spawn_blocking(move || bus.publish(&event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!("storing an event failed: {error}"),
            Err(error) => tracing::warn!("storing an event failed: {error}"),
        }
    }

    async fn watch_streams(self, streams: SharedStreams) {
        let mut up: HashMap<String, bool> = HashMap::new();
        loop {
            let now: Vec<(String, bool, String)> = streams
                .read()
                .iter()
                .map(|(name, stream)| {
                    let report = stream.report();
                    let is_up = matches!(
                        report.source_state.as_str(),
                        "playing" | "rotating" | "running"
                    );
                    (name.to_string(), is_up, report.source_state)
                })
                .collect();
            let mut changes = Vec::new();
            for (name, is_up, state) in &now {
                let was = up.insert(name.clone(), *is_up);
                if was != Some(*is_up) && (was.is_some() || *is_up) {
                    changes.push((name.clone(), *is_up, state.clone()));
                }
            }
            up.retain(|name, was_up| {
                let kept = now.iter().any(|(n, _, _)| n == name);
                if !kept && *was_up {
                    changes.push((name.clone(), false, "removed".to_owned()));
                }
                kept
            });
            for (name, is_up, state) in changes {
                let kind = if is_up { "stream_up" } else { "stream_down" };
                self.publish_async(NewEvent {
                    time: SystemTime::now(),
                    account: None,
                    device: None,
                    kind: kind.to_owned(),
                    subtype: None,
                    body: serde_json::json!({"stream": name, "state": state}),
                })
                .await;
            }
            tokio::time::sleep(STREAM_POLL).await;
        }
    }

    async fn watch_accounts(self) {
        let client = self.inner.client.clone();
        let mut changed = client.watch_accounts();
        let states = |client: &RingClient| -> HashMap<AccountId, AccountState> {
            client
                .accounts()
                .into_iter()
                .map(|account| (account.id, account.state))
                .collect()
        };
        let mut known = states(&client);
        while changed.changed().await.is_ok() {
            let accounts = client.accounts();
            for account in &accounts {
                let before = known.get(&account.id).copied();
                if account.state == AccountState::NeedsRelinking
                    && before != Some(AccountState::NeedsRelinking)
                {
                    self.publish_async(NewEvent {
                        time: SystemTime::now(),
                        account: Some(account.id.to_string()),
                        device: None,
                        kind: "account_needs_relinking".to_owned(),
                        subtype: None,
                        body: serde_json::json!({
                            "account": account.id.as_str(),
                            "name": account.name,
                            "reason": account.last_error,
                        }),
                    })
                    .await;
                }
            }
            known = accounts
                .into_iter()
                .map(|account| (account.id, account.state))
                .collect();
        }
    }
}
