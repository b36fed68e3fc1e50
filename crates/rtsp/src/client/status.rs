//! What the source is doing, for the binary's API: state plus the last error.

use std::time::SystemTime;

use streamgate_pipeline::SourceState;

use super::TransportMode;

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
        }
    }
}
