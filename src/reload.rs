//! Applying a new configuration to running streams (SIGHUP): streams that are
//! gone are stopped, new ones started, changed ones restarted, and unchanged ones
//! left alone so their readers are not interrupted. Only `[streams]` is reloaded;
//! the listeners, `[hls]` and `[ring]` keep their start-up settings. Ring
//! discovery adds and removes its streams through the same [`Desired`] set.
//! In a cluster only the streams this node owns run (`Desired::set_owned`);
//! the cluster task follows [`Desired::names`], the streams there are to own.
//! Streams their publishers created (`[rtsp] publish = "any"`) are in neither
//! half and are never stopped here: they end with their publisher.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, StreamConfig, StreamName};
use crate::streams::{self, SharedStreams, StreamError};

/// Why a reload changed nothing.
#[derive(thiserror::Error, Debug)]
pub enum ReloadError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("loading the streams' sources failed unexpectedly: {0}")]
    Loader(String),
}

/// What a reload did, by stream name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The streams the registry should run: the config file's and those Ring
/// discovery found. A SIGHUP replaces the first half, a discovery pass the
/// second, and each applies the union under one lock, so neither undoes the other.
#[derive(Clone)]
pub struct Desired {
    streams: Arc<tokio::sync::Mutex<DesiredStreams>>,
    /// The union's names, for the cluster task.
    names: Arc<tokio::sync::watch::Sender<BTreeSet<String>>>,
}

#[derive(Default)]
struct DesiredStreams {
    configured: BTreeMap<StreamName, StreamConfig>,
    discovered: BTreeMap<StreamName, StreamConfig>,
    /// In a cluster: the streams of the union this node owns (only those run).
    owned: Option<BTreeSet<String>>,
}

impl DesiredStreams {
    /// Both halves; a configured stream wins over a discovered one of the same
    /// name, and a discovered stream whose source a configured one already reads
    /// (`source = "ring:<id>"`) is left out.
    fn union(&self) -> BTreeMap<StreamName, StreamConfig> {
        let mut all = self.configured.clone();
        for (name, stream) in &self.discovered {
            if !self.configured.values().any(|c| c.source == stream.source) {
                all.entry(name.clone()).or_insert_with(|| stream.clone());
            }
        }
        all
    }

    /// What runs here: the union, or in a cluster the part this node owns.
    fn wanted(&self) -> BTreeMap<StreamName, StreamConfig> {
        let mut all = self.union();
        if let Some(owned) = &self.owned {
            all.retain(|name, _| owned.contains(name.as_str()));
        }
        all
    }

    fn names(&self) -> BTreeSet<String> {
        self.union().keys().map(|name| name.to_string()).collect()
    }
}

impl Desired {
    /// Starts from the config file's streams (already running).
    pub fn new(config: &Config) -> Desired {
        Desired::with_owned(config, None)
    }

    /// In a cluster: none of the config file's streams runs (nor is started)
    /// until the cluster task gives this node its share.
    pub fn clustered(config: &Config) -> Desired {
        Desired::with_owned(config, Some(BTreeSet::new()))
    }

    fn with_owned(config: &Config, owned: Option<BTreeSet<String>>) -> Desired {
        let desired = DesiredStreams {
            configured: config.streams.clone(),
            discovered: BTreeMap::new(),
            owned,
        };
        let names = tokio::sync::watch::Sender::new(desired.names());
        Desired {
            streams: Arc::new(tokio::sync::Mutex::new(desired)),
            names: Arc::new(names),
        }
    }

    /// The names of every stream of the config file and discovery, as they change.
    pub fn names(&self) -> tokio::sync::watch::Receiver<BTreeSet<String>> {
        self.names.subscribe()
    }

    /// The cluster task's claims changed: exactly the streams in `owned` run
    /// (of the config file's and discovery's; the API's and publishers' stay).
    pub async fn set_owned(
        &self,
        shared: &SharedStreams,
        owned: BTreeSet<String>,
        base: &Path,
    ) -> Result<ReloadSummary, ReloadError> {
        let mut desired = self.streams.lock().await;
        let before = desired.owned.replace(owned);
        let names = desired.names();
        let result = apply(shared, &desired.wanted(), |name| names.contains(name), base).await;
        if result.is_err() {
            desired.owned = before;
        }
        result
    }

    /// A reloaded config file: every stream not in the union is stopped (streams
    /// added through the API too, as before).
    pub async fn set_configured(
        &self,
        shared: &SharedStreams,
        config: &Config,
        base: &Path,
    ) -> Result<ReloadSummary, ReloadError> {
        let mut desired = self.streams.lock().await;
        let wanted = DesiredStreams {
            configured: config.streams.clone(),
            discovered: desired.discovered.clone(),
            owned: desired.owned.clone(),
        }
        .wanted();
        let summary = apply(shared, &wanted, |_| true, base).await?;
        desired.configured = config.streams.clone();
        self.names.send_replace(desired.names());
        Ok(summary)
    }

    /// Discovery's streams now: only streams it found before or finds now are
    /// started or stopped.
    pub async fn set_discovered(
        &self,
        shared: &SharedStreams,
        discovered: BTreeMap<StreamName, StreamConfig>,
        base: &Path,
    ) -> Result<ReloadSummary, ReloadError> {
        let mut desired = self.streams.lock().await;
        let before: Vec<StreamName> = desired.discovered.keys().cloned().collect();
        let wanted = DesiredStreams {
            configured: desired.configured.clone(),
            discovered,
            owned: desired.owned.clone(),
        };
        let scope = |name: &str| {
            before.iter().any(|n| n.as_str() == name)
                || wanted.discovered.keys().any(|n| n.as_str() == name)
        };
        let summary = apply(shared, &wanted.wanted(), scope, base).await?;
        desired.discovered = wanted.discovered;
        self.names.send_replace(desired.names());
        Ok(summary)
    }
}

/// Brings the registry in line with `wanted` (relative paths against `base`):
/// running streams `in_scope` that are not wanted are stopped. Every new or
/// changed stream is loaded before anything is touched: if one fails, the
/// running streams stay as they were.
async fn apply(
    shared: &SharedStreams,
    wanted: &BTreeMap<StreamName, StreamConfig>,
    in_scope: impl Fn(&str) -> bool,
    base: &Path,
) -> Result<ReloadSummary, ReloadError> {
    let mut summary = ReloadSummary::default();
    let to_start: Vec<_> = {
        let running = shared.read();
        wanted
            .iter()
            .filter(|(name, wanted)| {
                let current = running.get(name.as_str()).map(|s| &s.config);
                match current {
                    Some(current) if current == *wanted => {
                        summary.unchanged.push(name.to_string());
                        false
                    }
                    Some(_) => {
                        summary.changed.push(name.to_string());
                        true
                    }
                    None => {
                        summary.added.push(name.to_string());
                        true
                    }
                }
            })
            .map(|(name, wanted)| (name.clone(), wanted.clone()))
            .collect()
    };
    let base = base.to_owned();
    let planned = tokio::task::spawn_blocking(move || {
        to_start
            .iter()
            .map(|(name, wanted)| streams::plan_stream(name, wanted, &base))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ReloadError::Loader(e.to_string()))??;

    let stopped: Vec<_> = {
        let mut running = shared.write();
        let gone: Vec<String> = running
            .iter()
            .filter(|(_, stream)| !stream.by_publisher)
            .map(|(name, _)| name.to_string())
            .filter(|name| in_scope(name) && !wanted.keys().any(|n| n.as_str() == name))
            .collect();
        let mut stopped: Vec<_> = gone
            .iter()
            .filter_map(|name| running.remove(name))
            .collect();
        summary.removed = gone;
        stopped.extend(planned.into_iter().filter_map(|p| running.insert(p)));
        stopped
    };
    for stream in stopped {
        stream.stop().await;
    }
    Ok(summary)
}
