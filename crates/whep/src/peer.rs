//! The WebRTC half of one WHEP session, on webrtc-rs: a receive-only peer connection
//! that offers every codec the pipeline can depacketize, gathers all its candidates
//! before the offer leaves (WHEP servers such as Ring take no trickle) or hands them out
//! one by one for trickle ICE ([`crate::trickle`]), and hands the
//! RTP and sender reports it receives to the session as [`Received`] items.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rtc::interceptor::Slot;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::shared::marshal::Marshal;
use streamgate_rtp::MediaKind;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use crate::config::IceServer;
use crate::sender_reports::{self, SenderReportForwarder};

/// Packets queued from the WebRTC tasks to the source before they wait.
const EVENT_QUEUE: usize = 2048;
/// Local candidates queued for trickling; more are dropped (full gathering reads none).
const CANDIDATE_QUEUE: usize = 64;
/// How often an ICE restart looks for its new candidates.
const RESTART_POLL: Duration = Duration::from_millis(20);

/// H.264 profiles offered (Ring answers `64001f` and rejects offers without it), all
/// packetization-mode 1: constrained baseline, baseline, main, high.
const H264_PROFILES: [&str; 5] = ["42e01f", "42001f", "42c01f", "4d001f", "64001f"];

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC {step} failed: {detail}")]
    WebRtc { step: &'static str, detail: String },
    #[error("ICE gathering did not start")]
    NoCandidates,
    #[error("the SDP answer was rejected: {0}")]
    BadAnswer(String),
}

/// How the offer's candidates reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gathering {
    /// Wait (bounded) for gathering to complete: the offer carries every candidate.
    Full { timeout: Duration },
    /// Offer at once, without candidates; they follow through [`Peer::candidates`].
    Trickle,
}

fn webrtc_error(step: &'static str) -> impl FnOnce(webrtc::error::Error) -> PeerError {
    move |error| PeerError::WebRtc {
        step,
        detail: error.to_string(),
    }
}

/// What a track delivers to its session.
#[derive(Debug)]
pub enum Received {
    /// One RTP packet as received (header and payload re-serialized from webrtc-rs's
    /// parsed packet: one copy).
    Rtp { kind: MediaKind, packet: Bytes },
    /// An RTCP sender report about the track (NTP/RTP time pair).
    SenderReport {
        kind: MediaKind,
        report: streamgate_rtp::rtcp::SenderReport,
    },
}

impl Received {
    pub fn kind(&self) -> MediaKind {
        match self {
            Received::Rtp { kind, .. } | Received::SenderReport { kind, .. } => *kind,
        }
    }
}

/// The video track's handle for sending RTCP back (PLI).
type VideoFeedback = Arc<Mutex<Option<(Arc<dyn TrackRemote>, u32)>>>;

struct Handler {
    events: mpsc::Sender<Received>,
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    /// Gathered local candidates (`candidate:…`), for trickle ICE.
    candidates: mpsc::Sender<String>,
    video: VideoFeedback,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            // Never waits: the driver must not stall on a reader that is not there.
            Ok(init) => {
                let _ = self.candidates.try_send(init.candidate);
            }
            Err(error) => tracing::debug!(%error, "local ICE candidate not serializable"),
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = match track.kind().await {
            RtpCodecKind::Video => MediaKind::Video,
            RtpCodecKind::Audio => MediaKind::Audio,
            _ => return,
        };
        if kind == MediaKind::Video {
            if let Some(ssrc) = track.ssrcs().await.first().copied() {
                if let Ok(mut video) = self.video.lock() {
                    *video = Some((Arc::clone(&track), ssrc));
                }
            }
        }
        // Runs off the driver: the driver only ever try_sends to the track.
        tokio::spawn(forward_track(track, kind, self.events.clone()));
    }
}

/// Forwards a track's packets and sender reports until it ends or the session is gone.
async fn forward_track(
    track: Arc<dyn TrackRemote>,
    kind: MediaKind,
    events: mpsc::Sender<Received>,
) {
    while let Some(event) = track.poll().await {
        let received: Vec<Received> = match event {
            TrackRemoteEvent::OnRtpPacket(mut packet) => {
                // webrtc-rs strips the padding but keeps the flag: clear it so the packet
                // re-serializes as it was received minus the padding.
                packet.header.padding = false;
                let Ok(raw) = packet.marshal() else { continue };
                vec![Received::Rtp {
                    kind,
                    packet: raw.freeze(),
                }]
            }
            TrackRemoteEvent::OnRtcpPacket(packets) => packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                .map(|report| Received::SenderReport {
                    kind,
                    report: sender_reports::to_pipeline(report),
                })
                .collect(),
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        for item in received {
            if events.send(item).await.is_err() {
                return;
            }
        }
    }
}

/// A receive-only peer connection.
pub struct Peer {
    connection: Arc<dyn PeerConnection>,
    video: VideoFeedback,
    /// Connection state (ICE + DTLS), as webrtc-rs reports it.
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    /// Local candidates as they are gathered (taken by the trickle task).
    pub candidates: Option<mpsc::Receiver<String>>,
}

impl Peer {
    /// Builds the connection and its offer: complete (candidates gathered, bounded by the
    /// timeout: what was gathered by then is offered) or, for trickle ICE, at once.
    pub async fn offer(
        bind: SocketAddr,
        ice_servers: &[IceServer],
        gathering_mode: Gathering,
    ) -> Result<(Peer, String, mpsc::Receiver<Received>), PeerError> {
        let mut media_engine = MediaEngine::default();
        register_codecs(&mut media_engine).map_err(webrtc_error("codec registration"))?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .map_err(webrtc_error("interceptor registration"))?
            .with(
                Slot::from(sender_reports::SLOT),
                SenderReportForwarder::default(),
            );
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(bind.ip().is_loopback())
            .build();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers.iter().map(to_rtc_ice_server).collect())
            .build();
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
        let (candidates_tx, candidates) = mpsc::channel(CANDIDATE_QUEUE);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let video = VideoFeedback::default();
        let handler = Arc::new(Handler {
            events: events_tx,
            state: state_tx,
            gathering: gathering_tx,
            candidates: candidates_tx,
            video: Arc::clone(&video),
        });
        let connection = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_media_engine(media_engine)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![bind])
            .build()
            .await
            .map_err(webrtc_error("peer connection setup"))?;
        let peer = Peer {
            connection: Arc::new(connection),
            video,
            state,
            gathering: gathering.clone(),
            candidates: Some(candidates),
        };

        let recvonly = || {
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            })
        };
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            peer.connection
                .add_transceiver_from_kind(kind, recvonly())
                .await
                .map_err(webrtc_error("adding a receive transceiver"))?;
        }
        let offer = peer
            .connection
            .create_offer(None)
            .await
            .map_err(webrtc_error("creating the offer"))?;
        let trickled_offer = offer.sdp.clone();
        peer.connection
            .set_local_description(offer)
            .await
            .map_err(webrtc_error("setting the offer"))?;
        let gather_timeout = match gathering_mode {
            Gathering::Full { timeout } => timeout,
            Gathering::Trickle => return Ok((peer, trickled_offer, events)),
        };
        let complete = gathering.wait_for(|state| *state == RTCIceGatheringState::Complete);
        if tokio::time::timeout(gather_timeout, complete)
            .await
            .is_err()
        {
            tracing::debug!(
                ?gather_timeout,
                "ICE gathering not complete in time; offering what was gathered"
            );
        }
        let sdp = peer
            .connection
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or(PeerError::NoCandidates)?;
        if !sdp.contains("a=candidate:") {
            return Err(PeerError::NoCandidates);
        }
        Ok((peer, sdp, events))
    }

    /// Applies the server's answer.
    pub async fn accept_answer(&self, answer: String) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(answer)
            .map_err(|e| PeerError::BadAnswer(e.to_string()))?;
        self.connection
            .set_remote_description(answer)
            .await
            .map_err(|e| PeerError::BadAnswer(e.to_string()))
    }

    /// Asks the sender for a keyframe (RTCP PLI). False when no video has arrived yet.
    pub fn request_keyframe(&self) -> bool {
        let Some((track, media_ssrc)) = self.video.lock().ok().and_then(|v| v.clone()) else {
            return false;
        };
        tokio::spawn(async move {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            if let Err(error) = track.write_rtcp(vec![Box::new(pli)]).await {
                tracing::debug!(%error, "PLI not sent");
            }
        });
        true
    }

    /// A handle for restarting ICE while the session streams.
    pub fn ice_control(&self) -> IceControl {
        IceControl {
            connection: Arc::clone(&self.connection),
        }
    }

    pub async fn close(&self) {
        if let Err(error) = self.connection.close().await {
            tracing::debug!(%error, "closing the peer connection");
        }
    }
}

/// ICE restart on a live connection (webrtc-rs: `restart_ice`, then a new offer with
/// fresh ufrag/pwd; DTLS and SRTP carry on over the new candidate pair).
#[derive(Clone)]
pub struct IceControl {
    connection: Arc<dyn PeerConnection>,
}

impl IceControl {
    /// Starts the restart: the new offer once its candidates are gathered (bounded).
    pub async fn restart_offer(&self, gather_timeout: Duration) -> Result<String, PeerError> {
        self.connection
            .restart_ice()
            .await
            .map_err(webrtc_error("restarting ICE"))?;
        let offer = self
            .connection
            .create_offer(None)
            .await
            .map_err(webrtc_error("creating the ICE restart offer"))?;
        self.connection
            .set_local_description(offer)
            .await
            .map_err(webrtc_error("setting the ICE restart offer"))?;
        // webrtc-rs 0.21 re-gathers (on the same sockets: no rebind unless asked) without
        // cycling the gathering state: wait (bounded) for candidates in the description.
        let deadline = tokio::time::Instant::now() + gather_timeout;
        loop {
            let sdp = self.connection.local_description().await.map(|d| d.sdp);
            match sdp {
                Some(sdp) if sdp.contains("a=candidate:") => return Ok(sdp),
                Some(sdp) if tokio::time::Instant::now() >= deadline => return Ok(sdp),
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(PeerError::NoCandidates)
                }
                _ => tokio::time::sleep(RESTART_POLL).await,
            }
        }
    }

    /// The answer the restart offer was last given (to patch the server's new ICE
    /// credentials into).
    pub async fn remote_sdp(&self) -> Option<String> {
        self.connection.remote_description().await.map(|d| d.sdp)
    }

    /// Completes the restart with the server's answer.
    pub async fn accept_answer(&self, answer: String) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(answer)
            .map_err(|e| PeerError::BadAnswer(e.to_string()))?;
        self.connection
            .set_remote_description(answer)
            .await
            .map_err(|e| PeerError::BadAnswer(e.to_string()))
    }
}

fn to_rtc_ice_server(server: &IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: vec![server.url.clone()],
        username: server.username.clone().unwrap_or_default(),
        credential: server.credential.clone().unwrap_or_default(),
    }
}

/// Every codec the pipeline depacketizes, in preference order.
fn register_codecs(media_engine: &mut MediaEngine) -> webrtc::error::Result<()> {
    let video_feedback = || {
        [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
            .map(|(typ, parameter)| RTCPFeedback {
                typ: typ.to_owned(),
                parameter: parameter.to_owned(),
            })
            .to_vec()
    };
    let codec = |mime: &str, clock_rate, channels, fmtp: String, rtcp_feedback, payload_type| {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp,
                rtcp_feedback,
            },
            payload_type,
        }
    };
    for (profile, payload_type) in H264_PROFILES.iter().zip([102u8, 104, 106, 108, 112]) {
        let fmtp =
            format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}");
        media_engine.register_codec(
            codec(
                "video/H264",
                90_000,
                0,
                fmtp,
                video_feedback(),
                payload_type,
            ),
            RtpCodecKind::Video,
        )?;
    }
    media_engine.register_codec(
        codec(
            "video/H265",
            90_000,
            0,
            String::new(),
            video_feedback(),
            116,
        ),
        RtpCodecKind::Video,
    )?;
    let audio = [
        ("audio/opus", 48_000, 2, "minptime=10;useinbandfec=1", 111u8),
        ("audio/PCMU", 8_000, 1, "", 0),
        ("audio/PCMA", 8_000, 1, "", 8),
    ];
    for (mime, clock_rate, channels, fmtp, payload_type) in audio {
        media_engine.register_codec(
            codec(
                mime,
                clock_rate,
                channels,
                fmtp.to_owned(),
                vec![],
                payload_type,
            ),
            RtpCodecKind::Audio,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ring answers H.264 `64001f` and rejects offers without it; aiortc needs `42e01f`
    /// or `42001f`: every profile is offered, receive-only, candidates included.
    #[tokio::test]
    async fn offer_lists_every_codec_recvonly_with_candidates() {
        let bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let full = Gathering::Full {
            timeout: Duration::from_secs(2),
        };
        let (peer, sdp, _rtp) = Peer::offer(bind, &[], full).await.unwrap();
        for profile in H264_PROFILES {
            assert!(
                sdp.contains(&format!("packetization-mode=1;profile-level-id={profile}")),
                "{profile}:\n{sdp}"
            );
        }
        for codec in ["H265/90000", "opus/48000/2", "PCMU/8000", "PCMA/8000"] {
            assert!(sdp.contains(codec), "{codec}:\n{sdp}");
        }
        assert_eq!(sdp.matches("a=recvonly").count(), 2, "{sdp}");
        assert!(
            sdp.contains("a=candidate:") && sdp.contains("127.0.0.1"),
            "{sdp}"
        );
        peer.close().await;
    }
}
