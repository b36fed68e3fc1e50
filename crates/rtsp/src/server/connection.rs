//! One client connection: a single task reads requests, answers them, and while
//! playing writes the session's frames (interleaved on this connection or over
//! UDP). Nothing here is shared with other readers, so a stalled client only
//! stalls its own task, and the write timeout then cuts it off.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtsp_types::Version;
use streamgate_rtp::MediaKind;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use super::framing::{Incoming, RequestReader};
use super::interleaved::Batch;
use super::response::{Response, Status};
use super::session::{ConnectionState, Player};
use super::{ServerConfig, StreamDirectory};

/// Most RTP packets gathered into one vectored write.
const MAX_PACKETS_PER_WRITE: usize = 256;
/// Most bytes gathered into one vectored write.
const MAX_BYTES_PER_WRITE: usize = 512 * 1024;
/// Read buffer for requests (they are small; the framing layer caps the total).
const READ_CHUNK: usize = 4096;

/// Why a connection ended (for the log).
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("no request, keep-alive or RTCP within the session timeout")]
    Idle,
    #[error("bad request: {0}")]
    BadRequest(super::framing::FramingError),
    #[error("write failed: {0}")]
    WriteFailed(std::io::Error),
    #[error("client stopped reading (write timeout)")]
    WriteTimeout,
    #[error("stream closed")]
    StreamClosed,
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    directory: Arc<dyn StreamDirectory>,
) {
    let _ = stream.set_nodelay(true);
    let local_ip = match stream.local_addr() {
        Ok(addr) => addr.ip(),
        Err(_) => return,
    };
    let (mut read_half, mut write_half) = stream.into_split();
    let mut state = ConnectionState::new(Arc::clone(&config), directory, peer, local_ip);
    let mut reader = RequestReader::new();
    let mut player: Option<Player> = None;
    let mut batch = Batch::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut last_request = Instant::now();
    let mut dropped_reported = 0u64;
    // The session has had video: its audio may wait for video to share a write.
    let mut video_expected = false;
    // One timer for the connection's life, re-armed when it fires: a timer made
    // per loop turn (per frame) costs a lock on the runtime's timer wheel.
    let idle = tokio::time::sleep(config.session_timeout);
    tokio::pin!(idle);

    let end = loop {
        tokio::select! {
            read = read_half.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break End::ClientClosed,
                    Ok(n) => n,
                };
                last_request = Instant::now();
                if let Err(e) = handle_input(&buf[..n], &mut reader, &mut state, &mut player, &mut batch).await {
                    let response = Response::new(Status::BadRequest, Version::V1_0, None).header("Connection", "close");
                    batch.push_raw(response.to_bytes());
                    let _ = write(&mut batch, &mut write_half, config.write_timeout).await;
                    break End::BadRequest(e);
                }
                if let Err(end) = write(&mut batch, &mut write_half, config.write_timeout).await {
                    break end;
                }
            }
            frame = next_frame(&mut player) => {
                let Some(frame) = frame else {
                    if let Some(closed) = player.as_ref() {
                        say_goodbye(closed, &mut batch).await;
                        let _ = write(&mut batch, &mut write_half, config.write_timeout).await;
                    }
                    break End::StreamClosed;
                };
                let Some(playing) = player.as_mut() else { continue };
                let mut next = Some(frame);
                let mut sent_udp = Sent::default();
                while let Some(frame) = next.take() {
                    video_expected |= frame.kind == MediaKind::Video
                        && playing.tracks.contains_key(&frame.track);
                    match deliver(playing, frame, &mut batch).await {
                        Ok(sent) => sent_udp.add(sent),
                        // Not fatal: a UDP client that went away times out instead.
                        Err(e) => tracing::trace!(%peer, error = %e, "UDP send failed"),
                    }
                    if batch.packets() < MAX_PACKETS_PER_WRITE && batch.bytes() < MAX_BYTES_PER_WRITE {
                        next = playing.try_next_frame();
                    }
                }
                let dropped = playing.subscription.dropped();
                if dropped > dropped_reported {
                    tracing::debug!(stream = ?state.stream(), %peer, dropped, "slow RTSP reader skipped to a keyframe");
                    dropped_reported = dropped;
                }
                if batch.due(Instant::now(), video_expected && playing.large_fan_out()) {
                    let sent_tcp = Sent { packets: batch.packets(), bytes: batch.bytes() };
                    if let Err(end) = write(&mut batch, &mut write_half, config.write_timeout).await {
                        break end;
                    }
                    sent_udp.add(sent_tcp);
                }
                playing.reader.record(sent_udp.packets, sent_udp.bytes);
            }
            _ = &mut idle => {
                let idle_until = last_activity(&state).max(last_request) + config.session_timeout;
                if idle_until <= Instant::now() {
                    break End::Idle;
                }
                idle.as_mut().reset(tokio::time::Instant::from_std(idle_until));
            }
        }
    };
    tracing::info!(stream = ?state.stream(), %peer, reason = %end, "RTSP connection ended");
}

/// Parses and answers everything complete in `input`; Err means 400 and close.
async fn handle_input(
    input: &[u8],
    reader: &mut RequestReader,
    state: &mut ConnectionState,
    player: &mut Option<Player>,
    batch: &mut Batch,
) -> Result<(), super::framing::FramingError> {
    reader.push(input)?;
    while let Some(incoming) = reader.next_message()? {
        let Incoming::Request(request) = incoming else {
            // Interleaved RTCP receiver reports: the read itself counted as activity.
            continue;
        };
        tracing::debug!(method = ?request.method(), "RTSP request");
        let reply = state.handle(&request).await;
        batch.push_raw(reply.response.to_bytes());
        if reply.stop {
            *player = None;
        }
        if let Some(mut started) = reply.play {
            for (track, report) in started.first_reports(Instant::now()) {
                let Some(delivery) = started.tracks.get(&track) else {
                    continue;
                };
                match &delivery.udp {
                    None => batch.push_rtcp(delivery.rtcp_channel, report),
                    Some(udp) => {
                        if let Err(e) = udp.send_rtcp(&report).await {
                            tracing::trace!(error = %e, "UDP sender report failed");
                        }
                    }
                }
            }
            *player = Some(started);
        }
    }
    Ok(())
}

/// Packets and bytes written to a reader, for its counters.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    packets: usize,
    bytes: usize,
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Queues one frame for a TCP session (counted when the batch is written) or
/// sends it over UDP (counted in the result).
async fn deliver(
    player: &mut Player,
    frame: Arc<streamgate_rtp::Frame>,
    batch: &mut Batch,
) -> std::io::Result<Sent> {
    let Some(track) = player.tracks.get_mut(&frame.track) else {
        return Ok(Sent::default());
    };
    if frame.packets.is_empty() {
        return Ok(Sent::default());
    }
    let report = track.reports.on_frame(&frame, Instant::now());
    match &track.udp {
        None => {
            if let Some(report) = report {
                batch.push_rtcp(track.rtcp_channel, report);
            }
            batch.push_frame(frame, track.output);
            Ok(Sent::default())
        }
        Some(udp) => {
            let mut sent = Sent::default();
            if let Some(report) = report {
                udp.send_rtcp(&report).await?;
                sent.add(Sent {
                    packets: 1,
                    bytes: report.len(),
                });
            }
            udp.send_rtp(&frame.packets, track.output.ssrc).await?;
            sent.add(Sent {
                packets: frame.packets.len(),
                bytes: frame.packets.iter().map(|p| p.len()).sum(),
            });
            Ok(sent)
        }
    }
}

/// Queues (TCP) or sends (UDP) an RTCP BYE on every track of a session whose
/// stream closed; UDP failures are not worth reporting as the session ends.
async fn say_goodbye(player: &Player, batch: &mut Batch) {
    for track in player.tracks.values() {
        let bye = track.reports.goodbye();
        match &track.udp {
            None => batch.push_rtcp(track.rtcp_channel, bye),
            Some(udp) => {
                let _ = udp.send_rtcp(&bye).await;
            }
        }
    }
}

async fn next_frame(player: &mut Option<Player>) -> Option<Arc<streamgate_rtp::Frame>> {
    match player {
        Some(p) => p.next_frame().await,
        None => std::future::pending().await,
    }
}

async fn write(
    batch: &mut Batch,
    writer: &mut OwnedWriteHalf,
    timeout: Duration,
) -> Result<(), End> {
    if batch.is_empty() {
        return Ok(());
    }
    // Most writes complete at once: try once before arming the timeout, whose
    // timer would cost a lock on the runtime's timer wheel per write.
    let mut writing = std::pin::pin!(batch.write_to(writer));
    let first_try = writing
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    let result = match first_try {
        Poll::Ready(result) => Ok(result),
        Poll::Pending => tokio::time::timeout(timeout, writing).await,
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(End::WriteFailed(e)),
        Err(_) => Err(End::WriteTimeout),
    }
}

fn last_activity(state: &ConnectionState) -> Instant {
    state.epoch + Duration::from_millis(state.activity.load(Ordering::Relaxed))
}

/// Bytes of a response, for callers outside a session (connection limit).
pub(crate) fn service_unavailable() -> Bytes {
    Response::new(Status::ServiceUnavailable, Version::V1_0, None)
        .header("Connection", "close")
        .to_bytes()
}
