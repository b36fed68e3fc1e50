//! Glue between a `whep://`/`wheps://` stream in the config and `streamgate-whep`'s
//! source: builds its [`WhepConfig`] from the stream's options and mirrors its status
//! into the registry's [`SourceState`].

use std::time::Duration;

use serde::Deserialize;
use streamgate_pipeline::Hub;
use streamgate_whep::{endpoint_url, TrickleMode, WhepConfig, WhepSource, WhepStatus};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Redacted, Secret};
use crate::streams::{mirror_source_status, SourceState};

/// A `whep://` stream: its URL and options (`bearer_token`, `max_session` in its
/// `[streams.NAME]` table).
#[derive(Debug, Clone)]
pub struct WhepFeed {
    pub url: url::Url,
    pub bearer_token: Option<Secret>,
    pub max_session: Option<Duration>,
    pub webrtc_bind: Option<std::net::IpAddr>,
    pub trickle: Option<WhepTrickle>,
}

/// `trickle = "auto" | true | false` of a `whep://` stream: trickle ICE by PATCH once the
/// server announces it (default), always, or never (full gathering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TrickleSetting")]
pub struct WhepTrickle(pub TrickleMode);

#[derive(Deserialize)]
#[serde(untagged)]
enum TrickleSetting {
    Flag(bool),
    Word(String),
}

impl TryFrom<TrickleSetting> for WhepTrickle {
    type Error = String;

    fn try_from(setting: TrickleSetting) -> Result<Self, Self::Error> {
        Ok(WhepTrickle(match setting {
            TrickleSetting::Flag(true) => TrickleMode::On,
            TrickleSetting::Flag(false) => TrickleMode::Off,
            TrickleSetting::Word(word) => match word.as_str() {
                "auto" => TrickleMode::Auto,
                other => return Err(format!("expected true, false or \"auto\", not {other:?}")),
            },
        }))
    }
}

/// Starts pulling the feed into `hub`; the task mirrors the source's status into
/// `state`. The error is a message for the stream's state (no secrets in it).
pub fn start(
    feed: WhepFeed,
    hub: Hub,
    state: watch::Sender<SourceState>,
) -> Result<(WhepSource, JoinHandle<()>), String> {
    let url = &feed.url;
    let endpoint = endpoint_url(url.as_str()).map_err(|e| e.to_string())?;
    let mut config = WhepConfig::new(endpoint);
    config.bearer_token = feed
        .bearer_token
        .clone()
        .map(|Secret(token)| streamgate_redact::Secret::new(token));
    config.max_session = feed.max_session;
    if let Some(ip) = feed.webrtc_bind {
        config.bind_ip = ip;
    }
    if let Some(WhepTrickle(mode)) = feed.trickle {
        config.trickle = mode;
    }
    tracing::info!(stream = %hub.name(), source = %Redacted(url), max_session = ?config.max_session, "starting WHEP source");
    let source = WhepSource::start(config, hub)
        .map_err(|e| format!("WHEP source {}: {e}", Redacted(url)))?;
    let task = tokio::spawn(mirror_source_status(
        source.watch_status(),
        state,
        |s: &WhepStatus| (s.state, s.last_error.as_deref()),
        "WHEP session failed",
    ));
    Ok((source, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_takes_a_flag_or_auto() {
        #[derive(Debug, Deserialize)]
        struct Stream {
            trickle: WhepTrickle,
        }
        let parse = |value: &str| {
            toml::from_str::<Stream>(&format!("trickle = {value}")).map(|s| s.trickle.0)
        };
        assert_eq!(parse("true").unwrap(), TrickleMode::On);
        assert_eq!(parse("false").unwrap(), TrickleMode::Off);
        assert_eq!(parse("\"auto\"").unwrap(), TrickleMode::Auto);
        let error = parse("\"sometimes\"").unwrap_err().to_string();
        assert!(
            error.contains("expected true, false or \"auto\""),
            "{error}"
        );
    }
}
