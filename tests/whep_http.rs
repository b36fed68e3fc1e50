//! The WHEP endpoint's HTTP contract against the binary: status codes for bad
//! input, CORS, auth, and the session URL's PATCH (trickle) and DELETE. The
//! offer is a recorded browser-shaped SDP (tests/peers/whep_offer_h264.sdp):
//! these tests check signalling, the browser tests check media.

use crate::support;

use std::time::Duration;

use support::{repo_path, request, Gateway, Response};

fn offer() -> String {
    std::fs::read_to_string(repo_path("tests/peers/whep_offer_h264.sdp")).unwrap()
}

fn call(
    gateway: &Gateway,
    method: &str,
    path: &str,
    headers: &str,
    body: Option<&str>,
) -> Response {
    request(
        gateway.http_port,
        method,
        path,
        body,
        headers,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|| panic!("{method} {path}: no answer\n{}", gateway.log()))
}

const SDP: &str = "Content-Type: application/sdp\r\n";

#[test]
fn bad_offers_get_their_codes() {
    let mut gateway = Gateway::demo("", "");
    let wrong_type = call(
        &gateway,
        "POST",
        "/whep/demo",
        "Content-Type: text/plain\r\n",
        Some(&offer()),
    );
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text());
    let unknown = call(&gateway, "POST", "/whep/nope", SDP, Some(&offer()));
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    for bad in [
        "hello",
        "v=0\r\nm=video\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    ] {
        let response = call(&gateway, "POST", "/whep/demo", SDP, Some(bad));
        assert_eq!(response.status, 400, "{bad:?}: {}", response.text());
    }
    let huge = format!("{}a=x:{}\r\n", offer(), "y".repeat(100 * 1024));
    let oversized = call(&gateway, "POST", "/whep/demo", SDP, Some(&huge));
    assert_eq!(oversized.status, 413, "{}", oversized.text());
    assert!(
        gateway.is_running(),
        "the gateway survived:\n{}",
        gateway.log()
    );
}

#[test]
fn options_answers_cors_with_accept_post() {
    let gateway = Gateway::demo("", "");
    let response = call(
        &gateway,
        "OPTIONS",
        "/whep/demo",
        "Origin: http://example.com\r\n",
        None,
    );
    assert_eq!(response.status, 204);
    assert_eq!(response.header("accept-post"), Some("application/sdp"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let exposed = response
        .header("access-control-expose-headers")
        .unwrap_or("");
    assert!(
        exposed.contains("Location") && exposed.contains("ETag"),
        "{exposed}"
    );
}

#[test]
fn over_capacity_is_503_with_retry_after() {
    let gateway = Gateway::demo("", "[webrtc]\nlisten = \"127.0.0.1:0\"\nmax_viewers = 0\n");
    let response = call(&gateway, "POST", "/whep/demo", SDP, Some(&offer()));
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(response.header("retry-after").is_some());
}

#[test]
fn bearer_is_the_api_token_or_the_streams_viewer_token() {
    let gateway = Gateway::start_with_env(
        "[streams.demo]\nsource = \"demo\"\nviewer_token = \"viewer-secret\"\n",
        &[("STREAMGATE_API_TOKEN", "api-secret")],
    );
    let no_token = call(&gateway, "POST", "/whep/demo", SDP, Some(&offer()));
    assert_eq!(no_token.status, 401, "{}", no_token.text());
    let wrong = call(
        &gateway,
        "POST",
        "/whep/demo",
        &format!("{SDP}Authorization: Bearer nope\r\n"),
        Some(&offer()),
    );
    assert_eq!(wrong.status, 401);
    let right = call(
        &gateway,
        "POST",
        "/whep/demo",
        &format!("{SDP}Authorization: Bearer viewer-secret\r\n"),
        Some(&offer()),
    );
    assert_eq!(right.status, 201, "{}", right.text());
    let api = call(
        &gateway,
        "POST",
        "/whep/demo",
        &format!("{SDP}Authorization: Bearer api-secret\r\n"),
        Some(&offer()),
    );
    assert_eq!(api.status, 201, "{}", api.text());
    let log = gateway.log();
    assert!(
        !log.contains("viewer-secret") && !log.contains("api-secret"),
        "a token was logged"
    );
}

#[test]
fn patch_trickles_with_if_match_and_delete_ends_the_session() {
    let gateway = Gateway::demo("", "");
    let created = call(&gateway, "POST", "/whep/demo", SDP, Some(&offer()));
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.text().contains("a=ice-lite"), "{}", created.text());
    assert!(
        created.text().contains("packetization-mode=1"),
        "{}",
        created.text()
    );
    let location = created.header("location").unwrap().to_owned();
    let etag = created.header("etag").unwrap().to_owned();
    let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n";
    let trickle = "Content-Type: application/trickle-ice-sdpfrag\r\n";

    let no_if_match = call(&gateway, "PATCH", &location, trickle, Some(frag));
    assert_eq!(no_if_match.status, 428, "{}", no_if_match.text());
    let stale = call(
        &gateway,
        "PATCH",
        &location,
        &format!("{trickle}If-Match: \"stale\"\r\n"),
        Some(frag),
    );
    assert_eq!(stale.status, 412, "{}", stale.text());
    let wrong_type = call(
        &gateway,
        "PATCH",
        &location,
        &format!("{SDP}If-Match: {etag}\r\n"),
        Some(frag),
    );
    assert_eq!(wrong_type.status, 415);
    let ok = call(
        &gateway,
        "PATCH",
        &location,
        &format!("{trickle}If-Match: {etag}\r\n"),
        Some(frag),
    );
    assert_eq!(ok.status, 204, "{}", ok.text());

    // ICE restart: `If-Match: *` with new credentials gets ours (new too) and a new ETag.
    let restart_frag = "a=ice-ufrag:efgh\r\na=ice-pwd:zyxwvutsrqponmlkjihgfedc\r\n";
    let restarted = call(
        &gateway,
        "PATCH",
        &location,
        &format!("{trickle}If-Match: *\r\n"),
        Some(restart_frag),
    );
    assert_eq!(restarted.status, 200, "{}", restarted.text());
    let ufrag = |sdp: &str| {
        sdp.lines()
            .find(|l| l.starts_with("a=ice-ufrag:"))
            .map(str::to_owned)
    };
    let new_ufrag = ufrag(&restarted.text());
    assert!(
        new_ufrag.is_some() && new_ufrag != ufrag(&created.text()),
        "{}",
        restarted.text()
    );
    assert!(
        restarted.text().contains("a=candidate:"),
        "{}",
        restarted.text()
    );
    let new_etag = restarted.header("etag").unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let old = call(
        &gateway,
        "PATCH",
        &location,
        &format!("{trickle}If-Match: {etag}\r\n"),
        Some(frag),
    );
    assert_eq!(old.status, 412, "the ETag before the restart");
    let new = call(
        &gateway,
        "PATCH",
        &location,
        &format!("{trickle}If-Match: {new_etag}\r\n"),
        Some(frag),
    );
    assert_eq!(new.status, 204, "{}", new.text());

    let other = format!("/whep/demo/{}", "0".repeat(32));
    assert_eq!(call(&gateway, "DELETE", &other, "", None).status, 404);
    assert_eq!(call(&gateway, "DELETE", &location, "", None).status, 200);
    assert_eq!(call(&gateway, "DELETE", &location, "", None).status, 404);
    let gone = call(
        &gateway,
        "PATCH",
        &location,
        &format!("{trickle}If-Match: {etag}\r\n"),
        Some(frag),
    );
    assert_eq!(gone.status, 404);
}

/// A stream removed through the API ends its WHEP sessions.
#[test]
fn removing_the_stream_ends_its_sessions() {
    let gateway = Gateway::demo("", "");
    let created = call(&gateway, "POST", "/whep/demo", SDP, Some(&offer()));
    assert_eq!(created.status, 201, "{}", created.text());
    let location = created.header("location").unwrap().to_owned();
    assert_eq!(
        call(&gateway, "DELETE", "/api/streams/demo", "", None).status,
        204
    );
    gateway.wait_for(
        || call(&gateway, "DELETE", &location, "", None).status == 404,
        "the session ended with its stream",
    );
}
