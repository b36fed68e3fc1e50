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
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use streamgate_ring::{
    AccountId, AccountState, DeviceId, EventFilter, NewEvent, RingClient, Secret, StoreError,
    StoredEvent,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::sources::RingLink;
use crate::streams::SharedStreams;

/// Events buffered per live reader before it lags (and re-reads the store).
const CHANNEL_CAPACITY: usize = 1024;
/// Pruning runs once per this many stored events (and at start).
pub const PRUNE_EVERY: u64 = 1000;
/// Events waiting for the writer at most (senders wait beyond it).
const WRITER_QUEUE: usize = 4096;
/// Events stored in one transaction at most.
const MAX_BATCH: usize = 512;
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
    /// To the writer thread, which stores and broadcasts in order.
    writer: mpsc::Sender<Job>,
    /// Webhook events stored, by (type, device): `streamgate_ring_events_total`.
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

/// One event for the writer thread, and where its outcome goes.
struct Job {
    request_id: Option<String>,
    event: NewEvent,
    reply: oneshot::Sender<Result<Option<Arc<StoredEvent>>, WriteError>>,
}

/// Why an event could not be stored (the store's message; no secret in it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(String);

/// What became of a webhook delivery.
#[derive(Debug)]
pub enum Delivery {
    Stored(Arc<StoredEvent>),
    Duplicate,
}

impl EventBus {
    pub fn new(client: RingClient, settings: EventSettings) -> EventBus {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (writer, jobs) = mpsc::channel(WRITER_QUEUE);
        let bus = EventBus {
            inner: Arc::new(Inner {
                client,
                settings,
                sender,
                writer,
                counts: Mutex::new(BTreeMap::new()),
            }),
        };
        bus.prune();
        // The thread holds only a weak reference: it ends with the last bus.
        let weak = Arc::downgrade(&bus.inner);
        std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || write_events(weak, jobs))
            .expect("spawn the event writer thread");
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
    /// id seen before stores and sends nothing. Answers once the event is on disk.
    pub async fn deliver_webhook(
        &self,
        request_id: String,
        event: NewEvent,
    ) -> Result<Delivery, WriteError> {
        let stored = self.write(Some(request_id), event).await?;
        Ok(stored.map_or(Delivery::Duplicate, Delivery::Stored))
    }

    /// Stores one of the gateway's own events and sends it on.
    pub async fn publish(&self, event: NewEvent) -> Result<Arc<StoredEvent>, WriteError> {
        self.write(None, event)
            .await?
            .ok_or(WriteError("the event was not stored".into()))
    }

    async fn write(
        &self,
        request_id: Option<String>,
        event: NewEvent,
    ) -> Result<Option<Arc<StoredEvent>>, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request_id,
            event,
            reply,
        };
        self.inner
            .writer
            .send(job)
            .await
            .map_err(|_| WriteError("the event writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| WriteError("the event writer has stopped".into()))?
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

    fn prune(&self) {
        self.inner.prune();
    }
}

impl Inner {
    fn prune(&self) {
        let settings = &self.settings;
        let now = SystemTime::now();
        let store = self.client.store();
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
}

impl EventBus {
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

    /// Sends every stored `motion_detected` and `button_press` event's device on
    /// to the Ring sources (`on_motion`) through `link`.
    pub fn forward_motion(&self, link: RingLink) {
        let mut events = self.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let ("motion_detected" | "button_press", Some(device)) =
                            (event.kind.as_str(), &event.device)
                        {
                            link.notify_motion(DeviceId::new(device.as_str()));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "motion forwarding fell behind: events skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    async fn publish_async(&self, event: NewEvent) {
        if let Err(error) = self.publish(event).await {
            tracing::warn!("storing an event failed: {error}");
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

/// The writer thread: takes every waiting job (up to [`MAX_BATCH`]), stores them
/// in one transaction (one disk sync), broadcasts the stored ones in id order,
/// then answers each. Ends when every bus is gone.
fn write_events(bus: Weak<Inner>, mut jobs: mpsc::Receiver<Job>) {
    let mut written: u64 = 0;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some(first) = jobs.blocking_recv() else {
            return;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(inner) = bus.upgrade() else {
            return;
        };
        let items: Vec<(Option<&str>, &NewEvent)> = batch
            .iter()
            .map(|job| (job.request_id.as_deref(), &job.event))
            .collect();
        let result = inner
            .client
            .store()
            .record_events(&items, SystemTime::now());
        drop(items);
        match result {
            Ok(stored) => {
                let mut counts = inner.counts.lock().unwrap_or_else(PoisonError::into_inner);
                for (job, stored) in batch.drain(..).zip(stored) {
                    let stored = stored.map(Arc::new);
                    if let Some(event) = &stored {
                        let _ = inner.sender.send(Arc::clone(event));
                        if job.request_id.is_some() {
                            let key =
                                (event.kind.clone(), event.device.clone().unwrap_or_default());
                            *counts.entry(key).or_default() += 1;
                        }
                        written += 1;
                        if written % PRUNE_EVERY == 0 {
                            inner.prune();
                        }
                    }
                    let _ = job.reply.send(Ok(stored));
                }
            }
            Err(error) => {
                tracing::error!("storing {} events failed: {error}", batch.len());
                let error = WriteError(error.to_string());
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
