//! The HTTP app (`streamgate::http::app`) driven with `tower::ServiceExt::oneshot`:
//! stream views, adding/replacing/removing streams (checked like the config file),
//! bearer-token auth, JSON errors, secrets kept out of every answer, the OpenAPI
//! document and the metrics text. The streams are real: the demo capture and a
//! fixture capture replayed into real Hubs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use streamgate::config::Config;
use streamgate::http::{self, AppState};
use streamgate::streams::{self, SharedStreams, Streams};

const WAIT: Duration = Duration::from_secs(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The app over the streams of `toml`, relative paths resolved against `fixtures/`.
fn gateway(toml: &str) -> (Router, SharedStreams) {
    let config = Config::parse(toml, Path::new("test.toml")).expect("config");
    let planned = streams::plan(&config, &fixtures()).expect("plan");
    let streams = SharedStreams::new(Streams::start(planned, Default::default()));
    let state = AppState::new(&config, streams.clone(), fixtures());
    (http::app(state, config.hls.clone(), &config.http), streams)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<(&str, &str)>,
    token: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some((content_type, body)) => request
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Method::GET, uri, None, None).await
}

/// GETs `uri` until `done` holds for its JSON.
async fn wait_json(app: &Router, uri: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = get(app, uri).await;
        if reply.status == StatusCode::OK && done(&reply.json()) {
            return reply.json();
        }
        assert!(
            Instant::now() < deadline,
            "{uri} never matched: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn streams_are_listed_with_codecs_resolution_and_counters() {
    let (app, _streams) = gateway("[streams.demo]\nsource = \"demo\"\n");
    let list = get(&app, "/api/streams").await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    let names: Vec<&str> = list["streams"]
        .as_array()
        .expect("streams array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["demo"]);

    let view = wait_json(&app, "/api/streams/demo", |v| {
        v["frames"].as_u64() > Some(50) && v["tracks"][0]["width"].is_u64()
    })
    .await;
    assert_eq!(view["state"], "running");
    assert_eq!(view["source"], "demo");
    let tracks = view["tracks"].as_array().expect("tracks");
    let codecs: Vec<&str> = tracks.iter().filter_map(|t| t["codec"].as_str()).collect();
    assert_eq!(codecs, ["h264", "aac"]);
    assert_eq!(tracks[0]["width"], 1280);
    assert_eq!(tracks[0]["height"], 720);
    assert!(
        view["packets"].as_u64() > Some(0) && view["bytes"].as_u64() > view["packets"].as_u64(),
        "{view}"
    );
    assert_eq!(view["subscribers"], 0);
    assert_eq!(
        view["readers"],
        serde_json::json!({ "rtsp": [], "hls": [] })
    );
    // The bitrate is measured between looks at least a second apart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let view = get(&app, "/api/streams/demo").await.json();
    let bitrate = view["bitrate_bps"]
        .as_u64()
        .expect("a bitrate after two looks");
    assert!(bitrate > 0, "{view}");

    let missing = get(&app, "/api/streams/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"], "no stream named \"nope\"");
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
}

/// Outside a cluster there is no cluster to list and no owners to show.
#[tokio::test]
async fn a_single_node_has_no_cluster() {
    let (app, _streams) = gateway("[streams.demo]\nsource = \"demo\"\n");
    let cluster = get(&app, "/api/cluster").await;
    assert_eq!(cluster.status, StatusCode::NOT_FOUND);
    let error = cluster.json()["error"].to_string();
    assert!(error.contains("not in a cluster"), "{error}");
    let list = get(&app, "/api/streams").await.json();
    assert!(list.get("elsewhere").is_none(), "{list}");
    assert!(list["streams"][0].get("owner").is_none(), "{list}");
}

#[tokio::test]
async fn streams_are_added_replaced_and_removed_at_runtime() {
    let (app, streams) = gateway("");
    let put = |body: &'static str, content_type: &'static str| {
        let app = app.clone();
        async move {
            send(
                &app,
                Method::PUT,
                "/api/streams/cam",
                Some((content_type, body)),
                None,
            )
            .await
        }
    };
    let created = put(
        "source = \"pcap:ffmpeg_h264_aac.pcap\"\n",
        "application/toml",
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json()["source"], "pcap:ffmpeg_h264_aac.pcap");
    wait_json(&app, "/api/streams/cam", |v| v["frames"].as_u64() > Some(0)).await;

    // A reader of the stream as it is now, to see what replacing and deleting do to it.
    let hub = streams.read().get("cam").expect("cam").hub.clone();
    let mut reader = hub.subscribe();

    let replaced = put(
        r#"{"source": "pcap:ffmpeg_h264_opus.pcap"}"#,
        "application/json",
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    let view = wait_json(&app, "/api/streams/cam", |v| {
        v["tracks"].as_array().is_some_and(|t| t.len() == 2)
    })
    .await;
    assert_eq!(view["tracks"][1]["codec"], "opus");
    assert!(
        tokio::time::timeout(WAIT, async { while reader.recv().await.is_some() {} })
            .await
            .is_ok(),
        "the replaced stream's reader was not ended"
    );

    let hub = streams.read().get("cam").expect("cam").hub.clone();
    let mut reader = hub.subscribe();
    let deleted = send(&app, Method::DELETE, "/api/streams/cam", None, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert!(
        tokio::time::timeout(WAIT, async { while reader.recv().await.is_some() {} })
            .await
            .is_ok(),
        "the deleted stream's reader was not ended"
    );
    assert_eq!(
        get(&app, "/api/streams/cam").await.status,
        StatusCode::NOT_FOUND
    );
    let again = send(&app, Method::DELETE, "/api/streams/cam", None, None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.json()["error"], "no stream named \"cam\"");
}

/// Bad requests: each gets its status and a JSON message naming the problem.
#[tokio::test]
async fn bad_stream_tables_are_rejected_like_the_config_file() {
    let (app, _streams) = gateway("");
    let cases: &[(&str, &str, &str, StatusCode, &str)] = &[
        ("cam", "application/toml", "sorce = \"demo\"\n", StatusCode::BAD_REQUEST, "line 1, column 1: unknown field `sorce`"),
        ("cam", "application/toml", "source = \"demo\"\ntransport = \"udp\"\n", StatusCode::BAD_REQUEST, "line 2, column 13: stream cam: `transport`, `always_on`, `idle_grace`, `tls_verify`, `tls_fingerprint` and `tls_ca` are only used by rtsp(s):// sources"),
        ("cam", "application/toml", "source = \"pcap:missing.pcap\"\n", StatusCode::BAD_REQUEST, "stream cam: "),
        ("cam", "application/toml", "[rtsp]\nlisten = \"0.0.0.0:1\"\n", StatusCode::BAD_REQUEST, "unexpected table `rtsp`"),
        ("cam", "application/json", "{\"source\": 5}", StatusCode::BAD_REQUEST, "line 1, column 10: invalid type: integer `5`"),
        ("cam", "application/json", "[\"demo\"]", StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        ("cam", "application/json", "{", StatusCode::BAD_REQUEST, "bad JSON: "),
        ("cam", "image/png", "source = \"demo\"\n", StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the stream's table as application/toml or application/json"),
        ("a%20b", "application/toml", "source = \"demo\"\n", StatusCode::BAD_REQUEST, "stream name \"a b\" must be"),
    ];
    for (name, content_type, body, status, message) in cases {
        let reply = send(
            &app,
            Method::PUT,
            &format!("/api/streams/{name}"),
            Some((content_type, body)),
            None,
        )
        .await;
        assert_eq!(reply.status, *status, "{body:?}: {}", reply.body);
        assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.starts_with(message),
            "{body:?}: got {error:?}, want {message:?}"
        );
    }
    let huge = format!("source = \"demo\"\n#{}\n", "x".repeat(100 * 1024));
    let reply = send(
        &app,
        Method::PUT,
        "/api/streams/cam",
        Some(("application/toml", &huge)),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        get(&app, "/api/streams").await.json()["streams"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn api_token_guards_the_api_only() {
    let (app, _streams) =
        gateway("[http]\napi_token = \"s3cr3t-token\"\n[streams.demo]\nsource = \"demo\"\n");
    for uri in ["/api/streams", "/api/streams/demo", "/api/openapi.json"] {
        let denied = get(&app, uri).await;
        assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            denied.headers[header::WWW_AUTHENTICATE],
            "Bearer realm=\"streamgate\""
        );
        assert_eq!(denied.json()["error"], "missing or wrong bearer token");
        let wrong = send(&app, Method::GET, uri, None, Some("s3cr3t-tokeN")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{uri}");
        let allowed = send(&app, Method::GET, uri, None, Some("s3cr3t-token")).await;
        assert_eq!(allowed.status, StatusCode::OK, "{uri}");
    }
    let put = send(
        &app,
        Method::PUT,
        "/api/streams/x",
        Some(("application/toml", "source = \"demo\"\n")),
        None,
    )
    .await;
    assert_eq!(put.status, StatusCode::UNAUTHORIZED);
    // The events are behind the token (and absent without [ring]); Ring's
    // Webhook URL is not behind it (its signature is the check).
    let events = get(&app, "/api/events?format=json").await;
    assert_eq!(events.status, StatusCode::UNAUTHORIZED);
    let events = send(
        &app,
        Method::GET,
        "/api/events?format=json",
        None,
        Some("s3cr3t-token"),
    )
    .await;
    assert_eq!(events.status, StatusCode::NOT_FOUND);
    let webhook = send(
        &app,
        Method::POST,
        "/ring/webhook",
        Some(("application/json", "{}")),
        None,
    )
    .await;
    assert_eq!(webhook.status, StatusCode::NOT_FOUND);
    for uri in ["/healthz", "/metrics", "/"] {
        assert_eq!(get(&app, uri).await.status, StatusCode::OK, "{uri}");
    }
}

#[test]
fn api_token_comes_from_the_environment() {
    let mut config =
        Config::parse("[http]\napi_token = \"from-file\"\n", Path::new("t.toml")).unwrap();
    config.apply_env(|name| {
        (name == streamgate::config::API_TOKEN_ENV).then(|| "from-env".to_owned())
    });
    assert_eq!(
        config.http.api_token.as_ref().map(|s| s.expose()),
        Some("from-env")
    );
}

#[tokio::test]
async fn secrets_never_appear_in_api_answers() {
    let (app, _streams) = gateway("");
    let body = "source = \"rtsp://admin:hunter2@127.0.0.1:9/live?token=tok3n\"\nrtsp_username = \"v\"\nrtsp_password = \"pw-s3cret\"\nalways_on = true\n";
    let created = send(
        &app,
        Method::PUT,
        "/api/streams/cam",
        Some(("application/toml", body)),
        None,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // The camera port is closed: wait for the source's failure to show.
    let view = wait_json(&app, "/api/streams/cam", |v| v["last_error"].is_string()).await;
    let metrics = get(&app, "/metrics").await.body;
    let dashboard = get(&app, "/").await.body;
    let list = get(&app, "/api/streams").await.body;
    for shown in [
        &created.body,
        &view.to_string(),
        &metrics,
        &dashboard,
        &list,
    ] {
        for secret in ["hunter2", "tok3n", "pw-s3cret"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
    }
    assert_eq!(view["source"], "rtsp://***@127.0.0.1:9/live?token=***");
}

/// The document lists exactly the routes the app serves: its paths are these, and
/// each documented method is answered by a handler while every other method on
/// the path is refused (405), so a route served but not documented (or the
/// reverse) fails here.
#[tokio::test]
async fn openapi_document_lists_every_route() {
    let (app, _streams) = gateway("");
    let reply = get(&app, "/api/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    let document = reply.json();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "streamgate API");
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let documented: Vec<(String, Vec<String>)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item.as_object().expect("path item").keys();
            let methods = methods.filter(|key| *key != "parameters").cloned();
            (path.clone(), methods.collect())
        })
        .collect();
    let served: &[(&str, &[&str])] = &[
        ("/", &["get"]),
        ("/api/cluster", &["get"]),
        ("/api/events", &["get"]),
        ("/api/openapi.json", &["get"]),
        ("/api/ring/accounts", &["get"]),
        ("/api/ring/accounts/{id}", &["delete"]),
        ("/api/ring/accounts/{id}/subscriptions", &["get"]),
        ("/api/ring/clips", &["get"]),
        ("/api/ring/clips/{name}", &["get"]),
        ("/api/ring/devices/{id}/clips", &["post"]),
        ("/api/ring/devices/{id}/history", &["get"]),
        ("/api/ring/discover", &["post"]),
        ("/api/streams", &["get"]),
        ("/api/streams/{name}", &["delete", "get", "put"]),
        ("/api/streams/{name}/snapshot.jpg", &["get"]),
        ("/api/streams/{name}/snapshot.png", &["get"]),
        ("/healthz", &["get"]),
        ("/metrics", &["get"]),
        ("/ring/accounts/{id}/unlink", &["post"]),
        ("/ring/link", &["get"]),
        ("/ring/sign-in", &["get", "post"]),
        ("/ring/token-exchange", &["post"]),
        ("/ring/webhook", &["post"]),
        ("/whep/{name}", &["get", "options", "post"]),
        ("/whep/{name}/{id}", &["delete", "options", "patch"]),
        ("/whip/{name}", &["options", "post"]),
        ("/whip/{name}/{id}", &["delete", "options", "patch"]),
    ];
    let mut sorted: Vec<(String, Vec<String>)> = documented.clone();
    for (_, methods) in &mut sorted {
        methods.sort();
    }
    sorted.sort();
    let expected: Vec<(String, Vec<String>)> = served
        .iter()
        .map(|(path, methods)| {
            (
                path.to_string(),
                methods.iter().map(|m| m.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(sorted, expected, "documented routes");
    for (path, methods) in &documented {
        let uri = path.replace("{name}", "nope").replace("{id}", "nope");
        for method in [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            let body = (method == Method::PUT).then_some(("application/toml", "sorce = 1\n"));
            let reply = send(&app, method.clone(), &uri, body, None).await;
            if methods.contains(&method.as_str().to_ascii_lowercase()) {
                // Answered by the handler: a 404 is the API's JSON one (or
                // WHEP's line of text), not a missing route's empty body.
                let handled = reply.status != StatusCode::METHOD_NOT_ALLOWED
                    && (reply.status != StatusCode::NOT_FOUND || !reply.body.is_empty());
                assert!(
                    handled,
                    "{method} {path} is documented but not served: {}",
                    reply.status
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
    let put = &document["paths"]["/api/streams/{name}"]["put"]["requestBody"]["content"];
    assert!(
        put["application/toml"].is_object() && put["application/json"].is_object(),
        "{put}"
    );
    let table = &document["components"]["schemas"]["StreamTable"]["properties"];
    for key in [
        "source",
        "sdp",
        "transport",
        "bearer_token",
        "rtsp_password",
    ] {
        assert!(table[key].is_object(), "StreamTable lacks {key}: {table}");
    }
    whep_is_documented(&document);
}

/// The WHEP operations' status codes, content types and headers (RFC 9725).
fn whep_is_documented(document: &Value) {
    let operation = |path: &str, method: &str| {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} not documented");
        operation.clone()
    };
    let statuses = |operation: &Value| {
        let mut codes: Vec<String> = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect();
        codes.sort();
        codes
    };
    let post = operation("/whep/{name}", "post");
    assert_eq!(
        statuses(&post),
        ["201", "400", "401", "404", "413", "415", "503"]
    );
    assert!(
        post["requestBody"]["content"]["application/sdp"].is_object(),
        "{post}"
    );
    let created = &post["responses"]["201"];
    assert!(
        created["content"]["application/sdp"].is_object(),
        "{created}"
    );
    for header in ["Location", "ETag", "Accept-Patch"] {
        assert!(created["headers"][header].is_object(), "201 lacks {header}");
    }
    assert!(
        post["responses"]["503"]["headers"]["Retry-After"].is_object(),
        "{post}"
    );
    let patch = operation("/whep/{name}/{id}", "patch");
    assert_eq!(
        statuses(&patch),
        ["200", "204", "400", "404", "412", "415", "428"]
    );
    assert!(
        patch["requestBody"]["content"]["application/trickle-ice-sdpfrag"].is_object(),
        "{patch}"
    );
    let if_match = patch["parameters"].as_array().expect("parameters");
    assert!(
        if_match
            .iter()
            .any(|p| p["name"] == "If-Match" && p["in"] == "header"),
        "{patch}"
    );
    assert!(patch["responses"]["200"]["headers"]["ETag"].is_object());
    assert_eq!(
        statuses(&operation("/whep/{name}/{id}", "delete")),
        ["200", "404"]
    );
    let options = operation("/whep/{name}", "options");
    assert!(options["responses"]["204"]["headers"]["Accept-Post"].is_object());
    let player = operation("/whep/{name}", "get");
    assert!(player["responses"]["200"]["content"]["text/html"].is_object());
}

/// Value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in:\n{text}"))
}

#[tokio::test]
async fn metrics_count_per_stream_and_process() {
    let (app, streams) = gateway("[streams.demo]\nsource = \"demo\"\n");
    let hub = streams.read().get("demo").expect("demo").hub.clone();
    let _reader = hub.subscribe();
    let first = get(&app, "/metrics").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.headers[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(first.body.ends_with("\n# EOF\n"), "{}", first.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = get(&app, "/metrics").await.body;
    for counter in [
        "streamgate_stream_packets_total",
        "streamgate_stream_bytes_total",
        "streamgate_stream_frames_total",
    ] {
        let key = format!("{counter}{{stream=\"demo\"}}");
        assert!(
            sample(&second, &key) > sample(&first.body, &key),
            "{counter} did not move"
        );
    }
    assert_eq!(
        sample(&second, "streamgate_stream_readers{stream=\"demo\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &second,
            "streamgate_source_up{stream=\"demo\",state=\"running\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &second,
            "streamgate_source_reconnects_total{stream=\"demo\"}"
        ),
        0.0
    );
    // No RTSP server in this app: the per-protocol series are there, at zero.
    for key in [
        "streamgate_output_packets_total{stream=\"demo\",protocol=\"rtsp\"}",
        "streamgate_readers{stream=\"demo\",protocol=\"rtsp\"}",
        "streamgate_readers{stream=\"demo\",protocol=\"hls\"}",
    ] {
        assert_eq!(sample(&second, key), 0.0, "{key}");
    }
    assert!(sample(&second, "process_resident_memory_bytes") > 1e6);
    assert!(sample(&second, "process_open_fds") > 0.0);
    sample(&second, "process_cpu_seconds_total");
    for line in second.lines().filter(|l| l.starts_with("# TYPE")) {
        assert!(
            line.ends_with(" counter") || line.ends_with(" gauge"),
            "{line}"
        );
    }
    // Every family with its type and help; a counter's family name is its
    // samples' name without `_total` (OpenMetrics), so the series keep their names.
    let families = [
        ("streamgate_stream_frames", "counter", "Frames (access units) the source published."),
        ("streamgate_stream_packets", "counter", "RTP packets the source published."),
        ("streamgate_stream_bytes", "counter", "Payload bytes the source published."),
        ("streamgate_stream_drops", "counter", "Frames skipped for slow readers, all readers together."),
        ("streamgate_stream_keyframe_requests", "counter", "Keyframe requests readers sent to the source."),
        ("streamgate_stream_readers", "gauge", "Readers of the stream now: RTSP sessions plus one per running HLS muxer."),
        ("streamgate_output_packets", "counter", "RTP and RTCP packets sent to the stream's readers, by output protocol (RTSP only: HLS answers files)."),
        ("streamgate_output_bytes", "counter", "Bytes sent to the stream's readers, by output protocol (HLS: playlists and media answered)."),
        ("streamgate_readers", "gauge", "Readers of the stream now, by output protocol (RTSP: playing sessions; HLS: viewers of the last 10 s)."),
        ("streamgate_hls_viewers", "gauge", "Client addresses that fetched the stream's HLS playlists or media in the last 10 s."),
        ("streamgate_rtsp_refused", "counter", "RTSP input refused by the server's limits, by reason: lying lengths, slow requests, frames on channels never set up, connections over the caps."),
        ("streamgate_publish_dropped_packets", "counter", "Packets from RTSP publishers dropped, by reason: bad (does not parse or fit the announced tracks, or before RECORD), foreign (UDP from another address than the publisher's), overflow (UDP faster than the stream takes it)."),
        ("streamgate_source_reconnects", "counter", "Times the source connected again after its first session."),
        ("streamgate_ring_events", "counter", "Ring webhook events stored (duplicates and stale deliveries not counted), by event type and device (empty for account events)."),
        ("streamgate_source_up", "gauge", "1 while the source runs, 0 while it has failed; `state` is the source client's own state."),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
        ("process_cpu_seconds", "counter", "User and system CPU time spent in seconds."),
        ("process_open_fds", "gauge", "Number of open file descriptors."),
    ];
    for (family, kind, help) in families {
        let header = format!("# HELP {family} {help}\n# TYPE {family} {kind}\n");
        assert!(second.contains(&header), "no {header:?} in:\n{second}");
    }
    assert_eq!(
        second.lines().filter(|l| l.starts_with("# TYPE")).count(),
        families.len(),
        "{second}"
    );
    // Read from the Hub (an unread reader may have dropped frames by now).
    for key in [
        "streamgate_stream_drops_total{stream=\"demo\"}",
        "streamgate_stream_keyframe_requests_total{stream=\"demo\"}",
    ] {
        assert!(sample(&second, key) >= 0.0, "{key}");
    }
    for key in [
        "streamgate_output_bytes_total{stream=\"demo\",protocol=\"rtsp\"}",
        "streamgate_output_bytes_total{stream=\"demo\",protocol=\"hls\"}",
        "streamgate_hls_viewers{stream=\"demo\"}",
    ] {
        assert_eq!(sample(&second, key), 0.0, "{key}");
    }
}
