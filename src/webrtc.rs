//! The WHEP server's thin I/O task: one UDP socket for every viewer and WHIP
//! publisher, the viewers' Hub subscriptions, the publishers' hold on their
//! streams (their packets go into the stream's ingest, as an RTSP publisher's
//! do), and a command channel the HTTP handlers (`http::whep`) use.
//! Everything WebRTC is `streamgate_webrtc::WhepServer`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamgate_pipeline::{Hub, Subscription};
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::{Frame, TrackInfo};
use streamgate_rtsp::server::Publisher;
use streamgate_webrtc::{Local, OfferError, ServerEvent, SessionId, WhepServer};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::WebrtcConfig;

/// Frames waiting for the server loop, from every viewer's feed together. A
/// full channel holds the feeds back, and the Hub then drops a lagging viewer
/// to its next keyframe (counted in its subscription).
const FRAME_CHANNEL: usize = 4096;
/// Largest datagram read (anything larger is not WebRTC from a browser).
const MAX_DATAGRAM: usize = 2048;

/// Figures `/metrics` and the API read.
#[derive(Default)]
pub struct WhepCounts {
    pub viewers: AtomicUsize,
    /// Frames the Hub skipped for viewers that fell behind (to the next keyframe).
    pub skipped_frames: AtomicU64,
    /// Datagrams the socket could not take (its buffer was full).
    pub send_drops: AtomicU64,
    pub sessions_total: AtomicU64,
    /// Cached GOPs resent because the source made no keyframe for a viewer's request.
    pub gop_resends: AtomicU64,
    per_stream: std::sync::Mutex<HashMap<String, usize>>,
}

impl WhepCounts {
    /// Viewers per stream name now.
    pub fn viewers_of(&self) -> HashMap<String, usize> {
        self.per_stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Why an offer got no session.
#[derive(Debug)]
pub enum Refused {
    /// `max_viewers` reached.
    Full,
    Offer(OfferError),
    /// The server task is gone (shutting down).
    Stopped,
}

/// Why a PATCH failed.
#[derive(Debug)]
pub enum PatchRefused {
    NotFound,
    /// If-Match did not match the session's ETag.
    EtagMismatch,
    Bad(String),
}

pub struct Answer {
    pub id: SessionId,
    pub etag: String,
    pub sdp: String,
}

enum Command {
    Offer {
        stream: String,
        subscription: Subscription,
        tracks: Arc<[TrackInfo]>,
        sdp: String,
        reply: oneshot::Sender<Result<Answer, Refused>>,
    },
    /// A WHIP offer of the stream `publisher` holds.
    Publish {
        stream: String,
        publisher: Publisher,
        sdp: String,
        reply: oneshot::Sender<Result<Answer, Refused>>,
    },
    Delete {
        stream: String,
        id: SessionId,
        reply: oneshot::Sender<bool>,
    },
    Trickle {
        stream: String,
        id: SessionId,
        if_match: String,
        sdpfrag: String,
        reply: oneshot::Sender<Result<Patched, PatchRefused>>,
    },
}

/// What a PATCH did.
pub enum Patched {
    Trickled,
    /// An ICE restart: the server's sdpfrag and the session's new ETag.
    Restarted {
        sdpfrag: String,
        etag: String,
    },
}

/// What the HTTP handlers hold: cheap to clone.
#[derive(Clone)]
pub struct WhepHandle {
    commands: mpsc::Sender<Command>,
    pub counts: Arc<WhepCounts>,
    pub local_addr: SocketAddr,
}

impl WhepHandle {
    pub async fn offer(
        &self,
        stream: &str,
        subscription: Subscription,
        tracks: Arc<[TrackInfo]>,
        sdp: String,
    ) -> Result<Answer, Refused> {
        self.ask(|reply| Command::Offer {
            stream: stream.to_owned(),
            subscription,
            tracks,
            sdp,
            reply,
        })
        .await
        .unwrap_or(Err(Refused::Stopped))
    }

    /// A WHIP publisher's offer: `publisher` (the stream's claimed publish
    /// point) is fed for as long as the session lasts.
    pub async fn publish(
        &self,
        stream: &str,
        publisher: Publisher,
        sdp: String,
    ) -> Result<Answer, Refused> {
        self.ask(|reply| Command::Publish {
            stream: stream.to_owned(),
            publisher,
            sdp,
            reply,
        })
        .await
        .unwrap_or(Err(Refused::Stopped))
    }

    pub async fn delete(&self, stream: &str, id: SessionId) -> bool {
        self.ask(|reply| Command::Delete {
            stream: stream.to_owned(),
            id,
            reply,
        })
        .await
        .unwrap_or(false)
    }

    pub async fn trickle(
        &self,
        stream: &str,
        id: SessionId,
        if_match: String,
        sdpfrag: String,
    ) -> Result<Patched, PatchRefused> {
        self.ask(|reply| Command::Trickle {
            stream: stream.to_owned(),
            id,
            if_match,
            sdpfrag,
            reply,
        })
        .await
        .unwrap_or(Err(PatchRefused::NotFound))
    }

    /// Sends the server task `command` with a reply channel and waits for the
    /// reply; None when the task has stopped.
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }
}

/// A viewer's Hub subscription, forwarded into the server loop.
struct Feed {
    hub: Hub,
    task: JoinHandle<()>,
}

/// Binds `[webrtc] listen` and starts the server task.
pub async fn start(config: &WebrtcConfig) -> std::io::Result<WhepHandle> {
    let socket = UdpSocket::bind(config.listen).await?;
    let local_addr = socket.local_addr()?;
    let candidates = candidates(config, local_addr).await;
    let cert = streamgate_webrtc::process_certificate().ok_or_else(|| {
        std::io::Error::other("the crypto provider cannot make a DTLS certificate")
    })?;
    tracing::info!(listen = %local_addr, candidates = ?candidates, "WHEP server (WebRTC) on one UDP port");
    let server = WhepServer::new(Local { cert, candidates }, local_addr);
    let (commands, receiver) = mpsc::channel(64);
    let counts = Arc::new(WhepCounts::default());
    tokio::spawn(run(
        socket,
        server,
        receiver,
        counts.clone(),
        config.max_viewers,
    ));
    Ok(WhepHandle {
        commands,
        counts,
        local_addr,
    })
}

/// The advertised host candidates: `advertise` (names resolved now), else the
/// listen address, else (listening on every interface) the outbound address
/// and loopback.
async fn candidates(config: &WebrtcConfig, local: SocketAddr) -> Vec<SocketAddr> {
    let port = local.port();
    let mut out = Vec::new();
    for host in &config.advertise {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => out.extend(addrs),
            Err(error) => {
                tracing::warn!(%host, %error, "[webrtc] advertise: not resolved, skipped")
            }
        }
    }
    if out.is_empty() && !local.ip().is_unspecified() {
        out.push(local);
    }
    if out.is_empty() {
        // Connecting a UDP socket sends nothing; it only picks the route's source address.
        let outbound = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).map(|_| s))
            .and_then(|s| s.local_addr());
        if let Ok(addr) = outbound {
            out.push(SocketAddr::new(addr.ip(), port));
        }
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    out
}

async fn run(
    socket: UdpSocket,
    mut server: WhepServer,
    mut commands: mpsc::Receiver<Command>,
    counts: Arc<WhepCounts>,
    max_viewers: usize,
) {
    let (frames_tx, mut frames) = mpsc::channel::<(SessionId, Option<Arc<Frame>>)>(FRAME_CHANNEL);
    let mut feeds: HashMap<SessionId, Feed> = HashMap::new();
    let mut publishers: HashMap<SessionId, Publisher> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let deadline = server
            .next_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, source)) => server.receive(Instant::now(), source, &buf[..n]),
                Err(error) => tracing::debug!(%error, "WebRTC socket read"),
            },
            command = commands.recv() => {
                let Some(command) = command else { break };
                let sessions = (&mut feeds, &mut publishers);
                handle(command, &mut server, sessions, &frames_tx, &counts, max_viewers);
            },
            Some((id, frame)) = frames.recv() => match frame {
                Some(frame) => {
                    if let Some(feed) = feeds.get(&id) {
                        server.send_frame(Instant::now(), &id, feed.hub.origin(), &frame);
                    }
                }
                // The stream was removed or replaced: its viewers' sessions end.
                None => {
                    tracing::info!(session = %id, "WHEP viewer's stream ended");
                    server.remove(&id);
                    feeds.remove(&id);
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => server.timeout(Instant::now()),
        }
        for (destination, datagram) in server.take_transmits() {
            if socket.try_send_to(&datagram, destination).is_err() {
                counts.send_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some(event) = server.poll_event() {
            match event {
                // Sources that cannot make one ignore it; the viewer then
                // resends its cached GOP by itself.
                ServerEvent::KeyframeRequest(id) => {
                    if let Some(feed) = feeds.get(&id) {
                        feed.hub.request_keyframe();
                    }
                }
                ServerEvent::Connected(id) => {
                    tracing::debug!(session = %id, "WebRTC session connected")
                }
                ServerEvent::Closed(id) => {
                    if publishers.remove(&id).is_some() {
                        tracing::info!(session = %id, "WHIP publisher gone");
                    }
                    if let Some(feed) = feeds.remove(&id) {
                        tracing::info!(session = %id, "WHEP viewer gone");
                        feed.task.abort();
                    }
                }
                ServerEvent::Rtp { id, track, packet } => {
                    let Some(publisher) = publishers.get_mut(&id) else {
                        continue;
                    };
                    // Replaced by another publisher, or the stream stopped.
                    if !publisher.is_current() {
                        tracing::info!(session = %id, "WHIP publisher replaced or its stream stopped");
                        publishers.remove(&id);
                        server.remove(&id);
                        continue;
                    }
                    ingest_rtp(publisher, track, packet);
                }
            }
        }
        let viewers = server.viewers();
        counts
            .viewers
            .store(viewers.values().sum(), Ordering::Relaxed);
        counts
            .gop_resends
            .store(server.gop_resends, Ordering::Relaxed);
        *counts.per_stream.lock().unwrap_or_else(|e| e.into_inner()) = viewers;
    }
    for feed in feeds.into_values() {
        feed.task.abort();
    }
}

/// One packet of a WHIP publisher into its stream's ingest; what does not
/// parse or fit is counted as the RTSP publisher's is.
fn ingest_rtp(publisher: &mut Publisher, track: streamgate_rtp::TrackId, packet: bytes::Bytes) {
    let pushed = match (RtpPacket::parse(packet), publisher.ingest()) {
        (Ok(packet), Some(ingest)) => ingest.push_rtp(track, packet, Instant::now()).is_ok(),
        _ => false,
    };
    if !pushed {
        publisher
            .point()
            .counts()
            .bad_packets
            .fetch_add(1, Ordering::Relaxed);
    }
}

fn handle(
    command: Command,
    server: &mut WhepServer,
    (feeds, publishers): (
        &mut HashMap<SessionId, Feed>,
        &mut HashMap<SessionId, Publisher>,
    ),
    frames: &mpsc::Sender<(SessionId, Option<Arc<Frame>>)>,
    counts: &Arc<WhepCounts>,
    max_viewers: usize,
) {
    match command {
        Command::Offer {
            stream,
            subscription,
            tracks,
            sdp,
            reply,
        } => {
            if server.viewers().values().sum::<usize>() >= max_viewers {
                let _ = reply.send(Err(Refused::Full));
                return;
            }
            let result = server.offer(Instant::now(), &stream, &sdp, &tracks);
            let result = match result {
                Ok((id, etag, sdp)) => {
                    let hub = subscription.hub().clone();
                    let task = tokio::spawn(feed(
                        id.clone(),
                        subscription,
                        frames.clone(),
                        counts.clone(),
                    ));
                    feeds.insert(id.clone(), Feed { hub, task });
                    counts.sessions_total.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%stream, session = %id, "WHEP viewer joined");
                    Ok(Answer { id, etag, sdp })
                }
                Err(error) => Err(Refused::Offer(error)),
            };
            let _ = reply.send(result);
        }
        Command::Publish {
            stream,
            mut publisher,
            sdp,
            reply,
        } => {
            let result = match server.publish(Instant::now(), &stream, &sdp) {
                Ok((id, etag, sdp, tracks)) => {
                    publisher.start(&tracks);
                    tracing::info!(%stream, session = %id, tracks = tracks.len(), "WHIP publisher joined");
                    publishers.insert(id.clone(), publisher);
                    Ok(Answer { id, etag, sdp })
                }
                Err(error) => Err(Refused::Offer(error)),
            };
            let _ = reply.send(result);
        }
        Command::Delete { stream, id, reply } => {
            let mine = server.stream_of(&id) == Some(stream.as_str());
            let deleted = mine && server.remove(&id);
            if deleted {
                publishers.remove(&id);
            }
            if let Some(feed) = feeds.remove(&id).filter(|_| deleted) {
                feed.task.abort();
            }
            let _ = reply.send(deleted);
        }
        Command::Trickle {
            stream,
            id,
            if_match,
            sdpfrag,
            reply,
        } => {
            // RFC 9725: `If-Match: *` asks for an ICE restart; a trickle names the ETag.
            let result = if server.stream_of(&id) != Some(stream.as_str()) {
                Err(PatchRefused::NotFound)
            } else if if_match == "*" {
                server
                    .ice_restart(Instant::now(), &id, &sdpfrag)
                    .map(|(sdpfrag, etag)| Patched::Restarted { sdpfrag, etag })
                    .map_err(PatchRefused::Bad)
            } else if server.etag(&id) != Some(if_match.as_str()) {
                Err(PatchRefused::EtagMismatch)
            } else {
                server
                    .trickle(&id, &sdpfrag)
                    .map(|_| Patched::Trickled)
                    .map_err(PatchRefused::Bad)
            };
            let _ = reply.send(result);
        }
    }
}

/// Forwards one viewer's subscription into the server loop, counting the
/// frames the Hub skipped for it; `None` when the stream ended.
async fn feed(
    id: SessionId,
    mut subscription: Subscription,
    frames: mpsc::Sender<(SessionId, Option<Arc<Frame>>)>,
    counts: Arc<WhepCounts>,
) {
    let mut dropped = 0;
    while let Some(frame) = subscription.recv().await {
        let now_dropped = subscription.dropped();
        counts
            .skipped_frames
            .fetch_add(now_dropped - dropped, Ordering::Relaxed);
        dropped = now_dropped;
        if frames.send((id.clone(), Some(frame))).await.is_err() {
            return;
        }
    }
    let _ = frames.send((id, None)).await;
}
