//! The gateway's TOML configuration (`gateway.toml`).
//!
//! Read with `serde` + `toml`: every table denies unknown keys so a typo is an
//! error, not a silently ignored setting, and errors name the file, line and
//! column (from toml's spans). Outputs add their own section as another field of
//! [`Config`] (e.g. `#[serde(default)] pub rtsp: RtspConfig`), each a struct with
//! `deny_unknown_fields` and defaults, and document it in README.md.
//!
//! A stream's table holds the keys every stream has (`source`, the readers'
//! RTSP credentials) and the keys of its source's kind, which the kinds in
//! `sources` declare and check: this module knows no kind.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::Deserialize;

use crate::sources::{Options, Source};
use streamgate_redact::Secret;

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Longest stream name: names appear in RTSP and HTTP paths.
const MAX_STREAM_NAME_LEN: usize = 64;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[rtsp]`: the RTSP restream server.
    #[serde(default)]
    pub rtsp: RtspConfig,
    /// `[http]`: the HTTP server (HLS now; the API and dashboard later).
    #[serde(default)]
    pub http: HttpConfig,
    /// `[hls]`: low-latency HLS segmenting (see `streamgate_hls::HlsConfig`).
    #[serde(default)]
    pub hls: streamgate_hls::HlsConfig,
    /// `[webrtc]`: the WHEP server's UDP port and advertised addresses.
    #[serde(default)]
    pub webrtc: WebrtcConfig,
    /// `[ring]`: the Ring Partner API (account linking, discovery, live view).
    pub ring: Option<RingSettings>,
    /// `[mqtt]`: the event bus published to an MQTT broker (needs `[ring]`).
    pub mqtt: Option<MqttSettings>,
    /// `[cluster]`: scale-out on etcd (needs the `cluster` feature).
    pub cluster: Option<ClusterConfig>,
    /// `[streams.NAME]` tables: the stream registry.
    #[serde(default)]
    pub streams: BTreeMap<StreamName, StreamConfig>,
}

/// `[rtsp]`: where NVRs and players read `rtsp://HOST:PORT/NAME`, and who may.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspConfig {
    #[serde(default = "default_rtsp_listen")]
    pub listen: std::net::SocketAddr,
    /// Credentials every stream requires unless it sets its own (Basic or Digest).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Server ports for UDP readers' RTP/RTCP pairs, e.g. `"8000-8099"` (default: ephemeral).
    #[serde(default, deserialize_with = "udp_port_range")]
    pub udp_ports: Option<streamgate_rtsp::server::udp::UdpPortRange>,
    /// A request not complete this long after its first byte is answered 408 (slowloris).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// Connections beyond these (in total; from one client address) are answered 503.
    #[serde(default = "default_max_connections")]
    pub max_connections: std::num::NonZeroUsize,
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: std::num::NonZeroUsize,
    /// An RTSPS listener (`rtsps://HOST:PORT/NAME`) beside `listen`, with
    /// `tls_certificate` and `tls_key` (PEM files, relative to the config file).
    pub tls_listen: Option<std::net::SocketAddr>,
    pub tls_certificate: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// `"any"`: a publisher may ANNOUNCE to any path no stream has, which then
    /// is a stream for as long as it publishes (MediaMTX's `all_others`).
    #[serde(default)]
    pub publish: PublishPaths,
    /// The publish settings of those streams (`[streams.NAME]`'s keys of
    /// `source = "publish"`; configured streams keep their own).
    pub publish_username: Option<String>,
    pub publish_password: Option<Secret>,
    #[serde(default)]
    pub publish_replace: bool,
    #[serde(default = "default_publish_grace", with = "humantime_serde")]
    pub publish_grace: std::time::Duration,
}

/// `[rtsp] publish`: where RTSP publishers may push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishPaths {
    /// Only to `source = "publish"` streams.
    #[default]
    Configured,
    /// Also to any path no stream has, creating the stream.
    Any,
}

fn default_publish_grace() -> std::time::Duration {
    streamgate_rtsp::server::PublishConfig::DEFAULT_GRACE
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            listen: default_rtsp_listen(),
            username: None,
            password: None,
            udp_ports: None,
            request_timeout: default_request_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_connections_per_client(),
            tls_listen: None,
            tls_certificate: None,
            tls_key: None,
            publish: PublishPaths::default(),
            publish_username: None,
            publish_password: None,
            publish_replace: false,
            publish_grace: default_publish_grace(),
        }
    }
}

fn default_request_timeout() -> std::time::Duration {
    streamgate_rtsp::server::framing::DEFAULT_REQUEST_TIMEOUT
}

fn default_max_connections() -> std::num::NonZeroUsize {
    let max = streamgate_rtsp::server::limits::DEFAULT_MAX_CONNECTIONS;
    std::num::NonZeroUsize::new(max).unwrap_or(std::num::NonZeroUsize::MIN)
}

fn default_max_connections_per_client() -> std::num::NonZeroUsize {
    let max = streamgate_rtsp::server::limits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
    std::num::NonZeroUsize::new(max).unwrap_or(std::num::NonZeroUsize::MIN)
}

fn udp_port_range<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<streamgate_rtsp::server::udp::UdpPortRange>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

fn default_rtsp_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 8554))
}

/// `[http]`: where dashboards fetch `http://HOST:PORT/hls/NAME/index.m3u8`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: std::net::SocketAddr,
    /// When set, `/api/*` requires `Authorization: Bearer TOKEN`
    /// (environment override: [`API_TOKEN_ENV`]).
    pub api_token: Option<Secret>,
    /// A handler (its request body included) not done this long after the
    /// request's head is answered 408. Not applied where waiting is the point:
    /// HLS blocking playlist reloads (bounded by the HLS hold), clip downloads
    /// (as long as the clip) and SSE streams (the handler returns at once).
    #[serde(default = "default_http_request_timeout", with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// Requests being handled at once beyond this are answered 503.
    #[serde(default = "default_http_max_concurrent_requests")]
    pub max_concurrent_requests: std::num::NonZeroUsize,
    /// Largest request body of a route without a smaller cap of its own (413 beyond).
    #[serde(default = "default_http_max_body")]
    pub max_body: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            api_token: None,
            request_timeout: default_http_request_timeout(),
            max_concurrent_requests: default_http_max_concurrent_requests(),
            max_body: default_http_max_body(),
        }
    }
}

/// `[webrtc]`: WHEP viewers (`POST /whep/NAME` on the HTTP server) all use
/// one UDP port; ICE-lite host candidates are the `advertise` addresses (names
/// are resolved at start), by default the listen address or, when that is
/// unspecified, the host's outbound and loopback addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebrtcConfig {
    #[serde(default = "default_webrtc_listen")]
    pub listen: std::net::SocketAddr,
    #[serde(default)]
    pub advertise: Vec<String>,
    /// Viewers beyond these are answered 503 with Retry-After.
    #[serde(default = "default_max_viewers")]
    pub max_viewers: usize,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            listen: default_webrtc_listen(),
            advertise: Vec::new(),
            max_viewers: default_max_viewers(),
        }
    }
}

fn default_webrtc_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 8189))
}

fn default_max_viewers() -> usize {
    1000
}

/// Above the Ring link page's 30 s wait for discovery, its slowest handler.
fn default_http_request_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn default_http_max_concurrent_requests() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(512).unwrap_or(std::num::NonZeroUsize::MIN)
}

fn default_http_max_body() -> usize {
    1024 * 1024
}

/// Environment variable that overrides `[http] api_token`, so the token need not sit in the file.
pub const API_TOKEN_ENV: &str = "STREAMGATE_API_TOKEN";
/// Environment variable that overrides `[rtsp] password`.
pub const RTSP_PASSWORD_ENV: &str = "STREAMGATE_RTSP_PASSWORD";

fn default_http_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 8080))
}

/// `[ring]`: the partner app's credentials from the Ring developer portal, where
/// the API is, and which devices become streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSettings {
    pub client_id: String,
    /// Environment override: [`RING_CLIENT_SECRET_ENV`].
    pub client_secret: Option<Secret>,
    /// Signs account-link nonces and webhooks. Environment override: [`RING_HMAC_KEY_ENV`].
    pub hmac_key: Option<Secret>,
    /// The API base (Ring's, its Playground's or a local `streamgate-ringsim`).
    #[serde(default = "default_ring_api_url")]
    pub api_url: url::Url,
    #[serde(default = "default_ring_token_url")]
    pub token_url: url::Url,
    /// The SQLite file of accounts and tokens (default: `streamgate.db` beside
    /// the config file; relative paths are against the config file's directory).
    pub database: Option<PathBuf>,
    /// Which devices of the linked accounts become `ring-<name>` streams.
    #[serde(default)]
    pub devices: RingDevices,
    /// How often the linked accounts' devices are listed again.
    #[serde(default = "default_rediscover", with = "humantime_serde")]
    pub rediscover: std::time::Duration,
    /// Session caps Ring documents (30 s battery, 60 s wired) and the one used
    /// when a device's data does not say how it is powered (a guess: the shorter).
    #[serde(default = "default_battery_session", with = "humantime_serde")]
    pub battery_session: std::time::Duration,
    #[serde(default = "default_wired_session", with = "humantime_serde")]
    pub wired_session: std::time::Duration,
    #[serde(default = "default_battery_session", with = "humantime_serde")]
    pub unknown_session: std::time::Duration,
    /// Local IP the WebRTC sockets of Ring sessions bind to (default: every
    /// interface but loopback).
    pub webrtc_bind: Option<std::net::IpAddr>,
    /// What a motion or ding event does to the streams of Ring devices that do
    /// not set `on_motion` themselves (discovered ones included): `"none"` or `"start"`.
    #[serde(default)]
    pub on_motion: crate::sources::MotionAction,
    /// How long a motion-started live view runs after the last event.
    #[serde(default = "default_motion_hold", with = "humantime_serde")]
    pub motion_hold: std::time::Duration,
    /// How long `GET /api/streams/NAME/snapshot.jpg` of a Ring stream serves the
    /// image it fetched before asking Ring again.
    #[serde(default = "default_snapshot_cache", with = "humantime_serde")]
    pub snapshot_cache: std::time::Duration,
    /// How far back a snapshot may be ("the latest image in the last …").
    #[serde(default = "default_snapshot_window", with = "humantime_serde")]
    pub snapshot_window: std::time::Duration,
    /// Where downloaded clips go (default: `clips` beside the config file).
    pub clips_dir: Option<PathBuf>,
    /// Clips older than this are deleted.
    #[serde(default = "default_clips_max_age", with = "humantime_serde")]
    pub clips_max_age: std::time::Duration,
    /// The oldest clips are deleted while the folder holds more than this.
    #[serde(default = "default_clips_max_bytes")]
    pub clips_max_bytes: u64,
    /// Pages of a device's event history read per request at most.
    #[serde(default = "default_history_max_pages")]
    pub history_max_pages: usize,
    /// Most discovered streams: an account with more devices gets streams for
    /// the first ones (by id) and a warning, so a huge account cannot exhaust the gateway.
    #[serde(default = "default_ring_max_streams")]
    pub max_streams: usize,
    /// Client-side cap on API requests per second of the client id (Ring's limit is 100).
    #[serde(default = "default_ring_rate")]
    pub max_requests_per_second: u32,
    /// How long a refresh token lives (Ring documents ~30 days and returns no
    /// expiry: a guess, so configurable).
    #[serde(default = "default_refresh_token_life", with = "humantime_serde")]
    pub refresh_token_life: std::time::Duration,
    /// The key before `hmac_key` while Ring rotates it: webhooks signed with
    /// either are accepted. Environment override: [`RING_PREVIOUS_HMAC_KEY_ENV`].
    pub previous_hmac_key: Option<Secret>,
    /// Webhooks whose `meta.time` is older are acknowledged and dropped (Ring
    /// sends no timestamp header: a guess, so configurable).
    #[serde(default = "default_webhook_max_age", with = "humantime_serde")]
    pub webhook_max_age: std::time::Duration,
    /// Events kept in the store at most (the oldest go first).
    #[serde(default = "default_events_keep")]
    pub events_keep: usize,
    /// Events older than this are pruned from the store.
    #[serde(default = "default_events_max_age", with = "humantime_serde")]
    pub events_max_age: std::time::Duration,
}

fn default_motion_hold() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

/// Past Ring's last retry, about 73 min after the first attempt (RING_API.md
/// "Webhooks"), so a gateway down that long still takes every retry.
fn default_webhook_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(2 * 3600)
}

fn default_events_keep() -> usize {
    100_000
}

fn default_events_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 24 * 3600)
}

/// `devices = "all" | "none" | ["device id or name", …]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "DevicesSetting")]
pub enum RingDevices {
    /// Every device of every linked account (the default).
    #[default]
    All,
    /// No discovered streams: only `source = "ring:<id>"` streams.
    None,
    /// These devices, by id or by name.
    Listed(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DevicesSetting {
    Word(String),
    List(Vec<String>),
}

impl TryFrom<DevicesSetting> for RingDevices {
    type Error = String;

    fn try_from(setting: DevicesSetting) -> Result<Self, Self::Error> {
        match setting {
            DevicesSetting::Word(word) if word == "all" => Ok(RingDevices::All),
            DevicesSetting::Word(word) if word == "none" => Ok(RingDevices::None),
            DevicesSetting::Word(word) => Err(format!(
                "expected \"all\", \"none\" or a list of device ids or names, not {word:?}"
            )),
            DevicesSetting::List(list) => Ok(RingDevices::Listed(list)),
        }
    }
}

fn default_ring_api_url() -> url::Url {
    url::Url::parse("https://api.amazonvision.com").expect("a valid URL")
}

fn default_ring_token_url() -> url::Url {
    url::Url::parse("https://oauth.ring.com/oauth/token").expect("a valid URL")
}

fn default_rediscover() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

fn default_battery_session() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn default_wired_session() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn default_snapshot_cache() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

fn default_snapshot_window() -> std::time::Duration {
    std::time::Duration::from_secs(5 * 60)
}

fn default_clips_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(7 * 24 * 3600)
}

fn default_clips_max_bytes() -> u64 {
    1 << 30
}

fn default_history_max_pages() -> usize {
    20
}

fn default_ring_max_streams() -> usize {
    256
}

fn default_ring_rate() -> u32 {
    90
}

fn default_refresh_token_life() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 24 * 3600)
}

/// Environment variable that overrides `[ring] client_secret`.
pub const RING_CLIENT_SECRET_ENV: &str = "STREAMGATE_RING_CLIENT_SECRET";
/// Environment variable that overrides `[ring] hmac_key`.
pub const RING_HMAC_KEY_ENV: &str = "STREAMGATE_RING_HMAC_KEY";
/// Environment variable that overrides `[ring] previous_hmac_key`.
pub const RING_PREVIOUS_HMAC_KEY_ENV: &str = "STREAMGATE_RING_PREVIOUS_HMAC_KEY";

/// `[mqtt]`: where the event bus is published (events per device and type,
/// stream states, availability, Home Assistant discovery).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    /// `mqtt://host:port` (port 1883 when left out); no credentials in it.
    #[serde(deserialize_with = "mqtt_broker")]
    pub broker: url::Url,
    pub username: Option<String>,
    /// Environment override: [`MQTT_PASSWORD_ENV`].
    pub password: Option<Secret>,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    #[serde(default = "default_mqtt_client_id")]
    pub client_id: String,
    /// Base of the URLs published for Home Assistant (snapshots), e.g.
    /// `http://gateway.lan:8080` (default: `http://` and `[http] listen`).
    pub http_base: Option<url::Url>,
}

/// Environment variable that overrides `[mqtt] password`.
pub const MQTT_PASSWORD_ENV: &str = "STREAMGATE_MQTT_PASSWORD";

fn default_topic_prefix() -> String {
    "streamgate".to_owned()
}

fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}

fn default_mqtt_client_id() -> String {
    "streamgate".to_owned()
}

fn mqtt_broker<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<url::Url, D::Error> {
    let url = url::Url::deserialize(deserializer)?;
    if url.scheme() != "mqtt" {
        return Err(de::Error::custom(format!(
            "the broker is `mqtt://host:port`, not a `{}:` URL",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(de::Error::custom("the broker URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(de::Error::custom(
            "put the broker's credentials in `username` and `password`, not in the URL",
        ));
    }
    Ok(url)
}

/// `[cluster]`: this node's place in a cluster of gateways sharing the
/// streams through etcd (see docs/CLUSTER.md). Every node has the same
/// `[streams]`; each stream's source runs on one node, the others redirect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd's client URLs, `http://host:2379`.
    pub etcd: Vec<url::Url>,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// `rtsp://host:port` where readers sent here reach this node's RTSP server.
    pub advertise_rtsp: url::Url,
    /// `http://host:port` where readers sent here reach this node's HTTP server.
    pub advertise_http: url::Url,
    /// How long the node's claims outlive it: the failover time's main part.
    /// Whole seconds (etcd's unit), at least 2 s.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: std::time::Duration,
}

fn default_lease_ttl() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

impl ClusterConfig {
    /// The checks serde cannot express, as one message.
    fn check(&self) -> Result<(), String> {
        if self.etcd.is_empty() {
            return Err("`etcd` lists no endpoint".into());
        }
        if let Some(url) = self
            .etcd
            .iter()
            .find(|u| u.scheme() != "http" || u.host_str().is_none())
        {
            return Err(format!(
                "`etcd` endpoints are `http://host:port` (TLS is not supported yet), not {url}"
            ));
        }
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.node.is_empty()
            || self.node.len() > MAX_STREAM_NAME_LEN
            || !self.node.chars().all(name_ok)
        {
            return Err(format!(
                "`node` {:?} must be 1 to {MAX_STREAM_NAME_LEN} letters, digits, `-`, `_` or `.`",
                self.node
            ));
        }
        for (key, url, scheme) in [
            ("advertise_rtsp", &self.advertise_rtsp, "rtsp"),
            ("advertise_http", &self.advertise_http, "http"),
        ] {
            if url.scheme() != scheme
                || url.host_str().is_none_or(str::is_empty)
                || !url.path().trim_matches('/').is_empty()
            {
                return Err(format!(
                    "`{key}` is `{scheme}://host:port` (no path), not {url}"
                ));
            }
        }
        if self.lease_ttl < std::time::Duration::from_secs(2) || self.lease_ttl.subsec_nanos() != 0
        {
            return Err("`lease_ttl` is whole seconds, at least 2s".into());
        }
        Ok(())
    }
}

/// One `[streams.NAME]` table. `PartialEq` tells a reload which streams changed.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Where the stream comes from.
    pub source: Source,
    /// RTSP credentials for this stream only (override `[rtsp]`'s).
    pub rtsp_username: Option<String>,
    pub rtsp_password: Option<Secret>,
    /// A bearer token that lets a WHEP viewer play this stream only (the API
    /// token plays every stream).
    pub viewer_token: Option<Secret>,
    /// The keys of the source's kind (`sdp`, `transport`, ...), as written.
    pub options: Options,
}

/// Every key a stream's table may have: the source's, then each kind's, then the
/// readers' credentials (the order unknown-key errors list them in).
static STREAM_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    std::iter::once("source")
        .chain(crate::sources::keys())
        .chain(["rtsp_username", "rtsp_password", "viewer_token"])
        .collect()
});

/// Every key a stream's table may have, as [`STREAM_KEYS`] lists them (for the API document).
pub fn stream_keys() -> impl Iterator<Item = &'static str> {
    STREAM_KEYS.iter().copied()
}

impl<'de> Deserialize<'de> for StreamConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StreamTable)
    }
}

/// Reads a stream's table: the common keys typed, the kind's keys kept with
/// their places for the kind to check.
struct StreamTable;

impl<'de> Visitor<'de> for StreamTable {
    type Value = StreamConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stream's table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StreamConfig, A::Error> {
        let (mut source, mut rtsp_username, mut rtsp_password) = (None, None, None);
        let mut viewer_token = None;
        let mut options = BTreeMap::new();
        while let Some(key) = map.next_key_seed(StreamKey)? {
            match key {
                "source" => source = Some(map.next_value()?),
                "rtsp_username" => rtsp_username = Some(map.next_value()?),
                "rtsp_password" => rtsp_password = Some(map.next_value()?),
                "viewer_token" => viewer_token = Some(map.next_value()?),
                option => {
                    options.insert(option.to_owned(), map.next_value()?);
                }
            }
        }
        Ok(StreamConfig {
            source: source.ok_or_else(|| de::Error::missing_field("source"))?,
            rtsp_username,
            rtsp_password,
            viewer_token,
            options: Options(options),
        })
    }
}

/// A key of a stream's table, refused (at its place in the file) unless it is
/// one of [`STREAM_KEYS`].
struct StreamKey;

impl<'de> DeserializeSeed<'de> for StreamKey {
    type Value = &'static str;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        let keys: &'static [&'static str] = &STREAM_KEYS;
        keys.iter()
            .find(|known| **known == key)
            .copied()
            .ok_or_else(|| de::Error::unknown_field(&key, keys))
    }
}

/// A stream's name: 1–64 ASCII letters, digits, `_` or `-` (it is used in URLs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct StreamName(String);

impl StreamName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MAX_STREAM_NAME_LEN || !name.chars().all(valid_char) {
            return Err(format!(
                "stream name {name:?} must be 1-{MAX_STREAM_NAME_LEN} ASCII letters, digits, '_' or '-'"
            ));
        }
        Ok(StreamName(name))
    }
}

impl StreamName {
    /// The stream a publisher creates at `path` (`[rtsp] publish = "any"`):
    /// like configured names, but `/` may separate segments, as in
    /// `rtsp://HOST/site/door`.
    pub fn from_publish_path(path: &str) -> Result<StreamName, String> {
        let valid_segment = |segment: &str| StreamName::try_from(segment.to_owned()).is_ok();
        if path.len() > MAX_STREAM_NAME_LEN || !path.split('/').all(valid_segment) {
            return Err(format!(
                "publish path {path:?} must be 1-{MAX_STREAM_NAME_LEN} ASCII letters, digits, '_', '-' or '/' between them"
            ));
        }
        Ok(StreamName(path.to_owned()))
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the configuration cannot be used; the message names the file (and line).
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {len} bytes exceeds the {MAX_CONFIG_BYTES}-byte limit for a config file", path.display())]
    TooLarge { path: PathBuf, len: u64 },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                len,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mut config = Config::parse(&text, path)?;
        config.apply_env(|name| std::env::var(name).ok());
        Ok(config)
    }

    /// Secrets from the environment (see [`API_TOKEN_ENV`], [`RTSP_PASSWORD_ENV`])
    /// replace the file's; `var` looks a variable up.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(token) = var(API_TOKEN_ENV).filter(|t| !t.is_empty()) {
            self.http.api_token = Some(Secret::new(token));
        }
        if let Some(password) = var(RTSP_PASSWORD_ENV).filter(|p| !p.is_empty()) {
            self.rtsp.password = Some(Secret::new(password));
        }
        if let Some(mqtt) = &mut self.mqtt {
            if let Some(password) = var(MQTT_PASSWORD_ENV).filter(|p| !p.is_empty()) {
                mqtt.password = Some(Secret::new(password));
            }
        }
        if let Some(ring) = &mut self.ring {
            if let Some(secret) = var(RING_CLIENT_SECRET_ENV).filter(|s| !s.is_empty()) {
                ring.client_secret = Some(Secret::new(secret));
            }
            if let Some(key) = var(RING_HMAC_KEY_ENV).filter(|k| !k.is_empty()) {
                ring.hmac_key = Some(Secret::new(key));
            }
            if let Some(key) = var(RING_PREVIOUS_HMAC_KEY_ENV).filter(|k| !k.is_empty()) {
                ring.previous_hmac_key = Some(Secret::new(key));
            }
        }
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            invalid(
                e.span().map_or(0, |span| span.start),
                e.message().trim().to_owned(),
            )
        })?;
        if let Err(e) = config.hls.validate() {
            return Err(invalid(0, format!("[hls]: {e}")));
        }
        if config.rtsp.username.is_some() != config.rtsp.password.is_some() {
            return Err(invalid(
                0,
                "[rtsp]: set both `username` and `password`, or neither".into(),
            ));
        }
        let tls = &config.rtsp;
        if tls.tls_listen.is_some() != (tls.tls_certificate.is_some() && tls.tls_key.is_some())
            || tls.tls_certificate.is_some() != tls.tls_key.is_some()
        {
            return Err(invalid(
                0,
                "[rtsp]: `tls_listen` needs `tls_certificate` and `tls_key` (and they need it)"
                    .into(),
            ));
        }
        if config.rtsp.publish_username.is_some() != config.rtsp.publish_password.is_some() {
            return Err(invalid(
                0,
                "[rtsp]: set both `publish_username` and `publish_password`, or neither".into(),
            ));
        }
        if config.rtsp.request_timeout.is_zero() {
            return Err(invalid(
                0,
                "[rtsp]: `request_timeout` must be more than 0s".into(),
            ));
        }
        if let Some(cluster) = &config.cluster {
            if !cfg!(feature = "cluster") {
                return Err(invalid(
                    0,
                    "[cluster]: this gateway was built without the `cluster` feature (cargo build --features cluster)".into(),
                ));
            }
            if let Err(message) = cluster.check() {
                return Err(invalid(0, format!("[cluster]: {message}")));
            }
        }
        for (name, stream) in &config.streams {
            if stream.rtsp_username.is_some() != stream.rtsp_password.is_some() {
                return Err(invalid(
                    0,
                    format!(
                        "stream {name}: set both `rtsp_username` and `rtsp_password`, or neither"
                    ),
                ));
            }
            if let Err(error) = stream.source.check(&stream.options) {
                return Err(invalid(
                    error.at,
                    format!("stream {name}: {}", error.message),
                ));
            }
        }
        Ok(config)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Location;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("gw.toml"))
    }

    #[test]
    fn ring_secrets_come_from_the_file_or_the_environment() {
        let text = "[ring]\nclient_id = \"id\"\nclient_secret = \"file-secret\"\n";
        let mut config = parse(text).unwrap();
        let ring = config.ring.as_ref().unwrap();
        assert_eq!(ring.client_secret.as_ref().unwrap().expose(), "file-secret");
        assert!(ring.hmac_key.is_none());
        assert_eq!(ring.api_url.as_str(), "https://api.amazonvision.com/");
        assert_eq!(ring.devices, RingDevices::All);
        config.apply_env(|name| match name {
            RING_CLIENT_SECRET_ENV => Some("env-secret".into()),
            RING_HMAC_KEY_ENV => Some("env-key".into()),
            _ => None,
        });
        let ring = config.ring.as_ref().unwrap();
        assert_eq!(ring.client_secret.as_ref().unwrap().expose(), "env-secret");
        assert_eq!(ring.hmac_key.as_ref().unwrap().expose(), "env-key");
        assert!(!format!("{config:?}").contains("env-secret"));
        let listed = parse("[ring]\nclient_id = \"id\"\ndevices = [\"Front Door\"]\n").unwrap();
        assert_eq!(
            listed.ring.unwrap().devices,
            RingDevices::Listed(vec!["Front Door".into()])
        );
        let error = parse("[ring]\nclient_id = \"id\"\ndevices = \"some\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected \"all\", \"none\""), "{error}");
    }

    #[test]
    fn ring_on_motion_defaults_to_nothing_and_takes_start() {
        let ring = parse("[ring]\nclient_id = \"id\"\n").unwrap().ring.unwrap();
        assert_eq!(ring.on_motion, crate::sources::MotionAction::None);
        assert_eq!(ring.motion_hold, std::time::Duration::from_secs(60));
        let text = "[ring]\nclient_id = \"id\"\non_motion = \"start\"\nmotion_hold = \"2m\"\n";
        let ring = parse(text).unwrap().ring.unwrap();
        assert_eq!(ring.on_motion, crate::sources::MotionAction::Start);
        assert_eq!(ring.motion_hold, std::time::Duration::from_secs(120));
        let stream =
            "[streams.door]\nsource = \"ring:ava1.ring.device.x\"\non_motion = \"sometimes\"\n";
        assert!(parse(stream).is_err(), "an unknown on_motion is refused");
        let stream = "[streams.door]\nsource = \"demo\"\non_motion = \"start\"\n";
        assert!(parse(stream).is_err(), "on_motion is a ring: key");
    }

    const CLUSTER: &str = "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nnode = \"gw-1\"\nadvertise_rtsp = \"rtsp://10.0.0.1:8554\"\nadvertise_http = \"http://10.0.0.1:8080\"\n";

    #[cfg(feature = "cluster")]
    #[test]
    fn cluster_settings_are_checked() {
        let cluster = parse(CLUSTER).unwrap().cluster.unwrap();
        assert_eq!(cluster.node, "gw-1");
        assert_eq!(cluster.lease_ttl, std::time::Duration::from_secs(5));
        let cases = [
            (
                "etcd = [\"http://127.0.0.1:2379\"]",
                "etcd = []",
                "`etcd` lists no endpoint",
            ),
            (
                "http://127.0.0.1:2379",
                "https://127.0.0.1:2379",
                "TLS is not supported yet",
            ),
            (
                "node = \"gw-1\"",
                "node = \"gw 1\"",
                "`node` \"gw 1\" must be",
            ),
            (
                "rtsp://10.0.0.1:8554",
                "http://10.0.0.1:8554",
                "`advertise_rtsp` is `rtsp://host:port`",
            ),
            (
                "http://10.0.0.1:8080",
                "http://10.0.0.1:8080/x",
                "`advertise_http` is `http://host:port`",
            ),
            (
                "node =",
                "lease_ttl = \"1500ms\"\nnode =",
                "`lease_ttl` is whole seconds",
            ),
        ];
        for (from, to, expected) in cases {
            let error = parse(&CLUSTER.replace(from, to)).unwrap_err().to_string();
            assert!(error.contains(expected), "{to}: {error}");
            assert!(error.starts_with("gw.toml:1:1: [cluster]: "), "{error}");
        }
        let error = parse(&CLUSTER.replace("node = ", "nod = "))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `nod`"), "{error}");
    }

    #[cfg(not(feature = "cluster"))]
    #[test]
    fn cluster_settings_need_the_feature() {
        let error = parse(CLUSTER).unwrap_err().to_string();
        assert!(
            error.contains("built without the `cluster` feature"),
            "{error}"
        );
    }

    /// Bad configs and the `file:line:column: message` each must give.
    #[test]
    fn bad_configs_name_file_line_and_problem() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown top-level key",
                "[streams.a]\nsource = \"demo\"\n\n[rtps]\nport = 1\n",
                "gw.toml:4:2: unknown field `rtps`",
            ),
            (
                "unknown stream key",
                "[streams.a]\nsource = \"demo\"\nsorce = \"demo\"\n",
                "gw.toml:3:1: unknown field `sorce`, expected one of `source`, `sdp`, ",
            ),
            (
                "missing source",
                "[streams.a]\nsdp = \"x.sdp\"\n",
                "gw.toml:1:1: missing field `source`",
            ),
            (
                "bad scheme",
                "[streams.a]\nsource = \"http://cam/x\"\n",
                "gw.toml:2:10: unknown source scheme `http://`",
            ),
            (
                "no scheme",
                "[streams.a]\nsource = \"camera1\"\n",
                "gw.toml:2:10: unknown source \"camera1\"",
            ),
            (
                "empty pcap",
                "[streams.a]\nsource = \"pcap:\"\n",
                "gw.toml:2:10: `pcap:` needs a path",
            ),
            (
                "no host",
                "[streams.a]\nsource = \"rtsp://\"\n",
                "gw.toml:2:10: source URL rtsp:// has no host",
            ),
            (
                "wrong type",
                "[streams.a]\nsource = 5\n",
                "gw.toml:2:10: invalid type: integer `5`",
            ),
            (
                "bad name",
                "[streams.\"a b\"]\nsource = \"demo\"\n",
                "gw.toml:1:10: stream name \"a b\" must be",
            ),
            ("syntax", "[streams.a\nsource = \"demo\"\n", "gw.toml:1:11:"),
            (
                "rtsp user without password",
                "[rtsp]\nusername = \"u\"\n",
                "gw.toml:1:1: [rtsp]: set both `username` and `password`",
            ),
            (
                "stream rtsp password without user",
                "[streams.a]\nsource = \"demo\"\nrtsp_password = \"p\"\n",
                "gw.toml:1:1: stream a: set both `rtsp_username` and `rtsp_password`",
            ),
            (
                "bad rtsp listen",
                "[rtsp]\nlisten = \"8554\"\n",
                "gw.toml:2:10: invalid socket address",
            ),
            (
                "reversed udp_ports",
                "[rtsp]\nudp_ports = \"9000-8000\"\n",
                "gw.toml:2:13: UDP port range \"9000-8000\" must be \"FIRST-LAST\" with an even FIRST",
            ),
            (
                "odd udp_ports start",
                "[rtsp]\nudp_ports = \"8001-8099\"\n",
                "gw.toml:2:13: UDP port range \"8001-8099\" must be",
            ),
            (
                "zero rtsp request_timeout",
                "[rtsp]\nrequest_timeout = \"0s\"\n",
                "gw.toml:1:1: [rtsp]: `request_timeout` must be more than 0s",
            ),
            (
                "zero rtsp max_connections_per_client",
                "[rtsp]\nmax_connections_per_client = 0\n",
                "gw.toml:2:30: invalid value: integer `0`",
            ),
            (
                "sdp on demo",
                "[streams.a]\nsource = \"demo\"\nsdp = \"x.sdp\"\n",
                "gw.toml:3:7: stream a: `sdp` is only used by pcap: sources",
            ),
            (
                "rtsp keys on demo",
                "[streams.a]\nsource = \"demo\"\nalways_on = true\n",
                "gw.toml:3:13: stream a: `transport`, `always_on`, `idle_grace`, `tls_verify`, `tls_fingerprint` and `tls_ca` are only used by rtsp(s):// sources",
            ),
            (
                "bad rtsp transport",
                "[streams.a]\nsource = \"rtsp://cam/x\"\ntransport = \"pigeon\"\n",
                "gw.toml:3:13: stream a: ",
            ),
        ];
        for (what, text, expected) in cases {
            let err = parse(text).expect_err(what).to_string();
            assert!(
                err.starts_with(expected),
                "{what}: got {err:?}, want prefix {expected:?}"
            );
        }
    }

    #[test]
    fn sources_parse() {
        let config = parse(
            "[streams.demo]\nsource = \"demo\"\n\
             [streams.file]\nsource = \"pcap:caps/cam.pcap\"\n\
             [streams.file2]\nsource = \"pcap:/abs/cam.pcapng\"\nsdp = \"other.sdp\"\n\
             [streams.cam]\nsource = \"rtsp://admin:hunter2@192.0.2.1:554/stream1\"\n\
             [streams.ring]\nsource = \"wheps://example.com/whep/front?token=abc\"\n",
        )
        .unwrap();
        let get = |name: &str| &config.streams[&StreamName(name.into())];
        assert_eq!(get("demo").source.label(), "demo");
        assert_eq!(
            get("file").source.location(),
            &Location::Path("caps/cam.pcap".into())
        );
        assert_eq!(get("file").options, Options::default());
        assert_eq!(
            get("file2").source.location(),
            &Location::Path("/abs/cam.pcapng".into())
        );
        assert_eq!(format!("{:?}", get("file2").options), "[\"sdp\"]");
        assert_eq!(get("cam").source.label(), "rtsp(s)://");
        assert_eq!(get("ring").source.label(), "whep(s)://");
    }

    #[test]
    fn secrets_never_show_in_display_debug_or_errors() {
        let config = parse(
            "[streams.cam]\nsource = \"rtsp://admin:hunter2@192.0.2.1/s\"\n[streams.w]\nsource = \"wheps://h/whep?token=sekrit\"\n",
        )
        .unwrap();
        let shown = format!(
            "{:?} {}",
            config,
            config.streams[&StreamName("cam".into())].source
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("sekrit"),
            "{shown}"
        );
        assert!(shown.contains("rtsp://***@192.0.2.1/s"), "{shown}");
        assert!(shown.contains("wheps://h/whep?token=***"), "{shown}");

        let err = parse("[streams.cam]\nsource = \"ftp://admin:hunter2@host/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse("[streams.cam]\nsource = \"rtsp://admin:hunter2@[::1/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter2") && err.contains("rtsp://***@"),
            "{err}"
        );
    }

    #[test]
    fn shipped_gateway_toml_is_valid_and_runs_the_demo() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
        let config = Config::load(&path).unwrap();
        let demo = config
            .streams
            .get(&StreamName("demo".into()))
            .expect("a demo stream");
        assert_eq!(demo.source.label(), "demo");
    }

    /// The values gateway.toml states (set or commented out) are the defaults, so
    /// the shipped file documents what an empty config does.
    #[test]
    fn shipped_gateway_toml_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
        let shipped = std::fs::read_to_string(&path).unwrap();
        let uncommented: String = shipped
            .lines()
            // Indented keys are a stream table's, documented in a comment block.
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest == "[hls]"
                        || !rest.starts_with(' ')
                            && rest.contains(" = ")
                            && !rest.contains('"') =>
                {
                    rest
                }
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(
            uncommented.contains("\n[hls]\n"),
            "gateway.toml lost its [hls] block"
        );
        let stated = Config::parse(&uncommented, &path).unwrap();
        let defaults = Config::parse("", &path).unwrap();
        assert_eq!(stated.hls, defaults.hls);
        assert_eq!(stated.rtsp.listen, defaults.rtsp.listen);
        assert_eq!(stated.http.listen, defaults.http.listen);
        // Everything else: the defaults plus the demo stream, nothing more.
        let demo_only = Config::parse("[streams.demo]\nsource = \"demo\"\n", &path).unwrap();
        assert_eq!(format!("{stated:?}"), format!("{demo_only:?}"));
    }

    #[test]
    fn publish_paths_may_have_segments() {
        let name = StreamName::from_publish_path("site/door").expect("valid");
        assert_eq!(name.as_str(), "site/door");
        let long = "x".repeat(MAX_STREAM_NAME_LEN + 1);
        for bad in ["", "/a", "a//b", "a/", "a b", "../a", long.as_str()] {
            assert!(StreamName::from_publish_path(bad).is_err(), "{bad:?}");
        }
    }

    /// Every ```toml example in README.md is a valid config.
    #[test]
    fn readme_examples_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let examples: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split_once("```").map(|(example, _)| example))
            .collect();
        assert!(!examples.is_empty(), "README.md has no toml example");
        for example in examples {
            Config::parse(example, &path).unwrap_or_else(|e| panic!("{e}\n{example}"));
        }
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
