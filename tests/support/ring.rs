//! Ring in the tests: `streamgate-ringsim` (the simulator of Ring's Partner API)
//! running in the test process on its own runtime, the gateway's `[ring]`
//! section pointing at it, and Ring's side of account linking.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use streamgate_ringsim::{LinkOffer, SimConfig, Simulator, Stats};
use url::Url;

use super::{request, Gateway};

/// The simulator's default client credentials (SimConfig's defaults).
pub const CLIENT_ID: &str = "sim-client";
pub const CLIENT_SECRET: &str = "sim-secret";
pub const HMAC_KEY: &str = "sim-hmac-key";
/// The simulator's sample account and its devices.
pub const ACCOUNT: &str = "ava1.ring.account.sim-1";
pub const FRONT_DOOR: &str = "ava1.ring.device.front-door";
pub const DRIVEWAY: &str = "ava1.ring.device.driveway";

/// A running simulator; stopped on drop.
pub struct Sim {
    runtime: tokio::runtime::Runtime,
    sim: Option<Simulator>,
}

impl Sim {
    /// The simulator with its defaults changed by `toml` (SimConfig keys).
    pub fn start(toml: &str) -> Sim {
        let config: SimConfig = toml::from_str(toml).expect("simulator config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let sim = runtime
            .block_on(Simulator::start(config, "127.0.0.1:0".parse().unwrap()))
            .expect("start the Ring simulator");
        Sim {
            runtime,
            sim: Some(sim),
        }
    }

    pub fn get(&self) -> &Simulator {
        self.sim.as_ref().expect("running")
    }

    pub fn stats(&self) -> Stats {
        self.get().stats()
    }

    /// The gateway's `[ring]` section for this simulator (`extra` lines appended):
    /// WebRTC on loopback, the database in the gateway's directory.
    pub fn ring_section(&self, extra: &str) -> String {
        format!(
            "[ring]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nhmac_key = \"{HMAC_KEY}\"\n\
             api_url = \"{}\"\ntoken_url = \"{}\"\nwebrtc_bind = \"127.0.0.1\"\n{extra}\n",
            self.get().api_url(),
            self.get().token_url()
        )
    }

    /// Ring's side of linking: a new authorization code POSTed to the gateway's
    /// Token Exchange URL. The offer's `time` and `nonce` are what Ring then puts
    /// on the Account Link URL.
    pub fn deliver_code(&self, gateway: &Gateway) -> LinkOffer {
        let offer = self.get().issue_link(None).expect("the sample account");
        self.post_code(gateway, &offer.code)
            .unwrap_or_else(|e| panic!("token exchange: {e}\n{}", gateway.log()));
        offer
    }

    /// POSTs `code` to the gateway's Token Exchange URL as Ring does.
    pub fn post_code(&self, gateway: &Gateway, code: &str) -> Result<(), String> {
        let url = Url::parse(&gateway.http_url("/ring/token-exchange")).unwrap();
        self.runtime
            .block_on(streamgate_ringsim::link::deliver_code(
                &reqwest::Client::new(),
                &url,
                code,
            ))
            .map_err(|e| e.to_string())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.stop());
        }
    }
}

/// The Account Link URL's path and query for `time` and `nonce`.
pub fn link_path(time: u64, nonce: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("time", &time.to_string())
        .append_pair("nonce", nonce)
        .finish();
    format!("/ring/link?{query}")
}

/// A nonce as Ring makes it, for `time` (ms) and `account`.
pub fn nonce(time: u64, account: &str) -> String {
    streamgate_ringsim::nonce(HMAC_KEY.as_bytes(), time, account)
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The user's browser opening the Account Link URL: (status, page).
pub fn open_link(gateway: &Gateway, time: u64, nonce: &str) -> (u16, String) {
    // The link page completes the link at Ring and waits for discovery.
    let response = request(
        gateway.http_port,
        "GET",
        &link_path(time, nonce),
        None,
        "",
        PATIENCE,
    )
    .unwrap_or_else(|| panic!("no answer to the link page\n{}", gateway.log()));
    (response.status, response.text())
}

/// `GET /api/ring/accounts` as JSON.
pub fn accounts(gateway: &Gateway) -> serde_json::Value {
    let (status, body) = gateway.request("GET", "/api/ring/accounts", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("accounts JSON")
}

/// The names of the streams `GET /api/streams` lists whose source is a Ring device.
pub fn ring_streams(gateway: &Gateway) -> Vec<String> {
    let (status, body) = gateway.request("GET", "/api/streams", None);
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("streams JSON");
    let mut names: Vec<String> = list["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter(|s| s["source"].as_str().is_some_and(|s| s.starts_with("ring:")))
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Links the simulator's sample account to `gateway` as Ring and the user's
/// browser would, and waits for its three streams.
pub fn link_sample_account(sim: &Sim, gateway: &Gateway) {
    let offer = sim.deliver_code(gateway);
    let (status, page) = open_link(gateway, offer.time, &offer.nonce);
    assert_eq!(status, 200, "{page}\n{}", gateway.log());
    gateway.wait_for(|| ring_streams(gateway).len() == 3, "three Ring streams");
}

/// Long enough for anything the simulator and gateway do on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(60);
