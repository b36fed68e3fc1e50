//! LL-HLS conformance of the gateway's playlists (RFC 8216bis), checked with
//! `m3u8-rs` over a chain of blocking reloads of the demo stream, plus the HTTP
//! contract (content types, caching, CORS, 404, blocking-reload ordering).

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use m3u8_rs::{MediaPlaylist, Playlist};
use support::{get, hint_parts, Gateway};

/// `KEY=VALUE,...` attributes of a tag (quoted values unquoted).
fn attributes(rest: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = rest;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            (&quoted[..end], quoted[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.insert(key.to_owned(), value.to_owned());
        rest = next;
    }
    out
}

fn tag_values<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    text.lines().filter_map(|l| l.strip_prefix(tag)).collect()
}

fn parse_media(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist ({other:?}):\n{text}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct SeenSegment {
    duration: f32,
    pdt_ms: i64,
    discontinuity: bool,
}

/// Checks one playlist on its own; returns its (msn → segment) view and the preload hint.
fn check_playlist(text: &str) -> (BTreeMap<u64, SeenSegment>, String) {
    let playlist = parse_media(text);
    let target = playlist.target_duration as f32;
    assert!(!playlist.segments.is_empty(), "{text}");

    let server_control = attributes(tag_values(text, "#EXT-X-SERVER-CONTROL:")[0]);
    assert_eq!(server_control["CAN-BLOCK-RELOAD"], "YES");
    let part_target: f64 = attributes(tag_values(text, "#EXT-X-PART-INF:")[0])["PART-TARGET"]
        .parse()
        .unwrap();
    let hold_back: f64 = server_control["PART-HOLD-BACK"].parse().unwrap();
    assert!(
        hold_back >= 3.0 * part_target - 1e-9,
        "PART-HOLD-BACK {hold_back} < 3 x {part_target}"
    );

    for part in tag_values(text, "#EXT-X-PART:") {
        let duration: f64 = attributes(part)["DURATION"].parse().unwrap();
        // Durations are written with 5 decimals.
        assert!(
            duration <= part_target + 1e-5,
            "part {part} longer than PART-TARGET {part_target}"
        );
        assert!(duration > 0.0);
    }
    let hints = tag_values(text, "#EXT-X-PRELOAD-HINT:");
    assert_eq!(hints.len(), 1, "{text}");
    let hint = attributes(hints[0]);
    assert_eq!(hint["TYPE"], "PART");

    let mut seen = BTreeMap::new();
    for (i, segment) in playlist.segments.iter().enumerate() {
        let msn = playlist.media_sequence + i as u64;
        assert_eq!(
            segment.uri,
            format!("seg_{msn}.m4s"),
            "segments are numbered by media sequence"
        );
        // RFC 8216bis 4.4.3.1: each EXTINF, rounded to the nearest integer, is at most the target.
        assert!(
            segment.duration.round() <= target,
            "segment {msn}: EXTINF {} > target {target}",
            segment.duration
        );
        let pdt = segment
            .program_date_time
            .unwrap_or_else(|| panic!("segment {msn} has no PROGRAM-DATE-TIME"));
        seen.insert(
            msn,
            SeenSegment {
                duration: segment.duration,
                pdt_ms: pdt.timestamp_millis(),
                discontinuity: segment.discontinuity,
            },
        );
        // Listed parts of a finished segment add up to its duration.
        let parts: Vec<f64> = segment
            .unknown_tags
            .iter()
            .filter(|t| t.tag == "X-PART")
            .map(|t| {
                attributes(t.rest.as_deref().unwrap())["DURATION"]
                    .parse()
                    .unwrap()
            })
            .collect();
        if !parts.is_empty() {
            let sum: f64 = parts.iter().sum();
            assert!(
                (sum - segment.duration as f64).abs() < 1e-3,
                "segment {msn}: parts {sum} vs EXTINF {}",
                segment.duration
            );
        }
    }
    // Program-date-time runs on with the media except across a discontinuity.
    let list: Vec<(&u64, &SeenSegment)> = seen.iter().collect();
    for pair in list.windows(2) {
        let ((msn, a), (_, b)) = (pair[0], pair[1]);
        if !b.discontinuity {
            let expected = a.pdt_ms + (a.duration as f64 * 1000.0).round() as i64;
            assert!(
                (b.pdt_ms - expected).abs() <= 2,
                "PDT jumps after segment {msn}: {} vs {expected}",
                b.pdt_ms
            );
        }
    }
    (seen, hint["URI"].clone())
}

fn hint_position(uri: &str) -> (u64, usize) {
    let (msn, part) = hint_parts(uri);
    (msn.parse().unwrap(), part.parse().unwrap())
}

/// Reads the `avcC` profile bytes out of the init segment.
fn avc_profile_in_init(init: &[u8]) -> String {
    let at = init
        .windows(4)
        .position(|w| w == b"avcC")
        .expect("init segment has an avcC box");
    format!(
        "avc1.{:02x}{:02x}{:02x}",
        init[at + 5],
        init[at + 6],
        init[at + 7]
    )
}

#[test]
fn playlists_conform_over_blocking_reloads() {
    let gateway = Gateway::hls("");
    let multivariant = gateway.wait_ok("/hls/demo/index.m3u8");
    assert_eq!(
        multivariant.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(multivariant.header("cache-control"), Some("no-cache"));
    assert_eq!(
        multivariant.header("access-control-allow-origin"),
        Some("*")
    );
    let Ok(Playlist::MasterPlaylist(master)) = m3u8_rs::parse_playlist_res(&multivariant.body)
    else {
        panic!("not a multivariant playlist: {}", multivariant.text())
    };
    let codecs = master.variants[0].codecs.clone().expect("CODECS");
    let media_uri = format!("/hls/demo/{}", master.variants[0].uri);

    // CODECS matches the init segment's sample entries.
    let first = get(gateway.http_port, &media_uri);
    let text = first.text();
    let map = attributes(tag_values(&text, "#EXT-X-MAP:")[0])["URI"].clone();
    let init = get(gateway.http_port, &format!("/hls/demo/{map}"));
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), Some("video/mp4"));
    let video_codec = codecs.split(',').next().unwrap();
    assert_eq!(
        video_codec,
        avc_profile_in_init(&init.body),
        "CODECS {codecs}"
    );
    assert!(codecs.contains("mp4a.40.2"), "{codecs}");
    assert!(
        init.body.windows(4).any(|w| w == b"esds"),
        "AAC declared but no esds in init"
    );

    // Follow the live edge with blocking reloads for 15 s.
    let mut history: BTreeMap<u64, SeenSegment> = BTreeMap::new();
    let (mut seen, mut hint) = check_playlist(&text);
    let mut last_sequence = *seen.keys().next().unwrap();
    let mut waits = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        for (msn, segment) in &seen {
            if let Some(before) = history.insert(*msn, segment.clone()) {
                assert_eq!(&before, segment, "segment {msn} changed between reloads");
            }
        }
        let (msn, part) = hint_position(&hint);
        let asked = Instant::now();
        let reply = get(
            gateway.http_port,
            &format!("{media_uri}?_HLS_msn={msn}&_HLS_part={part}"),
        );
        waits.push(asked.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
        let text = reply.text();
        // Ordering: the reply already lists the part asked for (or its finished segment).
        assert!(
            text.contains(&format!("URI=\"{hint}\"")) || text.contains(&format!("seg_{msn}.m4s")),
            "blocking reload for {hint} returned without it:\n{text}"
        );
        (seen, hint) = check_playlist(&text);
        let sequence = *seen.keys().next().unwrap();
        assert!(
            sequence >= last_sequence,
            "media sequence went back: {sequence} < {last_sequence}"
        );
        last_sequence = sequence;
    }
    waits.sort();
    println!(
        "blocking reloads: {} answered; wait median {:?}, max {:?}",
        waits.len(),
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );

    // The demo capture loops every ~10 s with continuous timestamps and the same
    // picture format: its timeline never really breaks, so nothing is marked.
    let marked: Vec<u64> = history
        .iter()
        .filter(|(_, s)| s.discontinuity)
        .map(|(m, _)| *m)
        .collect();
    assert!(
        marked.is_empty(),
        "discontinuities marked at {marked:?} though the demo's timeline never breaks"
    );
    println!("segments seen: {}", history.len());

    // Media responses: types and caching.
    let (last_msn, _) = history.iter().next_back().unwrap();
    let segment = get(gateway.http_port, &format!("/hls/demo/seg_{last_msn}.m4s"));
    assert_eq!(segment.status, 200);
    assert_eq!(segment.header("content-type"), Some("video/iso.segment"));
    assert!(segment.header("cache-control").unwrap().contains("max-age"));
    assert_eq!(&segment.body[4..8], b"moof");
    let part = get(gateway.http_port, &format!("/hls/demo/{hint}"));
    assert_eq!(part.status, 200, "hinted part {hint} is served once made");
    assert_eq!(&part.body[4..8], b"moof");
}

#[test]
fn http_errors_are_clear() {
    let gateway = Gateway::hls("");
    let unknown = get(gateway.http_port, "/hls/nosuchstream/index.m3u8");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("access-control-allow-origin"), Some("*"));
    gateway.wait_ok("/hls/demo/stream.m3u8");
    assert_eq!(
        get(gateway.http_port, "/hls/demo/stream.m3u8?_HLS_part=1").status,
        400
    );
    assert_eq!(
        get(gateway.http_port, "/hls/demo/stream.m3u8?_HLS_msn=abc").status,
        400
    );
    assert_eq!(
        get(
            gateway.http_port,
            "/hls/demo/stream.m3u8?_HLS_msn=99999999999"
        )
        .status,
        400
    );
    assert_eq!(get(gateway.http_port, "/hls/demo/seg_1.m4s").status, 404);
    assert_eq!(
        get(gateway.http_port, "/hls/demo/../../etc/passwd").status,
        404
    );
    let page = get(gateway.http_port, "/hls/demo/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("src=\"hls.min.js\""));
    let script = get(gateway.http_port, "/hls/demo/hls.min.js");
    assert_eq!(script.status, 200);
    assert!(script.body.len() > 100_000);
    assert_eq!(
        get(gateway.http_port, "/hls/demo/hls.js.LICENSE").status,
        200
    );
}
