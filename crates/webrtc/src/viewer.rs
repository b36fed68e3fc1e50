//! One WHEP viewer: a str0m [`Rtc`] in RTP mode plus the map from the stream's
//! tracks to the viewer's negotiated m-lines.
//!
//! Per viewer only the RTP header is rewritten: SSRC (str0m's send stream),
//! sequence number (the viewer's own counter, so a skipped GOP leaves no gap to
//! NACK), timestamp (a random per-viewer offset) and payload type (the one the
//! browser chose). The payload is the stream's shared buffer ([`crate::payloads`]).
//!
//! A PLI or FIR goes to the source as a keyframe request (rate limited). When no
//! keyframe follows within [`KEYFRAME_WAIT`] (RTSP cameras and captures cannot
//! make one; a WHEP camera may ignore it), the viewer resends its cached GOP
//! (see [`Viewer::resend_gop`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec as RtcCodec, PayloadParams};
use str0m::media::{MediaKind as RtcKind, Mid, Pt};
use str0m::net::Protocol;
use str0m::rtp::{RtpWrite, SeqNo, StreamTx};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use streamgate_rtp::Frame;
use streamgate_rtp::{Codec, MediaKind, TrackId, TrackInfo};

use crate::payloads::SharedPayloads;

/// A viewer that has not connected (ICE + DTLS) this long after its offer is
/// dropped: a POST that never follows up must not hold a session forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames kept for a viewer that is still connecting: more than a GOP cache of
/// a few seconds at 30 fps with audio. Beyond it the viewer starts over at the
/// next keyframe.
const MAX_PENDING: usize = 1024;

/// At most one keyframe request per viewer this often reaches the source.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// How long a forwarded keyframe request waits for the source's keyframe before
/// the viewer resends its cached GOP instead: a source that can make one (a
/// WHEP camera) answers within a round trip or two.
pub const KEYFRAME_WAIT: Duration = Duration::from_millis(500);

/// Why an offer was refused (the HTTP layer answers 400 with the message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    #[error("the body is not an SDP offer: {0}")]
    Sdp(String),
    #[error("the offer was refused: {0}")]
    Refused(String),
    #[error("the offer has no recvonly media with a codec of this stream ({0})")]
    NoCommonCodec(String),
}

/// A stream track as one viewer receives it.
#[derive(Debug)]
struct TrackOut {
    track: TrackId,
    mid: Mid,
    pt: Pt,
    /// The viewer's next sequence number.
    seq: u64,
    ts_offset: u32,
    /// The last timestamp written (the viewer's, offset included).
    last_ts: u32,
}

/// What a viewer asks of its caller after an input.
#[derive(Debug, PartialEq, Eq)]
pub enum ViewerEvent {
    /// The browser sent PLI/FIR (rate limited): ask the source for a keyframe.
    KeyframeRequest,
    Connected,
    /// No keyframe answered the request: the cached GOP was resent.
    GopResent,
}

pub struct Viewer {
    rtc: Rtc,
    tracks: Vec<TrackOut>,
    /// Video is held back until a keyframe: a decoder cannot start mid-GOP.
    video_started: bool,
    last_keyframe_request: Option<Instant>,
    connect_by: Option<Instant>,
    /// Frames that came before the connection (bounded by [`MAX_PENDING`]).
    pending: VecDeque<(Arc<Frame>, SharedPayloads, Instant)>,
    /// The offer as received: an ICE restart is accepted as this offer again
    /// with the new credentials (str0m restarts ICE on changed remote creds).
    offer: String,
    /// The video frames sent since the latest keyframe (the Hub's GOP cache as
    /// this viewer got it: the same `Arc`s, nothing copied), for a resend;
    /// empty over [`MAX_PENDING`] until the next keyframe.
    gop: Vec<(Arc<Frame>, SharedPayloads)>,
    /// When a forwarded keyframe request that no keyframe answered turns into
    /// a resend of `gop`.
    resend_at: Option<Instant>,
    pub(crate) deadline: Instant,
    pub(crate) events: Vec<ViewerEvent>,
}

/// What every viewer of the process shares: the DTLS certificate (one per
/// process) and the host candidates of the one UDP socket.
#[derive(Clone)]
pub struct Local {
    pub cert: DtlsCert,
    pub candidates: Vec<SocketAddr>,
}

impl Viewer {
    /// Accepts a WHEP offer for a stream with `tracks`; returns the viewer and
    /// the SDP answer.
    pub fn accept(
        now: Instant,
        local: &Local,
        offer: &str,
        tracks: &[TrackInfo],
    ) -> Result<(Viewer, String), OfferError> {
        let offer_text = offer;
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Sdp(e.to_string()))?;
        // Every m-line needs a codec in the answer (an empty format list is
        // invalid SDP), so the usual browser codecs are always enabled; what is
        // sent on each is chosen per track below.
        let config = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_dtls_cert(local.cert.clone())
            .clear_codecs()
            .enable_h264(true)
            .enable_h265(tracks.iter().any(|t| t.codec == Codec::H265))
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false);
        for track in tracks {
            if matches!(track.codec, Codec::Aac | Codec::AacLatm) {
                tracing::warn!(codec = ?track.codec, "AAC is not sent over WebRTC (browsers cannot decode it): the track is left out");
            }
        }
        let mut rtc = config.build(now);
        for addr in &local.candidates {
            match Candidate::host(*addr, "udp") {
                Ok(candidate) => {
                    rtc.add_local_candidate(candidate);
                }
                Err(error) => tracing::warn!(%addr, %error, "host candidate skipped"),
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::Refused(e.to_string()))?;
        let mut viewer = Viewer {
            rtc,
            tracks: Vec::new(),
            video_started: false,
            last_keyframe_request: None,
            connect_by: Some(now + CONNECT_TIMEOUT),
            pending: VecDeque::new(),
            offer: offer_text.to_owned(),
            gop: Vec::new(),
            resend_at: None,
            deadline: now,
            events: Vec::new(),
        };
        // The offer's m-lines, in order, as str0m now holds them.
        let mids: Vec<(Mid, RtcKind)> = offer_text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("a=mid:"))
            .filter_map(|mid| {
                let media = viewer.rtc.media(Mid::from(mid))?;
                media
                    .direction()
                    .is_sending()
                    .then(|| (media.mid(), media.kind()))
            })
            .collect();
        for track in tracks {
            let want = match track.kind() {
                MediaKind::Video => RtcKind::Video,
                MediaKind::Audio => RtcKind::Audio,
            };
            let taken: Vec<Mid> = viewer.tracks.iter().map(|t| t.mid).collect();
            let Some((mid, pt)) = mids
                .iter()
                .filter(|(mid, kind)| *kind == want && !taken.contains(mid))
                .find_map(|(mid, _)| Some((*mid, viewer.pick_pt(*mid, track)?)))
            else {
                continue;
            };
            viewer.tracks.push(TrackOut {
                track: track.id,
                mid,
                pt,
                seq: u64::from(rand::random::<u16>()),
                ts_offset: rand::random(),
                last_ts: 0,
            });
        }
        if viewer.tracks.is_empty() {
            let codecs: Vec<String> = tracks.iter().map(|t| format!("{:?}", t.codec)).collect();
            return Err(OfferError::NoCommonCodec(codecs.join(", ")));
        }
        Ok((viewer, answer.to_sdp_string()))
    }

    /// The payload type the browser offered for `track`'s codec on `mid`: H.264
    /// only in packetization mode 1 (our packets are FU-A), preferring the
    /// source's profile.
    fn pick_pt(&self, mid: Mid, track: &TrackInfo) -> Option<Pt> {
        let remote = self.rtc.media(mid)?.remote_pts();
        let wanted = match track.codec {
            Codec::H264 => RtcCodec::H264,
            Codec::H265 => RtcCodec::H265,
            Codec::Opus => RtcCodec::Opus,
            Codec::Pcmu => RtcCodec::PCMU,
            Codec::Pcma => RtcCodec::PCMA,
            _ => return None,
        };
        let candidates = self
            .rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| remote.contains(&p.pt()) && p.spec().codec == wanted);
        let h264_profile = track
            .params
            .sps
            .as_ref()
            .and_then(|sps| sps.get(1))
            .copied();
        let score = |p: &&PayloadParams| -> u8 {
            let format = p.spec().format;
            match wanted {
                RtcCodec::H264 if format.packetization_mode != Some(1) => 0,
                RtcCodec::H264 => {
                    let profile = format.profile_level_id.map(|id| (id >> 16) as u8);
                    if profile.is_some() && profile == h264_profile {
                        3
                    } else {
                        2
                    }
                }
                _ => 1,
            }
        };
        candidates
            .filter(|p| score(p) > 0)
            .max_by_key(score)
            .map(|p| p.pt())
    }

    /// Whether a datagram from the socket belongs to this viewer (by remote
    /// address once connected, by STUN username before).
    pub fn accepts(&self, input: &Input) -> bool {
        self.rtc.accepts(input)
    }

    pub fn receive(&mut self, now: Instant, input: Input, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if let Err(error) = self.rtc.handle_input(input) {
            tracing::debug!(%error, "viewer input refused: disconnecting");
            self.rtc.disconnect();
        }
        self.drain_events(now, out);
        if self.rtc.is_connected() && !self.pending.is_empty() {
            self.flush_pending(now, out);
        }
    }

    pub fn timeout(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if let Err(error) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(%error, "viewer timeout failed: disconnecting");
            self.rtc.disconnect();
        }
        self.drain_events(now, out);
        if self.resend_at.is_some_and(|at| at <= now) {
            self.resend_gop(now, out);
        }
    }

    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }

    pub fn disconnect(&mut self) {
        self.rtc.disconnect();
    }

    /// Adds a trickled remote candidate (`candidate:…` without `a=`).
    pub fn add_remote_candidate(&mut self, line: &str) -> Result<(), String> {
        let candidate = Candidate::from_sdp_string(line).map_err(|e| e.to_string())?;
        self.rtc.add_remote_candidate(candidate);
        Ok(())
    }

    /// An ICE restart (WHEP PATCH with `If-Match: *`): the browser's new
    /// ufrag and password; returns the sdpfrag with ours (new too) and our
    /// candidates.
    pub fn ice_restart(&mut self, now: Instant, ufrag: &str, pwd: &str) -> Result<String, String> {
        let reoffer: String = self
            .offer
            .lines()
            .map(|line| {
                if line.starts_with("a=ice-ufrag:") {
                    format!("a=ice-ufrag:{ufrag}\r\n")
                } else if line.starts_with("a=ice-pwd:") {
                    format!("a=ice-pwd:{pwd}\r\n")
                } else {
                    format!("{}\r\n", line.trim_end())
                }
            })
            .collect();
        let offer = SdpOffer::from_sdp_string(&reoffer).map_err(|e| e.to_string())?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?
            .to_sdp_string();
        self.offer = reoffer;
        self.connect_by = Some(now + CONNECT_TIMEOUT);
        self.deadline = now;
        Ok(ice_fragment(&answer))
    }

    /// Sends one frame of the stream: its packets with this viewer's header,
    /// sharing the payloads. `origin` maps the frame's wall clock onto `Instant`s.
    pub fn send_frame(
        &mut self,
        now: Instant,
        origin: (Instant, SystemTime),
        frame: &Arc<Frame>,
        payloads: &SharedPayloads,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let wallclock = frame
            .wallclock
            .duration_since(origin.1)
            .map(|since| origin.0 + since)
            .unwrap_or(now);
        if !self.rtc.is_connected() {
            // The GOP cache arrives before ICE and DTLS are done: kept, so the
            // first picture needs no wait for the next keyframe.
            if self.pending.len() == MAX_PENDING {
                self.pending.clear();
            }
            self.pending
                .push_back((Arc::clone(frame), Arc::clone(payloads), wallclock));
            return;
        }
        self.flush_pending(now, out);
        if self.resend_at.is_some_and(|at| at <= now) {
            self.resend_gop(now, out);
        }
        self.write_frame(now, wallclock, frame, payloads, out);
    }

    /// Sends the frames that came before the connection was up.
    fn flush_pending(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        while let Some((frame, payloads, wallclock)) = self.pending.pop_front() {
            self.write_frame(now, wallclock, &frame, &payloads, out);
        }
    }

    fn write_frame(
        &mut self,
        now: Instant,
        wallclock: Instant,
        frame: &Arc<Frame>,
        payloads: &SharedPayloads,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let Some(index) = self.tracks.iter().position(|t| t.track == frame.track) else {
            return;
        };
        if frame.kind == MediaKind::Video {
            if frame.keyframe {
                self.video_started = true;
                // The source's keyframe answers any request waiting for one.
                self.resend_at = None;
                self.gop.clear();
            }
            if !self.video_started {
                return;
            }
            if self.gop.len() == MAX_PENDING {
                self.gop.clear();
            }
            if frame.keyframe || !self.gop.is_empty() {
                self.gop.push((Arc::clone(frame), Arc::clone(payloads)));
            }
        }
        let track = &mut self.tracks[index];
        let mut direct = self.rtc.direct_api();
        let Some(stream) = direct.stream_tx_by_mid(track.mid, None) else {
            return;
        };
        let shift = track.ts_offset;
        write_packets(stream, track, frame, payloads, wallclock, shift);
        self.drain_events(now, out);
    }

    /// Resends the cached GOP (the latest keyframe and the video frames since)
    /// to this viewer only: the keyframe alone would leave the frames after it
    /// referring to pictures the decoder lost, while the whole GOP rebuilds them
    /// up to the live picture. The frames keep the viewer's sequence numbers
    /// going and get timestamps one tick apart after the last one sent; the
    /// video's timestamp offset then moves on by as much (a few ticks), so the
    /// live frames follow them and time never goes back.
    fn resend_gop(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.resend_at = None;
        let Some(index) = self
            .gop
            .first()
            .and_then(|(first, _)| self.tracks.iter().position(|t| t.track == first.track))
        else {
            return;
        };
        let track = &mut self.tracks[index];
        let mut direct = self.rtc.direct_api();
        let Some(stream) = direct.stream_tx_by_mid(track.mid, None) else {
            return;
        };
        let start = track.last_ts;
        for (frame, payloads) in self.gop.iter().filter(|(f, _)| !f.random_access_skipped) {
            let ts = track.last_ts.wrapping_add(1);
            let shift = frame
                .packets
                .first()
                .map_or(0, |p| ts.wrapping_sub(p.timestamp()));
            write_packets(stream, track, frame, payloads, now, shift);
        }
        track.ts_offset = track
            .ts_offset
            .wrapping_add(track.last_ts.wrapping_sub(start));
        self.events.push(ViewerEvent::GopResent);
        tracing::debug!(
            frames = self.gop.len(),
            "no keyframe came: cached GOP resent"
        );
        self.drain_events(now, out);
    }

    /// Polls str0m until it only has a timeout left, collecting datagrams and
    /// events.
    fn drain_events(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let mut keyframe = false;
        self.drain(now, out, |event| {
            if let Event::KeyframeRequest(_) = event {
                keyframe = true;
            }
        });
        // ICE (lite: Connected or Completed) and DTLS both done.
        if self.connect_by.is_some() && self.rtc.is_connected() {
            self.connect_by = None;
            self.events.push(ViewerEvent::Connected);
        }
        if let Some(by) = self.connect_by {
            if now >= by {
                tracing::info!("WHEP viewer never connected: dropped");
                self.rtc.disconnect();
            }
            self.deadline = self.deadline.min(by);
        }
        if keyframe {
            let due = self
                .last_keyframe_request
                .is_none_or(|at| now.duration_since(at) >= KEYFRAME_REQUEST_INTERVAL);
            if due {
                self.last_keyframe_request = Some(now);
                self.events.push(ViewerEvent::KeyframeRequest);
                if !self.gop.is_empty() {
                    self.resend_at = Some(now + KEYFRAME_WAIT);
                }
            }
        }
        if let Some(at) = self.resend_at {
            self.deadline = self.deadline.min(at);
        }
    }

    fn drain(
        &mut self,
        now: Instant,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
        mut on_event: impl FnMut(Event),
    ) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.deadline = at.max(now);
                    return;
                }
                Ok(Output::Transmit(transmit)) => {
                    if transmit.proto == Protocol::Udp {
                        out.push((transmit.destination, transmit.contents.into()));
                    }
                }
                Ok(Output::Event(event)) => {
                    if matches!(
                        event,
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    ) {
                        self.rtc.disconnect();
                    }
                    on_event(event);
                }
                Err(error) => {
                    tracing::debug!(%error, "viewer failed: disconnecting");
                    self.rtc.disconnect();
                    self.deadline = now;
                    return;
                }
            }
        }
    }
}

/// Writes one frame's packets with the viewer's payload type and sequence
/// numbers, their timestamps moved by `shift`.
fn write_packets(
    stream: &mut StreamTx,
    track: &mut TrackOut,
    frame: &Frame,
    payloads: &SharedPayloads,
    wallclock: Instant,
    shift: u32,
) {
    for (packet, payload) in frame.packets.iter().zip(payloads.iter()) {
        let seq: SeqNo = track.seq.into();
        track.seq += 1;
        track.last_ts = packet.timestamp().wrapping_add(shift);
        let write = RtpWrite::new(track.pt, seq, track.last_ts, wallclock, Arc::clone(payload))
            .marker(packet.marker())
            .nackable(frame.kind == MediaKind::Video);
        stream.write_rtp(write);
    }
}

/// The ICE part of an answer as an sdpfrag (RFC 8840): credentials and the
/// candidates of the first (bundled) media section.
fn ice_fragment(answer: &str) -> String {
    let mut frag = String::new();
    let mut seen_media = false;
    for line in answer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            if seen_media {
                break;
            }
            seen_media = true;
            frag.push_str(line);
            frag.push_str("\r\n");
            continue;
        }
        let ice = [
            "a=ice-ufrag:",
            "a=ice-pwd:",
            "a=candidate:",
            "a=end-of-candidates",
            "a=mid:",
        ];
        if ice.iter().any(|p| line.starts_with(p)) {
            frag.push_str(line);
            frag.push_str("\r\n");
        }
    }
    frag
}
