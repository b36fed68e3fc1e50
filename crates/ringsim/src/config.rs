//! The simulator's configuration: credentials, token lives, faults and the
//! simulated accounts and devices. Every field has a default, so an empty TOML
//! file (or none) gives the documented sample account.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamgate_redact::Secret;

/// How the simulator behaves (`serve --config sim.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The partner's client id, as Ring issues it.
    pub client_id: String,
    pub client_secret: Secret,
    /// The key of the account-link nonce and (later) webhook signatures.
    pub hmac_key: Secret,
    /// Life of an access token (Ring: 4 h, `expires_in` 14400).
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// Life of a refresh token (Ring: ~30 days).
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// How long an authorization code may wait for its exchange (Ring: 1 minute).
    #[serde(with = "humantime_serde")]
    pub code_ttl: Duration,
    /// How long the token endpoint holds every answer after deciding (and
    /// recording) it, so a client killed meanwhile loses the answer (0: none;
    /// at most a day).
    #[serde(with = "humantime_serde")]
    pub token_delay: Duration,
    /// Requests per second allowed per client id (Ring: 100); 0 allows any rate.
    pub rate_limit: u32,
    /// Whether WHEP answers grant audio (Opus) to offers that ask for it.
    pub audio: bool,
    /// Live-session cap of battery devices (Ring: 30 s).
    #[serde(with = "humantime_serde")]
    pub battery_session_cap: Duration,
    /// Live-session cap of wired devices (Ring: 60 s).
    #[serde(with = "humantime_serde")]
    pub wired_session_cap: Duration,
    /// Address the WebRTC sessions' UDP sockets bind to (loopback: ICE stays on the
    /// machine, loopback candidates included).
    pub media_ip: IpAddr,
    /// The scope string token responses carry.
    pub scope: String,
    pub accounts: Vec<AccountConfig>,
    /// The partner's Webhook URL (none: webhooks are not sent until
    /// `PUT /sim/webhook-url` sets one).
    pub webhook_url: Option<String>,
    /// How long a webhook POST may take before it counts as unanswered (Ring: 5 s).
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Multiplies Ring's retry waits (1 s, 5 s, 30 s, 2 min, 10 min, 1 h); tests
    /// make it small.
    pub webhook_retry_scale: f64,
}

/// One simulated Ring user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// `ava1.ring.account.…`
    pub id: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// One simulated camera.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// `ava1.ring.device.…`
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub power: PowerSource,
    /// Overrides the power source's session cap.
    #[serde(default, with = "humantime_serde")]
    pub session_cap: Option<Duration>,
    /// Starts offline (WHEP answers 503; status says `online: false`).
    #[serde(default)]
    pub offline: bool,
    /// The location's name in the `locations` document.
    #[serde(default = "default_location")]
    pub location: String,
}

/// Where a device's power comes from; sets its default session cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    #[default]
    Battery,
    Wired,
}

impl PowerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerSource::Battery => "battery",
            PowerSource::Wired => "wired",
        }
    }
}

fn default_location() -> String {
    "Home".to_owned()
}

/// The sample account's id.
pub const SAMPLE_ACCOUNT: &str = "ava1.ring.account.sim-1";

impl Default for SimConfig {
    fn default() -> Self {
        let device = |id: &str, name: &str, power, session_cap| DeviceConfig {
            id: format!("ava1.ring.device.{id}"),
            name: name.to_owned(),
            power,
            session_cap,
            offline: false,
            location: default_location(),
        };
        SimConfig {
            client_id: "sim-client".to_owned(),
            client_secret: Secret::new("sim-secret"),
            hmac_key: Secret::new("sim-hmac-key"),
            access_token_ttl: Duration::from_secs(14_400),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            code_ttl: Duration::from_secs(60),
            token_delay: Duration::ZERO,
            rate_limit: 100,
            audio: true,
            battery_session_cap: Duration::from_secs(30),
            wired_session_cap: Duration::from_secs(60),
            media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            scope: "ava.v1:read".to_owned(),
            webhook_url: None,
            webhook_timeout: Duration::from_secs(5),
            webhook_retry_scale: 1.0,
            accounts: vec![AccountConfig {
                id: SAMPLE_ACCOUNT.to_owned(),
                first_name: "Sam".to_owned(),
                last_name: "Simulator".to_owned(),
                email: Some("sam@sim.invalid".to_owned()),
                phone_number: None,
                devices: vec![
                    device(
                        "front-door",
                        "Front Door",
                        PowerSource::Battery,
                        Some(Duration::from_secs(30)),
                    ),
                    device(
                        "driveway",
                        "Driveway",
                        PowerSource::Wired,
                        Some(Duration::from_secs(60)),
                    ),
                    device("backyard", "Backyard", PowerSource::Battery, None),
                ],
            }],
        }
    }
}

impl SimConfig {
    /// Parses a TOML config (missing fields take their defaults).
    pub fn from_toml(text: &str) -> Result<SimConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// The live-session cap of `device`.
    pub fn session_cap(&self, device: &DeviceConfig) -> Duration {
        device.session_cap.unwrap_or(match device.power {
            PowerSource::Battery => self.battery_session_cap,
            PowerSource::Wired => self.wired_session_cap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_sample_account() {
        let config = SimConfig::from_toml("").unwrap();
        assert_eq!(config.client_id, "sim-client");
        assert_eq!(config.token_delay, Duration::ZERO);
        assert_eq!(config.accounts[0].id, SAMPLE_ACCOUNT);
        let caps: Vec<_> = config.accounts[0]
            .devices
            .iter()
            .map(|d| config.session_cap(d).as_secs())
            .collect();
        assert_eq!(caps, [30, 60, 30]);
        assert_eq!(format!("{:?}", config.client_secret), "***");
    }

    #[test]
    fn toml_overrides_and_rejects_unknown_keys() {
        let config = SimConfig::from_toml(
            "access_token_ttl = \"2s\"\ntoken_delay = \"250ms\"\nrate_limit = 5\n[[accounts]]\nid = \"ava1.ring.account.x\"\n[[accounts.devices]]\nid = \"ava1.ring.device.y\"\nname = \"Y\"\npower = \"wired\"\n",
        )
        .unwrap();
        assert_eq!(config.access_token_ttl, Duration::from_secs(2));
        assert_eq!(config.token_delay, Duration::from_millis(250));
        assert_eq!(config.rate_limit, 5);
        assert_eq!(config.accounts[0].devices[0].power, PowerSource::Wired);
        assert!(SimConfig::from_toml("client_sekret = \"x\"").is_err());
    }
}
