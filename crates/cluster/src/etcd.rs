//! The thin tokio task around [`View`] and [`LeaseClock`]: a lease with
//! keep-alives, this node's member key on it, a read and a watch of the
//! cluster's prefix, and the claims and releases the [`Plan`] asks for.
//!
//! A session is one lease. Anything that breaks it (etcd unreachable, the
//! watch or keep-alive stream ends, the lease not renewed by
//! [`LeaseClock::stop_by`]) stops every source first, then revokes the lease
//! if etcd still answers (so the others claim at once instead of after the
//! TTL) and starts a new session. At shutdown [`Departure::leave`] does the
//! same and ends the task: the hand-over to the other nodes is immediate.

use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::view::{Key, Member, View};
use crate::LeaseClock;

/// `[cluster]` as the task needs it.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub endpoints: Vec<String>,
    pub node: String,
    pub advertise_rtsp: String,
    pub advertise_http: String,
    pub lease_ttl: Duration,
    /// Every key lives under it (`/streamgate/`), so clusters can share an etcd.
    pub prefix: String,
}

/// Starts and stops this node's sources.
pub trait Runner: Send + Sync + 'static {
    /// Runs the sources of exactly `streams`; returns once the others stopped.
    fn run(&self, streams: BTreeSet<String>) -> impl Future<Output = ()> + Send;
}

/// What the rest of the gateway reads: this node's name and the view.
#[derive(Clone)]
pub struct ClusterStatus {
    pub node: String,
    view: watch::Receiver<View>,
}

impl ClusterStatus {
    pub fn view(&self) -> View {
        self.view.borrow().clone()
    }

    /// The live member that owns `stream`.
    pub fn owner(&self, stream: &str) -> Option<Member> {
        self.view.borrow().owner(stream).cloned()
    }
}

/// The way out of the cluster at shutdown.
pub struct Departure {
    leaving: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Departure {
    /// Stops this node's sources, then revokes its lease (its member and
    /// owner keys go with it), so the others claim its streams at once
    /// instead of after the lease's TTL; returns when the task has ended.
    pub async fn leave(self) {
        self.leaving.send_replace(true);
        let _ = self.task.await;
    }
}

/// Starts the cluster task: it claims its share of `streams` (every stream of
/// the cluster, updated on reloads) and has `runner` run what it owns.
pub fn start(
    settings: ClusterSettings,
    streams: watch::Receiver<BTreeSet<String>>,
    runner: impl Runner,
) -> (ClusterStatus, Departure) {
    let (view, status) = watch::channel(View::default());
    let (leaving, left) = watch::channel(false);
    let node = settings.node.clone();
    let task = tokio::spawn(run(settings, streams, runner, view, left));
    (
        ClusterStatus { node, view: status },
        Departure { leaving, task },
    )
}

/// Why a session ended.
#[derive(thiserror::Error, Debug)]
enum SessionEnd {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the lease was not renewed in time")]
    NotRenewed,
    #[error("the lease expired")]
    Expired,
    #[error("the {0} stream from etcd ended")]
    StreamEnded(&'static str),
    #[error("the gateway is shutting down")]
    Leaving,
}

async fn run(
    settings: ClusterSettings,
    mut streams: watch::Receiver<BTreeSet<String>>,
    runner: impl Runner,
    view: watch::Sender<View>,
    mut leaving: watch::Receiver<bool>,
) {
    let retry = settings.lease_ttl / 4;
    loop {
        let mut session = Session {
            settings: &settings,
            client: None,
            lease: 0,
            clock: LeaseClock::new(settings.lease_ttl),
            view: View::default(),
            running: BTreeSet::new(),
        };
        let end = session
            .serve(&mut streams, &runner, &view, &mut leaving)
            .await;
        runner.run(BTreeSet::new()).await;
        let revoked = session.revoke().await;
        view.send_replace(View::default());
        if matches!(end, SessionEnd::Leaving) {
            tracing::info!(node = %settings.node, revoked, "left the cluster: sources stopped, lease revoked when etcd answered");
            return;
        }
        tracing::warn!(node = %settings.node, "cluster session ended: {end}; sources stopped, rejoining");
        tokio::select! {
            _ = sleep(retry) => {}
            _ = left(&mut leaving) => return,
        }
    }
}

/// Resolves once shutdown asked the task to leave (or nobody can any more).
async fn left(leaving: &mut watch::Receiver<bool>) {
    let _ = leaving.wait_for(|leaving| *leaving).await;
}

struct Session<'a> {
    settings: &'a ClusterSettings,
    client: Option<Client>,
    lease: i64,
    clock: LeaseClock,
    view: View,
    running: BTreeSet<String>,
}

impl Session<'_> {
    /// The longest one etcd call may take: within the lease's margin.
    fn call_timeout(&self) -> Duration {
        self.clock.margin() / 2
    }

    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, SessionEnd> {
        let limit = self.call_timeout();
        Ok(timeout(limit, call)
            .await
            .map_err(|_| SessionEnd::Timeout(limit))??)
    }

    /// Connects, takes a lease, registers and reads the prefix; then keeps
    /// the lease and follows the watch until something breaks.
    async fn serve(
        &mut self,
        streams: &mut watch::Receiver<BTreeSet<String>>,
        runner: &impl Runner,
        published: &watch::Sender<View>,
        leaving: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let (mut keeper, mut keepalive, mut watch) = match self.open().await {
            Ok(opened) => opened,
            Err(end) => return end,
        };
        let mut tick = tokio::time::interval(self.clock.renew_every());
        let mut pending: VecDeque<Instant> = VecDeque::new();
        let mut streams_open = true;
        loop {
            let wanted = streams.borrow().clone();
            if let Err(end) = self.act(&wanted, runner).await {
                return end;
            }
            published.send_replace(self.view.clone());
            let stop_by = self
                .clock
                .stop_by()
                .map(Instant::from_std)
                .unwrap_or_else(Instant::now);
            tokio::select! {
                _ = sleep_until(stop_by) => return SessionEnd::NotRenewed,
                _ = left(leaving) => return SessionEnd::Leaving,
                _ = tick.tick() => {
                    pending.push_back(Instant::now());
                    if let Err(end) = self.call(keeper.keep_alive()).await {
                        return end;
                    }
                }
                answer = keepalive.message() => match answer {
                    Ok(Some(answer)) => {
                        let sent = pending.pop_front();
                        if answer.ttl() <= 0 {
                            self.clock.expired();
                            return SessionEnd::Expired;
                        }
                        if let Some(sent) = sent {
                            let ttl = Duration::from_secs(answer.ttl().unsigned_abs());
                            self.clock.renewed(sent.into_std(), ttl);
                        }
                    }
                    Ok(None) => return SessionEnd::StreamEnded("keep-alive"),
                    Err(error) => return error.into(),
                },
                changes = watch.message() => match changes {
                    Ok(Some(changes)) if !changes.canceled() => {
                        for event in changes.events() {
                            self.apply(event.event_type(), event.kv());
                        }
                    }
                    Ok(_) => return SessionEnd::StreamEnded("watch"),
                    Err(error) => return error.into(),
                },
                changed = streams.changed(), if streams_open => streams_open = changed.is_ok(),
            }
        }
    }

    async fn open(
        &mut self,
    ) -> Result<(LeaseKeeper, LeaseKeepAliveStream, WatchStream), SessionEnd> {
        let settings = self.settings;
        let options = ConnectOptions::new()
            .with_connect_timeout(self.call_timeout())
            .with_timeout(self.call_timeout());
        let client = self
            .call(Client::connect(&settings.endpoints, Some(options)))
            .await?;
        self.client = Some(client.clone());
        let sent = Instant::now();
        let ttl = i64::try_from(settings.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let grant = self.call(client.clone().lease_grant(ttl, None)).await?;
        self.lease = grant.id();
        self.clock.renewed(
            sent.into_std(),
            Duration::from_secs(grant.ttl().unsigned_abs()),
        );
        let (keeper, keepalive) = self
            .call(client.clone().lease_keep_alive(self.lease))
            .await?;
        let member = Member {
            node: settings.node.clone(),
            rtsp: settings.advertise_rtsp.clone(),
            http: settings.advertise_http.clone(),
        };
        let key = Key::Member(settings.node.clone()).path(&settings.prefix);
        let on_lease = PutOptions::new().with_lease(self.lease);
        self.call(client.clone().put(key, member.encode(), Some(on_lease)))
            .await?;
        let read = self
            .call(client.clone().get(
                settings.prefix.as_str(),
                Some(GetOptions::new().with_prefix()),
            ))
            .await?;
        for kv in read.kvs() {
            self.apply(EventType::Put, Some(kv));
        }
        let revision = read.header().map_or(0, |h| h.revision());
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let watch = self
            .call(
                client
                    .clone()
                    .watch(settings.prefix.as_str(), Some(options)),
            )
            .await?;
        tracing::info!(node = %settings.node, lease = self.lease, members = self.view.members.len(), "joined the cluster");
        Ok((keeper, keepalive, watch))
    }

    fn apply(&mut self, kind: EventType, kv: Option<&etcd_client::KeyValue>) {
        let Some(kv) = kv else { return };
        let Some(key) = std::str::from_utf8(kv.key())
            .ok()
            .and_then(|path| Key::parse(&self.settings.prefix, path))
        else {
            return;
        };
        match kind {
            EventType::Put => {
                if let Err(error) = self.view.put(key, kv.value(), kv.lease()) {
                    tracing::warn!("cluster: {error}");
                }
            }
            EventType::Delete => self.view.delete(key),
        }
    }

    /// Carries out the plan: sources of released streams stop before their
    /// keys go; claimed streams start once their claim succeeded.
    async fn act(
        &mut self,
        streams: &BTreeSet<String>,
        runner: &impl Runner,
    ) -> Result<(), SessionEnd> {
        // Connected: `open` succeeded before anything acts.
        let Some(mut client) = self.client.clone() else {
            return Ok(());
        };
        let node = self.settings.node.clone();
        let plan = self.view.plan(&node, self.lease, streams);
        self.run(plan.run.clone(), runner).await?;
        for stream in &plan.release {
            let key = Key::Owner(stream.clone()).path(&self.settings.prefix);
            let release = Txn::new()
                .when([Compare::lease(key.as_str(), CompareOp::Equal, self.lease)])
                .and_then([TxnOp::delete(key.as_str(), None)]);
            self.call(client.txn(release)).await?;
            tracing::info!(%stream, "released to the member rendezvous hashing gives it");
        }
        let mut claimed = false;
        for stream in &plan.claim {
            let key = Key::Owner(stream.clone()).path(&self.settings.prefix);
            let on_lease = PutOptions::new().with_lease(self.lease);
            let claim = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), node.as_str(), Some(on_lease))]);
            let answer = self.call(client.txn(claim)).await?;
            if answer.succeeded() {
                tracing::info!(%stream, "claimed");
                let key = Key::Owner(stream.clone());
                let _ = self.view.put(key, node.as_bytes(), self.lease);
                claimed = true;
            }
        }
        if claimed {
            let plan = self.view.plan(&node, self.lease, streams);
            self.run(plan.run, runner).await?;
        }
        Ok(())
    }

    /// Has `runner` run `streams`, unless the lease may be about to expire.
    async fn run(
        &mut self,
        streams: BTreeSet<String>,
        runner: &impl Runner,
    ) -> Result<(), SessionEnd> {
        if self.clock.must_stop(Instant::now().into_std()) {
            return Err(SessionEnd::NotRenewed);
        }
        if streams != self.running {
            runner.run(streams.clone()).await;
            self.running = streams;
        }
        Ok(())
    }

    /// Ends the lease at once (its keys with it) when etcd answers; whether it did.
    async fn revoke(&self) -> bool {
        let Some(mut client) = self.client.clone().filter(|_| self.lease != 0) else {
            return false;
        };
        match self.call(client.lease_revoke(self.lease)).await {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(lease = self.lease, "lease not revoked: {error}");
                false
            }
        }
    }
}
