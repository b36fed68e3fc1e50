//! The lifecycle state every network source (RTSP camera, WHEP) reports, so the
//! binary's API and logs name it the same way whatever the protocol.

use std::fmt;
use std::time::Duration;

/// What a source is doing now.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// On demand and nobody is watching: not connected.
    Idle,
    /// Opening a session (at start, after a failure's wait, or after an idle spell).
    Connecting,
    /// A session delivers media into the Hub.
    Playing,
    /// Media flows from one session while the next one is being opened
    /// (make-before-break rotation).
    Rotating,
    /// The last attempt failed; waiting `retry_in` (the stepped backoff, or longer
    /// when the server asked with `Retry-After`).
    Retrying { retry_in: Duration },
    /// Stopped for good (shutdown, or the stream was removed).
    Stopped,
}

impl SourceState {
    /// The state's name for the API: `idle`, `connecting`, `playing`, `rotating`,
    /// `retrying` or `stopped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceState::Idle => "idle",
            SourceState::Connecting => "connecting",
            SourceState::Playing => "playing",
            SourceState::Rotating => "rotating",
            SourceState::Retrying { .. } => "retrying",
            SourceState::Stopped => "stopped",
        }
    }

    /// While retrying: the wait before the next attempt.
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            SourceState::Retrying { retry_in } => Some(*retry_in),
            _ => None,
        }
    }
}

impl fmt::Display for SourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
