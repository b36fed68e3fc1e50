//! One WHEP session: offer, POST, answer, connect. Once the server has created the
//! session it is DELETEd on every path out, success or failure: a capped service
//! (Ring) counts open sessions against the user.

use std::net::SocketAddr;
use std::time::Duration;

use streamgate_rtp::sdp::{parse_tracks, SdpError};
use streamgate_rtp::{MediaKind, TrackId, TrackInfo};
use tokio::sync::mpsc;
use url::Url;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::config::{redact_url, IceServer, TrickleMode, WhepConfig};
use crate::peer::{Gathering, Peer, PeerError, Received};
use crate::signal::{Created, SignalError, WhepClient};
use crate::trickle::{self, IceTask, LocalIce, PatchTarget, Trickle};

/// Bound on gathering for an ICE restart: the source opens the next session if the
/// restart has not helped within about twice this.
const RESTART_GATHER_TIMEOUT: Duration = Duration::from_secs(1);

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("WHEP answer is not SDP (Content-Type {content_type:?})")]
    NotSdp { content_type: Option<String> },
    #[error("malformed SDP answer: {0}")]
    MalformedAnswer(#[from] SdpError),
    #[error("the SDP answer has no codec streamgate can receive (offered H.264, H.265, Opus, PCMU, PCMA)")]
    NoUsableCodec,
    #[error("WebRTC connection not established within {0:?} (ICE/DTLS)")]
    ConnectTimeout(Duration),
    #[error("WebRTC connection {0} (ICE/DTLS)")]
    ConnectionFailed(RTCPeerConnectionState),
}

impl SessionError {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SessionError::Signal(error) => error.retry_after(),
            _ => None,
        }
    }
}

/// A connected WHEP session.
pub struct Session {
    pub url: Url,
    /// The tracks the answer negotiated, ids in SDP order (at most one per kind).
    pub tracks: Vec<TrackInfo>,
    pub peer: Peer,
    pub rtp: mpsc::Receiver<Received>,
    /// ICE servers the server announced (`Link` headers), for the next session.
    pub ice_servers: Vec<IceServer>,
    /// The server announced trickle ICE by PATCH (`Accept-Patch`), for the next session.
    pub accepts_trickle: bool,
    /// Trickles the candidates gathered after the offer and restarts ICE by PATCH.
    ice_task: Option<IceTask>,
}

impl Session {
    /// Negotiates and connects a new session. `config.trickle` is taken as decided:
    /// [`TrickleMode::On`] trickles, `Auto` and `Off` gather fully.
    pub async fn open(
        client: &WhepClient,
        config: &WhepConfig,
        ice_servers: &[IceServer],
    ) -> Result<Session, SessionError> {
        let bind = SocketAddr::new(config.bind_ip, 0);
        let gathering = match config.trickle {
            TrickleMode::On => Gathering::Trickle,
            TrickleMode::Auto | TrickleMode::Off => Gathering::Full {
                timeout: config.gather_timeout,
            },
        };
        let (mut peer, offer, rtp) = Peer::offer(bind, ice_servers, gathering).await?;
        let created = match client.post_offer(&config.endpoint, &offer).await {
            Ok(created) => created,
            Err(error) => {
                peer.close().await;
                return Err(error.into());
            }
        };
        let url = created.session_url.clone();
        tracing::debug!(session = %redact_url(&url), accepts_trickle = created.accepts_trickle, "WHEP session created");
        let accepts_trickle = created.accepts_trickle;
        let trickle = match (
            gathering,
            peer.candidates.take(),
            LocalIce::from_sdp(&offer),
        ) {
            (Gathering::Trickle, Some(candidates), Some(ice)) => Some(Trickle { ice, candidates }),
            _ => None,
        };
        // A server that takes trickle PATCHes takes ICE restarts too (RFC 9725 §4.4).
        let restart = accepts_trickle.then(|| {
            let bound = config.gather_timeout.min(RESTART_GATHER_TIMEOUT);
            (peer.ice_control(), bound)
        });
        let ice_task = (trickle.is_some() || restart.is_some()).then(|| {
            let target = PatchTarget {
                client: client.clone(),
                session_url: url.clone(),
                etag: created.etag.clone(),
            };
            trickle::spawn(
                target,
                trickle,
                restart,
                peer.gathering.clone(),
                peer.state.clone(),
            )
        });
        match connect(&peer, created, config.connect_timeout).await {
            Ok((tracks, ice_servers)) => Ok(Session {
                url,
                tracks,
                peer,
                rtp,
                ice_servers,
                accepts_trickle,
                ice_task,
            }),
            Err(error) => {
                drop(ice_task);
                end(client, &url, &peer).await;
                Err(error)
            }
        }
    }

    pub fn track_of(&self, kind: MediaKind) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.kind() == kind)
    }

    /// DELETEs the session and closes the peer connection.
    pub async fn close(self, client: &WhepClient) {
        drop(self.ice_task);
        end(client, &self.url, &self.peer).await;
    }
}

async fn end(client: &WhepClient, url: &Url, peer: &Peer) {
    if let Err(error) = client.delete(url).await {
        tracing::warn!(session = %redact_url(url), %error, "WHEP DELETE failed");
    }
    peer.close().await;
}

/// Checks and applies the answer, then waits for ICE + DTLS.
async fn connect(
    peer: &Peer,
    created: Created,
    timeout: Duration,
) -> Result<(Vec<TrackInfo>, Vec<IceServer>), SessionError> {
    let is_sdp = created.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if !is_sdp {
        return Err(SessionError::NotSdp {
            content_type: created.content_type,
        });
    }
    let tracks = answer_tracks(created.answer.as_bytes())?;
    peer.accept_answer(created.answer).await?;
    let mut state = peer.state.clone();
    let settled = state.wait_for(|s| {
        matches!(
            s,
            RTCPeerConnectionState::Connected
                | RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Closed
        )
    });
    let reached = match tokio::time::timeout(timeout, settled).await {
        Err(_) => return Err(SessionError::ConnectTimeout(timeout)),
        Ok(Err(_)) => RTCPeerConnectionState::Closed,
        Ok(Ok(state)) => *state,
    };
    if reached != RTCPeerConnectionState::Connected {
        return Err(SessionError::ConnectionFailed(reached));
    }
    Ok((tracks, created.ice_servers))
}

/// The answer's accepted media (port not 0), first of each kind, renumbered in order.
/// Public for the fuzz target (`fuzz/fuzz_targets/whep_signal.rs`).
pub fn answer_tracks(answer: &[u8]) -> Result<Vec<TrackInfo>, SessionError> {
    let mut tracks: Vec<TrackInfo> = Vec::new();
    for sdp_track in parse_tracks(answer)? {
        if sdp_track.port != 0 && !tracks.iter().any(|t| t.kind() == sdp_track.info.kind()) {
            tracks.push(TrackInfo {
                id: TrackId::new(tracks.len()),
                ..sdp_track.info
            });
        }
    }
    if tracks.is_empty() {
        return Err(SessionError::NoUsableCodec);
    }
    Ok(tracks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_rtp::Codec;

    const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102 106\r\nc=IN IP4 127.0.0.1\r\na=mid:0\r\na=sendonly\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:106 H264/90000\r\na=fmtp:106 packetization-mode=1;profile-level-id=42e01f\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 127.0.0.1\r\na=mid:1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=mid:2\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn takes_accepted_media_in_order() {
        let tracks = answer_tracks(ANSWER.as_bytes()).unwrap();
        assert_eq!(tracks.len(), 2);
        assert_eq!(
            (tracks[0].id, tracks[0].codec, tracks[0].payload_type.get()),
            (TrackId::new(0), Codec::H264, 102)
        );
        assert_eq!(
            (tracks[1].id, tracks[1].codec, tracks[1].clock_rate),
            (TrackId::new(1), Codec::Opus, 48_000)
        );
    }

    #[test]
    fn rejects_answers_without_a_usable_codec() {
        let vp8 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 120\r\na=rtpmap:120 VP8/90000\r\n";
        assert!(matches!(
            answer_tracks(vp8.as_bytes()),
            Err(SessionError::NoUsableCodec)
        ));
        assert!(matches!(
            answer_tracks(b"this is not SDP"),
            Err(SessionError::MalformedAnswer(_))
        ));
    }
}
