//! Session rotation at the Hub: the server caps sessions at 6 s (Ring: 30/60 s; the
//! 20 s / 70 s run through RTSP and ffmpeg is tests/whep_restream.rs); over 25 s a
//! reader of the Hub sees one continuous stream across several switches.

mod common;

use std::time::{Duration, Instant};

use common::{config, WhepServer};
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_rtp::MediaKind;
use streamgate_whep::WhepSource;

/// The test media's frame rate (fixtures/ffmpeg_h264_opus.txt).
const FPS: f64 = 25.0;
const RUN: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_sessions_rotate_without_a_break() {
    let server = WhepServer::start(&["--max-session", "6"]);
    let mut config = config(&server, "/whep/live");
    config.max_session = Some(Duration::from_secs(6));
    let hub = Hub::new("whep-rotation", HubConfig::default());
    let mut frames = hub.subscribe();
    let source = WhepSource::start(config, hub.clone()).unwrap();

    let first = tokio::time::timeout(Duration::from_secs(15), frames.recv()).await;
    assert!(
        matches!(first, Ok(Some(_))),
        "media starts: {:?}",
        source.status()
    );
    let started = Instant::now();
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    while started.elapsed() < RUN {
        let frame = match tokio::time::timeout(Duration::from_secs(5), frames.recv()).await {
            Ok(Some(frame)) => frame,
            other => panic!(
                "stream broke after {:?}: {other:?} {:?}",
                started.elapsed(),
                source.status()
            ),
        };
        match frame.kind {
            MediaKind::Video => video.push((frame.pts, frame.dts)),
            MediaKind::Audio => audio.push(frame.pts),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let status = source.status();
    source.stop().await;

    assert!(
        status.rotations >= 3,
        "25 s of 6 s sessions rotate at least 3 times: {status:?}"
    );
    assert_eq!(frames.dropped(), 0, "the reader kept up");
    assert!(
        video.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1),
        "video timestamps strictly increase"
    );
    assert!(
        audio.windows(2).all(|w| w[1] > w[0]),
        "audio timestamps strictly increase"
    );
    let expected = elapsed * FPS;
    assert!(
        video.len() as f64 >= 0.95 * expected,
        "{} video frames of {expected:.0} expected ({} rotations)",
        video.len(),
        status.rotations
    );
    // Output time tracks real time: no jump at a switch (90 kHz clock).
    let span = (video[video.len() - 1].0 - video[0].0) as f64 / 90_000.0;
    assert!(
        (span - elapsed).abs() < 2.0,
        "video spans {span:.1} s of {elapsed:.1} s"
    );
    let sessions = server.count("event", "session-created");
    let expired = server.count("why", "expired");
    println!(
        "rotation: {} video frames / {expected:.0} expected over {elapsed:.1} s, {} rotations, {sessions} sessions, {expired} expired by the server",
        video.len(),
        status.rotations
    );
    assert_eq!(
        server.count("method", "DELETE"),
        sessions,
        "every session is DELETEd"
    );
    assert_eq!(
        expired, 0,
        "each session was replaced before the server's cap"
    );
}

/// A server that ends sessions unannounced (no `max_session` configured): the source
/// notices, opens the next session at once (no backoff: it was healthy) and readers
/// see time run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_the_server_ends_are_replaced_at_once() {
    let server = WhepServer::start(&["--max-session", "5"]);
    let hub = Hub::new("whep-server-ends", HubConfig::default());
    let mut frames = hub.subscribe();
    let source = WhepSource::start(config(&server, "/whep/live"), hub.clone()).unwrap();
    let started = Instant::now();
    let mut video = Vec::new();
    while started.elapsed() < Duration::from_secs(18) {
        match tokio::time::timeout(Duration::from_secs(8), frames.recv()).await {
            Ok(Some(frame)) if frame.kind == MediaKind::Video => video.push(frame.pts),
            Ok(Some(_)) => {}
            other => panic!(
                "stream broke after {:?}: {other:?} {:?}",
                started.elapsed(),
                source.status()
            ),
        }
    }
    let status = source.status();
    source.stop().await;
    assert!(
        server.count("why", "expired") >= 2,
        "the server ended sessions: {:?}",
        server.events()
    );
    assert!(status.sessions_opened >= 3, "{status:?}");
    assert_eq!(
        status.failures, 0,
        "an ended session is not a failure: {status:?}"
    );
    assert!(
        video.windows(2).all(|w| w[1] > w[0]),
        "video timestamps strictly increase"
    );
}
