//! Ring's side of linking against a stand-in partner: the `/sim/link` page and
//! the `link` subcommand deliver a code that exchanges, and send the user to the
//! Account Link URL with a nonce that the app-integrations POST accepts.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;
use serde_json::Value;
use streamgate_ringsim::SimConfig;
use url::Url;

/// A partner's Token Exchange URL that keeps what it was sent.
struct Partner {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn partner() -> Partner {
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/ring/token-exchange",
        post(move |headers: HeaderMap, body: Bytes| async move {
            let content_type = headers["content-type"].to_str().unwrap_or("").to_owned();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock().unwrap().push((content_type, json));
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Partner { addr, received }
}

/// Checks a finished link: the code exchanges and the nonce is the account's.
async fn check_link(sim: &streamgate_ringsim::Simulator, partner: &Partner, target: &str) {
    let target = Url::parse(target).unwrap();
    assert!(target
        .as_str()
        .starts_with(&format!("http://{}/ring/link?", partner.addr)));
    let query: Vec<(String, String)> = target.query_pairs().into_owned().collect();
    assert_eq!(query[0], ("keep".to_owned(), "1".to_owned()));
    let time: u64 = query
        .iter()
        .find(|(k, _)| k == "time")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let nonce = &query.iter().find(|(k, _)| k == "nonce").unwrap().1;
    assert_eq!(
        *nonce,
        streamgate_ringsim::nonce(b"sim-hmac-key", time, streamgate_ringsim::SAMPLE_ACCOUNT)
    );
    let (content_type, body) = partner
        .received
        .lock()
        .unwrap()
        .pop()
        .expect("a code was delivered");
    assert_eq!(content_type, "application/json");
    let (status, tokens) = exchange(sim, body["code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    let response = client()
        .post(url(sim, "/v1/accounts/me/app-integrations"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .json(&serde_json::json!({ "nonce": nonce }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_link_page_delivers_a_code_and_redirects_with_a_nonce() {
    let sim = start(SimConfig::default()).await;
    let partner = partner().await;
    let page = format!(
        "/sim/link?token_exchange={}&account_link={}",
        urlencode(&format!("http://{}/ring/token-exchange", partner.addr)),
        urlencode(&format!("http://{}/ring/link?keep=1", partner.addr)),
    );
    let response = client().get(url(&sim, &page)).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let target = response.headers()["location"].to_str().unwrap().to_owned();
    check_link(&sim, &partner, &target).await;

    // A missing or unreachable partner URL gets a clear error, not a redirect.
    let response = client()
        .get(url(&sim, "/sim/link?account_link=http://x/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("token_exchange"));
    let dead = format!(
        "/sim/link?token_exchange={}&account_link=http://x/",
        urlencode("http://127.0.0.1:9/nothing")
    );
    let response = client().get(url(&sim, &dead)).send().await.unwrap();
    assert_eq!(response.status(), 502);
    sim.stop().await;
}

#[tokio::test]
async fn the_link_subcommand_prints_the_account_link_url() {
    let sim = start(SimConfig::default()).await;
    let partner = partner().await;
    let args = vec![
        "link".to_owned(),
        "--sim".to_owned(),
        sim.api_url().to_string(),
        "--token-exchange".to_owned(),
        format!("http://{}/ring/token-exchange", partner.addr),
        "--account-link".to_owned(),
        format!("http://{}/ring/link?keep=1", partner.addr),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_streamgate-ringsim"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    check_link(&sim, &partner, stdout.trim()).await;
    sim.stop().await;
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
