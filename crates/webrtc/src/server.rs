//! Every WHEP viewer and WHIP publisher of the process behind one UDP socket:
//! sessions by id,
//! datagrams demultiplexed to their viewer (str0m's `accepts`: the remote
//! address once ICE nominated it, the STUN username before), and one payload
//! cache per stream. Sans-IO: the caller feeds datagrams, frames and time, and
//! sends what [`WhepServer::take_transmits`] returns.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use str0m::net::{Protocol, Receive};
use str0m::Input;
use streamgate_rtp::Frame;
use streamgate_rtp::{TrackId, TrackInfo};

use crate::payloads::PayloadCache;
use crate::publisher::{Publisher, PublisherEvent};
use crate::viewer::{Local, OfferError, Viewer, ViewerEvent};

/// An unguessable session id (128 random bits, hex): the session URL's last
/// segment, so knowing one viewer's URL gives no hold on another's.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    fn random() -> SessionId {
        let bits: u128 = rand::random();
        SessionId(format!("{bits:032x}"))
    }

    /// Parses a session URL's segment (any other string names no session).
    pub fn parse(s: &str) -> Option<SessionId> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| SessionId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    // Only a prefix: the whole id is a capability.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.0[..8])
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A viewer asked for a keyframe (rate limited per viewer): the caller asks
    /// the source. The viewer resends its cached GOP itself if none comes.
    KeyframeRequest(SessionId),
    Connected(SessionId),
    /// The viewer's connection ended (ICE/DTLS gone): the caller drops its feed.
    Closed(SessionId),
    /// An RTP packet a WHIP publisher sent on `track`: the caller feeds it to
    /// the stream's ingest.
    Rtp {
        id: SessionId,
        track: TrackId,
        packet: Bytes,
    },
}

struct Session {
    stream: String,
    etag: String,
    peer: Peer,
}

/// The two kinds of session on the socket.
enum Peer {
    Viewer(Viewer),
    Publisher(Publisher),
}

impl Peer {
    fn accepts(&self, input: &Input) -> bool {
        match self {
            Peer::Viewer(v) => v.accepts(input),
            Peer::Publisher(p) => p.accepts(input),
        }
    }

    fn receive(&mut self, now: Instant, input: Input, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        match self {
            Peer::Viewer(v) => v.receive(now, input, out),
            Peer::Publisher(p) => p.receive(now, input, out),
        }
    }

    fn timeout(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        match self {
            Peer::Viewer(v) => v.timeout(now, out),
            Peer::Publisher(p) => p.timeout(now, out),
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            Peer::Viewer(v) => v.deadline,
            Peer::Publisher(p) => p.deadline,
        }
    }

    fn is_alive(&self) -> bool {
        match self {
            Peer::Viewer(v) => v.is_alive(),
            Peer::Publisher(p) => p.is_alive(),
        }
    }

    fn disconnect(&mut self) {
        match self {
            Peer::Viewer(v) => v.disconnect(),
            Peer::Publisher(p) => p.disconnect(),
        }
    }

    fn add_remote_candidate(&mut self, line: &str) -> Result<(), String> {
        match self {
            Peer::Viewer(v) => v.add_remote_candidate(line),
            Peer::Publisher(p) => p.add_remote_candidate(line),
        }
    }
}

pub struct WhepServer {
    local: Local,
    /// The socket's own address (the destination of every datagram).
    socket: SocketAddr,
    sessions: HashMap<SessionId, Session>,
    /// Remote address → session, learned when a session accepts a datagram
    /// from it: later datagrams skip the scan over every session.
    by_source: HashMap<SocketAddr, SessionId>,
    payloads: HashMap<String, PayloadCache>,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<ServerEvent>,
    /// Datagrams no viewer accepted (late STUN of a closed session, scans).
    pub unmatched: u64,
    /// Cached GOPs resent to viewers whose keyframe request the source did not
    /// answer (see [`crate::viewer::KEYFRAME_WAIT`]).
    pub gop_resends: u64,
}

impl WhepServer {
    pub fn new(local: Local, socket: SocketAddr) -> WhepServer {
        WhepServer {
            local,
            socket,
            sessions: HashMap::new(),
            by_source: HashMap::new(),
            payloads: HashMap::new(),
            transmits: Vec::new(),
            events: Vec::new(),
            unmatched: 0,
            gop_resends: 0,
        }
    }

    /// Accepts an offer for `stream`: the new session's id, its ETag and the answer.
    pub fn offer(
        &mut self,
        now: Instant,
        stream: &str,
        sdp: &str,
        tracks: &[TrackInfo],
    ) -> Result<(SessionId, String, String), OfferError> {
        let (viewer, answer) = Viewer::accept(now, &self.local, sdp, tracks)?;
        let (id, etag) = self.insert(stream, Peer::Viewer(viewer));
        Ok((id, etag, answer))
    }

    /// Accepts a WHIP publisher's offer for `stream`: the session's id, its
    /// ETag, the answer and the tracks its packets ([`ServerEvent::Rtp`]) are of.
    pub fn publish(
        &mut self,
        now: Instant,
        stream: &str,
        sdp: &str,
    ) -> Result<(SessionId, String, String, Vec<TrackInfo>), OfferError> {
        let (publisher, answer, tracks) = Publisher::accept(now, &self.local, sdp)?;
        let (id, etag) = self.insert(stream, Peer::Publisher(publisher));
        Ok((id, etag, answer, tracks))
    }

    fn insert(&mut self, stream: &str, peer: Peer) -> (SessionId, String) {
        let id = SessionId::random();
        let etag = format!("\"{}\"", SessionId::random().0);
        self.sessions.insert(
            id.clone(),
            Session {
                stream: stream.to_owned(),
                etag: etag.clone(),
                peer,
            },
        );
        (id, etag)
    }

    /// Sessions of both kinds, viewers and publishers.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Viewers per stream name.
    pub fn viewers(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for session in self.sessions.values() {
            if matches!(session.peer, Peer::Publisher(_)) {
                continue;
            }
            *counts.entry(session.stream.clone()).or_default() += 1;
        }
        counts
    }

    pub fn stream_of(&self, id: &SessionId) -> Option<&str> {
        self.sessions.get(id).map(|s| s.stream.as_str())
    }

    pub fn etag(&self, id: &SessionId) -> Option<&str> {
        self.sessions.get(id).map(|s| s.etag.as_str())
    }

    /// Ends a session (DELETE): false when there is none.
    pub fn remove(&mut self, id: &SessionId) -> bool {
        let Some(mut session) = self.sessions.remove(id) else {
            return false;
        };
        session.peer.disconnect();
        self.by_source.retain(|_, owner| owner != id);
        if !self.sessions.values().any(|s| s.stream == session.stream) {
            self.payloads.remove(&session.stream);
        }
        true
    }

    /// Trickled candidates (`a=candidate:` lines of an sdpfrag) for a session.
    pub fn trickle(&mut self, id: &SessionId, sdpfrag: &str) -> Result<usize, String> {
        let session = self.sessions.get_mut(id).ok_or("no such session")?;
        let mut added = 0;
        for line in sdpfrag.lines() {
            if let Some(candidate) = line.trim().strip_prefix("a=candidate:") {
                session
                    .peer
                    .add_remote_candidate(&format!("candidate:{candidate}"))?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// An ICE restart with the browser's new credentials (from its sdpfrag):
    /// our sdpfrag and the session's new ETag.
    pub fn ice_restart(
        &mut self,
        now: Instant,
        id: &SessionId,
        sdpfrag: &str,
    ) -> Result<(String, String), String> {
        let value = |key: &str| {
            sdpfrag
                .lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(str::to_owned)
                .ok_or(format!("the sdpfrag has no {key}"))
        };
        let (ufrag, pwd) = (value("a=ice-ufrag:")?, value("a=ice-pwd:")?);
        let session = self.sessions.get_mut(id).ok_or("no such session")?;
        let Peer::Viewer(viewer) = &mut session.peer else {
            return Err("WHIP publishers restart ICE with a new POST".into());
        };
        let frag = viewer.ice_restart(now, &ufrag, &pwd)?;
        session.etag = format!("\"{}\"", SessionId::random().0);
        Ok((frag, session.etag.clone()))
    }

    /// A datagram from the socket.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        let Ok(contents) = datagram.try_into() else {
            self.unmatched += 1;
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.socket,
                contents,
            },
        );
        let known = self
            .by_source
            .get(&source)
            .filter(|id| {
                self.sessions
                    .get(*id)
                    .is_some_and(|s| s.peer.accepts(&input))
            })
            .cloned();
        let id = match known {
            Some(id) => id,
            None => {
                let Some(id) = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.peer.accepts(&input))
                    .map(|(id, _)| id.clone())
                else {
                    self.unmatched += 1;
                    return;
                };
                self.by_source.insert(source, id.clone());
                id
            }
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.peer.receive(now, input, &mut self.transmits);
        self.collect(&id);
    }

    /// One frame of a viewer's Hub subscription.
    pub fn send_frame(
        &mut self,
        now: Instant,
        id: &SessionId,
        origin: (Instant, SystemTime),
        frame: &Arc<Frame>,
    ) {
        let Some(Session {
            stream,
            peer: Peer::Viewer(viewer),
            ..
        }) = self.sessions.get_mut(id)
        else {
            return;
        };
        let payloads = self.payloads.entry(stream.clone()).or_default().get(frame);
        viewer.send_frame(now, origin, frame, &payloads, &mut self.transmits);
        self.collect(id);
    }

    /// The earliest time a viewer needs [`WhepServer::timeout`].
    pub fn next_timeout(&self) -> Option<Instant> {
        self.sessions.values().map(|s| s.peer.deadline()).min()
    }

    /// Drives every viewer whose deadline has come.
    pub fn timeout(&mut self, now: Instant) {
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.peer.deadline() <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.peer.timeout(now, &mut self.transmits);
            }
            self.collect(&id);
        }
    }

    /// Datagrams to send, in order.
    pub fn take_transmits(&mut self) -> std::vec::Drain<'_, (SocketAddr, Vec<u8>)> {
        self.transmits.drain(..)
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// Moves a viewer's events out and drops it once its connection ended.
    fn collect(&mut self, id: &SessionId) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        match &mut session.peer {
            Peer::Viewer(viewer) => {
                for event in viewer.events.drain(..) {
                    self.events.push(match event {
                        ViewerEvent::KeyframeRequest => ServerEvent::KeyframeRequest(id.clone()),
                        ViewerEvent::Connected => ServerEvent::Connected(id.clone()),
                        ViewerEvent::GopResent => {
                            self.gop_resends += 1;
                            continue;
                        }
                    });
                }
            }
            Peer::Publisher(publisher) => {
                self.events
                    .extend(publisher.events.drain(..).map(|event| match event {
                        PublisherEvent::Connected => ServerEvent::Connected(id.clone()),
                        PublisherEvent::Rtp(track, packet) => ServerEvent::Rtp {
                            id: id.clone(),
                            track,
                            packet,
                        },
                    }));
            }
        }
        if !session.peer.is_alive() {
            self.remove(id);
            self.events.push(ServerEvent::Closed(id.clone()));
        }
    }
}
