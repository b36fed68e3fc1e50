//! One client connection: a single task reads requests, answers them, and while
//! playing writes the session's frames (interleaved on this connection or over
//! UDP). Nothing here is shared with other readers, so a stalled client only
//! stalls its own task, and the write timeout then cuts it off.
//!
//! A request the framing refuses (malformed, lying about its length, or not
//! complete within the request timeout) is answered with its status and the
//! connection closed; interleaved frames on channels no SETUP gave out are
//! counted and dropped. Both are counted server-wide ([`super::limits`]) and
//! logged at most once a second per kind.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rtsp_types::{headers, Version};
use streamgate_rtp::MediaKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::framing::{FramingError, Incoming, RequestReader, MAX_REQUEST_LEN};
use super::interleaved::Batch;
use super::limits::{Limited, Refusal};
use super::record::RecordingEvent;
use super::response::{Response, Status};
use super::session::{ConnectionState, Player};
use super::transport::TransportRequest;
use super::{ServerConfig, StreamDirectory};

/// Most RTP packets gathered into one vectored write.
const MAX_PACKETS_PER_WRITE: usize = 256;
/// Most bytes gathered into one vectored write.
const MAX_BYTES_PER_WRITE: usize = 512 * 1024;
/// How often a publisher gets RTCP receiver reports.
const RECEIVER_REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Read buffer for requests (they are small; the framing layer caps the total).
const READ_CHUNK: usize = 4096;
/// After a refusal, how long the connection reads (and drops) what the client
/// still sends before it closes, and how much at most: closing a socket with
/// unread input resets the connection, and the reset may reach the client
/// before it has read the answer.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// Why a connection ended (for the log).
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("no request, keep-alive or RTCP within the session timeout")]
    Idle,
    #[error("request refused: {0}")]
    Refused(FramingError),
    #[error("write failed: {0}")]
    WriteFailed(std::io::Error),
    #[error("client stopped reading (write timeout)")]
    WriteTimeout,
    #[error("stream closed")]
    StreamClosed,
    #[error("another publisher took over, or the stream stopped")]
    PublisherReplaced,
}

/// Serves a plain RTSP connection.
pub(crate) async fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    directory: Arc<dyn StreamDirectory>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let (read_half, write_half) = stream.into_split();
    serve(read_half, write_half, peer, local.ip(), config, directory).await;
}

/// Serves an RTSPS connection once its TLS handshake completes; a handshake
/// not done within the request timeout is dropped (it holds only its own
/// task and connection slot until then).
pub(crate) async fn serve_tls(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    directory: Arc<dyn StreamDirectory>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let tls = match tokio::time::timeout(config.request_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "RTSPS handshake failed");
            return;
        }
        Err(_) => {
            if let Some(left_out) = config
                .readers
                .limit_hit(Limited::RequestTimeout, Instant::now())
            {
                tracing::warn!(%peer, left_out, "RTSPS handshake not complete within the request timeout: closed");
            }
            return;
        }
    };
    let (read_half, write_half) = tokio::io::split(tls);
    serve(read_half, write_half, peer, local.ip(), config, directory).await;
}

async fn serve<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut read_half: R,
    mut write_half: W,
    peer: SocketAddr,
    local_ip: std::net::IpAddr,
    config: Arc<ServerConfig>,
    directory: Arc<dyn StreamDirectory>,
) {
    let mut state = ConnectionState::new(Arc::clone(&config), directory, peer, local_ip);
    let mut reader = RequestReader::with_request_timeout(config.request_timeout);
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
    // The pending request's deadline (slowloris); armed while a message is
    // incomplete, re-armed only when the framing's deadline changes.
    let request_timer = tokio::time::sleep(config.request_timeout);
    tokio::pin!(request_timer);
    let mut request_timer_at: Option<Instant> = None;
    let mut unknown_channel_frames = 0u64;
    let mut receiver_reports = tokio::time::interval(RECEIVER_REPORT_INTERVAL);

    let end = loop {
        let deadline = reader.poll_timeout();
        if deadline != request_timer_at {
            if let Some(at) = deadline {
                request_timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(at));
            }
            request_timer_at = deadline;
        }
        tokio::select! {
            read = read_half.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break End::ClientClosed,
                    Ok(n) => n,
                };
                let now = Instant::now();
                last_request = now;
                let unknown_before = unknown_channel_frames;
                let handled = handle_input(&buf[..n], now, &mut reader, &mut state, &mut player, &mut batch, &mut unknown_channel_frames).await;
                for _ in unknown_before..unknown_channel_frames {
                    if let Some(left_out) = config.readers.limit_hit(Limited::UnknownChannel, now) {
                        tracing::info!(stream = ?state.stream(), %peer, left_out, "RTSP interleaved frame on a channel that was never set up: dropped");
                    }
                }
                if let Err(e) = handled {
                    break refuse_request(e, &config, peer, &state, &mut batch, &mut write_half, &mut read_half).await;
                }
                if let Err(end) = write(&mut batch, &mut write_half, config.write_timeout).await {
                    break end;
                }
            }
            _ = &mut request_timer, if request_timer_at.is_some() => {
                // Re-armed at the top of the loop if the message is still pending.
                request_timer_at = None;
                if let Err(e) = reader.handle_timeout(Instant::now()) {
                    break refuse_request(e, &config, peer, &state, &mut batch, &mut write_half, &mut read_half).await;
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
            event = recording_event(&mut state) => match event {
                RecordingEvent::Datagram(datagram) => {
                    if let Some(recording) = state.recording.as_mut() {
                        recording.on_datagram(datagram, Instant::now());
                    }
                }
                RecordingEvent::Kicked => break End::PublisherReplaced,
            },
            _ = receiver_reports.tick(), if state.recording.is_some() => {
                send_receiver_reports(&mut state, &mut batch).await;
                if let Err(end) = write(&mut batch, &mut write_half, config.write_timeout).await {
                    break end;
                }
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
    if let End::Refused(_) = end {
        // Counted and logged (rate-limited) when it was refused.
        tracing::debug!(stream = ?state.stream(), %peer, reason = %end, unknown_channel_frames, "RTSP connection ended");
    } else {
        tracing::info!(stream = ?state.stream(), %peer, reason = %end, unknown_channel_frames, "RTSP connection ended");
    }
}

/// Answers a request the framing refused with its status (400, 408 or 413),
/// counts and logs it (rate-limited), and closes the connection.
async fn refuse_request(
    error: FramingError,
    config: &ServerConfig,
    peer: SocketAddr,
    state: &ConnectionState,
    batch: &mut Batch,
    write_half: &mut (impl AsyncWrite + Unpin),
    read_half: &mut (impl AsyncRead + Unpin),
) -> End {
    let stream = state.stream();
    let status = error.status();
    let kind = match &error {
        FramingError::BodyTooLarge { .. } => Limited::BodyTooLarge,
        FramingError::BadContentLength(_) => Limited::BadContentLength,
        FramingError::Timeout(_) => Limited::RequestTimeout,
        _ => Limited::BadRequest,
    };
    if let Some(left_out) = config.readers.limit_hit(kind, Instant::now()) {
        let code = status.code();
        match kind {
            Limited::BodyTooLarge => tracing::warn!(
                ?stream, %peer, left_out, cap = MAX_REQUEST_LEN,
                "RTSP request refused ({code}): {error}; connection closed"
            ),
            Limited::RequestTimeout => tracing::warn!(
                ?stream, %peer, left_out,
                "RTSP request refused ({code}): {error} ([rtsp] request_timeout); connection closed"
            ),
            _ => tracing::warn!(
                ?stream, %peer, left_out,
                "RTSP request refused ({code}): {error}; connection closed"
            ),
        }
    }
    let response = Response::new(status, Version::V1_0, None).header("Connection", "close");
    batch.push_raw(response.to_bytes());
    if write(batch, write_half, config.write_timeout).await.is_ok() {
        linger(read_half, write_half).await;
    }
    End::Refused(error)
}

/// Closes our side, then reads and drops what the client still sends, for at
/// most [`LINGER`] and [`LINGER_BYTES`], so the answer just written is not lost
/// to a reset (see [`LINGER`]).
async fn linger(read: &mut (impl AsyncRead + Unpin), write: &mut (impl AsyncWrite + Unpin)) {
    let _ = write.shutdown().await;
    let until = tokio::time::Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(until, read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// A connection over a cap: waits (up to the request timeout) for the first
/// request, answers it 503 and closes; closes at once when nothing complete
/// arrives in time.
pub(crate) async fn refuse_connection(stream: TcpStream, refusal: Refusal, wait: Duration) {
    let (mut read_half, mut write_half) = stream.into_split();
    let mut reader = RequestReader::with_request_timeout(wait);
    let until = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 1024];
    let cseq = loop {
        let n = match tokio::time::timeout_at(until, read_half.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        if reader.push(&buf[..n], Instant::now()).is_err() {
            return;
        }
        match reader.next_message() {
            Ok(Some(Incoming::Request(request))) => {
                break request
                    .header(&headers::CSEQ)
                    .map(|v| v.as_str().trim().to_string())
            }
            Ok(_) => continue,
            Err(_) => return,
        }
    };
    let reason = match refusal {
        Refusal::PerClient { .. } => "too many connections from this address",
        _ => "too many connections",
    };
    let response = Response::new(Status::ServiceUnavailable, Version::V1_0, cseq.as_deref())
        .header("Connection", "close")
        .body("text/plain", format!("{reason}\r\n"))
        .to_bytes();
    let written = tokio::time::timeout_at(until, write_half.write_all(&response)).await;
    if matches!(written, Ok(Ok(()))) {
        linger(&mut read_half, &mut write_half).await;
    }
}

/// Parses and answers everything complete in `input` (received at `now`),
/// counting interleaved frames on channels that were never set up in
/// `unknown_channel_frames`; Err means answer its status and close.
async fn handle_input(
    input: &[u8],
    now: Instant,
    reader: &mut RequestReader,
    state: &mut ConnectionState,
    player: &mut Option<Player>,
    batch: &mut Batch,
    unknown_channel_frames: &mut u64,
) -> Result<(), FramingError> {
    reader.push(input, now)?;
    while let Some(incoming) = reader.next_message()? {
        let request = match incoming {
            Incoming::Request(request) => request,
            Incoming::Interleaved { channel, data } => {
                let known = match state.recording.as_mut() {
                    // A publisher's RTP and RTCP.
                    Some(recording) => recording.on_interleaved(channel, data, now),
                    // A reader's RTCP receiver reports: the read itself counted as activity.
                    None => state.has_channel(channel),
                };
                if !known {
                    *unknown_channel_frames += 1;
                }
                continue;
            }
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

/// The next datagram of a publisher's UDP tracks, or its replacement (pending
/// without a publisher).
async fn recording_event(state: &mut ConnectionState) -> RecordingEvent {
    match state.recording.as_mut() {
        Some(recording) => recording.next_event().await,
        None => std::future::pending().await,
    }
}

/// Queues (TCP) or sends (UDP) a receiver report per track of a publisher.
async fn send_receiver_reports(state: &mut ConnectionState, batch: &mut Batch) {
    let Some(recording) = state.recording.as_mut() else {
        return;
    };
    for (track, report) in recording.receiver_reports(Instant::now()) {
        let Some(t) = recording.tracks.get(&track) else {
            continue;
        };
        match (&t.udp, t.transport) {
            (Some(udp), _) => {
                if let Err(e) = udp.send_rtcp(&report).await {
                    tracing::trace!(error = %e, "UDP receiver report failed");
                }
            }
            (None, TransportRequest::Interleaved { rtcp_channel, .. }) => {
                batch.push_rtcp(rtcp_channel, report)
            }
            (None, TransportRequest::Udp { .. }) => {}
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
    writer: &mut (impl AsyncWrite + Unpin),
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
