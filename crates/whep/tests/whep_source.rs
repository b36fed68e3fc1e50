//! The WHEP source against the aiortc server: media reaches the Hub; every kind of
//! server failure ends in a clear status, backoff and a DELETE for any created session.

mod common;

use std::time::Duration;

use common::{config, wait_status, WhepServer};
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_rtp::MediaKind;
use streamgate_whep::{SourceState, WhepSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_video_and_audio_into_the_hub() {
    let server = WhepServer::start(&[]);
    let hub = Hub::new("whep-pull", HubConfig::default());
    let mut frames = hub.subscribe();
    let source = WhepSource::start(config(&server, "/whep/live"), hub.clone()).unwrap();

    let (mut video, mut audio) = (Vec::new(), Vec::new());
    while video.len() < 125 {
        let frame = tokio::time::timeout(Duration::from_secs(15), frames.recv())
            .await
            .expect("frames keep coming")
            .expect("hub open");
        match frame.kind {
            MediaKind::Video => video.push((frame.pts, frame.keyframe)),
            MediaKind::Audio => audio.push(frame.pts),
        }
    }
    assert!(video[0].1, "the first video frame is a keyframe");
    assert!(
        video.iter().skip(1).any(|(_, key)| *key),
        "keyframes recur (2 s GOP)"
    );
    assert!(
        video.windows(2).all(|w| w[1].0 > w[0].0),
        "video timestamps increase"
    );
    assert!(
        audio.windows(2).all(|w| w[1] > w[0]),
        "audio timestamps increase"
    );
    assert!(
        audio.len() >= 100,
        "audio flows too: {} frames",
        audio.len()
    );
    let tracks = hub.tracks();
    assert_eq!(tracks.len(), 2);
    assert!(
        tracks.iter().all(|t| t.is_ready()),
        "SPS/PPS learnt in band: {tracks:?}"
    );

    let status = source.status();
    assert_eq!(status.state, SourceState::Playing);
    assert_eq!(status.sessions_opened, 1);
    assert!(
        status
            .session
            .as_deref()
            .is_some_and(|s| s.contains("/whep/sessions/")),
        "{status:?}"
    );
    source.stop().await;
    assert_eq!(server.count("method", "DELETE"), 1, "{:?}", server.events());
    assert_eq!(server.count("why", "deleted"), 1);
}

/// Runs a source on `path` until its status shows a failure; returns that status.
async fn failing_source(server: &WhepServer, path: &str) -> streamgate_whep::WhepStatus {
    let mut config = config(server, path);
    config.http_timeout = Duration::from_secs(2);
    config.always_on = true;
    let source = WhepSource::start(config, Hub::new("whep-fail", HubConfig::default())).unwrap();
    let status = wait_status(&source, Duration::from_secs(20), |s| s.failures >= 2).await;
    source.stop().await;
    assert_eq!(status.rotations, 0);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_show_in_the_status_and_back_off() {
    let server = WhepServer::start(&[]);
    for (path, expected) in [
        ("/status/400/live", "answered 400 to POST"),
        ("/status/401/live", "answered 401 to POST"),
        ("/status/404/live", "answered 404 to POST"),
        ("/status/415/live", "answered 415 to POST"),
        ("/status/500/live", "answered 500 to POST"),
        ("/nothing-here", "answered 404 to POST: no such stream"),
    ] {
        let status = failing_source(&server, path).await;
        let error = status.last_error.clone().unwrap_or_default();
        assert!(error.contains(expected), "{path}: {status:?}");
        assert!(status.failures >= 2, "{path}: retried: {status:?}");
    }
    assert_eq!(server.count("event", "session-created"), 0);
    assert_eq!(
        server.count("method", "DELETE"),
        0,
        "no session, nothing to DELETE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    let server = WhepServer::start(&[]);
    let status = failing_source(&server, "/hang/live").await;
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{status:?}"
    );
    assert!(
        matches!(status.state, SourceState::Retrying { .. }),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_are_reported_and_their_sessions_deleted() {
    let server = WhepServer::start(&[]);
    for (path, expected) in [
        ("/malformed/live", "malformed SDP answer"),
        ("/nocodec/live", "no codec streamgate can receive"),
    ] {
        let status = failing_source(&server, path).await;
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(expected)),
            "{path}: {status:?}"
        );
    }
    let created = server.count("event", "session-created");
    assert!(created >= 4, "{created} sessions");
    assert_eq!(
        server.count("method", "DELETE"),
        created,
        "every created session is DELETEd: {:?}",
        server.events()
    );
    assert_eq!(server.count("why", "deleted"), created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_and_retry_after_respected() {
    let server = WhepServer::start(&[]);
    for path in ["/redirect/1/live", "/redirect/2/live", "/busy/2/live"] {
        let hub = Hub::new("whep-redirect", HubConfig::default());
        let mut frames = hub.subscribe();
        let source = WhepSource::start(config(&server, path), hub).unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(20), frames.recv()).await;
        assert!(
            matches!(frame, Ok(Some(_))),
            "{path}: media after redirect/retry: {:?}",
            source.status()
        );
        let status = source.status();
        if path.starts_with("/busy") {
            assert_eq!(status.failures, 2, "{status:?}");
            assert!(
                status
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("503")),
                "{status:?}"
            );
        }
        source.stop().await;
    }
    assert_eq!(server.count("event", "session-created"), 3);
    assert_eq!(server.count("method", "DELETE"), 3);
    let busy: Vec<f64> = server
        .events()
        .iter()
        .filter(|e| e["path"] == "/busy/2/live")
        .filter_map(|e| e["time"].as_f64())
        .collect();
    assert_eq!(busy.len(), 3);
    assert!(
        busy.windows(2).all(|w| w[1] - w[0] >= 0.95),
        "Retry-After: 1 honoured: {busy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_demand_and_closes_when_nobody_watches() {
    let server = WhepServer::start(&[]);
    let mut config = config(&server, "/whep/live");
    config.idle_grace = Duration::from_secs(1);
    let hub = Hub::new("whep-on-demand", HubConfig::default());
    let source = WhepSource::start(config, hub.clone()).unwrap();
    let idle = wait_status(&source, Duration::from_secs(5), |s| {
        s.state == SourceState::Idle
    })
    .await;
    assert_eq!(idle.state, SourceState::Idle);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.count("method", "POST"), 0, "no viewer, no session");

    let mut frames = hub.subscribe();
    let frame = tokio::time::timeout(Duration::from_secs(15), frames.recv()).await;
    assert!(
        matches!(frame, Ok(Some(_))),
        "a viewer starts the session: {:?}",
        source.status()
    );
    drop(frames);
    let status = wait_status(&source, Duration::from_secs(10), |s| {
        s.state == SourceState::Idle
    })
    .await;
    assert_eq!(status.state, SourceState::Idle, "{status:?}");
    assert_eq!(
        status.failures, 0,
        "going idle is not a failure: {status:?}"
    );
    let deleted = tokio::time::timeout(Duration::from_secs(5), async {
        while server.count("method", "DELETE") == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        deleted.is_ok(),
        "the idle session is DELETEd: {:?}",
        server.events()
    );
    source.stop().await;
    assert_eq!(server.count("event", "session-created"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_failure_and_silence_back_off_and_delete() {
    let server = WhepServer::start(&[]);
    for (path, expected) in [
        ("/noice/live", "WebRTC connection"),
        ("/silent/live", "no media from the WHEP session"),
    ] {
        let mut config = config(&server, path);
        config.always_on = true;
        config.connect_timeout = Duration::from_secs(3);
        config.no_media_timeout = Duration::from_secs(2);
        let source = WhepSource::start(config, Hub::new("whep-ice", HubConfig::default())).unwrap();
        let status = wait_status(&source, Duration::from_secs(20), |s| s.failures >= 1).await;
        source.stop().await;
        let error = status.last_error.clone().unwrap_or_default();
        assert!(error.contains(expected), "{path}: {status:?}");
    }
    let created = server.count("event", "session-created");
    assert!(created >= 2, "{created} sessions");
    assert_eq!(
        server.count("method", "DELETE"),
        created,
        "every session is DELETEd: {:?}",
        server.events()
    );
}

/// `Link: <stun:…>; rel="ice-server"` in a 201 is used by the following sessions: their
/// ICE gathering sends a STUN binding request to that server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_from_link_headers_are_used() {
    let stun = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let link = format!("stun:{}", stun.local_addr().unwrap());
    let server = WhepServer::start(&["--ice-link", &link]);
    let mut config = config(&server, "/whep/live");
    config.max_session = Some(Duration::from_secs(6));
    config.gather_timeout = Duration::from_secs(1);
    let hub = Hub::new("whep-link", HubConfig::default());
    let _frames = hub.subscribe();
    let source = WhepSource::start(config, hub).unwrap();
    let mut datagram = [0u8; 1500];
    let received =
        tokio::time::timeout(Duration::from_secs(20), stun.recv_from(&mut datagram)).await;
    let status = source.status();
    source.stop().await;
    let (len, _) = received
        .unwrap_or_else(|_| panic!("no STUN request to {link}: {status:?}"))
        .expect("receive on the STUN socket");
    // A STUN message: type 0x0001 (Binding request), magic cookie 0x2112A442.
    assert!(len >= 20, "{len} bytes");
    assert_eq!(&datagram[0..2], &[0x00, 0x01]);
    assert_eq!(&datagram[4..8], &[0x21, 0x12, 0xa4, 0x42]);
    assert!(status.sessions_opened >= 1, "{status:?}");
}
