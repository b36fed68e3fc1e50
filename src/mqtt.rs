//! The event bus published to an MQTT broker (`[mqtt]`), with rumqttc.
//!
//! Topics (`P` is `topic_prefix`, `D` is `discovery_prefix`):
//! - `P/status`: `online`, retained; the broker publishes the last will
//!   `offline` (retained) when the gateway's connection drops (kill -9 too).
//! - `P/ring/<device id>/<event type>`: every event of a device (webhooks), the
//!   stored event as JSON (`id`, `time_ms`, `account`, `device`, `type`,
//!   `subtype`, `body`), not retained, QoS 1.
//! - `P/gateway/<event type>`: events without a device (`stream_up`,
//!   `stream_down`, `account_needs_relinking`, `app_integration_*`), as JSON.
//! - `P/streams/<name>/state`: `up` / `down`, retained.
//! - `P/ring/<device id>/snapshot_url`: the device's snapshot URL, retained.
//! - Home Assistant discovery, retained, per Ring device (node id: the device id
//!   with every character but `[A-Za-z0-9_-]` made `_`):
//!   `D/binary_sensor/<node>/motion/config` (`device_class: motion`, state from
//!   `motion_detected` events, `off_delay`), `D/binary_sensor/<node>/ding/config`
//!   (`device_class: occupancy`, from `button_press`), and
//!   `D/image/<node>/snapshot/config` (an MQTT image whose `url_topic` is the
//!   snapshot URL topic: HA's MQTT camera only takes image bytes on a topic, the
//!   MQTT image takes a URL). A device that goes gets empty retained configs,
//!   which delete its entities.
//!
//! On every connection the gateway also subscribes to those retained topics,
//! to clear the ones an earlier run left for a device or stream that is gone
//! (a discovery config is ours when its availability topic is `P/status`),
//! once discovery has listed every linked account, as ring-mqtt users expect
//! entities of removed devices to go.
//!
//! Never blocks the bus: the publisher is a task of its own reading the bus's
//! channel, and waits for room in rumqttc's bounded request queue ([`QUEUE`]).
//! When it falls behind the channel, it re-reads the store, so every event is
//! published exactly once while connected, floods too. While the broker is
//! unreachable, events are dropped for MQTT (the store still has them; a
//! warning at most once per [`WARN_EVERY`]); the retained topics
//! (availability, discovery, stream states) are published again on every
//! (re)connection.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use streamgate_ring::{Device, EventFilter, StoredEvent};
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{Config, MqttSettings, RingDevices};
use crate::events::EventBus;
use crate::sources::{RingLink, Source, RING_PREFIX};

/// Publishes waiting for the connection at most; beyond, the publisher waits.
const QUEUE: usize = 4096;
/// Retained messages from the broker waiting for the publisher at most; beyond,
/// they are skipped until the next connection.
const HELD_QUEUE: usize = 1024;
/// Drop and connection warnings at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Reconnection delays: from the first, doubling up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Largest packet published (a webhook body is capped well below).
const MAX_PACKET: usize = 1024 * 1024;
/// How long motion and ding sensors stay on after an event.
const MOTION_OFF_DELAY: u64 = 30;
const DING_OFF_DELAY: u64 = 10;

/// Why MQTT could not start.
#[derive(Debug, thiserror::Error)]
#[error("[mqtt]: {0}")]
pub struct MqttError(String);

/// Publishes and drops so far (for the logs and metrics).
#[derive(Debug, Default)]
pub struct MqttCounts {
    pub published: AtomicU64,
    pub dropped: AtomicU64,
}

/// What the publisher needs besides the bus.
struct Context {
    prefix: String,
    discovery: String,
    http_base: String,
    selection: RingDevices,
    max_streams: usize,
    /// `[streams.NAME]` with a `ring:` source: (device source, name).
    configured: Vec<(Source, String)>,
}

/// Starts the connection and publisher tasks (they stop with the runtime).
/// Call it before the bus's watchers start and before webhooks are taken, so
/// that no event is missed.
pub fn start(
    settings: &MqttSettings,
    config: &Config,
    bus: EventBus,
    link: RingLink,
) -> Result<Arc<MqttCounts>, MqttError> {
    let host = settings
        .broker
        .host_str()
        .ok_or(MqttError("the broker URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = settings.broker.port().unwrap_or(1883);
    let prefix = topic_prefix("topic_prefix", &settings.topic_prefix)?;
    let discovery = topic_prefix("discovery_prefix", &settings.discovery_prefix)?;
    let mut options = MqttOptions::new(settings.client_id.clone(), host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    options.set_last_will(LastWill::new(
        format!("{prefix}/status"),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if settings.username.is_some() || settings.password.is_some() {
        options.set_credentials(
            settings.username.clone().unwrap_or_default(),
            settings
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        );
    }
    let (client, eventloop) = AsyncClient::new(options, QUEUE);
    let ring = config.ring.as_ref();
    let context = Context {
        prefix,
        discovery,
        http_base: http_base(settings, config.http.listen),
        selection: ring.map(|r| r.devices.clone()).unwrap_or_default(),
        max_streams: ring.map_or(0, |r| r.max_streams),
        configured: config
            .streams
            .iter()
            .filter(|(_, stream)| stream.source.to_string().starts_with(RING_PREFIX))
            .map(|(name, stream)| (stream.source.clone(), name.to_string()))
            .collect(),
    };
    let counts = Arc::new(MqttCounts::default());
    let (connected_tx, connected) = watch::channel(None);
    tracing::info!(broker = %settings.broker, client_id = %settings.client_id, "MQTT: connecting");
    let (held_tx, held) = mpsc::channel(HELD_QUEUE);
    tokio::spawn(drive(eventloop, connected_tx, held_tx));
    let publisher = Publisher {
        client,
        context,
        counts: counts.clone(),
        connected: None,
        retained: BTreeMap::new(),
        removed: BTreeSet::new(),
        held: BTreeSet::new(),
        listed: false,
        last_warn: None,
    };
    // Subscribed before the bus's watchers and the webhook URL start (see
    // main.rs), so the channel has every event after `last_id`.
    let events = bus.subscribe();
    let last_id = bus.last_id().unwrap_or(0);
    tokio::spawn(publisher.run((bus, events, last_id), link, connected, held));
    Ok(counts)
}

/// A configured topic prefix without its trailing `/`, refused when empty or
/// when it holds a wildcard.
fn topic_prefix(name: &str, configured: &str) -> Result<String, MqttError> {
    let prefix = configured.trim_end_matches('/');
    if prefix.is_empty() || prefix.contains(['+', '#', '\0']) {
        return Err(MqttError(format!(
            "{name} {configured:?} is not a topic prefix"
        )));
    }
    Ok(prefix.to_owned())
}

/// `[mqtt] http_base`, else `http://` and `[http] listen` (an unspecified
/// address as `127.0.0.1`), without a trailing `/`.
fn http_base(settings: &MqttSettings, listen: SocketAddr) -> String {
    match &settings.http_base {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => {
            let mut listen = listen;
            if listen.ip().is_unspecified() {
                listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{listen}")
        }
    }
}

/// Polls the connection: reconnects with backoff, tells the publisher each new
/// connection's number (None while there is none), and hands it the retained
/// messages the broker sends for its subscriptions.
async fn drive(
    mut eventloop: EventLoop,
    connected: watch::Sender<Option<u64>>,
    held: mpsc::Sender<(String, Vec<u8>)>,
) {
    let mut generation = 0u64;
    let mut delay = BACKOFF_FIRST;
    let mut last_warn: Option<Instant> = None;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                generation += 1;
                delay = BACKOFF_FIRST;
                last_warn = None;
                tracing::info!("MQTT: connected to the broker");
                connected.send_replace(Some(generation));
            }
            // A live message on a subscribed topic is our own publish coming
            // back; only retained ones say what the broker holds.
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.retain => {
                let _ = held.try_send((publish.topic, publish.payload.to_vec()));
            }
            Ok(_) => {}
            Err(error) => {
                let was_connected = connected.send_replace(None).is_some();
                if was_connected || last_warn.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    // rumqttc's errors name the I/O or protocol problem, never the password.
                    tracing::warn!(
                        "MQTT: no connection to the broker ({error}); retrying in {delay:?}"
                    );
                    last_warn = Some(Instant::now());
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

struct Publisher {
    client: AsyncClient,
    context: Context,
    counts: Arc<MqttCounts>,
    /// The connection being published to.
    connected: Option<u64>,
    /// Every retained topic and its payload, published again on each connection.
    retained: BTreeMap<String, String>,
    /// Retained topics to clear that could not be cleared yet.
    removed: BTreeSet<String>,
    /// Our retained topics the broker said it holds, not yet judged stale or not.
    held: BTreeSet<String>,
    /// Whether discovery listed every linked account: until then a device
    /// missing from the list may exist, and nothing held is judged.
    listed: bool,
    last_warn: Option<Instant>,
}

impl Publisher {
    async fn run(
        mut self,
        (bus, mut events, mut last_id): (EventBus, broadcast::Receiver<Arc<StoredEvent>>, i64),
        link: RingLink,
        mut connected: watch::Receiver<Option<u64>>,
        mut held: mpsc::Receiver<(String, Vec<u8>)>,
    ) {
        let mut devices = link.watch_devices();
        let mut listed = link.watch_listed();
        self.listed = *listed.borrow_and_update();
        let initial: Vec<Device> = devices.borrow_and_update().values().cloned().collect();
        self.set_devices(&initial).await;
        self.retain(format!("{}/status", self.context.prefix), "online".into())
            .await;
        loop {
            tokio::select! {
                changed = connected.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *connected.borrow_and_update();
                    if now.is_some() && now != self.connected {
                        self.connected = now;
                        self.republish().await;
                    } else {
                        self.connected = now;
                    }
                }
                changed = devices.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now: Vec<Device> = devices.borrow_and_update().values().cloned().collect();
                    self.set_devices(&now).await;
                }
                changed = listed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.listed = *listed.borrow_and_update();
                    self.clear_stale().await;
                }
                Some((topic, payload)) = held.recv() => {
                    if payload.is_empty() {
                        self.held.remove(&topic);
                    } else if is_ours(&self.context, &topic, &payload) {
                        self.held.insert(topic);
                        self.clear_stale().await;
                    }
                }
                received = events.recv() => match received {
                    Ok(event) => {
                        if event.id > last_id {
                            last_id = event.id;
                            self.event(&event).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Behind the bus: the store has what the channel dropped.
                        last_id = self.catch_up(&bus, last_id).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Publishes the stored events after `after`; the last id published.
    async fn catch_up(&mut self, bus: &EventBus, mut after: i64) -> i64 {
        loop {
            let reader = bus.clone();
            let filter = EventFilter {
                after: Some(after),
                limit: 1000,
                ..Default::default()
            };
            let page = tokio::task::spawn_blocking(move || reader.history(&filter)).await;
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => {
                    tracing::warn!("MQTT: reading the event store failed: {error}");
                    return after;
                }
                Err(_) => return after,
            };
            let Some(last) = page.last().map(|event| event.id) else {
                return after;
            };
            for event in &page {
                self.event(event).await;
            }
            after = last;
        }
    }

    /// One event on its topic (and, for a stream's, its retained state).
    async fn event(&mut self, event: &StoredEvent) {
        let prefix = &self.context.prefix;
        let payload = serde_json::to_string(event).unwrap_or_default();
        let topic = match &event.device {
            Some(device) => format!("{prefix}/ring/{}/{}", segment(device), segment(&event.kind)),
            None => format!("{prefix}/gateway/{}", segment(&event.kind)),
        };
        let state = match event.kind.as_str() {
            "stream_up" => Some("up"),
            "stream_down" => Some("down"),
            _ => None,
        };
        if let (Some(state), Some(stream)) = (state, event.body["stream"].as_str()) {
            self.retain(
                format!("{prefix}/streams/{}/state", segment(stream)),
                state.to_owned(),
            )
            .await;
        }
        self.publish(topic, false, payload).await;
    }

    /// The retained discovery topics for `devices`: publishes the new and
    /// changed ones and clears the ones that went.
    async fn set_devices(&mut self, devices: &[Device]) {
        let wanted = self.discovery_topics(devices);
        let discovery = format!("{}/", self.context.discovery);
        let ring = format!("{}/ring/", self.context.prefix);
        let gone: Vec<String> = self
            .retained
            .keys()
            .filter(|topic| topic.starts_with(&discovery) || topic.starts_with(&ring))
            .filter(|topic| !wanted.contains_key(*topic))
            .cloned()
            .collect();
        for topic in gone {
            self.retained.remove(&topic);
            self.clear(topic).await;
        }
        for (topic, payload) in wanted {
            self.retain(topic, payload).await;
        }
        self.clear_stale().await;
    }

    /// Sets a retained topic, publishing it when it changed.
    async fn retain(&mut self, topic: String, payload: String) {
        if self.retained.get(&topic) == Some(&payload) {
            return;
        }
        self.removed.remove(&topic);
        self.retained.insert(topic.clone(), payload.clone());
        self.publish(topic, true, payload).await;
    }

    /// Deletes a retained topic now, or on the next connection.
    async fn clear(&mut self, topic: String) {
        if !self.publish(topic.clone(), true, String::new()).await {
            self.removed.insert(topic);
        }
    }

    /// Clears the held topics nothing retains now, once discovery has listed
    /// every account; the others need nothing more.
    async fn clear_stale(&mut self) {
        if !self.listed {
            return;
        }
        let held = std::mem::take(&mut self.held);
        for topic in held {
            if !self.retained.contains_key(&topic) {
                tracing::info!(
                    topic,
                    "MQTT: clearing a retained topic of a device or stream that is gone"
                );
                self.clear(topic).await;
            }
        }
    }

    /// A new connection: every retained topic again, pending clears, and the
    /// subscriptions that tell which of our retained topics the broker holds.
    async fn republish(&mut self) {
        let removed = std::mem::take(&mut self.removed);
        for topic in removed {
            self.clear(topic).await;
        }
        let retained: Vec<(String, String)> = self
            .retained
            .iter()
            .map(|(topic, payload)| (topic.clone(), payload.clone()))
            .collect();
        for (topic, payload) in retained {
            self.publish(topic, true, payload).await;
        }
        let (prefix, discovery) = (&self.context.prefix, &self.context.discovery);
        let filters = [
            format!("{discovery}/binary_sensor/+/+/config"),
            format!("{discovery}/image/+/+/config"),
            format!("{prefix}/ring/+/snapshot_url"),
            format!("{prefix}/streams/+/state"),
        ];
        for filter in filters {
            if let Err(error) = self.client.subscribe(filter, QoS::AtMostOnce).await {
                tracing::warn!("MQTT: subscribing to our retained topics failed: {error}");
            }
        }
    }

    /// Queues one publish, waiting for room in the queue; false (counted,
    /// warned at most once per [`WARN_EVERY`]) when there is no connection.
    async fn publish(&mut self, topic: String, retain: bool, payload: String) -> bool {
        if self.connected.is_none() && retain {
            // Published again on the next connection.
            return false;
        }
        let sent = self.connected.is_some()
            && self
                .client
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .is_ok();
        if sent {
            self.counts.published.fetch_add(1, Ordering::Relaxed);
        } else {
            let dropped = self.counts.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if self.last_warn.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                self.last_warn = Some(Instant::now());
                tracing::warn!(
                    dropped,
                    "MQTT: not connected to the broker: events dropped for MQTT (the event store keeps them)"
                );
            }
        }
        sent
    }

    /// Home Assistant discovery configs and snapshot URLs of `devices`.
    fn discovery_topics(&self, devices: &[Device]) -> BTreeMap<String, String> {
        let context = &self.context;
        let names = stream_names(context, devices);
        let status = format!("{}/status", context.prefix);
        let mut topics = BTreeMap::new();
        for device in devices {
            let id = device.id.as_str();
            let node = node_id(id);
            let base = format!("{}/ring/{}", context.prefix, segment(id));
            let ha_device = serde_json::json!({
                "identifiers": [id],
                "name": device.name,
                "manufacturer": "Ring",
                "model": match device.power {
                    Some(power) => format!("Ring device ({})", serde_json::to_value(power).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
                    None => "Ring device".to_owned(),
                },
                "suggested_area": device.location,
            });
            let common = |name: &str, object: &str| {
                serde_json::json!({
                    "name": name,
                    "unique_id": format!("streamgate_{node}_{object}"),
                    "availability_topic": status,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                    "device": ha_device,
                    "origin": {"name": "streamgate", "sw_version": env!("CARGO_PKG_VERSION")},
                })
            };
            for (object, name, class, kind, off_delay) in [
                (
                    "motion",
                    "Motion",
                    "motion",
                    "motion_detected",
                    MOTION_OFF_DELAY,
                ),
                ("ding", "Ding", "occupancy", "button_press", DING_OFF_DELAY),
            ] {
                let mut config = common(name, object);
                let state = format!("{base}/{kind}");
                config["device_class"] = class.into();
                config["state_topic"] = state.clone().into();
                // Any event on the topic turns the sensor on; off_delay turns it off.
                config["value_template"] = "ON".into();
                config["payload_on"] = "ON".into();
                config["off_delay"] = off_delay.into();
                config["json_attributes_topic"] = state.into();
                topics.insert(
                    format!("{}/binary_sensor/{node}/{object}/config", context.discovery),
                    config.to_string(),
                );
            }
            if let Some(stream) = names.get(id) {
                let url_topic = format!("{base}/snapshot_url");
                let url = format!("{}/api/streams/{stream}/snapshot.jpg", context.http_base);
                let mut config = common("Snapshot", "snapshot");
                config["url_topic"] = url_topic.clone().into();
                config["content_type"] = "image/jpeg".into();
                topics.insert(
                    format!("{}/image/{node}/snapshot/config", context.discovery),
                    config.to_string(),
                );
                topics.insert(url_topic, url);
            }
        }
        topics
    }
}

/// Whether a retained message the broker holds is one this gateway publishes:
/// a device's snapshot URL, a stream's state, or a discovery config whose
/// availability topic is our status topic (others belong to other programs).
fn is_ours(context: &Context, topic: &str, payload: &[u8]) -> bool {
    if let Some(rest) = topic.strip_prefix(&format!("{}/", context.prefix)) {
        let levels: Vec<&str> = rest.split('/').collect();
        if matches!(
            levels.as_slice(),
            ["ring", _, "snapshot_url"] | ["streams", _, "state"]
        ) {
            return true;
        }
    }
    topic.starts_with(&format!("{}/", context.discovery))
        && topic.ends_with("/config")
        && serde_json::from_slice::<serde_json::Value>(payload).is_ok_and(|config| {
            config["availability_topic"].as_str() == Some(&format!("{}/status", context.prefix))
        })
}

/// The stream each device's snapshots are at: a `[streams.NAME]` with its
/// `ring:` source, else the discovered `ring-<name>` stream.
fn stream_names(context: &Context, devices: &[Device]) -> BTreeMap<String, String> {
    let mut names: BTreeMap<String, String> =
        crate::ring::discovered_streams(devices, &context.selection, context.max_streams)
            .into_iter()
            .filter_map(|(name, stream)| {
                let source = stream.source.to_string();
                let id = source.strip_prefix(RING_PREFIX)?.to_owned();
                Some((id, name.to_string()))
            })
            .collect();
    for (source, name) in &context.configured {
        if let Some(id) = source.to_string().strip_prefix(RING_PREFIX) {
            names.insert(id.to_owned(), name.clone());
        }
    }
    names
}

/// A topic level made of untrusted text: no `/`, `+`, `#` or NUL in it.
fn segment(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| match c {
            '/' | '+' | '#' | '\0' => '_',
            c => c,
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

/// A Home Assistant discovery node or object id: `[A-Za-z0-9_-]` only.
fn node_id(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_makes_one_topic_level() {
        assert_eq!(segment("a/b+c#d"), "a_b_c_d");
        assert_eq!(segment(""), "_");
        assert_eq!(
            node_id("ava1.ring.device.front-door"),
            "ava1_ring_device_front-door"
        );
    }

    #[test]
    fn held_retained_topics_are_ours_by_prefix_or_availability() {
        let context = Context {
            prefix: "home/sg".into(),
            discovery: "homeassistant".into(),
            http_base: "http://127.0.0.1:8080".into(),
            selection: RingDevices::default(),
            max_streams: 0,
            configured: Vec::new(),
        };
        let config = |availability: &str| {
            serde_json::json!({"name": "Motion", "availability_topic": availability}).to_string()
        };
        let ours = |topic: &str, payload: &str| is_ours(&context, topic, payload.as_bytes());
        assert!(ours("home/sg/ring/dev_1/snapshot_url", "http://x"));
        assert!(ours("home/sg/streams/demo/state", "up"));
        assert!(ours(
            "homeassistant/binary_sensor/dev_1/motion/config",
            &config("home/sg/status")
        ));
        // Another program's config, or another gateway's prefix.
        assert!(!ours(
            "homeassistant/binary_sensor/dev_1/motion/config",
            &config("ring/status")
        ));
        assert!(!ours(
            "homeassistant/image/dev_1/snapshot/config",
            "not json"
        ));
        assert!(!ours("other/sg/streams/demo/state", "up"));
        // Our event topics are never retained state.
        assert!(!ours("home/sg/ring/dev_1/motion_detected", "{}"));
        assert!(!ours("home/sg/status", "online"));
    }

    #[test]
    fn prefixes_with_wildcards_are_refused() {
        assert_eq!(topic_prefix("p", "a/b/").unwrap(), "a/b");
        for bad in ["", "/", "a/+", "#"] {
            assert!(topic_prefix("discovery_prefix", bad)
                .unwrap_err()
                .to_string()
                .contains("discovery_prefix"));
        }
    }

    #[test]
    fn the_http_base_defaults_to_the_listen_address() {
        let settings: MqttSettings = toml::from_str("broker = \"mqtt://h\"").unwrap();
        assert_eq!(
            http_base(&settings, "0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        let settings: MqttSettings =
            toml::from_str("broker = \"mqtt://h\"\nhttp_base = \"http://gw.lan:80/\"").unwrap();
        assert_eq!(
            http_base(&settings, "0.0.0.0:8080".parse().unwrap()),
            "http://gw.lan"
        );
        assert_eq!(settings.topic_prefix, "streamgate");
        assert_eq!(settings.discovery_prefix, "homeassistant");
        assert_eq!(settings.client_id, "streamgate");
    }

    #[test]
    fn broker_urls_are_checked() {
        for bad in ["http://h", "mqtt://u:p@h", "mqtt:///x"] {
            let text = format!("[mqtt]\nbroker = \"{bad}\"\n");
            let path = std::path::Path::new("gateway.toml");
            let error = Config::parse(&text, path).unwrap_err().to_string();
            assert!(
                error.contains("gateway.toml") && !error.contains("u:p"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_password_comes_from_the_environment_and_is_never_shown() {
        let text = "[mqtt]\nbroker = \"mqtt://h:1884\"\nusername = \"u\"\npassword = \"in-file\"\n";
        let mut config = Config::parse(text, std::path::Path::new("g.toml")).unwrap();
        config.apply_env(|name| {
            (name == crate::config::MQTT_PASSWORD_ENV).then(|| "from-env".to_owned())
        });
        let mqtt = config.mqtt.as_ref().unwrap();
        assert_eq!(mqtt.password.as_ref().unwrap().expose(), "from-env");
        assert_eq!(mqtt.broker.port(), Some(1884));
        assert!(!format!("{config:?}").contains("from-env"));
    }
}
