//! pcap/pcapng capture loading (the replay source): never panics, and what it
//! keeps is RTP of a described track with offsets that never go back.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamgate_replay::Capture;

const SDP: &[u8] = include_bytes!("../../fixtures/ffmpeg_h264_aac.sdp");

fuzz_target!(|data: &[u8]| {
    let Ok(capture) = Capture::parse(Bytes::copy_from_slice(data), SDP, "fuzz") else {
        return;
    };
    assert!(!capture.packets.is_empty(), "a loaded capture has packets");
    assert!(capture.packets.windows(2).all(|w| w[0].0 <= w[1].0));
    for (_, track, packet) in &capture.packets {
        assert!(packet.raw().len() >= 12);
        // Routed by port here (the SDP has distinct ports), so the payload type
        // is whatever was captured: only the track is checked.
        assert!(
            capture.tracks.iter().any(|t| t.info.id == *track),
            "packet routed to a described track"
        );
    }
});
