//! Applying a new configuration to running streams (SIGHUP): streams that are
//! gone are stopped, new ones started, changed ones restarted, and unchanged ones
//! left alone so their readers are not interrupted. Only `[streams]` is reloaded;
//! the listeners and `[hls]` keep their start-up settings.

use std::path::Path;

use crate::config::Config;
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

/// Brings the registry in line with `config`'s streams (relative paths against
/// `base`). Every new or changed stream is loaded before anything is touched: if
/// one fails, the running streams stay as they were.
pub async fn apply(
    shared: &SharedStreams,
    config: &Config,
    base: &Path,
) -> Result<ReloadSummary, ReloadError> {
    let mut summary = ReloadSummary::default();
    let to_start: Vec<_> = {
        let running = shared.read();
        config
            .streams
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
            .map(|(name, _)| name.to_string())
            .filter(|name| !config.streams.keys().any(|n| n.as_str() == name))
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
