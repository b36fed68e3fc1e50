//! SDP to tracks: never panics, and every track it accepts, described again with
//! the `rtpmap`/`fmtp` writers (as the RTSP server does), parses to the same track.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_rtp::sdp::{fmtp, parse_tracks, rtpmap};
use streamgate_rtp::{MediaKind, TrackInfo};

fuzz_target!(|data: &[u8]| {
    let Ok(tracks) = parse_tracks(data) else {
        return;
    };
    let mut written = String::from("v=0\r\n");
    for track in &tracks {
        let kind = match track.info.kind() {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        };
        let pt = track.info.payload_type;
        written += &format!(
            "m={kind} 0 RTP/AVP {pt}\r\na=rtpmap:{}\r\n",
            rtpmap(&track.info)
        );
        if let Some(value) = fmtp(&track.info) {
            written += &format!("a=fmtp:{value}\r\n");
        }
    }
    let reparsed = parse_tracks(written.as_bytes()).expect("written SDP parses");
    let infos = |tracks: &[streamgate_rtp::sdp::SdpTrack]| -> Vec<TrackInfo> {
        tracks.iter().map(|t| t.info.clone()).collect()
    };
    assert_eq!(infos(&reparsed), infos(&tracks), "{written}");
});
