//! End to end: the `streamgate` binary pulls the aiortc WHEP server (an independent
//! WebRTC stack) and re-serves it over RTSP; ffmpeg (what Frigate runs) decodes the
//! restream, audio included. With sessions capped at 20 s, one ffmpeg reader sees a
//! single continuous stream for 70 s.

use crate::support;
use crate::whep_common;

use support::{decode_av, Decoded, Gateway};
use whep_common::WhepServer;

/// The test media (fixtures/ffmpeg_h264_opus.txt): 25 fps video, 20 ms Opus frames.
const VIDEO_FPS: f64 = 25.0;
const AUDIO_FPS: f64 = 50.0;

fn whep_stream(server: &WhepServer, options: &str) -> String {
    format!(
        "[streams.cam]\nsource = \"whep://127.0.0.1:{}/whep/live\"\nwebrtc_bind = \"127.0.0.1\"\n{options}\n",
        server.port
    )
}

#[test]
fn ffmpeg_decodes_the_whep_restream_with_audio() {
    let server = WhepServer::start(&[]);
    let gateway = Gateway::demo("", &whep_stream(&server, ""));
    let seconds = 12;
    let Decoded {
        video,
        audio,
        errors,
        ..
    } = decode_av(&gateway.rtsp_url("cam"), seconds, gateway.dir.path());
    assert!(
        errors.is_empty(),
        "ffmpeg decode errors: {errors:?}\ngateway log:\n{}",
        gateway.log()
    );
    let expected_video = VIDEO_FPS * f64::from(seconds);
    assert!(
        video.len() as f64 >= 0.95 * expected_video,
        "{} video frames of {expected_video}",
        video.len()
    );
    assert!(
        video.windows(2).skip(1).all(|w| w[1] > w[0]),
        "video pts increase: {video:?}"
    );
    let expected_audio = AUDIO_FPS * f64::from(seconds);
    assert!(
        audio as f64 >= 0.9 * expected_audio,
        "{audio} audio frames of {expected_audio}"
    );
    drop(gateway);
    assert_eq!(
        server.count("event", "session-created"),
        1,
        "{:?}",
        server.events()
    );
}

#[test]
fn rotating_sessions_are_one_continuous_restream() {
    let server = WhepServer::start(&["--max-session", "12"]);
    let gateway = Gateway::demo("", &whep_stream(&server, "max_session = \"12s\""));
    let seconds = 40;
    let Decoded {
        video,
        audio,
        errors,
        ..
    } = decode_av(&gateway.rtsp_url("cam"), seconds, gateway.dir.path());
    let sessions = server.count("event", "session-created");
    let log = gateway.log();
    assert!(errors.is_empty(), "ffmpeg decode errors: {errors:?}");
    assert!(sessions >= 4, "40 s of 12 s sessions: {sessions} sessions");
    assert!(
        log.contains("switched to the next WHEP session"),
        "rotated:\n{log}"
    );
    assert_eq!(
        server.count("why", "expired"),
        0,
        "each session was replaced before its cap"
    );
    // The first packet after PLAY reaches ffmpeg without a pts (true of every stream the
    // RTSP server serves, the demo replay too), so the reader guesses frame 0's: skip it.
    if let Some(at) = video
        .windows(2)
        .skip(1)
        .position(|w| w[1] <= w[0])
        .map(|i| i + 1)
    {
        let around = &video[at.saturating_sub(3)..(at + 4).min(video.len())];
        panic!("video pts go back or repeat at frame {at}: {around:?}\ngateway log:\n{log}");
    }
    let expected = VIDEO_FPS * f64::from(seconds);
    println!("restream over rotation: {} video / {expected} expected, {audio} audio frames, {sessions} sessions", video.len());
    assert!(
        video.len() as f64 >= 0.95 * expected,
        "{} video frames of {expected}",
        video.len()
    );
    assert!(
        audio as f64 >= 0.9 * AUDIO_FPS * f64::from(seconds),
        "{audio} audio frames"
    );
}
