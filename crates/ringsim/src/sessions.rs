//! The WHEP session table, sans-IO: which sessions are open, when each reaches
//! its cap, and how sessions ended. Whoever removes a session first (a DELETE, the
//! cap, the peer going away) decides how it is counted; the I/O side only closes
//! the peer connection of a session this table gave back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Most sessions open at once over all devices (each holds a peer connection).
pub(crate) const MAX_SESSIONS: usize = 64;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The device's cap (30 s battery / 60 s wired) ran out: the simulator closed it.
    Cap,
    /// The client sent DELETE.
    Deleted,
    /// The peer connection failed or closed on its own.
    PeerGone,
    /// The device went offline or was removed, or the simulator stopped.
    Dropped,
}

pub(crate) struct OpenSession {
    pub device: String,
    pub account: String,
}

/// Session counters for `/sim/stats`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionStats {
    pub opened: u64,
    pub active: usize,
    pub closed_at_cap: u64,
    pub deleted: u64,
    pub peer_gone: u64,
    pub dropped: u64,
}

#[derive(Default)]
pub(crate) struct Sessions {
    open: HashMap<String, OpenSession>,
    stats: SessionStats,
}

impl Sessions {
    /// Opens a session on `device` capped at `cap`: its id and deadline, or None
    /// when [`MAX_SESSIONS`] are open.
    pub fn open(
        &mut self,
        device: &str,
        account: &str,
        cap: Duration,
        now: Instant,
    ) -> Option<(String, Instant)> {
        if self.open.len() >= MAX_SESSIONS {
            return None;
        }
        let mut bytes = [0u8; 12];
        rand::rng().fill_bytes(&mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let deadline = now + cap;
        self.open.insert(
            id.clone(),
            OpenSession {
                device: device.to_owned(),
                account: account.to_owned(),
            },
        );
        self.stats.opened += 1;
        Some((id, deadline))
    }

    pub fn get(&self, id: &str) -> Option<&OpenSession> {
        self.open.get(id)
    }

    /// Ends a session; None if it had already ended (the first cause wins).
    pub fn end(&mut self, id: &str, why: Ended) -> Option<OpenSession> {
        let session = self.open.remove(id)?;
        match why {
            Ended::Cap => self.stats.closed_at_cap += 1,
            Ended::Deleted => self.stats.deleted += 1,
            Ended::PeerGone => self.stats.peer_gone += 1,
            Ended::Dropped => self.stats.dropped += 1,
        }
        Some(session)
    }

    /// Sessions open on `device` (a device that goes offline drops them).
    pub fn on_device(&self, device: &str) -> Vec<String> {
        self.open
            .iter()
            .filter(|(_, s)| s.device == device)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            active: self.open.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_end_counts() {
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        let (a, deadline) = sessions
            .open("d1", "acct", Duration::from_secs(30), t0)
            .unwrap();
        assert_eq!(deadline, t0 + Duration::from_secs(30));
        let (b, _) = sessions
            .open("d2", "acct", Duration::from_secs(60), t0)
            .unwrap();
        assert!(sessions.end(&a, Ended::Cap).is_some());
        // A DELETE racing the cap finds the session gone and counts nothing.
        assert!(sessions.end(&a, Ended::Deleted).is_none());
        assert_eq!(sessions.on_device("d2"), vec![b.clone()]);
        assert!(sessions.end(&b, Ended::Deleted).is_some());
        assert_eq!(
            sessions.stats(),
            SessionStats {
                opened: 2,
                active: 0,
                closed_at_cap: 1,
                deleted: 1,
                peer_gone: 0,
                dropped: 0,
            }
        );
    }

    #[test]
    fn open_sessions_are_bounded() {
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        for _ in 0..MAX_SESSIONS {
            assert!(sessions
                .open("d", "a", Duration::from_secs(1), t0)
                .is_some());
        }
        assert!(sessions
            .open("d", "a", Duration::from_secs(1), t0)
            .is_none());
    }
}
