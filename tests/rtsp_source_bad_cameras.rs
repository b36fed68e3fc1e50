//! Cameras that do not work: 401 and 404 from a real RTSP server (gst-rtsp-server),
//! a peer that answers garbage, and one that accepts the connection and never
//! answers. Each gives a clear error in the log and the status, the source retries
//! with backoff, nothing panics, and stopping the source leaves no task behind.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use streamgate_rtsp::client::{RtspSource, SourceState};
use support::camera::*;

/// Runs a source against `url` until it has failed twice (the second attempt came
/// after a backoff delay), checks the error, stops it, and checks no task is left.
async fn fails_cleanly(name: &str, url: &str, expected_error: &str) {
    init();
    let tasks_before = alive_tasks();
    let mut config = source_config(url, "tcp");
    config.always_on = true;
    config.connect_timeout = Duration::from_secs(1);
    let source = RtspSource::spawn(hub(name), config).expect("spawn source");

    let status = wait_status(&source, "two failed attempts", |s| {
        s.consecutive_failures >= 2
    })
    .await;
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(expected_error),
        "status error {error:?} lacks {expected_error:?}"
    );
    assert!(
        !error.contains('\n'),
        "status error is not one line: {error:?}"
    );
    assert!(
        matches!(
            status.state,
            SourceState::Retrying { .. } | SourceState::Connecting
        ),
        "{status:?}"
    );
    assert_eq!(status.sessions, 0);
    let log = logs();
    assert!(
        log.lines().any(|l| l.contains("camera session failed")
            && l.contains(name)
            && l.contains(expected_error)),
        "no log line for {name} with {expected_error:?}:\n{log}"
    );

    source.stop().await;
    assert_no_tasks_left(tasks_before).await;
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "a task panicked; log:\n{}",
        logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_camera() {
    let camera = Camera::start(&["--user", "viewer", "--password", "right-password"]);
    fails_cleanly("bad-401", &camera.url(), "401 Unauthorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path() {
    let camera = Camera::start(&[]);
    fails_cleanly(
        "bad-404",
        &camera.url_with("viewer:pw", "no-such-stream"),
        "404 Not Found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_answering_garbage() {
    let camera = BadCamera::start(Misbehaviour::Garbage);
    fails_cleanly("bad-garbage", &camera.url(), "RTSP framing error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_that_never_answers() {
    let camera = BadCamera::start(Misbehaviour::Silent);
    fails_cleanly("bad-silent", &camera.url(), "did not answer DESCRIBE").await;
    assert!(
        *camera.connections.lock().unwrap() >= 2,
        "the source did not retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening() {
    let port = support::free_port();
    fails_cleanly(
        "bad-refused",
        &format!("rtsp://127.0.0.1:{port}/cam"),
        "Unable to connect",
    )
    .await;
}

#[test]
fn unusable_urls_are_refused_at_spawn() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    for url in ["http://cam/x", "rtsp://", "rtsps://"] {
        let Err(error) = RtspSource::spawn(hub("bad-url"), source_config(url, "tcp")) else {
            panic!("{url} accepted");
        };
        assert!(error.to_string().starts_with("bad camera URL"), "{error}");
    }
}
