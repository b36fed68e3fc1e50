//! What a WHEP source is doing, for the binary's API and logs. Every string in it is
//! redacted (no token, no URL user info or query).

use streamgate_pipeline::SourceState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhepStatus {
    /// `Retrying` also while waiting out a server's `Retry-After`; `Rotating` while
    /// the next session is opened beside the one that streams.
    pub state: SourceState,
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
            state: SourceState::Connecting,
            last_error: None,
            session: None,
            sessions_opened: 0,
            rotations: 0,
            failures: 0,
        }
    }
}
