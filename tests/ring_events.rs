//! Ring's webhooks through the gateway, against the simulator: the simulator
//! signs and delivers every event type to `POST /ring/webhook`, an SSE client on
//! `GET /api/events` sees each exactly once (also after a kill -9, when the
//! simulator redelivers them: recognised as duplicates from the store),
//! `Last-Event-ID` replays, the history filters, bad input gets its answer,
//! `device_added`/`device_removed`/`app_integration_removed` change the streams
//! and the account at once, a delivery the store refuses gets 503 and is stored
//! on Ring's retry, and a flood of 1,000 signed deliveries a second for 10 s is
//! answered, stored, seen over SSE and published to MQTT (a real mosquitto, read
//! by `mosquitto_sub`) exactly once, with bounded memory.
//!
//! No timing is pass/fail: each wait is a hang guard ([`PATIENCE`]).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use streamgate_ringsim::{webhook_signature, SubtypeIn, WebhookRequest};
use support::mqtt::{Broker, Message, Subscriber};
use support::ring::{self, Sim, ACCOUNT, DRIVEWAY, FRONT_DOOR, HMAC_KEY, PATIENCE};
use support::{request, signal, Gateway, TempDir};

/// A simulator whose retries wait a hundredth of Ring's schedule.
fn sim() -> Sim {
    Sim::start("webhook_retry_scale = 0.01")
}

/// A gateway on the simulator with its database in `store` (kept across restarts).
fn gateway(sim: &Sim, store: &TempDir, extra: &str) -> Gateway {
    let gateway = Gateway::start(&sim.ring_section(&format!(
        "database = \"{}\"\n{extra}",
        store.path().join("ring.db").display()
    )));
    let url = url::Url::parse(&gateway.http_url("/ring/webhook")).unwrap();
    sim.get().set_webhook_url(Some(url));
    gateway
}

/// One event as the SSE stream carries it.
#[derive(Debug, Clone)]
struct Seen {
    id: i64,
    kind: String,
    data: serde_json::Value,
}

/// A plain HTTP client reading `GET /api/events` (with `headers`) line by line.
fn sse(gateway: &Gateway, query: &str, headers: &str) -> mpsc::Receiver<Seen> {
    let mut socket = TcpStream::connect(("127.0.0.1", gateway.http_port)).expect("connect");
    write!(
        socket,
        "GET /api/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{headers}\r\n"
    )
    .unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "SSE status: {line}");
        // Headers, then the chunked body: chunk-size lines interleave with the
        // event lines; only `id:`, `event:` and `data:` lines matter.
        let (mut id, mut kind) = (None, String::new());
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let text = line.trim_end();
            if let Some(value) = text.strip_prefix("id:") {
                id = value.trim().parse().ok();
            } else if let Some(value) = text.strip_prefix("event:") {
                kind = value.trim().to_owned();
            } else if let Some(value) = text.strip_prefix("data:") {
                let data = serde_json::from_str(value.trim()).expect("event JSON");
                let seen = Seen {
                    id: id.take().expect("an id before the data"),
                    kind: std::mem::take(&mut kind),
                    data,
                };
                if sender.send(seen).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

fn next(events: &mpsc::Receiver<Seen>, gateway: &Gateway) -> Seen {
    events
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("no SSE event within {PATIENCE:?}\n{}", gateway.log()))
}

fn webhook(kind: &str, device: Option<&str>) -> WebhookRequest {
    WebhookRequest {
        kind: kind.to_owned(),
        device: device.map(str::to_owned),
        ..Default::default()
    }
}

/// Waits until the simulator has finished `count` deliveries.
fn wait_delivered(sim: &Sim, gateway: &Gateway, count: u64) {
    gateway.wait_for(
        || {
            let stats = sim.get().webhook_stats();
            stats.in_flight == 0 && stats.delivered + stats.failed >= count
        },
        &format!("{count} webhook deliveries"),
    );
    let stats = sim.get().webhook_stats();
    assert_eq!(stats.failed, 0, "{stats:?}\n{}", gateway.log());
}

/// `GET /api/events?format=json&…` → the events.
fn history(gateway: &Gateway, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = gateway.request("GET", &format!("/api/events?format=json{query}"), None);
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["events"].as_array().unwrap().clone()
}

/// Every stored event, paging with `after`.
fn all_events(gateway: &Gateway, query: &str) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = history(gateway, &format!("&after={after}&limit=1000{query}"));
        let Some(last) = page.last() else {
            return events;
        };
        after = last["id"].as_i64().unwrap();
        events.extend(page);
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
    "app_integration_removed",
    "subscription_activated",
    "subscription_deactivated",
];

#[test]
fn every_event_reaches_sse_once_and_redeliveries_after_kill_9_are_duplicates() {
    let sim = sim();
    let store = TempDir::new("ring-events");
    let mut gateway = gateway(&sim, &store, "");
    let events = sse(&gateway, "?last_event_id=0", "");

    let mut sent = Vec::new();
    for kind in ALL_TYPES {
        let device = (!kind.starts_with("app_integration")).then_some(FRONT_DOOR);
        sent.push(sim.get().send_webhook(&webhook(kind, device)).unwrap());
    }
    for (sub_type, place) in [
        ("human", SubtypeIn::Data),
        ("vehicle", SubtypeIn::Attributes),
    ] {
        let request = WebhookRequest {
            sub_type: Some(sub_type.into()),
            subtype_in: place,
            ..webhook("motion_detected", Some(DRIVEWAY))
        };
        sent.push(sim.get().send_webhook(&request).unwrap());
    }
    sent.push(
        sim.get()
            .send_webhook(&webhook("doorbell_levitated", Some(DRIVEWAY)))
            .unwrap(),
    );
    wait_delivered(&sim, &gateway, sent.len() as u64);

    let seen: Vec<Seen> = (0..sent.len()).map(|_| next(&events, &gateway)).collect();
    let ids: Vec<i64> = seen.iter().map(|s| s.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let by_request: BTreeMap<String, Seen> = seen
        .iter()
        .map(|s| {
            (
                s.data["body"]["meta"]["request_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                s.clone(),
            )
        })
        .collect();
    assert_eq!(
        by_request.keys().cloned().collect::<BTreeSet<_>>(),
        sent.iter().cloned().collect::<BTreeSet<_>>(),
        "every delivery once"
    );
    let kinds: Vec<&str> = sent.iter().map(|r| by_request[r].kind.as_str()).collect();
    let mut expected: Vec<&str> = ALL_TYPES.to_vec();
    expected.extend(["motion_detected", "motion_detected", "unknown"]);
    assert_eq!(kinds, expected);
    let subtype = |r: &str| by_request[r].data["subtype"].as_str().map(str::to_owned);
    assert_eq!(subtype(&sent[10]).as_deref(), Some("human"));
    assert_eq!(subtype(&sent[11]).as_deref(), Some("vehicle"));
    assert_eq!(subtype(&sent[12]).as_deref(), Some("doorbell_levitated"));
    assert_eq!(by_request[&sent[0]].data["device"], FRONT_DOOR);
    assert_eq!(by_request[&sent[0]].data["account"], ACCOUNT);
    assert!(by_request[&sent[6]].data["device"].is_null());

    // app_integration_removed revoked the tokens: the account, were it linked,
    // needs linking again (it is not linked here: nothing to mark).
    // Redeliveries are answered 200 and not sent on: the next event after them
    // is a fresh marker.
    let answered = sim
        .get()
        .webhook_stats()
        .answers
        .get("200")
        .copied()
        .unwrap_or(0);
    for request_id in &sent[..3] {
        sim.get().redeliver_webhook(request_id).unwrap();
    }
    wait_delivered(&sim, &gateway, sent.len() as u64 + 3);
    let stats = sim.get().webhook_stats();
    assert_eq!(stats.answers["200"], answered + 3, "{stats:?}");
    let marker = sim
        .get()
        .send_webhook(&webhook("button_press", Some(DRIVEWAY)))
        .unwrap();
    wait_delivered(&sim, &gateway, sent.len() as u64 + 4);
    let after = next(&events, &gateway);
    assert_eq!(after.data["body"]["meta"]["request_id"], marker.as_str());
    sent.push(marker);

    // kill -9, start again on the same database: every redelivery is a duplicate.
    signal(gateway.pid(), "-KILL");
    while gateway.is_running() {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(gateway);
    let gateway = self::gateway(&sim, &store, "");
    let before = sim.get().webhook_stats();
    for request_id in &sent {
        sim.get().redeliver_webhook(request_id).unwrap();
    }
    wait_delivered(&sim, &gateway, before.deliveries + sent.len() as u64);
    let stats = sim.get().webhook_stats();
    assert_eq!(
        stats.answers["200"],
        before.answers["200"] + sent.len() as u64,
        "{stats:?}"
    );
    let stored = all_events(&gateway, "");
    let webhooks: Vec<&serde_json::Value> = stored
        .iter()
        .filter(|e| e["body"]["meta"]["request_id"].is_string())
        .collect();
    assert_eq!(webhooks.len(), sent.len(), "each stored once: {stored:?}");
    let metrics = gateway.request("GET", "/metrics", None).1;
    assert!(
        !metrics.contains("streamgate_ring_events_total{type=\"button_press\""),
        "the restarted gateway counted no new event:\n{metrics}"
    );
}

#[test]
fn last_event_id_replays_and_the_history_filters() {
    let sim = sim();
    let store = TempDir::new("ring-events");
    let gateway = gateway(&sim, &store, "[streams.demo]\nsource = \"demo\"\n");
    let plan = [
        ("motion_detected", FRONT_DOOR),
        ("button_press", FRONT_DOOR),
        ("motion_detected", DRIVEWAY),
        ("device_online", DRIVEWAY),
        ("motion_detected", FRONT_DOOR),
    ];
    for (kind, device) in plan {
        sim.get()
            .send_webhook(&webhook(kind, Some(device)))
            .unwrap();
    }
    wait_delivered(&sim, &gateway, plan.len() as u64);
    let webhooks = history(&gateway, "&limit=1000");
    let ring: Vec<&serde_json::Value> = webhooks
        .iter()
        .filter(|e| e["body"]["meta"].is_object())
        .collect();
    assert_eq!(ring.len(), plan.len());

    // The gateway's own: the demo stream went up.
    gateway.wait_for(
        || !history(&gateway, "&type=stream_up").is_empty(),
        "a stream_up event",
    );
    assert_eq!(
        history(&gateway, "&type=stream_up")[0]["body"]["stream"],
        "demo"
    );
    let (status, body) = gateway.request("DELETE", "/api/streams/demo", None);
    assert!(status < 300, "{status} {body}");
    gateway.wait_for(
        || !history(&gateway, "&type=stream_down").is_empty(),
        "a stream_down event",
    );
    assert_eq!(
        history(&gateway, "&type=stream_down")[0]["body"]["stream"],
        "demo"
    );

    let front_motion = history(
        &gateway,
        &format!("&device={FRONT_DOOR}&type=motion_detected"),
    );
    assert_eq!(front_motion.len(), 2);
    let motion = history(&gateway, "&type=motion_detected");
    assert_eq!(motion.len(), 3);
    let limited = history(&gateway, "&type=motion_detected&limit=1");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["id"], motion[2]["id"], "the newest");
    let (status, body) = support::http_with_headers(
        gateway.http_port,
        "GET",
        &format!("/api/events?device={DRIVEWAY}"),
        None,
        "Accept: application/json\r\n",
    );
    assert_eq!(status, 200, "{body}");
    let by_accept: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(by_accept["events"].as_array().unwrap().len(), 2);

    // Replay after the second webhook's id, by header and by query.
    let second = ring[1]["id"].as_i64().unwrap();
    let expected: Vec<i64> = ring[2..]
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    for (query, headers) in [
        (String::new(), format!("Last-Event-ID: {second}\r\n")),
        (
            format!("?last_event_id={second}&type=motion_detected"),
            String::new(),
        ),
    ] {
        let filtered = !query.is_empty();
        let events = sse(&gateway, &query, &headers);
        let want: Vec<i64> = ring[2..]
            .iter()
            .filter(|e| !filtered || e["type"] == "motion_detected")
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let seen = next(&events, &gateway);
            if seen.data["body"]["meta"].is_object() {
                got.push(seen.id);
            }
        }
        assert_eq!(got, want, "{query} {headers}");
        assert!(want.len() <= expected.len());
    }
    // Live after the replay: a new event arrives on a stream that replayed.
    let events = sse(&gateway, "", &format!("Last-Event-ID: {second}\r\n"));
    for _ in 0..expected.len() {
        next(&events, &gateway);
    }
    let fresh = sim
        .get()
        .send_webhook(&webhook("button_press", Some(DRIVEWAY)))
        .unwrap();
    loop {
        let seen = next(&events, &gateway);
        if seen.data["body"]["meta"]["request_id"] == fresh.as_str() {
            break;
        }
    }
    let (status, body) = support::http_with_headers(gateway.http_port, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    assert_eq!(
        support::sample(
            &body,
            &format!(
                "streamgate_ring_events_total{{type=\"motion_detected\",device=\"{FRONT_DOOR}\"}}"
            )
        ),
        Some(2.0),
        "{body}"
    );
}

/// A Ring-shaped body with `request_id`, sent at `time`.
fn body(kind: &str, request_id: &str, time: SystemTime) -> String {
    serde_json::json!({
        "meta": {"version": "1.1", "time": humantime::format_rfc3339_millis(time).to_string(),
                 "request_id": request_id, "account_id": ACCOUNT},
        "data": {"id": format!("ev-{request_id}"), "type": kind,
                 "attributes": {"source": FRONT_DOOR, "source_type": "devices", "timestamp": 1},
                 "relationships": {"devices": {"links": {"self": format!("/v1/devices/{FRONT_DOOR}")}}}}
    })
    .to_string()
}

/// POSTs `body` to the Webhook URL with `signature` (None: no header): (status, body).
fn post(gateway: &Gateway, body: &str, signature: Option<&str>) -> (u16, String) {
    let header = signature.map_or(String::new(), |s| format!("X-Signature: {s}\r\n"));
    let response = request(
        gateway.http_port,
        "POST",
        "/ring/webhook",
        Some(body),
        &header,
        PATIENCE,
    )
    .unwrap_or_else(|| panic!("no answer\n{}", gateway.log()));
    (response.status, response.text())
}

fn signed(body: &str) -> String {
    webhook_signature(HMAC_KEY.as_bytes(), body.as_bytes())
}

#[test]
fn bad_input_gets_its_answer() {
    let sim = sim();
    let store = TempDir::new("ring-events");
    let gateway = gateway(
        &sim,
        &store,
        "previous_hmac_key = \"old-key\"\nwebhook_max_age = \"10m\"",
    );
    let now = SystemTime::now();
    let good = body("button_press", "req-good", now);

    assert_eq!(post(&gateway, &good, None).0, 401, "missing signature");
    let wrong = webhook_signature(b"not-the-key", good.as_bytes());
    assert_eq!(post(&gateway, &good, Some(&wrong)).0, 401, "wrong key");
    assert_eq!(post(&gateway, &good, Some("sha256=zz")).0, 401, "not hex");
    let tampered = good.replace("button_press", "button_prest");
    assert_eq!(
        post(&gateway, &tampered, Some(&signed(&good))).0,
        401,
        "tampered"
    );

    let (status, answer) = post(&gateway, &good, Some(&signed(&good)));
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"stored\""), "{answer}");
    let (status, answer) = post(&gateway, &good, Some(&signed(&good)));
    assert_eq!(
        (status, answer.contains("\"duplicate\"")),
        (200, true),
        "{answer}"
    );

    // The previous key still works while it rotates.
    let rotated = body("button_press", "req-rotated", now);
    let by_old = webhook_signature(b"old-key", rotated.as_bytes());
    assert_eq!(post(&gateway, &rotated, Some(&by_old)).0, 200);

    let malformed = "{\"meta\": {";
    assert_eq!(post(&gateway, malformed, Some(&signed(malformed))).0, 400);
    let shape = "{\"hello\": 1}";
    assert_eq!(post(&gateway, shape, Some(&signed(shape))).0, 400);

    let unknown = body("doorbell_levitated", "req-unknown", now);
    let (status, answer) = post(&gateway, &unknown, Some(&signed(&unknown)));
    assert_eq!(
        (status, answer.contains("\"stored\"")),
        (200, true),
        "{answer}"
    );

    let stale = body("button_press", "req-stale", now - Duration::from_secs(3600));
    let (status, answer) = post(&gateway, &stale, Some(&signed(&stale)));
    assert_eq!(
        (status, answer.contains("\"stale\"")),
        (200, true),
        "{answer}"
    );

    // 10 MB: refused with 413 (the body is written by another thread while
    // the answer is read, so an early answer is not lost to a reset).
    let mut socket = TcpStream::connect(("127.0.0.1", gateway.http_port)).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = socket.try_clone().unwrap();
    let big = vec![b'x'; 10 * 1024 * 1024];
    let sign = signed(std::str::from_utf8(&big).unwrap());
    let started = Instant::now();
    let write = std::thread::spawn(move || {
        let head = format!(
            "POST /ring/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Signature: {sign}\r\nContent-Length: {}\r\n\r\n",
            big.len()
        );
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&big);
    });
    let mut status_line = String::new();
    BufReader::new(&mut socket)
        .read_line(&mut status_line)
        .expect("an answer to the 10 MB body");
    assert!(status_line.contains(" 413 "), "{status_line}");
    drop(socket);
    let _ = write.join();
    eprintln!("10 MB body answered in {:?}", started.elapsed());

    let stored = all_events(&gateway, "");
    let ids: Vec<&str> = stored
        .iter()
        .filter_map(|e| e["body"]["meta"]["request_id"].as_str())
        .collect();
    assert_eq!(ids, ["req-good", "req-rotated", "req-unknown"]);
    assert_eq!(stored[2]["type"], "unknown");
    assert_eq!(stored[2]["subtype"], "doorbell_levitated");
}

#[test]
fn a_flood_of_signed_deliveries_is_answered_and_stored_and_published_once() {
    let sim = sim();
    let store = TempDir::new("ring-events");
    let broker = Broker::start("allow_anonymous true");
    let gateway = gateway(
        &sim,
        &store,
        &format!("\n[mqtt]\nbroker = \"{}\"", broker.url()),
    );
    let log_path = gateway.dir.path().join("gateway.log");
    let context = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut mqtt = Subscriber::start(&broker, &["-q", "1"]);
    mqtt.until("the gateway online", &context, |m| {
        m.topic == "streamgate/status" && m.payload == "online"
    });
    let rss_before = gateway.rss_kib();
    let live = sse(&gateway, "?last_event_id=0&type=motion_detected", "");
    let port = gateway.http_port;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const PER_SECOND: u64 = 1000;
    const SECONDS: u64 = 10;
    const MAX_IN_FLIGHT: usize = 500;
    let started = Instant::now();
    let answers: Vec<Result<(u16, String, Duration), String>> = runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(PATIENCE)
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/ring/webhook");
        let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / PER_SECOND));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        // At most this many deliveries in flight (each on its own connection
        // when the others are busy), as a sender with a connection pool has.
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = Vec::new();
        for n in 0..PER_SECOND * SECONDS {
            ticks.tick().await;
            let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
            let body = body("motion_detected", &format!("flood-{n}"), SystemTime::now());
            let signature = signed(&body);
            let request = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-signature", signature)
                .body(body);
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let asked = Instant::now();
                let response = request.send().await.map_err(|e| format!("{e:?}"))?;
                let status = response.status().as_u16();
                let text = response.text().await.map_err(|e| e.to_string())?;
                Ok((status, text, asked.elapsed()))
            }));
        }
        let sent_in = started.elapsed();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        eprintln!(
            "flood: sent in {sent_in:?} ({} a second)",
            (PER_SECOND * SECONDS) as f64 / sent_in.as_secs_f64()
        );
        answers
    });
    let elapsed = started.elapsed();
    let rss_after = gateway.rss_kib();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for answer in &answers {
        if let Ok((_, _, took)) = answer {
            slowest = slowest.max(*took);
        }
        let key = match answer {
            Ok((status, text, _)) if text.contains("\"stored\"") => format!("{status} stored"),
            Ok((status, text, _)) => format!("{status} {text}"),
            Err(error) => format!("error {error}"),
        };
        *by_status.entry(key).or_default() += 1;
    }
    eprintln!(
        "flood: {} deliveries in {elapsed:?}, answers {by_status:?}, slowest answer {slowest:?}, gateway RSS {rss_before} KiB before, {rss_after} KiB after",
        answers.len()
    );
    assert_eq!(
        by_status.get("200 stored").copied(),
        Some((PER_SECOND * SECONDS) as usize),
        "{by_status:?}\n{}",
        gateway.log()
    );
    let stored = all_events(&gateway, "&type=motion_detected");
    let ids: BTreeSet<String> = stored
        .iter()
        .filter_map(|e| e["body"]["meta"]["request_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stored.len(), (PER_SECOND * SECONDS) as usize);
    assert_eq!(ids.len(), stored.len(), "each stored once");
    // The SSE client saw each once, in id order (it lagged behind the channel
    // at times, and caught up from the store).
    let mut seen = BTreeSet::new();
    let mut last = 0;
    while seen.len() < ids.len() {
        let event = next(&live, &gateway);
        assert!(event.id > last, "ids increase");
        last = event.id;
        let request_id = event.data["body"]["meta"]["request_id"].as_str().unwrap();
        assert!(seen.insert(request_id.to_owned()), "{request_id} twice");
    }
    assert_eq!(seen, ids);
    // mosquitto_sub saw each once on the device's topic, then a marker published
    // after the last: nothing came twice.
    let topic = format!("streamgate/ring/{FRONT_DOOR}/motion_detected");
    let mut published = BTreeSet::new();
    let mut twice = Vec::new();
    let mut take = |message: &Message| {
        if message.topic == topic {
            let id = serde_json::from_str::<serde_json::Value>(&message.payload)
                .ok()
                .and_then(|event| {
                    event["body"]["meta"]["request_id"]
                        .as_str()
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| panic!("not an event: {}", message.payload));
            if !published.insert(id.clone()) {
                twice.push(id);
            }
        }
        published.len()
    };
    mqtt.until("every event over MQTT", &context, |m| take(m) == ids.len());
    broker.publish("streamgate/zz_marker", "end", false);
    mqtt.until("the marker", &context, |m| {
        take(m);
        m.topic == "streamgate/zz_marker"
    });
    assert_eq!(published, ids);
    assert!(twice.is_empty(), "published twice: {twice:?}");
    assert!(
        rss_after < rss_before + 100 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn device_and_integration_webhooks_change_the_streams_at_once() {
    let sim = sim();
    let store = TempDir::new("ring-events");
    // The discovery timer is far away: only the webhooks can bring changes soon.
    let gateway = gateway(&sim, &store, "rediscover = \"1h\"");
    ring::link_sample_account(&sim, &gateway);

    sim.get()
        .add_device(
            None,
            streamgate_ringsim::DeviceConfig {
                id: "ava1.ring.device.porch".into(),
                name: "Porch".into(),
                power: streamgate_ringsim::PowerSource::Wired,
                session_cap: None,
                offline: false,
                location: "Home".into(),
            },
        )
        .unwrap();
    sim.get()
        .send_webhook(&webhook("device_added", Some("ava1.ring.device.porch")))
        .unwrap();
    gateway.wait_for(
        || ring::ring_streams(&gateway).contains(&"ring-porch".to_owned()),
        "the added device's stream",
    );
    assert!(sim.get().remove_device("ava1.ring.device.porch"));
    sim.get()
        .send_webhook(&webhook("device_removed", Some("ava1.ring.device.porch")))
        .unwrap();
    gateway.wait_for(
        || !ring::ring_streams(&gateway).contains(&"ring-porch".to_owned()),
        "the removed device's stream gone",
    );

    // Ring removed the integration: the tokens are revoked, the account needs
    // linking again (and says so on the bus).
    sim.get()
        .send_webhook(&webhook("app_integration_removed", None))
        .unwrap();
    gateway.wait_for(
        || ring::accounts(&gateway)["accounts"][0]["state"] == "needs_relinking",
        "the account marked needs_relinking",
    );
    gateway.wait_for(
        || !history(&gateway, "&type=account_needs_relinking").is_empty(),
        "an account_needs_relinking event",
    );
    let event = &history(&gateway, "&type=account_needs_relinking")[0];
    assert_eq!(event["account"], ACCOUNT);
}

#[test]
fn a_delivery_the_store_refuses_gets_503_and_is_stored_on_ring_s_retry() {
    let sim = sim();
    let store = TempDir::new("ring-events");
    let gateway = gateway(&sim, &store, "");
    // Another connection to the database makes every event insert fail.
    let db = rusqlite::Connection::open(store.path().join("ring.db")).unwrap();
    db.busy_timeout(PATIENCE).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    let request_id = sim
        .get()
        .send_webhook(&webhook("button_press", Some(FRONT_DOOR)))
        .unwrap();
    gateway.wait_for(
        || sim.get().webhook_stats().answers.contains_key("503"),
        "a 503 for the refused event",
    );
    assert!(history(&gateway, "").is_empty());
    // The store works again: one of Ring's retries stores it, once.
    db.execute_batch("DROP TRIGGER refuse;").unwrap();
    wait_delivered(&sim, &gateway, 1);
    let stats = sim.get().webhook_stats();
    assert_eq!((stats.delivered, stats.answers["200"]), (1, 1), "{stats:?}");
    let stored = history(&gateway, "");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["body"]["meta"]["request_id"], request_id.as_str());
}
