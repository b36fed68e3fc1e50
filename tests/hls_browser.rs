//! Headless Chromium (Debian's `chromium`, driven by playwright-core) plays the
//! gateway's player page with the bundled hls.js in low-latency mode.

use crate::support;

use support::player::{assert_played, list, number, play, report, start_player, Until};
use support::{fixture, sample, Gateway};

#[test]
fn chromium_plays_the_player_page_at_low_latency() {
    let gateway = Gateway::hls("");
    let report = play(&gateway.http_url("/hls/demo/"), 12);
    assert_played(&report, 10.0, &gateway);
    assert_eq!(number(&report, "videoWidth"), 1280.0);
    assert_eq!(number(&report, "videoHeight"), 720.0);

    // Reported, not asserted: timing belongs in benchmarks.
    let mut latencies: Vec<f64> = list(&report, "latencies")
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        println!("latency: hls.playingDate never set");
    } else {
        println!(
            "latency (wall clock - playhead PROGRAM-DATE-TIME): min {:.2} s, median {:.2} s, max {:.2} s over {} samples",
            latencies[0],
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1],
            latencies.len()
        );
    }
}

/// The stream is replaced through the API while Chromium plays it: hls.js goes on
/// across the discontinuity into the new source's segments, without a fatal error.
#[test]
fn chromium_keeps_playing_when_the_stream_is_replaced() {
    let source = |name: &str| format!("source = \"pcap:{}\"\n", fixture(name));
    let gateway = Gateway::hls_with(
        &format!("[streams.cam]\n{}", source("ffmpeg_h264_aac.pcap")),
        "",
    );
    gateway.wait_ok("/hls/cam/stream.m3u8");
    // 20 s played from hls.js's start, wherever that is: the new source's
    // segments come a few seconds after the replacement.
    let mut player = start_player(&gateway.http_url("/hls/cam/"), 20, Until::Played);
    // Replaced once the player has fetched media (a few parts' worth of bytes).
    // No deadline of our own: a busy machine can take a minute to start Chromium,
    // and the player stops by itself at its own timeout.
    let hls_bytes = "streamgate_output_bytes_total{stream=\"cam\",protocol=\"hls\"}";
    loop {
        let (_, metrics) = gateway.request("GET", "/metrics", None);
        let fetched = sample(&metrics, hls_bytes).is_some_and(|bytes| bytes > 500_000.0);
        if fetched || player.try_wait().expect("poll the player").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, body) = gateway.request(
        "PUT",
        "/api/streams/cam",
        Some(&source("ffmpeg_h264_opus.pcap")),
    );
    assert_eq!(status, 200, "PUT: {body}");
    let report = report(player);
    assert_played(&report, 20.0, &gateway);
    assert!(
        number(&report, "playedCc") >= 1.0,
        "no segment of the new source played: {report}\n{}",
        gateway.log()
    );
}
