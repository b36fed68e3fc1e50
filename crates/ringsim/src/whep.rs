//! The server side of the simulated WHEP sessions, on webrtc-rs 0.21: one
//! send-only peer connection per session, answering a complete (non-trickle)
//! offer with every candidate inline, and fed from the device's Hub.
//!
//! Each device's Hub is filled by a looped replay of the bundled H.264 + Opus
//! capture (started with the device's first session, kept running after), so
//! every session starts at the Hub's cached keyframe and timestamps run on
//! across loops. A session forwards `Frame::packets`, rewriting only the SSRC
//! and payload type to the negotiated ones.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_replay::Capture;
use streamgate_rtp::MediaKind;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

static CAPTURE_PCAP: &[u8] = include_bytes!("../../../fixtures/ffmpeg_h264_opus.pcap");
static CAPTURE_SDP: &[u8] = include_bytes!("../../../fixtures/ffmpeg_h264_opus.sdp");
const CAPTURE_NAME: &str = "bundled capture (fixtures/ffmpeg_h264_opus.pcap)";

/// The answer's H.264 format (what Ring answers), and the profile an offer must carry.
pub(crate) const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f";
const H264_PT: u8 = 102;
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";
const OPUS_PT: u8 = 111;
/// How long the answer waits for its own candidates.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an offer got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WhepError {
    /// Ring answers 500 to an offer without H.264 High profile [seen].
    #[error("the offer has no H.264 High profile (profile-level-id 64xxxx) video")]
    NoHighProfile,
    #[error("the offer is not a usable SDP offer: {0}")]
    BadOffer(String),
    #[error("WebRTC {step} failed: {detail}")]
    WebRtc { step: &'static str, detail: String },
}

fn webrtc_error(step: &'static str) -> impl FnOnce(webrtc::error::Error) -> WhepError {
    move |error| WhepError::WebRtc {
        step,
        detail: error.to_string(),
    }
}

/// What an offer asks for, read from its SDP text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfferSummary {
    /// A video `m=` section offers H.264 with a `64xxxx` profile-level-id.
    pub high_profile: bool,
    /// An audio `m=` section is `recvonly` and offers `opus/48000/2`.
    pub opus_recvonly: bool,
}

/// The `m=` sections of an SDP as (kind, port, lines).
fn sections(sdp: &str) -> Vec<(&str, &str, Vec<&str>)> {
    let mut sections: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(media) = line.strip_prefix("m=") {
            let mut words = media.split_whitespace();
            let kind = words.next().unwrap_or("");
            let port = words.next().unwrap_or("");
            sections.push((kind, port, Vec::new()));
        } else if let Some((_, _, lines)) = sections.last_mut() {
            lines.push(line);
        }
    }
    sections
}

/// Payload types of `codec` (case-insensitive `a=rtpmap` name/rate[/channels]) in a section.
fn payload_types<'a>(lines: &'a [&'a str], codec: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    lines.iter().filter_map(move |line| {
        let (pt, format) = line.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        format
            .trim()
            .eq_ignore_ascii_case(codec)
            .then_some(pt.trim())
    })
}

fn fmtp<'a>(lines: &[&'a str], pt: &str) -> Option<&'a str> {
    lines.iter().find_map(|line| {
        let (p, params) = line.strip_prefix("a=fmtp:")?.split_once(' ')?;
        (p == pt).then_some(params)
    })
}

pub(crate) fn summarize(sdp: &str) -> OfferSummary {
    let mut summary = OfferSummary::default();
    for (kind, _, lines) in sections(sdp) {
        match kind {
            "video" => {
                let high = payload_types(&lines, "H264/90000").any(|pt| {
                    fmtp(&lines, pt).is_some_and(|params| {
                        params.split(';').any(|p| {
                            p.trim().split_once('=').is_some_and(|(k, v)| {
                                k.trim().eq_ignore_ascii_case("profile-level-id")
                                    && v.trim().len() == 6
                                    && v.trim()[..2].eq_ignore_ascii_case("64")
                            })
                        })
                    })
                });
                summary.high_profile |= high;
            }
            "audio" => {
                let recvonly = lines.contains(&"a=recvonly");
                let opus = payload_types(&lines, "opus/48000/2").next().is_some();
                summary.opus_recvonly |= recvonly && opus;
            }
            _ => {}
        }
    }
    summary
}

/// The payload type an answer gives `codec` in its (not rejected) `kind` section.
fn answered_payload_type(sdp: &str, kind: &str, codec: &str) -> Option<u8> {
    sections(sdp)
        .into_iter()
        .filter(|(k, port, _)| *k == kind && *port != "0")
        .find_map(|(_, _, lines)| payload_types(&lines, codec).next()?.parse().ok())
}

/// The Hubs the devices stream from, each filled by its own looped replay.
pub(crate) struct Media {
    capture: Arc<Capture>,
    hubs: Mutex<HashMap<String, (Hub, JoinHandle<()>)>>,
}

impl Media {
    pub fn new() -> Result<Media, streamgate_replay::ReplayError> {
        let capture = Capture::parse(Bytes::from_static(CAPTURE_PCAP), CAPTURE_SDP, CAPTURE_NAME)?;
        Ok(Media {
            capture: Arc::new(capture),
            hubs: Mutex::new(HashMap::new()),
        })
    }

    /// `device`'s Hub; its replay starts on first use.
    pub fn hub(&self, device: &str) -> Hub {
        let mut hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        let (hub, _) = hubs.entry(device.to_owned()).or_insert_with(|| {
            let hub = Hub::new(device, HubConfig::default());
            let replay = streamgate_replay::run(Arc::clone(&self.capture), hub.clone(), 1.0, true);
            let task = tokio::spawn(async move {
                if let Err(error) = replay.await {
                    tracing::warn!(%error, "simulated camera replay ended");
                }
            });
            (hub, task)
        });
        hub.clone()
    }

    /// Ends every replay (the simulator stops).
    pub fn stop(&self) {
        let mut hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, (hub, task)) in hubs.drain() {
            task.abort();
            hub.close();
        }
    }
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }
}

/// One local track: where a kind's frames go, with the SSRC and payload type to send.
struct Outgoing {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
}

/// An answered session, ready to stream once connected.
pub(crate) struct Answered {
    pub answer: String,
    connection: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    video: Outgoing,
    audio: Option<Outgoing>,
}

fn codec(mime: &str, clock_rate: u32, channels: u16, fmtp: &str, feedback: bool) -> RTCRtpCodec {
    let rtcp_feedback = if feedback {
        [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
            .map(|(typ, parameter)| RTCPFeedback {
                typ: typ.to_owned(),
                parameter: parameter.to_owned(),
            })
            .to_vec()
    } else {
        Vec::new()
    };
    RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate,
        channels,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback,
    }
}

fn local_track(kind: RtpCodecKind, codec: RTCRtpCodec, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let name = match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "ringsim".to_owned(),
        format!("ringsim-{name}"),
        format!("ringsim-{name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// Answers `offer`: H.264 High always, Opus `sendonly` when `audio` is allowed and
/// the offer asks for it. Candidates are gathered (bounded) before returning.
pub(crate) async fn answer(offer: &str, bind: IpAddr, audio: bool) -> Result<Answered, WhepError> {
    let summary = summarize(offer);
    if !summary.high_profile {
        return Err(WhepError::NoHighProfile);
    }
    let with_audio = audio && summary.opus_recvonly;
    let video_codec = codec("video/H264", 90_000, 0, H264_FMTP, true);
    let audio_codec = codec("audio/opus", 48_000, 2, OPUS_FMTP, false);
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: video_codec.clone(),
                payload_type: H264_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(webrtc_error("codec registration"))?;
    if with_audio {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: audio_codec.clone(),
                    payload_type: OPUS_PT,
                },
                RtpCodecKind::Audio,
            )
            .map_err(webrtc_error("codec registration"))?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .map_err(webrtc_error("interceptor registration"))?;
    let settings = SettingEngineBuilder::new()
        .with_include_loopback_candidate(bind.is_loopback())
        .build();
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
    let connection = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler {
            state: state_tx,
            gathering: gathering_tx,
        }))
        .with_udp_addrs(vec![SocketAddr::new(bind, 0)])
        .build()
        .await
        .map_err(webrtc_error("peer connection setup"))?;
    let connection: Arc<dyn PeerConnection> = Arc::new(connection);
    match negotiate(
        &connection,
        offer,
        &mut gathering,
        video_codec,
        with_audio.then_some(audio_codec),
    )
    .await
    {
        Ok((answer, video, audio)) => Ok(Answered {
            answer,
            connection,
            state,
            video,
            audio,
        }),
        Err(error) => {
            let _ = connection.close().await;
            Err(error)
        }
    }
}

async fn negotiate(
    connection: &Arc<dyn PeerConnection>,
    offer: &str,
    gathering: &mut watch::Receiver<RTCIceGatheringState>,
    video_codec: RTCRtpCodec,
    audio_codec: Option<RTCRtpCodec>,
) -> Result<(String, Outgoing, Option<Outgoing>), WhepError> {
    let video_ssrc = rand::random::<u32>();
    let video_track = local_track(RtpCodecKind::Video, video_codec, video_ssrc);
    connection
        .add_track(Arc::clone(&video_track) as Arc<dyn TrackLocal>)
        .await
        .map_err(webrtc_error("adding the video track"))?;
    let audio_track = match audio_codec {
        Some(codec) => {
            let ssrc = rand::random::<u32>();
            let track = local_track(RtpCodecKind::Audio, codec, ssrc);
            connection
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .map_err(webrtc_error("adding the audio track"))?;
            Some((track, ssrc))
        }
        None => None,
    };
    let offer = RTCSessionDescription::offer(offer.to_owned())
        .map_err(|e| WhepError::BadOffer(e.to_string()))?;
    connection
        .set_remote_description(offer)
        .await
        .map_err(|e| WhepError::BadOffer(e.to_string()))?;
    let answer = connection
        .create_answer(None)
        .await
        .map_err(webrtc_error("creating the answer"))?;
    connection
        .set_local_description(answer)
        .await
        .map_err(webrtc_error("setting the answer"))?;
    let complete = gathering.wait_for(|state| *state == RTCIceGatheringState::Complete);
    if tokio::time::timeout(GATHER_TIMEOUT, complete)
        .await
        .is_err()
    {
        tracing::debug!("answer's ICE gathering not complete in time; answering what was gathered");
    }
    let sdp = connection
        .local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| WhepError::BadOffer("no answer was made".to_owned()))?;
    let video_pt =
        answered_payload_type(&sdp, "video", "H264/90000").ok_or(WhepError::NoHighProfile)?;
    let video = Outgoing {
        track: video_track,
        ssrc: video_ssrc,
        payload_type: video_pt,
    };
    let audio = audio_track.and_then(|(track, ssrc)| {
        Some(Outgoing {
            payload_type: answered_payload_type(&sdp, "audio", "opus/48000/2")?,
            track,
            ssrc,
        })
    });
    Ok((sdp, video, audio))
}

/// How a session's streaming ended, for the session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The deadline (the device's cap) came.
    Deadline,
    /// The stop signal was raised (DELETE, device offline, simulator stopping).
    Stopped,
    /// The peer connection failed or closed.
    PeerGone,
}

fn is_gone(state: RTCPeerConnectionState) -> bool {
    matches!(
        state,
        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
    )
}

impl Answered {
    /// Closes a session that will not stream.
    pub async fn close(self) {
        let _ = self.connection.close().await;
    }

    /// Streams `hub` to the peer from the moment it connects until the deadline,
    /// the stop signal or the peer going away; then closes the peer connection.
    pub async fn stream(
        mut self,
        hub: Hub,
        deadline: tokio::time::Instant,
        mut stop: watch::Receiver<bool>,
    ) -> StreamEnd {
        let end = self.run(hub, deadline, &mut stop).await;
        if let Err(error) = self.connection.close().await {
            tracing::debug!(%error, "closing a WHEP session's peer connection");
        }
        end
    }

    async fn run(
        &mut self,
        hub: Hub,
        deadline: tokio::time::Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> StreamEnd {
        tokio::select! {
            connected = connected(&mut self.state) => if !connected {
                return StreamEnd::PeerGone;
            },
            _ = tokio::time::sleep_until(deadline) => return StreamEnd::Deadline,
            _ = stopped(stop) => return StreamEnd::Stopped,
        }
        let mut subscription = hub.subscribe();
        loop {
            let frame = tokio::select! {
                frame = subscription.recv() => frame,
                () = gone(&mut self.state) => return StreamEnd::PeerGone,
                _ = tokio::time::sleep_until(deadline) => return StreamEnd::Deadline,
                _ = stopped(stop) => return StreamEnd::Stopped,
            };
            let Some(frame) = frame else {
                return StreamEnd::Stopped;
            };
            let outgoing = match (frame.kind, &self.audio) {
                (MediaKind::Video, _) => &self.video,
                (MediaKind::Audio, Some(audio)) => audio,
                (MediaKind::Audio, None) => continue,
            };
            for packet in &frame.packets {
                let header = rtp::header::Header {
                    version: 2,
                    marker: packet.header[1] & 0x80 != 0,
                    payload_type: outgoing.payload_type,
                    sequence_number: packet.sequence().get(),
                    timestamp: packet.timestamp(),
                    ssrc: outgoing.ssrc,
                    ..Default::default()
                };
                let rtp = rtp::packet::Packet {
                    header,
                    payload: packet.payload.clone(),
                };
                if let Err(error) = outgoing.track.write_rtp(rtp).await {
                    tracing::debug!(%error, "RTP not sent to a WHEP session");
                }
            }
        }
    }
}

/// Waits for the connection to connect (true) or fail (false).
async fn connected(state: &mut watch::Receiver<RTCPeerConnectionState>) -> bool {
    match state
        .wait_for(|s| *s == RTCPeerConnectionState::Connected || is_gone(*s))
        .await
    {
        Ok(state) => *state == RTCPeerConnectionState::Connected,
        Err(_) => false,
    }
}

/// Waits for the connection to fail or close.
async fn gone(state: &mut watch::Receiver<RTCPeerConnectionState>) {
    let _ = state.wait_for(|s| is_gone(*s)).await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102 112\r\na=recvonly\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:112 H264/90000\r\na=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001F\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn offers_are_summarized() {
        assert_eq!(
            summarize(OFFER),
            OfferSummary {
                high_profile: true,
                opus_recvonly: true
            }
        );
        let baseline_only = OFFER.replace("profile-level-id=64001F", "profile-level-id=4d001f");
        assert!(!summarize(&baseline_only).high_profile);
        let sendrecv_audio =
            OFFER.replace("a=recvonly\r\na=rtpmap:111", "a=sendrecv\r\na=rtpmap:111");
        assert!(!summarize(&sendrecv_audio).opus_recvonly);
        assert_eq!(summarize("garbage"), OfferSummary::default());
        assert_eq!(summarize(""), OfferSummary::default());
    }

    #[test]
    fn answered_payload_types_skip_rejected_sections() {
        assert_eq!(
            answered_payload_type(OFFER, "video", "h264/90000"),
            Some(102)
        );
        assert_eq!(
            answered_payload_type(OFFER, "audio", "opus/48000/2"),
            Some(111)
        );
        let rejected = OFFER.replace("m=audio 9", "m=audio 0");
        assert_eq!(
            answered_payload_type(&rejected, "audio", "opus/48000/2"),
            None
        );
    }

    #[test]
    fn the_bundled_capture_loads() {
        let media = Media::new().unwrap();
        assert_eq!(media.capture.tracks.len(), 2);
    }
}
