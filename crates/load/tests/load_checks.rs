//! The reader's checks catch what they claim: a capture with dropped packets
//! and a timestamp reset, served as recorded by `cameras --verbatim`, is
//! reported as loss and as time stepping back, and the run fails.

mod support;

use std::io::Write;
use std::path::Path;

use streamgate_replay::Capture;
use streamgate_rtp::{MediaKind, RtpPacket};
use support::*;

/// Video packets (by index among the video packets) left out of the capture.
const DROPPED: [usize; 3] = [100, 200, 300];
/// From this video packet on, timestamps are 4 s earlier (a camera clock reset).
const RESET_AT: usize = 250;
const RESET_TICKS: u32 = 4 * 90_000;

/// A classic pcap (raw IPv4 link type) of `packets`, each a UDP datagram to its port.
fn write_pcap(path: &Path, packets: &[(std::time::Duration, u16, Vec<u8>)]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (offset, port, rtp) in packets {
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0x45, 0];
        frame.extend_from_slice(&(ip_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        frame.extend_from_slice(&5000u16.to_be_bytes());
        frame.extend_from_slice(&port.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(rtp);
        let seconds = 1_700_000_000 + offset.as_secs() as u32;
        out.extend_from_slice(&seconds.to_le_bytes());
        out.extend_from_slice(&offset.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .expect("write pcap");
}

/// The fixture with [`DROPPED`] left out and timestamps reset at [`RESET_AT`].
fn corrupted_capture(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let sdp = fixture("ffmpeg_h264_aac.sdp");
    let capture = Capture::load(&fixture("ffmpeg_h264_aac.pcap"), &sdp).expect("load fixture");
    let mut video_index = 0;
    let mut packets = Vec::new();
    for (offset, track, packet) in &capture.packets {
        let info = capture
            .tracks
            .iter()
            .find(|t| t.info.id == *track)
            .expect("packet of a described track");
        let mut raw = packet.raw().to_vec();
        if info.info.kind() == MediaKind::Video {
            let index = video_index;
            video_index += 1;
            if DROPPED.contains(&index) {
                continue;
            }
            if index >= RESET_AT {
                let reset = packet.timestamp().wrapping_sub(RESET_TICKS);
                raw[4..8].copy_from_slice(&reset.to_be_bytes());
            }
        }
        RtpPacket::parse(bytes::Bytes::from(raw.clone())).expect("still RTP");
        packets.push((*offset, info.port, raw));
    }
    assert!(video_index > 400, "fixture has {video_index} video packets");
    let pcap = dir.join("corrupted.pcap");
    write_pcap(&pcap, &packets);
    (pcap, sdp)
}

#[test]
fn dropped_packets_and_a_timestamp_reset_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (pcap, sdp) = corrupted_capture(dir.path());
    // The corrupted file loads as a capture like any other.
    Capture::load(&pcap, &sdp).expect("corrupted capture loads");
    let (_cameras, prefix) = start_cameras(&[
        "--verbatim",
        "--pcap",
        pcap.to_str().expect("utf-8 path"),
        "--sdp",
        sdp.to_str().expect("utf-8 path"),
    ]);
    // Longer than one 10 s pass: every dropped packet and the reset go by.
    let args = ["--readers", "3", "--url", &format!("{prefix}0")].map(String::from);
    let (output, summary) = read(&args, 12);
    assert_eq!(number(&summary, "failed_readers"), 0, "{summary:#}");
    for report in summary["reader_reports"].as_array().expect("reports") {
        assert!(
            report["lost"].as_u64().unwrap_or(0) >= DROPPED.len() as u64,
            "each reader must see the dropped packets: {report}"
        );
        assert!(
            report["backward_timestamps"].as_u64().unwrap_or(0) >= 1,
            "each reader must see the timestamp reset: {report}"
        );
    }
    let failures = summary["failures"].to_string();
    assert!(failures.contains("loss"), "{failures}");
    assert!(failures.contains("stepped back"), "{failures}");
    assert!(!output.status.success(), "a lossy run must exit non-zero");
}
