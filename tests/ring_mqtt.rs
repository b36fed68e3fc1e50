//! The event bus over MQTT, against a real mosquitto started by the test (on a
//! free port, with a temp config) and `mosquitto_sub` as the subscriber: every
//! webhook event the simulator delivers reaches mosquitto_sub exactly once on
//! its device/type topic; Home Assistant discovery configs for the simulator's
//! three devices are retained (a subscriber that comes later gets them); the
//! availability topic is `online`, then `offline` (the last will) after a
//! kill -9 of the gateway; a broker with a password file takes the gateway's
//! username and password (the password from the environment), and the password
//! is in no log line; a broker restarted on the same port gets the retained
//! topics again after the gateway reconnects.
//!
//! No timing is pass/fail: each wait is a hang guard ([`support::ring::PATIENCE`]).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use streamgate_ringsim::WebhookRequest;
use support::mqtt::{Broker, Message, Subscriber};
use support::ring::{self, Sim, DRIVEWAY, FRONT_DOOR};
use support::{peer, sample, signal, Gateway, TempDir};

/// A gateway on `sim` publishing to `broker` (`mqtt_extra` lines in `[mqtt]`),
/// with the demo stream too (for its state topic).
fn gateway(
    sim: &Sim,
    store: &TempDir,
    broker: &Broker,
    mqtt_extra: &str,
    env: &[(&str, &str)],
) -> Gateway {
    let rest = format!(
        "{}\n[mqtt]\nbroker = \"{}\"\n{mqtt_extra}\n\n[streams.demo]\nsource = \"demo\"\n",
        sim.ring_section(&format!(
            "database = \"{}\"",
            store.path().join("ring.db").display()
        )),
        broker.url()
    );
    let gateway = Gateway::start_with_env(&rest, env);
    let url = url::Url::parse(&gateway.http_url("/ring/webhook")).unwrap();
    sim.get().set_webhook_url(Some(url));
    gateway
}

fn webhook(kind: &str, device: Option<&str>) -> WebhookRequest {
    WebhookRequest {
        kind: kind.to_owned(),
        device: device.map(str::to_owned),
        ..Default::default()
    }
}

const ALL_TYPES: [&str; 10] = [
    "motion_detected",
    "button_press",
    "device_added",
    "device_removed",
    "device_online",
    "device_offline",
    "app_integration_added",
    "subscription_activated",
    "subscription_deactivated",
    "app_integration_removed",
];

fn request_id(message: &Message) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(&message.payload).ok()?;
    value["body"]["meta"]["request_id"]
        .as_str()
        .map(str::to_owned)
}

const BACKYARD: &str = "ava1.ring.device.backyard";

fn node(device: &str) -> String {
    device.replace('.', "_")
}

/// Reads until the gateway's discovery of `devices` devices is in: their
/// motion and ding sensors and snapshot images (by node id).
fn wait_discovery(
    sub: &mut Subscriber,
    devices: usize,
    context: &dyn Fn() -> String,
) -> BTreeMap<String, Message> {
    let mut configs = BTreeMap::new();
    sub.until("discovery of the devices", context, |m| {
        if m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config") {
            // An empty payload deletes the config; other programs' configs
            // do not count.
            if m.payload.is_empty() {
                configs.remove(&m.topic);
            } else if m
                .payload
                .contains("\"availability_topic\":\"streamgate/status\"")
            {
                configs.insert(m.topic.clone(), m.clone());
            }
        }
        let count = |kind: &str, object: &str| {
            configs
                .keys()
                .filter(|t| {
                    t.starts_with(&format!("homeassistant/{kind}/"))
                        && t.ends_with(&format!("/{object}/config"))
                })
                .count()
        };
        count("binary_sensor", "motion") == devices
            && count("binary_sensor", "ding") == devices
            && count("image", "snapshot") == devices
    });
    configs
}

fn json(message: &Message) -> serde_json::Value {
    serde_json::from_str(&message.payload)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", message.topic, message.payload))
}

#[test]
fn events_reach_mosquitto_sub_once_discovery_is_retained_and_the_last_will_says_offline() {
    let broker = Broker::start("allow_anonymous true");
    let sim = Sim::start("webhook_retry_scale = 0.01");
    let store = TempDir::new("ring-mqtt");
    let mut gateway = gateway(&sim, &store, &broker, "", &[]);
    let http_port = gateway.http_port;
    let log_path = gateway.dir.path().join("gateway.log");
    let broker_log = broker.dir.path().join("mosquitto.log");
    let context = move || {
        format!(
            "gateway:\n{}\nmosquitto:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default(),
            std::fs::read_to_string(&broker_log).unwrap_or_default()
        )
    };
    let mut sub = Subscriber::start(&broker, &[]);
    sub.until("streamgate/status online", &context, |m| {
        m.topic == "streamgate/status" && m.payload == "online"
    });
    sub.until("the demo stream up", &context, |m| {
        m.topic == "streamgate/streams/demo/state" && m.payload == "up"
    });

    // Linking the sample account finds its three devices: discovery for each.
    ring::link_sample_account(&sim, &gateway);
    let mut configs = wait_discovery(&mut sub, 3, &context);
    let front = node(FRONT_DOOR);
    let motion = json(&configs[&format!("homeassistant/binary_sensor/{front}/motion/config")]);
    assert_eq!(motion["device_class"], "motion");
    assert_eq!(motion["unique_id"], format!("streamgate_{front}_motion"));
    assert_eq!(
        motion["state_topic"],
        format!("streamgate/ring/{FRONT_DOOR}/motion_detected")
    );
    assert_eq!(motion["availability_topic"], "streamgate/status");
    assert!(motion["off_delay"].as_u64().unwrap() > 0, "{motion}");
    assert_eq!(motion["device"]["manufacturer"], "Ring");
    assert_eq!(motion["device"]["identifiers"][0], FRONT_DOOR);
    assert!(motion["device"]["name"].as_str().is_some(), "{motion}");
    let ding = json(&configs[&format!("homeassistant/binary_sensor/{front}/ding/config")]);
    assert_eq!(ding["device_class"], "occupancy");
    assert_eq!(
        ding["state_topic"],
        format!("streamgate/ring/{FRONT_DOOR}/button_press")
    );
    let image = json(&configs[&format!("homeassistant/image/{front}/snapshot/config")]);
    let url_topic = image["url_topic"].as_str().unwrap().to_owned();
    assert_eq!(
        url_topic,
        format!("streamgate/ring/{FRONT_DOOR}/snapshot_url")
    );
    let url = sub
        .until("the snapshot URL", &context, |m| m.topic == url_topic)
        .payload;
    let prefix = format!("http://127.0.0.1:{http_port}/api/streams/ring-");
    assert!(
        url.starts_with(&prefix) && url.ends_with("/snapshot.jpg"),
        "{url}"
    );

    // A device removed at Ring: device_removed rediscovers at once, and its
    // entities get empty retained configs (Home Assistant deletes them).
    assert!(sim.get().remove_device(BACKYARD));
    sim.get()
        .send_webhook(&webhook("device_removed", Some(BACKYARD)))
        .unwrap();
    let gone = format!(
        "homeassistant/binary_sensor/{}/motion/config",
        node(BACKYARD)
    );
    sub.until("the removed device's empty config", &context, |m| {
        m.topic == gone && m.payload.is_empty()
    });
    configs.retain(|topic, _| !topic.contains(&node(BACKYARD)));

    // Every webhook event once, on its device/type topic; a marker last.
    let mut sent: Vec<(String, String)> = Vec::new();
    for kind in ALL_TYPES {
        let device = (!kind.starts_with("app_integration")).then_some(FRONT_DOOR);
        let id = sim.get().send_webhook(&webhook(kind, device)).unwrap();
        let topic = match device {
            Some(device) => format!("streamgate/ring/{device}/{kind}"),
            None => format!("streamgate/gateway/{kind}"),
        };
        sent.push((id, topic));
    }
    for _ in 0..5 {
        let id = sim
            .get()
            .send_webhook(&webhook("motion_detected", Some(DRIVEWAY)))
            .unwrap();
        sent.push((id, format!("streamgate/ring/{DRIVEWAY}/motion_detected")));
    }
    let marker = sim
        .get()
        .send_webhook(&webhook("button_press", Some(DRIVEWAY)))
        .unwrap();
    let start = sub.seen.len();
    sub.until("every event and the marker", &context, |m| {
        request_id(m).as_deref() == Some(marker.as_str())
    });
    // Ring may deliver out of order; wait for any the marker overtook.
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let collect = |seen: &[Message], got: &mut BTreeMap<String, Vec<String>>| {
        got.clear();
        for m in seen {
            if let Some(id) = request_id(m) {
                got.entry(id).or_default().push(m.topic.clone());
            }
        }
    };
    collect(&sub.seen[start..], &mut got);
    while sent.iter().any(|(id, _)| !got.contains_key(id)) {
        let seen_before = sub.seen.len();
        sub.until("the remaining events", &context, |m| {
            request_id(m).is_some()
        });
        let _ = seen_before;
        collect(&sub.seen[start..], &mut got);
    }
    // A second marker fences off late duplicates.
    let fence = sim
        .get()
        .send_webhook(&webhook("button_press", Some(DRIVEWAY)))
        .unwrap();
    sub.until("the fence", &context, |m| {
        request_id(m).as_deref() == Some(fence.as_str())
    });
    collect(&sub.seen[start..], &mut got);
    for (id, topic) in &sent {
        assert_eq!(
            got[id],
            vec![topic.clone()],
            "request {id} exactly once on {topic}"
        );
    }
    let event = sub
        .seen
        .iter()
        .find(|m| request_id(m).as_deref() == Some(sent[0].0.as_str()))
        .unwrap();
    let event = json(event);
    assert_eq!(event["type"], "motion_detected");
    assert_eq!(event["device"], FRONT_DOOR);
    assert!(
        event["id"].as_i64().is_some() && event["time_ms"].as_i64().is_some(),
        "{event}"
    );

    // /metrics counts the publishes.
    let (status, metrics) = gateway.request("GET", "/metrics", None);
    assert_eq!(status, 200);
    let published = sample(
        &metrics,
        "streamgate_mqtt_messages_total{outcome=\"published\"}",
    );
    assert!(
        published.is_some_and(|n| n >= sent.len() as f64),
        "{metrics}"
    );

    // A subscriber that comes later gets the retained discovery and status.
    let mut late = Subscriber::start(&broker, &[]);
    let retained = wait_discovery(&mut late, 2, &context);
    assert_eq!(
        retained.keys().collect::<Vec<_>>(),
        configs.keys().collect::<Vec<_>>()
    );
    if late.last("streamgate/status").is_none() {
        late.until("the retained status", &context, |m| {
            m.topic == "streamgate/status"
        });
    }
    assert_eq!(late.last("streamgate/status"), Some("online"));

    // kill -9: the broker publishes the last will.
    signal(gateway.pid(), "-KILL");
    while gateway.is_running() {
        std::thread::sleep(Duration::from_millis(50));
    }
    sub.until("streamgate/status offline", &context, |m| {
        m.topic == "streamgate/status" && m.payload == "offline"
    });
    let mut after = Subscriber::start(&broker, &[]);
    after.until("the retained status", &context, |m| {
        m.topic == "streamgate/status"
    });
    assert_eq!(after.last("streamgate/status"), Some("offline"));
}

#[test]
fn a_broker_with_a_password_file_takes_the_gateways_credentials() {
    const PASSWORD: &str = "mqtt-pass-5ecret";
    let dir = TempDir::new("mosquitto-passwd");
    let file = dir.path().join("passwd");
    let status = Command::new(peer("mosquitto_passwd"))
        .arg("-c")
        .arg("-b")
        .arg(&file)
        .args(["gateway", PASSWORD])
        .status()
        .expect("mosquitto_passwd");
    assert!(status.success());
    let broker = Broker::start(&format!(
        "allow_anonymous false\npassword_file {}",
        file.display()
    ));
    let sim = Sim::start("");
    let store = TempDir::new("ring-mqtt-auth");
    // The password comes from the environment, the file has a wrong one.
    let gateway = gateway(
        &sim,
        &store,
        &broker,
        "username = \"gateway\"\npassword = \"wrong-in-file\"\ntopic_prefix = \"gw\"",
        &[("STREAMGATE_MQTT_PASSWORD", PASSWORD)],
    );
    let log_path = gateway.dir.path().join("gateway.log");
    let broker_log = broker.dir.path().join("mosquitto.log");
    let context = move || {
        format!(
            "gateway:\n{}\nmosquitto:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default(),
            std::fs::read_to_string(&broker_log).unwrap_or_default()
        )
    };
    let mut sub = Subscriber::start(&broker, &["-u", "gateway", "-P", PASSWORD, "-t", "gw/#"]);
    sub.until("gw/status online", &context, |m| {
        m.topic == "gw/status" && m.payload == "online"
    });

    // Wrong credentials: refused, retried, and the password is in no log line.
    let refused = self::gateway(
        &sim,
        &TempDir::new("ring-mqtt-auth-2"),
        &broker,
        "username = \"gateway\"\npassword = \"not-the-5ecret\"\nclient_id = \"other\"",
        &[],
    );
    refused.wait_for(
        || refused.log().contains("MQTT: no connection to the broker"),
        "a refused connection logged",
    );
    for log in [gateway.log(), refused.log()] {
        assert!(
            !log.contains(PASSWORD)
                && !log.contains("not-the-5ecret")
                && !log.contains("wrong-in-file"),
            "{log}"
        );
    }
}

#[test]
fn a_restarted_broker_gets_the_retained_topics_again() {
    let broker = Broker::start("allow_anonymous true");
    let port = broker.port;
    let sim = Sim::start("");
    let store = TempDir::new("ring-mqtt-restart");
    let gateway = gateway(&sim, &store, &broker, "", &[]);
    let log_path = gateway.dir.path().join("gateway.log");
    let context = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut sub = Subscriber::start(&broker, &[]);
    sub.until("the demo stream up", &context, |m| {
        m.topic == "streamgate/streams/demo/state" && m.payload == "up"
    });
    drop(sub);
    // The broker goes (no persistence: its retained messages go with it) and
    // comes back on the same port: the gateway reconnects and publishes again.
    drop(broker);
    let broker = Broker::start_on(port, "allow_anonymous true");
    let mut sub = Subscriber::start(&broker, &[]);
    sub.until("the demo stream up again", &context, |m| {
        m.topic == "streamgate/streams/demo/state" && m.payload == "up"
    });
    if sub.last("streamgate/status").is_none() {
        sub.until("the status again", &context, |m| {
            m.topic == "streamgate/status"
        });
    }
    assert_eq!(sub.last("streamgate/status"), Some("online"));
    gateway.wait_for(
        || gateway.log().contains("MQTT: no connection to the broker"),
        "the lost connection logged",
    );
}

#[test]
fn retained_topics_of_devices_and_streams_that_went_are_cleared_on_connect() {
    let broker = Broker::start("allow_anonymous true");
    // What an earlier run left: a device and a stream that are gone since, and
    // another program's config that must stay.
    let gone_node = "ava1_ring_device_gone";
    let ours = serde_json::json!({"name": "Motion", "availability_topic": "streamgate/status"});
    let theirs = serde_json::json!({"name": "Motion", "availability_topic": "ring/status"});
    let stale = [
        format!("homeassistant/binary_sensor/{gone_node}/motion/config"),
        format!("homeassistant/image/{gone_node}/snapshot/config"),
        "streamgate/ring/ava1.ring.device.gone/snapshot_url".to_owned(),
        "streamgate/streams/gone/state".to_owned(),
    ];
    for topic in &stale {
        let payload = if topic.ends_with("/config") {
            ours.to_string()
        } else {
            "up".to_owned()
        };
        broker.publish(topic, &payload, true);
    }
    let foreign = "homeassistant/binary_sensor/other_thing/motion/config";
    broker.publish(foreign, &theirs.to_string(), true);

    let mut sub = Subscriber::start(&broker, &[]);
    let sim = Sim::start("");
    let store = TempDir::new("ring-mqtt-stale");
    let gateway = gateway(&sim, &store, &broker, "", &[]);
    let log_path = gateway.dir.path().join("gateway.log");
    let context = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    ring::link_sample_account(&sim, &gateway);
    wait_discovery(&mut sub, 3, &context);
    // Each stale topic is cleared (an empty retained message) once discovery
    // has listed every linked account (here at once: none is linked at start).
    let mut cleared: BTreeSet<String> = sub
        .seen
        .iter()
        .filter(|m| m.payload.is_empty())
        .map(|m| m.topic.clone())
        .collect();
    if !stale.iter().all(|topic| cleared.contains(topic)) {
        sub.until("the stale topics cleared", &context, |m| {
            if m.payload.is_empty() {
                cleared.insert(m.topic.clone());
            }
            stale.iter().all(|topic| cleared.contains(topic))
        });
    }
    assert!(
        !cleared.contains(foreign),
        "another program's config was cleared"
    );
    drop(sub);

    // A new subscriber gets what the broker retains now, then a marker published
    // after it subscribed: the stale topics are gone, the rest is there.
    let mut late = Subscriber::start(&broker, &[]);
    late.until("the demo stream's state", &context, |m| {
        m.topic == "streamgate/streams/demo/state"
    });
    broker.publish("streamgate/zz_marker", "end", false);
    late.until("the marker", &context, |m| {
        m.topic == "streamgate/zz_marker"
    });
    let retained: BTreeMap<&str, &str> = late
        .seen
        .iter()
        .map(|m| (m.topic.as_str(), m.payload.as_str()))
        .collect();
    for topic in &stale {
        assert!(
            !retained.contains_key(topic.as_str()),
            "{topic} still retained"
        );
    }
    assert_eq!(retained.get(foreign), Some(&theirs.to_string().as_str()));
    let front = node(FRONT_DOOR);
    assert!(
        retained
            .contains_key(format!("homeassistant/binary_sensor/{front}/motion/config").as_str()),
        "{retained:#?}"
    );
    assert!(!gateway.log().contains("panicked"));
}
