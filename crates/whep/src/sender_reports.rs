//! Hands the sender's RTCP sender reports to the application: webrtc-rs keeps inbound
//! RTCP inside its interceptor chain unless an interceptor marks it
//! `DeliverToApplication` (see its `rtcp-processing` example). The ingest uses the
//! reports' NTP/RTP pairs to put the tracks in step when a session starts (frames'
//! wall-clock time stays the stream's own line, so rotations never move it).

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Goes last in the chain so every other interceptor has seen the RTCP first.
pub const SLOT: usize = 14_000;

/// Marks inbound compound RTCP that holds a sender report for the application, reduced
/// to its sender reports; everything else passes unmarked, as webrtc-rs intends.
#[derive(Default)]
pub struct SenderReportForwarder {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for SenderReportForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let reports: Vec<_> = packets
                .iter()
                .filter(|p| p.as_any().is::<SenderReport>())
                .cloned()
                .collect();
            if !reports.is_empty() {
                msg.message.packet = Packet::Rtcp(reports);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for SenderReportForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// The pipeline's view of a webrtc-rs sender report.
pub fn to_pipeline(report: &SenderReport) -> streamgate_rtp::rtcp::SenderReport {
    streamgate_rtp::rtcp::SenderReport {
        ssrc: streamgate_rtp::Ssrc::new(report.ssrc),
        ntp_time: report.ntp_time,
        rtp_time: report.rtp_time,
        packet_count: report.packet_count,
        octet_count: report.octet_count,
        reports: Vec::new(),
    }
}
