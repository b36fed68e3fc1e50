//! One WHEP session against the aiortc server: negotiation, media, DELETE.

mod common;

use std::time::Duration;

use common::{config, WhepServer};
use streamgate_rtp::MediaKind;
use streamgate_whep::peer::Received;
use streamgate_whep::session::Session;
use streamgate_whep::signal::WhepClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_receives_video_and_audio_then_deletes() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("streamgate_whep=debug")
        .with_test_writer()
        .try_init();
    let server = WhepServer::start(&[]);
    let config = config(&server, "/whep/live");
    let client = WhepClient::new(&config.endpoint, None, config.http_timeout).unwrap();
    let mut session = Session::open(&client, &config, &[])
        .await
        .expect("session opens");
    assert_eq!(session.tracks.len(), 2, "{:?}", session.tracks);
    let (mut video, mut audio, mut reports) = (0, 0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (video < 50 || audio < 50 || reports < 2) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), session.rtp.recv()).await {
            Ok(Some(Received::Rtp {
                kind: MediaKind::Video,
                ..
            })) => video += 1,
            Ok(Some(Received::Rtp { .. })) => audio += 1,
            Ok(Some(Received::SenderReport { .. })) => reports += 1,
            _ => break,
        }
    }
    assert!(
        video >= 50 && audio >= 50,
        "video {video} audio {audio} packets"
    );
    let url = session.url.clone();
    assert!(
        url.path().starts_with("/whep/sessions/"),
        "relative Location resolved: {url}"
    );
    session.close(&client).await;
    assert_eq!(server.count("method", "DELETE"), 1);
    assert_eq!(server.count("why", "deleted"), 1);
}
