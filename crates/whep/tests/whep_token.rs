//! The bearer token reaches the server and nothing else: not the log (captured at
//! TRACE, webrtc-rs's `log` records included), not the status, not Debug output.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, wait_status, WhepServer};
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_redact::Secret;
use streamgate_whep::{BearerToken, WhepSource};

const TOKEN: &str = "tok-3f9a1c7e5b2d4a60";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_sent_and_never_logged() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary owns the global subscriber");

    let server = WhepServer::start(&["--token", TOKEN]);
    let mut good = config(&server, "/whep/live");
    good.bearer_token = Some(BearerToken::Fixed(Secret::new(TOKEN)));
    assert!(!format!("{good:?}").contains(TOKEN));
    let hub = Hub::new("whep-token", HubConfig::default());
    let mut frames = hub.subscribe();
    let source = WhepSource::start(good, hub).unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(20), frames.recv()).await;
    assert!(
        matches!(frame, Ok(Some(_))),
        "the token opens the stream: {:?}",
        source.status()
    );
    source.stop().await;

    let mut wrong = config(&server, "/whep/live");
    wrong.bearer_token = Some(BearerToken::Fixed(Secret::new("not-the-token")));
    wrong.always_on = true;
    let refused =
        WhepSource::start(wrong, Hub::new("whep-token-wrong", HubConfig::default())).unwrap();
    let status = wait_status(&refused, Duration::from_secs(10), |s| s.failures >= 1).await;
    refused.stop().await;
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("401")),
        "{status:?}"
    );
    assert!(!format!("{status:?}").contains("not-the-token"));

    let events = server.events();
    let authorized = |method: &str| {
        events
            .iter()
            .filter(|e| {
                e["method"] == method && e["authorization"] == format!("Bearer {TOKEN}").as_str()
            })
            .count()
    };
    assert_eq!(authorized("POST"), 1, "{events:?}");
    assert_eq!(authorized("DELETE"), 1, "{events:?}");

    let log = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("WHEP session connected"),
        "the log was captured ({} bytes)",
        log.len()
    );
    assert!(
        log.contains(" rtc_ice::agent:"),
        "webrtc-rs records (log crate) are captured too"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains("not-the-token"),
        "a token leaked into the log"
    );
}
