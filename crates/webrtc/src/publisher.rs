//! One WHIP publisher: a str0m [`Rtc`] in RTP mode that receives a sendonly
//! offer's media and hands its RTP packets on as they came (SRTP removed),
//! each tagged with the stream track its m-line became. The binary feeds them
//! into the stream's ingest exactly as the RTSP publisher's packets, so
//! depacketizing, in-band parameter sets and the timeline are the ingest's.
//!
//! One track per sendonly m-line, with the codec of the first payload type the
//! answer accepted for it (H.264, H.265, Opus, PCMU, PCMA); packets of other
//! payload types are dropped and counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use str0m::change::SdpOffer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Mid, Pt};
use str0m::net::Protocol;
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use streamgate_rtp::{Codec, CodecParams, PayloadType, TrackId, TrackInfo};

use crate::viewer::{Local, OfferError};

/// A publisher that has not connected (ICE + DTLS) this long after its offer
/// is dropped, as a viewer is.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a publisher asks of its caller after an input.
#[derive(Debug, PartialEq, Eq)]
pub enum PublisherEvent {
    Connected,
    /// One received RTP packet (header and payload, no extensions) of `track`.
    Rtp(TrackId, Bytes),
}

pub struct Publisher {
    rtc: Rtc,
    /// The payload types each track's packets carry.
    routes: Vec<(Pt, TrackId)>,
    connect_by: Option<Instant>,
    /// Packets whose payload type no track has.
    pub ignored: u64,
    pub(crate) deadline: Instant,
    pub(crate) events: Vec<PublisherEvent>,
}

impl Publisher {
    /// Accepts a WHIP offer; returns the publisher, the SDP answer and the
    /// stream tracks its media make.
    pub fn accept(
        now: Instant,
        local: &Local,
        offer: &str,
    ) -> Result<(Publisher, String, Vec<TrackInfo>), OfferError> {
        let parsed =
            SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Sdp(e.to_string()))?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_dtls_cert(local.cert.clone())
            .clear_codecs()
            .enable_h264(true)
            .enable_h265(true)
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .build(now);
        for addr in &local.candidates {
            if let Ok(candidate) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(candidate);
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| OfferError::Refused(e.to_string()))?;
        let mut routes = Vec::new();
        let mut tracks = Vec::new();
        let mids = offer
            .lines()
            .filter_map(|line| line.trim().strip_prefix("a=mid:"));
        for mid in mids {
            let Some(media) = rtc.media(Mid::from(mid)) else {
                continue;
            };
            if !media.direction().is_receiving() {
                continue;
            }
            let remote = media.remote_pts().to_vec();
            let accepted: Vec<_> = rtc
                .codec_config()
                .params()
                .iter()
                .filter(|p| remote.contains(&p.pt()))
                .filter_map(|p| Some((p.pt(), codec(p.spec().codec)?, p.spec())))
                .collect();
            let Some(&(_, first, spec)) = accepted.first() else {
                continue;
            };
            let Some(payload_type) = PayloadType::new(*accepted[0].0) else {
                continue;
            };
            let id = TrackId::new(tracks.len());
            routes.extend(
                accepted
                    .iter()
                    .filter(|(_, c, _)| *c == first)
                    .map(|(pt, _, _)| (*pt, id)),
            );
            tracks.push(TrackInfo {
                id,
                codec: first,
                clock_rate: spec.clock_rate.get(),
                channels: spec.channels.map_or(1, u16::from),
                payload_type,
                params: CodecParams::default(),
            });
        }
        if tracks.is_empty() {
            return Err(OfferError::NoCommonCodec(
                "no sendonly H.264, H.265, Opus or G.711 media".into(),
            ));
        }
        let publisher = Publisher {
            rtc,
            routes,
            connect_by: Some(now + CONNECT_TIMEOUT),
            ignored: 0,
            deadline: now,
            events: Vec::new(),
        };
        Ok((publisher, answer.to_sdp_string(), tracks))
    }

    pub fn accepts(&self, input: &Input) -> bool {
        self.rtc.accepts(input)
    }

    pub fn receive(&mut self, now: Instant, input: Input, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if let Err(error) = self.rtc.handle_input(input) {
            tracing::debug!(%error, "publisher input refused: disconnecting");
            self.rtc.disconnect();
        }
        self.drain(now, out);
    }

    pub fn timeout(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if let Err(error) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(%error, "publisher timeout failed: disconnecting");
            self.rtc.disconnect();
        }
        self.drain(now, out);
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

    fn drain(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.deadline = at.max(now);
                    break;
                }
                Ok(Output::Transmit(transmit)) => {
                    if transmit.proto == Protocol::Udp {
                        out.push((transmit.destination, transmit.contents.into()));
                    }
                }
                Ok(Output::Event(Event::RtpPacket(packet))) => self.on_rtp(&packet),
                Ok(Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                ))) => self.rtc.disconnect(),
                Ok(Output::Event(_)) => {}
                Err(error) => {
                    tracing::debug!(%error, "publisher failed: disconnecting");
                    self.rtc.disconnect();
                    self.deadline = now;
                    break;
                }
            }
        }
        if self.connect_by.is_some() && self.rtc.is_connected() {
            self.connect_by = None;
            self.events.push(PublisherEvent::Connected);
        }
        if let Some(by) = self.connect_by {
            if now >= by {
                tracing::info!("WHIP publisher never connected: dropped");
                self.rtc.disconnect();
            }
            self.deadline = self.deadline.min(by);
        }
    }

    fn on_rtp(&mut self, packet: &RtpPacket) {
        let header = &packet.header;
        let Some(&(_, track)) = self
            .routes
            .iter()
            .find(|(pt, _)| *pt == header.payload_type)
        else {
            self.ignored += 1;
            return;
        };
        self.events
            .push(PublisherEvent::Rtp(track, rtp_bytes(packet)));
    }
}

/// The packet as the ingest parses it: a plain 12-byte header (extensions and
/// CSRCs are str0m's business) and the payload.
fn rtp_bytes(packet: &RtpPacket) -> Bytes {
    let header = &packet.header;
    let mut out = BytesMut::with_capacity(12 + packet.payload.len());
    out.put_u8(0x80);
    out.put_u8(u8::from(header.marker) << 7 | (*header.payload_type & 0x7f));
    out.put_u16(header.sequence_number);
    out.put_u32(header.timestamp);
    out.put_u32(*header.ssrc);
    out.put_slice(&packet.payload);
    out.freeze()
}

/// The pipeline's codec for one str0m negotiates.
fn codec(codec: RtcCodec) -> Option<Codec> {
    Some(match codec {
        RtcCodec::H264 => Codec::H264,
        RtcCodec::H265 => Codec::H265,
        RtcCodec::Opus => Codec::Opus,
        RtcCodec::PCMU => Codec::Pcmu,
        RtcCodec::PCMA => Codec::Pcma,
        _ => return None,
    })
}
