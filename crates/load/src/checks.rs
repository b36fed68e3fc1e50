//! What one reader checks on one track, fed packet by packet (sans-IO: the
//! arrival time is an input, so the checks are unit-tested without sockets).
//!
//! - loss: RTP sequence numbers extended to 64 bits (`ExtSeqNo`, from the
//!   first number seen on); every number between the first and the highest seen
//!   that never arrived is lost, and one sent before the first is not expected;
//! - monotonic time: RTP timestamps, extended to 64 bits by the same nearer-way
//!   round rule, must never step back;
//! - decodable start: the first access unit of a video track must be a keyframe
//!   whose parameter sets are known (from the SDP or in band);
//! - latency: a frame's capture time from the latest RTCP sender report's
//!   NTP/RTP mapping, against the local clock (meaningful on one machine).
//!   Frames captured before the reader joined (the server's GOP cache, sent at
//!   once on PLAY) are backlog, not latency, and are left out.

use std::time::{Duration, SystemTime};

use streamgate_rtp::codec::{self, Depacketizer};
use streamgate_rtp::rtcp::{system_time_from_ntp, SenderReport};
use streamgate_rtp::{ExtSeqNo, MediaKind, RtpPacket, TrackInfo};

/// Latency samples kept per track (one per frame: ~4 minutes at 25 fps, more
/// than any bounded run needs).
const MAX_LATENCY_SAMPLES: usize = 6_000;

/// How the first video access unit looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFrame {
    /// A keyframe with its parameter sets known: a decoder can start here.
    Decodable,
    /// Not a keyframe, or one whose SPS/PPS were never given.
    NotDecodable,
}

/// Running checks of one track.
pub struct TrackCheck {
    info: TrackInfo,
    /// Video only, until the first access unit came out.
    depacketizer: Option<Depacketizer>,
    first_sequence: Option<ExtSeqNo>,
    /// The reference the next sequence number is extended from.
    last_sequence: ExtSeqNo,
    highest_sequence: ExtSeqNo,
    last_timestamp: Option<i64>,
    sender_report: Option<(SystemTime, i64)>,
    joined: Option<SystemTime>,
    pub received: u64,
    pub bytes: u64,
    /// Distinct RTP timestamps seen: frames, as the WHEP readers report them.
    pub frames: u64,
    /// Times the RTP timestamp stepped back.
    pub backward_timestamps: u64,
    /// How the first video access unit looked.
    pub first_frame: Option<FirstFrame>,
    /// When the first decodable keyframe arrived.
    pub first_keyframe_at: Option<SystemTime>,
    /// Milliseconds from capture (per the sender report) to arrival, per frame.
    pub latency_ms: Vec<f64>,
}

/// An RTP timestamp extended next to `previous`: the nearer way round.
fn extend_timestamp(previous: i64, timestamp: u32) -> i64 {
    let modulus = 1i64 << 32;
    let delta = (i64::from(timestamp) - previous).rem_euclid(modulus);
    if delta >= modulus / 2 {
        previous + delta - modulus
    } else {
        previous + delta
    }
}

impl TrackCheck {
    pub fn new(info: TrackInfo) -> TrackCheck {
        let depacketizer = match info.kind() {
            MediaKind::Video => Depacketizer::new(&info).ok(),
            MediaKind::Audio => None,
        };
        TrackCheck {
            info,
            depacketizer,
            first_sequence: None,
            last_sequence: ExtSeqNo::new(0),
            highest_sequence: ExtSeqNo::new(0),
            last_timestamp: None,
            sender_report: None,
            joined: None,
            received: 0,
            bytes: 0,
            frames: 0,
            backward_timestamps: 0,
            first_frame: None,
            first_keyframe_at: None,
            latency_ms: Vec::new(),
        }
    }

    pub fn info(&self) -> &TrackInfo {
        &self.info
    }

    /// Packets that should have arrived (first to highest sequence number).
    pub fn expected(&self) -> u64 {
        match self.first_sequence {
            Some(first) => self.highest_sequence - first + 1,
            None => 0,
        }
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    pub fn on_rtp(&mut self, packet: RtpPacket, wire_len: usize, now: SystemTime) {
        self.received += 1;
        self.bytes += wire_len as u64;
        let sequence = packet.sequence_number();
        if self.first_sequence.is_none() {
            let first = ExtSeqNo::from(sequence);
            self.first_sequence = Some(first);
            self.last_sequence = first;
            self.highest_sequence = first;
        } else if let Ok(extended) = self.last_sequence.extend(sequence) {
            self.last_sequence = extended;
            self.highest_sequence = self.highest_sequence.max(extended);
        }
        // else: sent before the first packet (reordered at the start), so it
        // was never expected; the numbering goes on from the last one.
        let timestamp = match self.last_timestamp {
            None => i64::from(packet.timestamp()),
            Some(last) => extend_timestamp(last, packet.timestamp()),
        };
        let new_frame = self.last_timestamp != Some(timestamp);
        if matches!(self.last_timestamp, Some(last) if timestamp < last) {
            self.backward_timestamps += 1;
        }
        self.last_timestamp = Some(timestamp);
        if new_frame {
            self.frames += 1;
            self.sample_latency(timestamp, now);
        }
        self.check_first_frame(packet, now);
    }

    /// The reader's PLAY was answered at `at`: frames captured later are live.
    pub fn joined(&mut self, at: SystemTime) {
        self.joined = Some(at);
    }

    pub fn on_sender_report(&mut self, report: &SenderReport) {
        let rtp = match self.last_timestamp {
            Some(last) => extend_timestamp(last, report.rtp_time),
            None => i64::from(report.rtp_time),
        };
        self.sender_report = Some((system_time_from_ntp(report.ntp_time), rtp));
    }

    fn sample_latency(&mut self, timestamp: i64, now: SystemTime) {
        let Some((report_wallclock, report_rtp)) = self.sender_report else {
            return;
        };
        if self.latency_ms.len() >= MAX_LATENCY_SAMPLES || self.info.clock_rate == 0 {
            return;
        }
        let since_report = (timestamp - report_rtp) as f64 / f64::from(self.info.clock_rate);
        let captured = match Duration::try_from_secs_f64(since_report.abs()) {
            Ok(d) if since_report >= 0.0 => report_wallclock.checked_add(d),
            Ok(d) => report_wallclock.checked_sub(d),
            Err(_) => None,
        };
        if captured.is_none() || captured < self.joined {
            return;
        }
        let arrival = match now.duration_since(report_wallclock) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        self.latency_ms.push((arrival - since_report) * 1000.0);
    }

    /// Judges the first access unit, then keeps depacketizing until the first
    /// decodable keyframe (a server without a GOP cache makes a reader wait for it).
    fn check_first_frame(&mut self, packet: RtpPacket, now: SystemTime) {
        let Some(depacketizer) = self.depacketizer.as_mut() else {
            return;
        };
        // Errors before the first frame (a fragment joined mid-way) are what
        // the check is about: the frames that finally come out are judged.
        let _ = depacketizer.push(packet);
        while let Some(unit) = depacketizer.pull() {
            codec::update_params(self.info.codec, &unit.units, &mut self.info.params);
            let verdict = if unit.keyframe && self.info.is_ready() {
                FirstFrame::Decodable
            } else {
                FirstFrame::NotDecodable
            };
            self.first_frame.get_or_insert(verdict);
            if verdict == FirstFrame::Decodable {
                self.first_keyframe_at = Some(now);
                self.depacketizer = None;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use streamgate_rtp::packet::RtpPacketBuilder;
    use streamgate_rtp::sdp;
    use streamgate_rtp::{PayloadType, SeqNo, Ssrc};

    const SDP: &[u8] = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=t\r\nt=0 0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAH9oBQBbsBEAAAAMAQAAADIPGDKg=,aM48gA==\r\n";

    fn video() -> TrackCheck {
        TrackCheck::new(sdp::parse_tracks(SDP).unwrap().remove(0).info)
    }

    fn packet(seq: u16, ts: u32, nal_header: u8) -> RtpPacket {
        let raw = RtpPacketBuilder {
            payload_type: PayloadType::new(96).unwrap(),
            sequence_number: SeqNo::new(seq),
            timestamp: ts,
            ssrc: Ssrc::new(1),
            marker: true,
            payload: Bytes::from(vec![nal_header, 0x88, 1, 2]),
            ..Default::default()
        }
        .build()
        .unwrap();
        RtpPacket::parse(raw).unwrap()
    }

    #[test]
    fn gaps_across_the_sequence_wrap_are_counted_once() {
        let mut check = video();
        let now = SystemTime::now();
        for seq in [65_533u16, 65_534, 0, 1, 4] {
            check.on_rtp(packet(seq, u32::from(seq) * 10, 0x65), 16, now);
        }
        assert_eq!((check.expected(), check.lost()), (8, 3)); // 65535, 2 and 3
        assert_eq!(
            check.backward_timestamps, 1,
            "seq 0 carries ts 0 < ts of 65534"
        );
    }

    #[test]
    fn a_packet_sent_before_the_first_is_not_expected() {
        let mut check = video();
        let now = SystemTime::now();
        // 65 534 comes two before 0: reordered ahead of it, it predates the first.
        for seq in [5u16, 65_534, 6, 7] {
            check.on_rtp(packet(seq, 0, 0x65), 16, now);
        }
        assert_eq!(check.received, 4);
        assert_eq!(check.expected(), 3, "5 to 7, not from 65534 on");
        // And goes on from 7: 9 is two further (8 lost).
        check.on_rtp(packet(9, 0, 0x65), 16, now);
        assert_eq!(check.expected(), 5);
    }

    #[test]
    fn timestamps_stepping_back_are_counted_but_wraps_are_not() {
        let mut check = video();
        let now = SystemTime::now();
        for (seq, ts) in [
            (1, u32::MAX - 3000),
            (2, 3000),
            (3, 3000),
            (4, 6000),
            (5, 10),
        ] {
            check.on_rtp(packet(seq, ts, 0x65), 16, now);
        }
        assert_eq!(check.backward_timestamps, 1);
        assert_eq!(check.lost(), 0);
    }

    #[test]
    fn first_frame_must_be_a_keyframe() {
        let now = SystemTime::now();
        let mut check = video();
        check.on_rtp(packet(1, 0, 0x41), 16, now); // non-IDR slice
        assert_eq!(check.first_frame, Some(FirstFrame::NotDecodable));
        assert_eq!(check.first_keyframe_at, None);
        let later = now + Duration::from_millis(40);
        check.on_rtp(packet(2, 3600, 0x65), 16, later);
        assert_eq!(check.first_frame, Some(FirstFrame::NotDecodable));
        assert_eq!(check.first_keyframe_at, Some(later));
        let mut check = video();
        check.on_rtp(packet(1, 0, 0x65), 16, now); // IDR, SPS/PPS from the SDP
        assert_eq!(check.first_frame, Some(FirstFrame::Decodable));
    }

    #[test]
    fn latency_comes_from_the_sender_report_mapping() {
        let mut check = video();
        let captured = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        check.on_sender_report(&SenderReport {
            ssrc: Ssrc::new(1),
            ntp_time: streamgate_rtp::rtcp::ntp_from_system_time(captured),
            rtp_time: 90_000,
            packet_count: 0,
            octet_count: 0,
            reports: Vec::new(),
        });
        check.joined(captured + Duration::from_millis(500));
        // Captured 0.4 s after the report, before the reader joined: backlog.
        check.on_rtp(
            packet(1, 126_000, 0x65),
            16,
            captured + Duration::from_millis(600),
        );
        assert!(check.latency_ms.is_empty());
        // A frame 1 s after the report's, arriving 1.25 s after the report's time.
        check.on_rtp(
            packet(2, 180_000, 0x65),
            16,
            captured + Duration::from_millis(1250),
        );
        assert_eq!(check.latency_ms.len(), 1);
        assert!(
            (check.latency_ms[0] - 250.0).abs() < 1.0,
            "{:?}",
            check.latency_ms
        );
    }
}
