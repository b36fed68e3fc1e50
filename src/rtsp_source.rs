//! Glue between an `rtsp://` stream in the config and `streamgate-rtsp`'s camera
//! source: builds its [`SourceConfig`] from the stream's options (`transport`,
//! `always_on`, `idle_grace`) and mirrors its status into the registry's [`SourceState`].

use std::time::Duration;

use serde::Deserialize;
use streamgate_pipeline::Hub;
use streamgate_rtsp::client::{RtspSource, SourceConfig, SourceStatus, TransportMode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Redacted;
use crate::streams::{mirror_source_status, SourceState};

/// `transport = "tcp" | "udp" | "auto"` of an `rtsp://` stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RtspTransport(pub TransportMode);

impl TryFrom<String> for RtspTransport {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(RtspTransport).map_err(|e| e.to_string())
    }
}

/// An `rtsp://` stream: its URL and options.
#[derive(Debug, Clone)]
pub struct RtspFeed {
    pub url: url::Url,
    pub transport: Option<RtspTransport>,
    pub always_on: Option<bool>,
    pub idle_grace: Option<Duration>,
}

/// Starts pulling the camera into `hub`; the task mirrors the source's status into
/// `state`. The error is a message for the stream's state (no secrets in it).
pub fn start(
    feed: RtspFeed,
    hub: Hub,
    state: watch::Sender<SourceState>,
) -> Result<(RtspSource, JoinHandle<()>), String> {
    let mut config = SourceConfig::new(feed.url.as_str());
    if let Some(RtspTransport(transport)) = feed.transport {
        config.transport = transport;
    }
    config.always_on = feed.always_on.unwrap_or(false);
    config.idle_grace = feed.idle_grace.unwrap_or(SourceConfig::DEFAULT_IDLE_GRACE);
    tracing::info!(
        stream = %hub.name(),
        source = %Redacted(&feed.url),
        transport = %config.transport,
        always_on = config.always_on,
        "starting RTSP camera source"
    );
    let source = RtspSource::spawn(hub, config)
        .map_err(|e| format!("RTSP source {}: {e}", Redacted(&feed.url)))?;
    let task = tokio::spawn(mirror_source_status(
        source.watch_status(),
        state,
        |s: &SourceStatus| (s.state, s.last_error.as_deref()),
        "RTSP session failed",
    ));
    Ok((source, task))
}
