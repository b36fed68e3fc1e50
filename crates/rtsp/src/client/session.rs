//! One RTSP session with a camera: DESCRIBE, SETUP of every usable track,
//! PLAY, then the camera's raw RTP packets and RTCP sender reports.
//!
//! For `rtsp://`, retina does the RTSP (auth, keep-alives, TCP interleaving or
//! UDP sockets); `rtsps://` goes to our own client ([`super::rtsps`]). Either
//! way the tracks come from our own SDP reading ([`streamgate_rtp::sdp`]) so
//! that every source describes codecs the same way.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{PacketItem, Playing, Session, SessionOptions, SetupOptions};
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::rtcp::{self, RtcpPacket, SenderReport};
use streamgate_rtp::sdp::{self, SdpTrack};
use streamgate_rtp::{MediaKind, PayloadType, TrackId, TrackInfo};

use super::config::TlsOptions;
use super::rtsps::TlsSession;
use super::{CameraUrl, SourceError};

/// Sent as `User-Agent`: cameras log it, operators grep for it.
pub(crate) const USER_AGENT: &str = concat!("streamgate/", env!("CARGO_PKG_VERSION"));

/// The transport of one session (`auto` is decided by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTransport {
    Tcp,
    Udp,
}

impl SessionTransport {
    fn retina(self) -> retina::client::Transport {
        match self {
            SessionTransport::Tcp => retina::client::Transport::Tcp(Default::default()),
            SessionTransport::Udp => retina::client::Transport::Udp(Default::default()),
        }
    }
}

/// What a playing session yields.
#[derive(Debug)]
pub enum SessionEvent {
    Rtp(TrackId, RtpPacket),
    /// The camera's NTP/RTP mapping for a track (RTCP SR).
    SenderReport(TrackId, SenderReport),
    /// A packet that could not be read (counted, not fatal).
    BadPacket(TrackId, String),
}

/// A camera session in the PLAY state.
pub enum CameraSession {
    Retina(RetinaSession),
    Tls(TlsSession),
}

impl CameraSession {
    /// DESCRIBE, SETUP and PLAY, each bounded by `step_timeout`. `rtsps://` is
    /// always interleaved on its TLS connection, whatever `transport` says.
    pub async fn connect(
        url: &CameraUrl,
        transport: SessionTransport,
        tls: &TlsOptions,
        step_timeout: Duration,
    ) -> Result<CameraSession, SourceError> {
        if url.is_tls() {
            TlsSession::connect(url, tls, step_timeout)
                .await
                .map(CameraSession::Tls)
        } else {
            RetinaSession::connect(url, transport, step_timeout)
                .await
                .map(CameraSession::Retina)
        }
    }

    /// The tracks from the camera's SDP (ids 0.., parameters from `fmtp`).
    pub fn tracks(&self) -> &[TrackInfo] {
        match self {
            CameraSession::Retina(session) => &session.tracks,
            CameraSession::Tls(session) => session.tracks(),
        }
    }

    /// The next RTP packet or sender report; `Ok(None)` when the camera closed
    /// the session. Cancel-safe.
    pub async fn next(
        &mut self,
        redact: impl Fn(&str) -> String,
    ) -> Result<Option<SessionEvent>, SourceError> {
        match self {
            CameraSession::Retina(session) => session.next(redact).await,
            CameraSession::Tls(session) => session.next().await,
        }
    }
}

/// A retina session in the PLAY state.
pub struct RetinaSession {
    session: Session<Playing>,
    /// retina stream index -> our track (None: not set up).
    track_of_stream: Vec<Option<TrackId>>,
    tracks: Vec<TrackInfo>,
}

impl RetinaSession {
    async fn connect(
        url: &CameraUrl,
        transport: SessionTransport,
        step_timeout: Duration,
    ) -> Result<RetinaSession, SourceError> {
        let retina_err = |e: retina::Error| SourceError::from_retina(&e, |text| url.redact(text));
        let options = SessionOptions::default()
            .creds(url.credentials())
            .user_agent(USER_AGENT.to_owned());
        let mut session = bounded(
            "DESCRIBE",
            step_timeout,
            Session::describe(url.url().clone(), options),
        )
        .await?
        .map_err(retina_err)?;
        let sdp_tracks = sdp::parse_tracks(session.sdp())
            .map_err(|e| SourceError::Sdp(url.redact(&e.to_string())))?;
        let track_of_stream = match_streams(session.streams(), &sdp_tracks);
        if !track_of_stream.iter().any(Option::is_some) {
            let offered: Vec<String> = session
                .streams()
                .iter()
                .map(|s| format!("{} {}", s.media(), s.encoding_name()))
                .collect();
            return Err(SourceError::NoUsableTracks {
                offered: offered.join(", "),
            });
        }
        for (stream_index, track) in track_of_stream.iter().enumerate() {
            if track.is_some() {
                let setup = session.setup(
                    stream_index,
                    SetupOptions::default().transport(transport.retina()),
                );
                bounded("SETUP", step_timeout, setup)
                    .await?
                    .map_err(retina_err)?;
            }
        }
        // Our timeline makes timestamps continuous, so retina need not insist on RTP-Info's rtptime.
        let play = retina::client::PlayOptions::default()
            .initial_timestamp(retina::client::InitialTimestampPolicy::Ignore);
        let session = bounded("PLAY", step_timeout, session.play(play))
            .await?
            .map_err(retina_err)?;
        let tracks = sdp_tracks.into_iter().map(|t| t.info).collect();
        Ok(RetinaSession {
            session,
            track_of_stream,
            tracks,
        })
    }

    /// Other RTCP is dropped (retina answers with receiver reports itself).
    /// Cancel-safe: the only await is `Stream::next`.
    async fn next(
        &mut self,
        redact: impl Fn(&str) -> String,
    ) -> Result<Option<SessionEvent>, SourceError> {
        loop {
            let pkt = match self.session.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(SourceError::from_retina(&e, redact)),
                Some(Ok(PacketItem::Rtp(pkt))) => pkt,
                Some(Ok(PacketItem::Rtcp(compound))) => {
                    let Some(track) = self.track_of(compound.stream_id()) else {
                        continue;
                    };
                    match sender_report(compound.raw()) {
                        Ok(Some(report)) => {
                            return Ok(Some(SessionEvent::SenderReport(track, report)))
                        }
                        Ok(None) => continue,
                        Err(e) => return Ok(Some(SessionEvent::BadPacket(track, e.to_string()))),
                    }
                }
                Some(Ok(_)) => continue,
            };
            let Some(track) = self.track_of(pkt.stream_id()) else {
                continue;
            };
            // retina exposes only a borrowed view of the whole packet: one copy into
            // our own buffer, which every later stage slices without copying.
            let raw = Bytes::copy_from_slice(pkt.raw());
            return Ok(Some(match RtpPacket::parse(raw) {
                Ok(packet) => SessionEvent::Rtp(track, packet),
                Err(e) => SessionEvent::BadPacket(track, e.to_string()),
            }));
        }
    }

    fn track_of(&self, stream_index: usize) -> Option<TrackId> {
        self.track_of_stream.get(stream_index).copied().flatten()
    }
}

/// The sender report in a compound RTCP packet, if it holds one (retina has
/// checked the framing; our parser reads the fields).
fn sender_report(compound: &[u8]) -> Result<Option<SenderReport>, rtcp::RtcpError> {
    Ok(rtcp::parse_compound(compound)?
        .into_iter()
        .find_map(|packet| match packet {
            RtcpPacket::SenderReport(report) => Some(report),
            _ => None,
        }))
}

/// Runs one connection step with a deadline.
pub(crate) async fn bounded<T>(
    step: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, SourceError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| SourceError::Timeout { step, timeout })
}

/// Pairs retina's streams (every `m=` section) with our usable tracks (a subset, in
/// the same order): the next unmatched track with the same media kind and payload
/// type is the stream's.
fn match_streams(streams: &[retina::client::Stream], tracks: &[SdpTrack]) -> Vec<Option<TrackId>> {
    let described: Vec<(Option<MediaKind>, Option<PayloadType>)> = streams
        .iter()
        .map(|s| {
            let kind = match s.media() {
                "video" => Some(MediaKind::Video),
                "audio" => Some(MediaKind::Audio),
                _ => None,
            };
            (kind, PayloadType::new(s.rtp_payload_type()))
        })
        .collect();
    match_in_order(&described, tracks)
}

fn match_in_order(
    streams: &[(Option<MediaKind>, Option<PayloadType>)],
    tracks: &[SdpTrack],
) -> Vec<Option<TrackId>> {
    let mut pending = tracks.iter().peekable();
    streams
        .iter()
        .map(|&(kind, payload_type)| {
            let next = pending.peek()?;
            if Some(next.info.kind()) == kind && Some(next.info.payload_type) == payload_type {
                pending.next().map(|t| t.info.id)
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:track1\r\n\
        m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:track2\r\n\
        m=audio 0 RTP/AVP 100\r\na=rtpmap:100 G726-32/8000\r\na=control:track3\r\n\
        m=audio 0 RTP/AVP 0\r\na=control:track4\r\n";

    #[test]
    fn streams_pair_with_usable_tracks_in_order() {
        let tracks = sdp::parse_tracks(SDP).unwrap();
        assert_eq!(tracks.len(), 2, "{tracks:?}");
        let streams = [
            (Some(MediaKind::Video), PayloadType::new(96)),
            (None, PayloadType::new(107)),
            (Some(MediaKind::Audio), PayloadType::new(100)),
            (Some(MediaKind::Audio), PayloadType::new(0)),
        ];
        assert_eq!(
            match_in_order(&streams, &tracks),
            vec![Some(TrackId::new(0)), None, None, Some(TrackId::new(1))]
        );
    }
}
