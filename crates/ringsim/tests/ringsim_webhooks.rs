//! Webhooks from the simulator to a real HTTP receiver: Ring's payload shape,
//! the signature over the raw body, retries after 5xx and unanswered POSTs on
//! the (scaled) schedule, no retry after a 4xx, and a redelivery byte for byte.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use serde_json::{json, Value};
use streamgate_ringsim::{webhook_signature, SimConfig, Simulator, WebhookStats};

/// What the receiver got, and the statuses it answers in turn (then 200);
/// None answers nothing for 30 s instead.
#[derive(Default)]
struct Receiver {
    got: Vec<(Option<String>, Bytes)>,
    answers: Vec<Option<u16>>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answer = {
        let mut receiver = shared.lock().unwrap();
        let signature = headers
            .get("x-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        receiver.got.push((signature, body));
        if receiver.answers.is_empty() {
            Some(200)
        } else {
            receiver.answers.remove(0)
        }
    };
    match answer {
        Some(status) => StatusCode::from_u16(status).unwrap(),
        None => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK
        }
    }
}

async fn receiver(answers: Vec<Option<u16>>) -> (Shared, url::Url) {
    let shared: Shared = Arc::new(Mutex::new(Receiver {
        got: Vec::new(),
        answers,
    }));
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        shared,
        url::Url::parse(&format!("http://{addr}/hook")).unwrap(),
    )
}

async fn until_done(sim: &Simulator, deliveries: u64) -> WebhookStats {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let stats = sim.webhook_stats();
            if stats.deliveries >= deliveries && stats.in_flight == 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the deliveries end within 60 s")
}

async fn start(answers: Vec<Option<u16>>) -> (Simulator, Shared) {
    let config = SimConfig {
        webhook_retry_scale: 0.001,
        webhook_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (shared, url) = receiver(answers).await;
    let status = client()
        .put(format!("{}sim/webhook-url", sim.api_url()))
        .json(&json!({"url": url.as_str()}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    (sim, shared)
}

#[tokio::test]
async fn a_motion_webhook_is_signed_and_shaped_as_ring_sends_it() {
    let (sim, shared) = start(vec![]).await;
    let answer: Value = client()
        .post(format!("{}sim/webhooks", sim.api_url()))
        .json(
            &json!({"type": "motion_detected", "device": "ava1.ring.device.front-door",
                      "sub_type": "human", "subtype_in": "attributes"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request_id = answer["request_id"].as_str().unwrap().to_owned();
    let stats = until_done(&sim, 1).await;
    assert_eq!((stats.attempts, stats.delivered), (1, 1), "{stats:?}");
    let got = shared.lock().unwrap().got.clone();
    let (signature, body) = &got[0];
    assert_eq!(
        signature.as_deref(),
        Some(webhook_signature(b"sim-hmac-key", body).as_str())
    );
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["meta"]["version"], "1.1");
    assert_eq!(body["meta"]["request_id"], request_id.as_str());
    assert_eq!(body["meta"]["account_id"], "ava1.ring.account.sim-1");
    assert!(body["meta"]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["type"], "motion_detected");
    assert_eq!(body["data"]["attributes"]["sub_type"], "human");
    assert_eq!(body["data"]["attributes"]["source_type"], "devices");
    assert!(body["data"]["attributes"]["timestamp"].is_u64());
    assert!(body["data"]["subType"].is_null());
    assert_eq!(
        body["data"]["relationships"]["devices"]["links"]["self"],
        "/v1/devices/ava1.ring.device.front-door"
    );

    // app_integration_*: the account is the source, no relationships.
    sim.send_webhook(&streamgate_ringsim::WebhookRequest {
        kind: "app_integration_removed".into(),
        ..Default::default()
    })
    .unwrap();
    until_done(&sim, 2).await;
    let got = shared.lock().unwrap().got.clone();
    let body: Value = serde_json::from_slice(&got[1].1).unwrap();
    assert_eq!(body["data"]["attributes"]["source_type"], "users");
    assert!(body["data"]["relationships"].is_null());

    // A redelivery is the same bytes and signature.
    sim.redeliver_webhook(&request_id).unwrap();
    until_done(&sim, 3).await;
    let got = shared.lock().unwrap().got.clone();
    assert_eq!(got[2], got[0]);
    sim.stop().await;
}

#[tokio::test]
async fn retries_follow_5xx_and_silence_but_not_4xx() {
    // 503, no answer, 500, then 200: four attempts, delivered.
    let (sim, shared) = start(vec![Some(503), None, Some(500)]).await;
    sim.send_webhook(&streamgate_ringsim::WebhookRequest {
        kind: "button_press".into(),
        device: Some("ava1.ring.device.driveway".into()),
        ..Default::default()
    })
    .unwrap();
    let stats = until_done(&sim, 1).await;
    assert_eq!(
        (stats.attempts, stats.delivered, stats.failed),
        (4, 1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.answers["503"], 1);
    assert_eq!(stats.answers["timeout"], 1);
    assert_eq!(stats.answers["500"], 1);
    assert_eq!(stats.answers["200"], 1);
    let got = shared.lock().unwrap().got.clone();
    assert!(
        got.windows(2).all(|w| w[0] == w[1]),
        "each attempt the same bytes"
    );

    // A 4xx is final.
    shared.lock().unwrap().answers = vec![Some(401)];
    sim.send_webhook(&streamgate_ringsim::WebhookRequest {
        kind: "button_press".into(),
        device: Some("ava1.ring.device.driveway".into()),
        ..Default::default()
    })
    .unwrap();
    let stats = until_done(&sim, 2).await;
    assert_eq!((stats.attempts, stats.failed), (5, 1), "{stats:?}");

    // Always 503: seven attempts, then given up.
    shared.lock().unwrap().answers = vec![Some(503); 10];
    sim.send_webhook(&streamgate_ringsim::WebhookRequest {
        kind: "button_press".into(),
        device: Some("ava1.ring.device.driveway".into()),
        ..Default::default()
    })
    .unwrap();
    let stats = until_done(&sim, 3).await;
    assert_eq!((stats.attempts, stats.failed), (12, 2), "{stats:?}");
    sim.stop().await;
}
