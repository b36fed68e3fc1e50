//! What the source is doing, for the binary's API: state plus the last error.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::TransportMode;

/// The source's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// On demand and nobody is watching: not connected.
    Idle,
    /// Connecting, DESCRIBE/SETUP/PLAY in progress.
    Connecting,
    /// PLAY answered; packets flow into the hub.
    Playing,
    /// The last attempt failed; waiting out the backoff delay.
    Retrying,
    /// Stopped for good (shutdown).
    Stopped,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Idle => "idle",
            SourceState::Connecting => "connecting",
            SourceState::Playing => "playing",
            SourceState::Retrying => "retrying",
            SourceState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for SourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one source. Nothing in it contains credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    pub state: SourceState,
    /// The camera URL with credentials redacted.
    pub url: String,
    /// The transport of the current (or last) session: `tcp` or `udp`.
    pub transport: Option<TransportMode>,
    /// The most recent failure (kept while playing again, for diagnosis).
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// Sessions that reached PLAY.
    pub sessions: u64,
    /// Failed attempts since the last healthy session.
    pub consecutive_failures: u32,
    /// While `Retrying`: the backoff delay being waited out.
    pub retry_in: Option<Duration>,
}

impl SourceStatus {
    pub(crate) fn new(url: String) -> SourceStatus {
        SourceStatus {
            state: SourceState::Idle,
            url,
            transport: None,
            last_error: None,
            last_error_at: None,
            sessions: 0,
            consecutive_failures: 0,
            retry_in: None,
        }
    }
}
