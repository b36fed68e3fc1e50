//! RTCP sender reports for one track of one session (sans-IO: time is an input).
//!
//! Each report maps the last frame sent to its wall-clock time: NTP from
//! `Frame::wallclock`, RTP from the frame's own output timestamp. The Hub keeps
//! wall clocks consistent across a stream's tracks, so audio and video reports
//! agree and ffmpeg (which re-bases on the first report) syncs them. The first
//! reports of all tracks go out before the session's first packet.

use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use streamgate_rtp::rtcp::{ntp_from_system_time, Goodbye, RtcpPacket, Sdes, SenderReport};
use streamgate_rtp::{Frame, Ssrc};

/// RFC 3550 suggests ~5 s between reports for a low-rate session.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Counts what one session sent on one track and decides when to report.
#[derive(Debug, Clone)]
pub struct SenderReports {
    ssrc: Ssrc,
    packet_count: u32,
    octet_count: u32,
    last_mapping: Option<(SystemTime, u32)>,
    next_report: Option<Instant>,
}

impl SenderReports {
    pub fn new(ssrc: Ssrc) -> Self {
        SenderReports {
            ssrc,
            packet_count: 0,
            octet_count: 0,
            last_mapping: None,
            next_report: None,
        }
    }

    /// Called for each frame about to be sent; returns a compound SR + SDES to
    /// send first when one is due.
    pub fn on_frame(&mut self, frame: &Frame, now: Instant) -> Option<Bytes> {
        let first = frame.packets.first()?;
        self.last_mapping = Some((frame.wallclock, first.timestamp()));
        let due = self.next_report.is_none_or(|at| now >= at);
        let report = due.then(|| {
            self.next_report = Some(now + REPORT_INTERVAL);
            self.report()
        });
        self.packet_count = self
            .packet_count
            .wrapping_add(u32::try_from(frame.packets.len()).unwrap_or(u32::MAX));
        let octets: usize = frame.packets.iter().map(|p| p.payload.len()).sum();
        self.octet_count = self
            .octet_count
            .wrapping_add(u32::try_from(octets).unwrap_or(u32::MAX));
        report
    }

    /// The first report, sent for every track before any RTP of the session:
    /// ffmpeg times the packets it reads before a track's first report
    /// differently from those after it, so the mapping must come first.
    pub fn first_report(&mut self, frame: &Frame, now: Instant) -> Option<Bytes> {
        let first = frame.packets.first()?;
        self.last_mapping = Some((frame.wallclock, first.timestamp()));
        self.next_report = Some(now + REPORT_INTERVAL);
        Some(self.report())
    }

    /// The last report, ending in a BYE: sent when the stream closes (deleted,
    /// replaced or the gateway shutting down) so the reader learns the source left.
    pub fn goodbye(&self) -> Bytes {
        let mut out = self.report_into(BytesMut::with_capacity(80));
        RtcpPacket::Goodbye(Goodbye {
            sources: vec![self.ssrc],
            reason: b"stream closed".to_vec(),
        })
        .write_to(&mut out);
        out.freeze()
    }

    fn report(&self) -> Bytes {
        self.report_into(BytesMut::with_capacity(64)).freeze()
    }

    /// Appends SR + SDES (the compound packet every RTCP packet must start with).
    fn report_into(&self, mut out: BytesMut) -> BytesMut {
        let (wallclock, rtp_time) = self.last_mapping.unwrap_or((SystemTime::now(), 0));
        RtcpPacket::SenderReport(SenderReport {
            ssrc: self.ssrc,
            ntp_time: ntp_from_system_time(wallclock),
            rtp_time,
            packet_count: self.packet_count,
            octet_count: self.octet_count,
            reports: Vec::new(),
        })
        .write_to(&mut out);
        RtcpPacket::SourceDescription(Sdes::cname(self.ssrc, "streamgate")).write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_rtp::rtcp::parse_compound;
    use streamgate_rtp::{MediaKind, OutPacket, PayloadType, SeqNo, Ssrc, TrackId};

    fn frame(rtp_ts: u32, wallclock: SystemTime, packets: usize) -> Frame {
        Frame {
            track: TrackId::new(0),
            kind: MediaKind::Video,
            pts: u64::from(rtp_ts),
            dts: u64::from(rtp_ts),
            wallclock,
            keyframe: true,
            discontinuity: false,
            random_access_skipped: false,
            units: Vec::new(),
            packets: (0..packets)
                .map(|i| {
                    OutPacket::new(
                        PayloadType::new(96).unwrap(),
                        false,
                        SeqNo::new(i as u16),
                        rtp_ts,
                        Ssrc::new(1),
                        bytes::Bytes::from_static(b"0123456789"),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn first_frame_reports_then_every_interval() {
        let start = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut reports = SenderReports::new(Ssrc::new(0x1234));
        let first = reports
            .on_frame(&frame(9000, wall, 2), start)
            .expect("report before the first packet");
        let parsed = parse_compound(&first).unwrap();
        let RtcpPacket::SenderReport(sr) = &parsed[0] else {
            panic!("not an SR: {parsed:?}")
        };
        assert_eq!(
            (sr.ssrc, sr.rtp_time, sr.packet_count, sr.octet_count),
            (Ssrc::new(0x1234), 9000, 0, 0)
        );
        assert_eq!(sr.ntp_time, ntp_from_system_time(wall));
        assert!(matches!(parsed[1], RtcpPacket::SourceDescription(_)));

        assert!(reports
            .on_frame(
                &frame(12000, wall + Duration::from_millis(33), 3),
                start + Duration::from_secs(1)
            )
            .is_none());
        let later = start + REPORT_INTERVAL + Duration::from_millis(1);
        let second = reports
            .on_frame(&frame(15000, wall + Duration::from_millis(66), 1), later)
            .unwrap();
        let RtcpPacket::SenderReport(sr) = &parse_compound(&second).unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            (sr.rtp_time, sr.packet_count, sr.octet_count),
            (15000, 5, 50)
        );
        assert_eq!(
            sr.ntp_time,
            ntp_from_system_time(wall + Duration::from_millis(66))
        );
    }

    #[test]
    fn first_report_then_interval() {
        let start = Instant::now();
        let mut reports = SenderReports::new(Ssrc::new(7));
        let f = frame(100, SystemTime::now(), 1);
        assert!(reports.first_report(&f, start).is_some());
        assert!(
            reports.on_frame(&f, start).is_none(),
            "no second report right after the first"
        );
        assert!(reports.on_frame(&f, start + REPORT_INTERVAL).is_some());
    }

    #[test]
    fn frames_without_packets_are_not_counted() {
        let mut reports = SenderReports::new(Ssrc::new(1));
        assert!(reports
            .on_frame(&frame(0, SystemTime::now(), 0), Instant::now())
            .is_none());
    }
}
