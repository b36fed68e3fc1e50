//! Who is reading over RTSP now, and how much each got: the API lists the
//! readers with their addresses, `/metrics` sums their counters per stream.
//! The same registry carries the server-wide counts of the limits clients ran
//! into ([`Readers::limit_counts`], see [`super::limits`]).
//!
//! A session registers at PLAY and holds a [`ReaderGuard`]; the guard's `Drop`
//! removes it (PAUSE, TEARDOWN, a closed or cut-off connection alike) and folds
//! its counts into the stream's totals, so those only ever grow. The writer adds
//! to two atomics once per write batch; the lock is taken only at PLAY, at the
//! end of a session and when someone looks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use super::limits::{LimitCounters, LimitCounts, Limited};

/// How a reader receives RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderTransport {
    /// Interleaved on the RTSP connection.
    Tcp,
    Udp,
}

impl ReaderTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ReaderTransport::Tcp => "tcp",
            ReaderTransport::Udp => "udp",
        }
    }
}

/// One playing session as [`Readers::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    pub stream: String,
    pub peer: SocketAddr,
    pub transport: ReaderTransport,
    /// When PLAY started it.
    pub since: SystemTime,
    /// RTP and RTCP packets written to it.
    pub packets: u64,
    /// Bytes written to it (TCP: with the interleave prefix; UDP: datagram payloads).
    pub bytes: u64,
}

/// Packets and bytes sent to a stream's RTSP readers since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputTotals {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug)]
struct Reader {
    stream: String,
    peer: SocketAddr,
    transport: ReaderTransport,
    since: SystemTime,
    packets: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    active: HashMap<u64, Arc<Reader>>,
    /// Counts of the stream's readers that have ended.
    ended: HashMap<String, OutputTotals>,
}

#[derive(Debug, Default)]
struct Shared {
    registry: Mutex<Registry>,
    limits: LimitCounters,
}

/// The RTSP server's reader registry and counters; clones share it (one in the
/// `ServerConfig`, one in the HTTP API).
#[derive(Debug, Clone, Default)]
pub struct Readers(Arc<Shared>);

impl Readers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How often clients ran into each limit since the server started (all
    /// connections together; they only grow).
    pub fn limit_counts(&self) -> LimitCounts {
        self.0.limits.counts()
    }

    /// Counts one occurrence of `kind`; `Some(left_out)` when a log line about
    /// it is due (see [`LimitCounters::hit`]).
    pub(crate) fn limit_hit(&self, kind: Limited, now: Instant) -> Option<u64> {
        self.0.limits.hit(kind, now)
    }

    /// Records a reader that started playing; it stays listed while the guard lives.
    pub fn register(
        &self,
        stream: &str,
        peer: SocketAddr,
        transport: ReaderTransport,
    ) -> ReaderGuard {
        let reader = Arc::new(Reader {
            stream: stream.to_owned(),
            peer,
            transport,
            since: SystemTime::now(),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id = registry.next_id.wrapping_add(1);
        registry.active.insert(id, Arc::clone(&reader));
        ReaderGuard {
            readers: self.clone(),
            id,
            reader,
        }
    }

    /// The readers playing now, oldest first (all streams, or one).
    pub fn list(&self, stream: Option<&str>) -> Vec<ReaderInfo> {
        let registry = self.lock();
        let mut readers: Vec<ReaderInfo> = registry
            .active
            .values()
            .filter(|r| stream.is_none_or(|s| r.stream == s))
            .map(|r| ReaderInfo {
                stream: r.stream.clone(),
                peer: r.peer,
                transport: r.transport,
                since: r.since,
                packets: r.packets.load(Ordering::Relaxed),
                bytes: r.bytes.load(Ordering::Relaxed),
            })
            .collect();
        readers.sort_by_key(|r| (r.since, r.peer));
        readers
    }

    /// What the stream's readers, playing and ended, were sent.
    pub fn totals(&self, stream: &str) -> OutputTotals {
        let registry = self.lock();
        let mut totals = registry.ended.get(stream).copied().unwrap_or_default();
        for reader in registry.active.values().filter(|r| r.stream == stream) {
            totals.packets = totals
                .packets
                .wrapping_add(reader.packets.load(Ordering::Relaxed));
            totals.bytes = totals
                .bytes
                .wrapping_add(reader.bytes.load(Ordering::Relaxed));
        }
        totals
    }

    /// Forgets the ended readers' counts of a stream that was removed.
    pub fn forget(&self, stream: &str) {
        self.lock().ended.remove(stream);
    }
}

/// Keeps one reader listed; dropping it unlists the reader.
#[derive(Debug)]
pub struct ReaderGuard {
    readers: Readers,
    id: u64,
    reader: Arc<Reader>,
}

impl ReaderGuard {
    /// Counts one write to the reader.
    pub fn record(&self, packets: usize, bytes: usize) {
        self.reader
            .packets
            .fetch_add(packets as u64, Ordering::Relaxed);
        self.reader.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut registry = self.readers.lock();
        registry.active.remove(&self.id);
        let ended = registry
            .ended
            .entry(self.reader.stream.clone())
            .or_default();
        ended.packets = ended
            .packets
            .wrapping_add(self.reader.packets.load(Ordering::Relaxed));
        ended.bytes = ended
            .bytes
            .wrapping_add(self.reader.bytes.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_listed_while_playing_and_totals_only_grow() {
        let readers = Readers::default();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let first = readers.register("cam", peer, ReaderTransport::Tcp);
        let other = readers.register("door", peer, ReaderTransport::Udp);
        first.record(3, 300);
        other.record(1, 10);
        let listed = readers.list(Some("cam"));
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].peer, listed[0].transport, listed[0].packets),
            (peer, ReaderTransport::Tcp, 3)
        );
        assert_eq!(readers.list(None).len(), 2);
        drop(first);
        assert!(readers.list(Some("cam")).is_empty());
        let second = readers.register("cam", peer, ReaderTransport::Udp);
        second.record(2, 20);
        assert_eq!(
            readers.totals("cam"),
            OutputTotals {
                packets: 5,
                bytes: 320
            }
        );
        drop(second);
        readers.forget("cam");
        assert_eq!(readers.totals("cam"), OutputTotals::default());
        assert_eq!(readers.totals("door").packets, 1);
    }
}
