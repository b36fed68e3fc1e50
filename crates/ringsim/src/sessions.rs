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
    /// When it opened (ms since the epoch): Ring records while a live session runs.
    pub opened_ms: u64,
}

/// Ended sessions remembered as recorded time (the newest).
const MAX_RECORDED: usize = 1024;

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
    /// `(device, opened_ms, ended_ms)` of ended sessions, oldest first.
    recorded: std::collections::VecDeque<(String, u64, u64)>,
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
                opened_ms: epoch_ms(),
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
        if self.recorded.len() >= MAX_RECORDED {
            self.recorded.pop_front();
        }
        self.recorded
            .push_back((session.device.clone(), session.opened_ms, epoch_ms()));
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

    /// The time ranges (ms) live sessions ran on `device`, an open one until `now_ms`.
    pub fn recorded_on(&self, device: &str, now_ms: u64) -> Vec<(u64, u64)> {
        let ended = self
            .recorded
            .iter()
            .filter(|(d, _, _)| d == device)
            .map(|&(_, start, end)| (start, end));
        let open = self
            .open
            .values()
            .filter(|s| s.device == device)
            .map(|s| (s.opened_ms, now_ms.max(s.opened_ms)));
        ended.chain(open).collect()
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            active: self.open.len(),
            ..self.stats
        }
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_recorded_time() {
        let mut sessions = Sessions::default();
        let (a, _) = sessions
            .open("d1", "acct", Duration::from_secs(30), Instant::now())
            .unwrap();
        let now = epoch_ms();
        let open = sessions.recorded_on("d1", now + 5000);
        assert_eq!(open.len(), 1);
        assert!(open[0].1 >= now + 5000 && open[0].0 <= now);
        sessions.end(&a, Ended::Deleted);
        let ended = sessions.recorded_on("d1", now + 60_000);
        assert_eq!(ended.len(), 1);
        assert!(ended[0].1 < now + 60_000);
        assert!(sessions.recorded_on("d2", now).is_empty());
    }

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
