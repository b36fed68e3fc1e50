//! Live view of Ring devices through the simulator: WHEP sessions capped (30 s
//! for a battery device at Ring; 12 s here, on both sides, to keep the test short)
//! are rotated make-before-break, so an RTSP reader (ffmpeg, what
//! Frigate runs) and an HLS player (hls.js in Chromium) see one continuous stream.

use crate::support;

use support::player::{assert_played, play};
use support::ring::{self, Sim};
use support::{decode_av, Decoded, Gateway};

/// The simulator streams fixtures/ffmpeg_h264_opus.pcap: 25 fps video, 20 ms Opus frames.
const VIDEO_FPS: f64 = 25.0;
const AUDIO_FPS: f64 = 50.0;

#[test]
fn ffmpeg_reads_a_battery_device_for_32_s_across_three_session_caps() {
    let sim = Sim::start("battery_session_cap = \"12s\"");
    let gateway = Gateway::start(&sim.ring_section("battery_session = \"12s\""));
    ring::link_sample_account(&sim, &gateway);
    let seconds = 32;
    let Decoded {
        video_dts,
        audio,
        errors,
        ..
    } = decode_av(
        &gateway.rtsp_url("ring-front-door"),
        seconds,
        gateway.dir.path(),
    );
    let log = gateway.log();
    assert!(errors.is_empty(), "ffmpeg errors: {errors:?}\n{log}");
    let expected = VIDEO_FPS * f64::from(seconds);
    let sessions = sim.stats().whep_sessions;
    println!(
        "Ring restream: {} video frames of {expected}, {audio} audio frames, sessions {sessions:?}",
        video_dts.len()
    );
    assert!(
        video_dts.len() as f64 >= 0.95 * expected,
        "{} video frames of {expected}\n{log}",
        video_dts.len()
    );
    // The first packet after PLAY reaches ffmpeg without a timestamp (true of every
    // stream the RTSP server serves): ffmpeg guesses frame 0's, so it is skipped.
    if let Some(at) = video_dts.windows(2).skip(1).position(|w| w[1] <= w[0]) {
        let at = at + 1;
        let around = &video_dts[at.saturating_sub(3)..(at + 4).min(video_dts.len())];
        panic!("video DTS go back or repeat at frame {at}: {around:?}\n{log}");
    }
    assert!(
        audio as f64 >= 0.9 * AUDIO_FPS * f64::from(seconds),
        "{audio} audio frames\n{log}"
    );
    // 32 s of 12 s sessions, each replaced before Ring's cap ended it.
    assert!(sessions.opened >= 3, "{sessions:?}");
    assert_eq!(sessions.closed_at_cap, 0, "{sessions:?}\n{log}");
    assert!(log.contains("switched to the next WHEP session"), "{log}");
}

#[test]
fn hls_js_plays_a_ring_stream() {
    let sim = Sim::start("");
    let gateway = Gateway::start(&sim.ring_section(""));
    ring::link_sample_account(&sim, &gateway);
    let report = play(&gateway.http_url("/hls/ring-front-door/"), 15);
    assert_played(&report, 12.0, &gateway);
}
