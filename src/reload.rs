//! Applying a new configuration to running streams (SIGHUP): streams that are
//! gone are stopped, new ones started, changed ones restarted, and unchanged ones
//! left alone so their readers are not interrupted. Only `[streams]` is reloaded;
//! the listeners, `[hls]` and `[ring]` keep their start-up settings. Ring
//! discovery adds and removes its streams through the same [`Desired`] set.
//! Streams their publishers created (`[rtsp] publish = "any"`) are in neither
//! half and are never stopped here: they end with their publisher.

use std::collections::BTreeMap;
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
#[derive(Clone, Default)]
pub struct Desired(Arc<tokio::sync::Mutex<DesiredStreams>>);

#[derive(Default)]
struct DesiredStreams {
    configured: BTreeMap<StreamName, StreamConfig>,
    discovered: BTreeMap<StreamName, StreamConfig>,
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
}

impl Desired {
    /// Starts from the config file's streams (already running).
    pub fn new(config: &Config) -> Desired {
        let desired = DesiredStreams {
            configured: config.streams.clone(),
            discovered: BTreeMap::new(),
        };
        Desired(Arc::new(tokio::sync::Mutex::new(desired)))
    }

    /// A reloaded config file: every stream not in the union is stopped (streams
    /// added through the API too, as before).
    pub async fn set_configured(
        &self,
        shared: &SharedStreams,
        config: &Config,
        base: &Path,
    ) -> Result<ReloadSummary, ReloadError> {
        let mut desired = self.0.lock().await;
        let wanted = DesiredStreams {
            configured: config.streams.clone(),
            discovered: desired.discovered.clone(),
        }
        .union();
        let summary = apply(shared, &wanted, |_| true, base).await?;
        desired.configured = config.streams.clone();
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
        let mut desired = self.0.lock().await;
        let before: Vec<StreamName> = desired.discovered.keys().cloned().collect();
        let wanted = DesiredStreams {
            configured: desired.configured.clone(),
            discovered,
        };
        let scope = |name: &str| {
            before.iter().any(|n| n.as_str() == name)
                || wanted.discovered.keys().any(|n| n.as_str() == name)
        };
        let summary = apply(shared, &wanted.union(), scope, base).await?;
        desired.discovered = wanted.discovered;
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
