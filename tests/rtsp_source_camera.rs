//! The RTSP camera source against a real RTSP camera (gst-rtsp-server serving the
//! bundled H.264 + AAC or H.264 + Opus file, tests/peers/gst_camera.py): pulled over
//! TCP, UDP and auto into a Hub, re-served by streamgate's RTSP server and decoded by
//! ffmpeg; through a camera crash and restart and a frozen camera; on demand; with
//! credentials.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use streamgate_rtp::{Codec, MediaKind, TrackId};
use streamgate_rtsp::client::{RtspSource, SourceState};
use support::camera::*;
use support::{decoded_frames, error_lines, ffmpeg_decode, peer, run, text, PEER_DEADLINE};

/// What a pull test uses and expects.
struct Pull {
    name: &'static str,
    media: &'static str,
    camera_args: &'static [&'static str],
    transport: &'static str,
    /// The transport the session should end up on.
    expect_transport: &'static str,
    expect_audio: Codec,
}

const H264_AAC: Pull = Pull {
    name: "cam-tcp",
    media: "ffmpeg_h264_aac.mkv",
    camera_args: &[],
    transport: "tcp",
    expect_transport: "tcp",
    expect_audio: Codec::Aac,
};

/// Pulls the camera into a Hub, checks the Hub's tracks and frames, then has
/// ffmpeg decode 8 s of the restream.
async fn pull_and_restream(pull: Pull) {
    init();
    let camera = Camera::with_media(pull.media, pull.camera_args);
    let hub = hub(pull.name);
    let mut config = source_config(&camera.url(), pull.transport);
    config.always_on = true;
    let source = RtspSource::spawn(hub.clone(), config).expect("spawn source");
    let status = wait_status(&source, "playing", is_playing).await;
    assert_eq!(
        status.transport.map(|t| t.to_string()).as_deref(),
        Some(pull.expect_transport),
        "{status:?}"
    );

    let tracks = hub.wait_ready(WAIT).await.expect("tracks never ready");
    let codecs: Vec<Codec> = tracks.iter().map(|t| t.codec).collect();
    assert_eq!(codecs, [Codec::H264, pull.expect_audio], "{tracks:?}");
    assert_eq!(
        (tracks[0].params.width, tracks[0].params.height),
        (Some(1280), Some(720))
    );
    assert_eq!((tracks[1].clock_rate, tracks[1].channels), (48_000, 2));

    // Frames of both tracks, video starting at a keyframe (GOP cache), time running forward.
    let mut subscription = hub.subscribe();
    let mut seen = HashSet::new();
    let mut last_dts: HashMap<TrackId, u64> = HashMap::new();
    let mut first = true;
    while seen.len() < 2 || last_dts.len() < 2 {
        let frame = tokio::time::timeout(WAIT, subscription.recv())
            .await
            .expect("no frame")
            .expect("hub closed");
        if first {
            assert!(
                frame.kind == MediaKind::Video && frame.keyframe,
                "first frame is not a video keyframe"
            );
            first = false;
        }
        assert!(
            !frame.packets.is_empty() || frame.kind == MediaKind::Audio,
            "video frame without packets"
        );
        let previous = last_dts.insert(frame.track, frame.dts);
        assert!(
            previous.is_none_or(|previous| frame.dts > previous),
            "dts went backwards on track {}",
            frame.track
        );
        seen.insert(frame.kind);
    }
    drop(subscription);

    let url = restream(pull.name, hub.clone()).await;
    let output = tokio::task::spawn_blocking(move || ffmpeg_decode(&url, "tcp", 8, &[], &[]))
        .await
        .expect("ffmpeg thread");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "ffmpeg failed: {stderr}\nlog:\n{}",
        logs()
    );
    assert!(
        error_lines(&stderr).is_empty(),
        "ffmpeg reported errors decoding the restream:\n{stderr}"
    );
    let frames: u64 = decoded_frames(&stdout);
    assert!(
        frames >= 150,
        "ffmpeg decoded only {frames} video frames of 8 s at 25 fps:\n{stdout}"
    );
    source.stop().await;
    assert!(
        !PANICKED.load(std::sync::atomic::Ordering::SeqCst),
        "a task panicked; log:\n{}",
        logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_tcp_and_ffmpeg_decodes_the_restream() {
    pull_and_restream(H264_AAC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_udp_and_ffmpeg_decodes_the_restream() {
    pull_and_restream(Pull {
        name: "cam-udp",
        transport: "udp",
        expect_transport: "udp",
        ..H264_AAC
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_transport_uses_udp_when_it_works() {
    pull_and_restream(Pull {
        name: "cam-auto",
        transport: "auto",
        expect_transport: "udp",
        ..H264_AAC
    })
    .await;
}

/// The camera answers UDP's SETUP with 461 Unsupported Transport: `auto` goes on over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_transport_falls_back_to_tcp() {
    pull_and_restream(Pull {
        name: "cam-auto-tcp",
        camera_args: &["--tcp-only"],
        transport: "auto",
        expect_transport: "tcp",
        ..H264_AAC
    })
    .await;
}

/// Opus, which retina does not depacketize, goes through the pipeline's own depacketizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_h264_opus_camera() {
    pull_and_restream(Pull {
        name: "cam-opus",
        media: "ffmpeg_h264_opus.mkv",
        expect_audio: Codec::Opus,
        ..H264_AAC
    })
    .await;
}

/// A camera that freezes (its TCP connection open, nothing sent, nothing answered)
/// is given up after the stall timeout and reconnected once it moves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_camera_is_detected_and_reconnected() {
    init();
    let camera = Camera::start(&[]);
    let hub = hub("cam-frozen");
    let mut config = source_config(&camera.url(), "tcp");
    config.always_on = true;
    let source = RtspSource::spawn(hub.clone(), config).expect("spawn source");
    let mut subscription = hub.subscribe();
    wait_status(&source, "playing", is_playing).await;
    let before = recv_frames(&mut subscription, 25).await;

    camera.freeze();
    let stalled = wait_status(&source, "stall detected", |s| s.last_error.is_some()).await;
    let error = stalled.last_error.clone().unwrap_or_default();
    assert!(error.contains("no packets from camera"), "{error}");
    camera.thaw();
    wait_status(&source, "second session", |s| {
        s.sessions >= 2 && is_playing(s)
    })
    .await;
    let after = recv_frames(&mut subscription, 25).await;
    assert!(
        after.first() > before.last(),
        "time did not run forward: {before:?} then {after:?}"
    );
    source.stop().await;
}

/// Two readers of the restream (ffprobe listing packets, ffmpeg decoding) while the
/// camera is killed and restarted: both stay connected, get media after the restart
/// (decoding without errors), and ffprobe sees strictly increasing DTS per track. A
/// Hub subscriber also stays subscribed throughout, with time running forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_restart_keeps_consumers_and_timestamps_increasing() {
    init();
    let mut camera = Camera::start(&[]);
    let hub = hub("cam-restart");
    let source =
        RtspSource::spawn(hub.clone(), source_config(&camera.url(), "tcp")).expect("spawn source");
    let url = restream("cam-restart", hub.clone()).await;
    let mut subscription = hub.subscribe();
    wait_status(&source, "playing", is_playing).await;

    // 16 s of media: about 4 s before the camera dies, the rest after it is back.
    let probe_url = url.clone();
    let prober = tokio::task::spawn_blocking(move || {
        run(
            Command::new(peer("ffprobe"))
                .args([
                    "-v",
                    "error",
                    "-rtsp_transport",
                    "tcp",
                    "-read_intervals",
                    "%+16",
                    "-show_packets",
                ])
                .args([
                    "-show_entries",
                    "packet=stream_index,dts",
                    "-of",
                    "csv=p=0",
                    &probe_url,
                ]),
            PEER_DEADLINE,
        )
    });
    let decoder = tokio::task::spawn_blocking(move || ffmpeg_decode(&url, "tcp", 16, &[], &[]));

    let frames_before = recv_frames(&mut subscription, 100).await;
    // A failure recorded before the kill (a stall on a busy machine) is not this one.
    let earlier = source.status();
    camera.kill();
    let failed = wait_status(&source, "failure after the camera died", |s| {
        s.last_error.is_some() && s.last_error_at != earlier.last_error_at
    })
    .await;
    assert!(
        matches!(
            failed.state,
            SourceState::Retrying { .. } | SourceState::Connecting
        ),
        "{failed:?}"
    );
    camera.restart();
    wait_status(&source, "next session", |s| {
        s.sessions > earlier.sessions && is_playing(s)
    })
    .await;
    let frames_after = recv_frames(&mut subscription, 100).await;
    assert!(
        frames_after.first() > frames_before.last(),
        "Hub timestamps after the restart do not continue forward: {:?} then {:?}",
        frames_before.last(),
        frames_after.first()
    );

    let probe = prober.await.expect("ffprobe thread");
    assert!(
        probe.status.success(),
        "ffprobe failed: {}\nlog:\n{}",
        text(&probe.stderr),
        logs()
    );
    let packets = parse_packet_dts(&text(&probe.stdout));
    assert!(
        packets.len() > 400,
        "ffprobe got only {} timed packets",
        packets.len()
    );
    let bad = non_increasing_dts(&packets);
    assert!(
        bad.is_empty(),
        "DTS not strictly increasing per track:\n{}",
        bad.join("\n")
    );

    let decode = decoder.await.expect("ffmpeg thread");
    let (stdout, stderr) = (text(&decode.stdout), text(&decode.stderr));
    assert!(decode.status.success(), "ffmpeg failed: {stderr}");
    assert!(
        error_lines(&stderr).is_empty(),
        "ffmpeg reported errors across the restart:\n{stderr}"
    );
    let frames: u64 = decoded_frames(&stdout);
    assert!(
        frames as usize > frames_before.len() + 100,
        "ffmpeg decoded only {frames} frames: none after the restart?"
    );
    source.stop().await;
    assert!(
        !PANICKED.load(std::sync::atomic::Ordering::SeqCst),
        "a task panicked; log:\n{}",
        logs()
    );
}

/// Receives `count` video frames, returning their DTS.
async fn recv_frames(
    subscription: &mut streamgate_pipeline::Subscription,
    count: usize,
) -> Vec<u64> {
    let mut dts = Vec::new();
    while dts.len() < count {
        let frame = tokio::time::timeout(WAIT, subscription.recv())
            .await
            .unwrap_or_else(|_| panic!("no frame; log:\n{}", logs()))
            .expect("hub closed: the consumer was dropped");
        if frame.kind == MediaKind::Video {
            dts.push(frame.dts);
        }
    }
    dts
}

/// Nothing connects to the camera until a consumer subscribes; the source leaves
/// after the idle grace period once the last consumer is gone, and comes back for the
/// next. Stopping it leaves no task behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_connects_for_a_reader_and_leaves_after_the_grace_period() {
    init();
    let camera = Camera::start(&[]);
    let hub = hub("cam-on-demand");
    let tasks_before = alive_tasks();
    let mut config = source_config(&camera.url(), "tcp");
    config.idle_grace = Duration::from_secs(1);
    let source = RtspSource::spawn(hub.clone(), config).expect("spawn source");
    assert_eq!(source.status().state, SourceState::Idle);
    // Give a wrongly eager source every chance to connect.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        camera.count("client-connected 1"),
        0,
        "connected with no reader: {:?}",
        camera.lines()
    );
    assert_eq!(source.status().sessions, 0);

    for round in 1..=2 {
        let mut subscription = hub.subscribe();
        wait_status(&source, "playing", is_playing).await;
        recv_frames(&mut subscription, 10).await;
        camera.wait_line("client-connected 1", round);
        drop(subscription);
        let idle = wait_status(&source, "idle after the grace period", |s| {
            s.state == SourceState::Idle
        })
        .await;
        assert_eq!(idle.sessions, round as u64);
        camera.wait_line("client-closed 0", round);
    }
    source.stop().await;
    assert_no_tasks_left(tasks_before).await;
}

/// A camera that needs credentials: they work from the URL, and never show up in the
/// log or the status, whether they are right or wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_work_and_never_appear_in_logs_or_status() {
    init();
    let password = "Xq7-secret-pw";
    let camera = Camera::start(&["--user", "viewer", "--password", password]);

    let hub = hub("cam-auth");
    let mut config = source_config(
        &camera.url_with(&format!("viewer:{password}"), "cam"),
        "tcp",
    );
    config.always_on = true;
    let source = RtspSource::spawn(hub.clone(), config).expect("spawn source");
    wait_status(&source, "playing", is_playing).await;
    recv_frames(&mut hub.subscribe(), 10).await;
    let status = source.status();
    assert_eq!(
        status.url,
        format!("rtsp://***@127.0.0.1:{}/cam", camera.port)
    );

    let wrong = hub_with_wrong_password(&camera).await;
    let failed = wait_status(&wrong, "401", |s| s.last_error.is_some()).await;
    assert!(
        failed.last_error.as_deref().unwrap_or("").contains("401"),
        "{failed:?}"
    );

    for text in [format!("{status:?}"), format!("{failed:?}"), logs()] {
        assert!(
            !text.contains(password) && !text.contains("wrong-pw-123"),
            "a password leaked:\n{text}"
        );
    }
    source.stop().await;
    wrong.stop().await;
}

async fn hub_with_wrong_password(camera: &Camera) -> RtspSource {
    let mut config = source_config(&camera.url_with("viewer:wrong-pw-123", "cam"), "tcp");
    config.always_on = true;
    RtspSource::spawn(hub("cam-auth-wrong"), config).expect("spawn source")
}
