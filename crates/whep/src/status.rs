//! What a WHEP source is doing, for the binary's API and logs. Every string in it is
//! redacted (no token, no URL user info or query).

use std::time::Duration;

#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhepState {
    /// On demand and nobody is watching: no session.
    Idle,
    /// Negotiating the first session (or the first after a failure).
    Connecting,
    /// Media flows from one session.
    Streaming,
    /// Media flows from one session while the next one is being opened.
    Rotating,
    /// Waiting before the next attempt (stepped backoff or the server's `Retry-After`).
    Backoff {
        retry_in: Duration,
    },
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhepStatus {
    pub state: WhepState,
    /// The latest failure, kept after recovery so the API can show what went wrong.
    pub last_error: Option<String>,
    /// The session media currently comes from (redacted URL).
    pub session: Option<String>,
    /// Sessions the server created.
    pub sessions_opened: u64,
    /// Make-before-break switches from one session to the next.
    pub rotations: u64,
    /// Failed attempts and failed sessions.
    pub failures: u64,
}

impl Default for WhepStatus {
    fn default() -> Self {
        WhepStatus {
            state: WhepState::Connecting,
            last_error: None,
            session: None,
            sessions_opened: 0,
            rotations: 0,
            failures: 0,
        }
    }
}
