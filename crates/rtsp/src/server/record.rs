//! The publishing side of one connection, after ANNOUNCE: the announced tracks,
//! the ones SETUP (`mode=record`) gave transports, and once RECORD came the
//! publisher's RTP and RTCP (interleaved or over UDP) into the stream's ingest;
//! RTCP receiver reports go back per track ([`Reception`]).
//!
//! Bad input never ends the session: RTP that does not parse or does not fit
//! the ingest, and media before RECORD, are dropped and counted on the
//! [`PublishPoint`] (a flood costs this connection's task only).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtsp_types::Url;
use streamgate_pipeline::RateLimitedLog;
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::rtcp::{self, ReceiverReport, ReportBlock, RtcpPacket, Sdes};
use streamgate_rtp::sdp::SdpTrack;
use streamgate_rtp::{Ssrc, TrackId};
use tokio::sync::mpsc;

use super::publish::{PublishPoint, Publisher};
use super::transport::TransportRequest;
use super::udp_record::{self, Datagram, UdpRecordTrack};

/// A publisher's session on this connection.
#[derive(Debug)]
pub struct Recording {
    pub id: String,
    pub stream: String,
    publisher: Publisher,
    announced: Vec<SdpTrack>,
    pub tracks: BTreeMap<TrackId, RecordTrack>,
    /// RECORD was accepted: media goes to the ingest.
    recording: bool,
    /// Datagrams of the UDP tracks (the sender is cloned into each track's reader).
    datagrams: (mpsc::Sender<Datagram>, mpsc::Receiver<Datagram>),
    /// Ours, in the receiver reports.
    ssrc: Ssrc,
    bad_input: RateLimitedLog,
}

/// What a publisher's session brings besides requests and interleaved data.
#[derive(Debug)]
pub enum RecordingEvent {
    Datagram(Datagram),
    Kicked,
}

/// One set-up track of a publisher.
#[derive(Debug)]
pub struct RecordTrack {
    pub transport: TransportRequest,
    pub udp: Option<UdpRecordTrack>,
    reception: Reception,
}

impl Recording {
    pub fn new(
        id: String,
        stream: String,
        publisher: Publisher,
        announced: Vec<SdpTrack>,
        ssrc: Ssrc,
    ) -> Recording {
        Recording {
            id,
            stream,
            publisher,
            announced,
            tracks: BTreeMap::new(),
            recording: false,
            datagrams: udp_record::queue(),
            ssrc,
            bad_input: RateLimitedLog::default(),
        }
    }

    pub fn point(&self) -> &PublishPoint {
        self.publisher.point()
    }

    /// The queue a UDP track's reader feeds.
    pub fn datagram_queue(&self) -> mpsc::Sender<Datagram> {
        self.datagrams.0.clone()
    }

    /// The announced track a SETUP URL names: by its `a=control` (relative to
    /// the stream, or absolute), or the only track for the stream's own URL.
    pub fn track_for(&self, url: &Url) -> Option<TrackId> {
        let path = url.path().trim_end_matches('/');
        let by_control = self.announced.iter().find(|t| {
            t.control.as_deref().is_some_and(|control| {
                let control = control.trim_end_matches('/');
                match Url::parse(control) {
                    Ok(absolute) => absolute.path().trim_end_matches('/') == path,
                    Err(_) => !control.is_empty() && path.ends_with(&format!("/{control}")),
                }
            })
        });
        match (by_control, &self.announced[..]) {
            (Some(track), _) => Some(track.info.id),
            (None, [only]) if path.trim_matches('/') == self.stream => Some(only.info.id),
            _ => None,
        }
    }

    pub fn add_track(
        &mut self,
        id: TrackId,
        transport: TransportRequest,
        udp: Option<UdpRecordTrack>,
    ) {
        self.tracks.insert(
            id,
            RecordTrack {
                transport,
                udp,
                reception: Reception::default(),
            },
        );
    }

    /// The first interleaved channel no track uses yet.
    pub fn next_channel(&self) -> u8 {
        self.tracks
            .values()
            .filter_map(|t| match t.transport {
                TransportRequest::Interleaved { rtcp_channel, .. } => Some(rtcp_channel),
                TransportRequest::Udp { .. } => None,
            })
            .max()
            .map_or(0, |c| c.saturating_add(1))
    }

    /// RECORD: the set-up tracks start feeding the stream. False without SETUP.
    pub fn record(&mut self) -> bool {
        if self.tracks.is_empty() {
            return false;
        }
        if !self.recording {
            let infos: Vec<_> = self
                .announced
                .iter()
                .filter(|t| self.tracks.contains_key(&t.info.id))
                .map(|t| t.info.clone())
                .collect();
            self.publisher.start(&infos);
            self.recording = true;
        }
        true
    }

    /// Whether a SETUP gave out interleaved `channel`.
    pub fn has_channel(&self, channel: u8) -> bool {
        self.channel(channel).is_some()
    }

    fn channel(&self, channel: u8) -> Option<(TrackId, bool)> {
        self.tracks.iter().find_map(|(&id, t)| match t.transport {
            TransportRequest::Interleaved { rtp_channel, .. } if rtp_channel == channel => {
                Some((id, false))
            }
            TransportRequest::Interleaved { rtcp_channel, .. } if rtcp_channel == channel => {
                Some((id, true))
            }
            _ => None,
        })
    }

    /// An interleaved frame; false when its channel was never set up.
    pub fn on_interleaved(&mut self, channel: u8, data: Bytes, now: Instant) -> bool {
        let Some((track, rtcp)) = self.channel(channel) else {
            return false;
        };
        self.on_media(track, rtcp, data, now);
        true
    }

    pub fn on_datagram(&mut self, datagram: Datagram, now: Instant) {
        self.on_media(datagram.track, datagram.rtcp, datagram.data, now);
    }

    /// The next datagram from a UDP track, or the end of this publisher's
    /// turn (another took over, or the stream stopped). Cancel-safe.
    pub async fn next_event(&mut self) -> RecordingEvent {
        let (datagrams, publisher) = (&mut self.datagrams.1, &self.publisher);
        tokio::select! {
            // Never None: this session holds a sender.
            Some(datagram) = datagrams.recv() => RecordingEvent::Datagram(datagram),
            () = publisher.kicked() => RecordingEvent::Kicked,
        }
    }

    fn on_media(&mut self, track: TrackId, is_rtcp: bool, data: Bytes, now: Instant) {
        let result = if !self.recording {
            Err("media before RECORD".to_owned())
        } else if is_rtcp {
            self.on_rtcp(track, &data, now)
        } else {
            self.on_rtp(track, data, now)
        };
        if let Err(reason) = result {
            self.point()
                .counts()
                .bad_packets
                .fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = self.bad_input.occurred(now) {
                tracing::warn!(stream = %self.stream, track = track.get(), %reason, suppressed, "publisher input dropped");
            }
        }
    }

    fn on_rtp(&mut self, track: TrackId, data: Bytes, now: Instant) -> Result<(), String> {
        let packet = RtpPacket::parse(data).map_err(|e| e.to_string())?;
        if let Some(t) = self.tracks.get_mut(&track) {
            t.reception
                .on_rtp(packet.ssrc(), packet.sequence_number().get());
        }
        let ingest = self.publisher.ingest().ok_or("no ingest")?;
        ingest
            .push_rtp(track, packet, now)
            .map_err(|e| e.to_string())
    }

    fn on_rtcp(&mut self, track: TrackId, data: &[u8], now: Instant) -> Result<(), String> {
        let packets = rtcp::parse_compound(data).map_err(|e| e.to_string())?;
        for packet in packets {
            if let RtcpPacket::SenderReport(report) = packet {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.reception.on_sender_report(report.ntp_time, now);
                }
                if let Some(ingest) = self.publisher.ingest() {
                    ingest.on_sender_report(track, &report, now);
                }
            }
        }
        Ok(())
    }

    /// A receiver report (RR + SDES CNAME) per track that has received RTP.
    pub fn receiver_reports(&mut self, now: Instant) -> Vec<(TrackId, Bytes)> {
        let ssrc = self.ssrc;
        self.tracks
            .iter_mut()
            .filter_map(|(&id, t)| {
                let block = t.reception.report_block(now)?;
                let mut out = BytesMut::new();
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc,
                    reports: vec![block],
                })
                .write_to(&mut out);
                RtcpPacket::SourceDescription(Sdes::cname(ssrc, "streamgate")).write_to(&mut out);
                Some((id, out.freeze()))
            })
            .collect()
    }
}

/// Reception statistics of one source for its receiver reports (RFC 3550
/// A.3 and 6.4.1), sans-IO.
#[derive(Debug, Default)]
pub struct Reception {
    source: Option<Ssrc>,
    base_seq: u32,
    /// Extended highest sequence number (cycles in the upper 16 bits).
    max_seq: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl Reception {
    pub fn on_rtp(&mut self, ssrc: Ssrc, seq: u16) {
        if self.source != Some(ssrc) {
            *self = Reception {
                source: Some(ssrc),
                base_seq: u32::from(seq),
                max_seq: u32::from(seq),
                ..Reception::default()
            };
        }
        self.received += 1;
        let max_low = self.max_seq as u16;
        let ahead = seq.wrapping_sub(max_low);
        if ahead != 0 && ahead < 0x8000 {
            let cycles = self.max_seq & 0xffff_0000;
            let cycles = if seq < max_low {
                cycles.wrapping_add(1 << 16)
            } else {
                cycles
            };
            self.max_seq = cycles | u32::from(seq);
        }
    }

    pub fn on_sender_report(&mut self, ntp: u64, now: Instant) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// The block for the next report; `None` before any RTP.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.source?;
        let expected = u64::from(self.max_seq.wrapping_sub(self.base_seq)) + 1;
        let lost = i64::try_from(expected).unwrap_or(i64::MAX)
            - i64::try_from(self.received).unwrap_or(i64::MAX);
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| u8::try_from(f).unwrap_or(u8::MAX));
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((middle, at)) => {
                let delay = now.saturating_duration_since(at).as_secs_f64() * 65536.0;
                (middle, delay.min(f64::from(u32::MAX)) as u32)
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: i32::try_from(lost.clamp(-(1 << 23), (1 << 23) - 1)).unwrap_or(0),
            highest_sequence: self.max_seq,
            jitter: 0,
            last_sr,
            delay_since_last_sr,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streamgate_pipeline::{Hub, HubConfig};
    use streamgate_rtp::sdp;

    use super::super::publish::PublishConfig;
    use super::*;

    fn recording(controls: [&str; 2]) -> Recording {
        let sdp = format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:{}\r\n\
             m=audio 0 RTP/AVP 0\r\na=control:{}\r\n",
            controls[0], controls[1]
        );
        let point = PublishPoint::new(
            Hub::new("cam", HubConfig::default()),
            PublishConfig {
                credentials: None,
                replace: false,
                grace: Duration::from_secs(1),
            },
        );
        let publisher = point.claim("127.0.0.1:5000".parse().unwrap()).unwrap();
        let tracks = sdp::parse_tracks(sdp.as_bytes()).unwrap();
        Recording::new("1".into(), "cam".into(), publisher, tracks, Ssrc::new(1))
    }

    #[test]
    fn setup_urls_name_the_announced_tracks() {
        let url = |s: &str| Url::parse(s).unwrap();
        // ffmpeg: `streamid=N`; GStreamer rtspclientsink: `stream=N`.
        let ffmpeg = recording(["streamid=0", "streamid=1"]);
        assert_eq!(
            ffmpeg.track_for(&url("rtsp://h:8554/cam/streamid=1")),
            Some(TrackId::new(1))
        );
        let gst = recording(["stream=0", "stream=1"]);
        assert_eq!(
            gst.track_for(&url("rtsp://h/cam/stream=0")),
            Some(TrackId::new(0))
        );
        let absolute = recording(["rtsp://h/cam/v", "rtsp://h/cam/a"]);
        assert_eq!(
            absolute.track_for(&url("rtsp://h/cam/a")),
            Some(TrackId::new(1))
        );
        assert_eq!(ffmpeg.track_for(&url("rtsp://h/cam/streamid=7")), None);
        assert_eq!(
            ffmpeg.track_for(&url("rtsp://h/cam")),
            None,
            "two tracks: which?"
        );
    }

    #[test]
    fn reports_loss_and_wraps_sequence_numbers() {
        let now = Instant::now();
        let ssrc = Ssrc::new(7);
        let mut reception = Reception::default();
        assert_eq!(reception.report_block(now), None);
        for seq in [65533u16, 65534, 65535, 1, 2] {
            reception.on_rtp(ssrc, seq);
        }
        // 0 never came; a late 65535 duplicate does not move the highest.
        reception.on_rtp(ssrc, 65535);
        reception.on_sender_report(0x1234_5678_9abc_def0, now);
        let block = reception
            .report_block(now + Duration::from_secs(1))
            .expect("block");
        assert_eq!(block.ssrc, ssrc);
        assert_eq!(block.highest_sequence, (1 << 16) | 2);
        assert_eq!(
            block.cumulative_lost, 0,
            "6 expected, 6 received (one a duplicate)"
        );
        assert_eq!(block.last_sr, 0x5678_9abc);
        assert_eq!(block.delay_since_last_sr, 65536);

        for seq in [5u16, 6] {
            reception.on_rtp(ssrc, seq);
        }
        let block = reception.report_block(now).expect("block");
        assert_eq!(block.cumulative_lost, 2, "3 and 4 missing");
        assert_eq!(
            block.fraction_lost, 128,
            "2 of 4 lost since the last report"
        );
    }
}
