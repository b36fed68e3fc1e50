#![allow(dead_code)] // each test binary uses a part of these helpers
//! A simulator on a loopback port and a reqwest client for it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use streamgate_ringsim::{SimConfig, Simulator};

pub const CLIENT: &str = "sim-client";
pub const SECRET: &str = "sim-secret";
pub const FRONT_DOOR: &str = "ava1.ring.device.front-door";

pub async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn url(sim: &Simulator, path: &str) -> String {
    format!("http://{}{path}", sim.addr())
}

/// POSTs a token form; returns status and JSON body.
pub async fn token_request(sim: &Simulator, form: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .post(sim.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

pub async fn exchange(sim: &Simulator, code: &str) -> (u16, Value) {
    token_request(
        sim,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", code),
        ],
    )
    .await
}

pub async fn refresh(sim: &Simulator, refresh_token: &str) -> (u16, Value) {
    token_request(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// A fresh access token for the sample account.
pub async fn access_token(sim: &Simulator) -> String {
    let link = sim.issue_link(None).unwrap();
    let (status, body) = exchange(sim, &link.code).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// GET with a bearer token: status, headers, JSON body.
pub async fn get(
    sim: &Simulator,
    path: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client()
        .get(url(sim, path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}
