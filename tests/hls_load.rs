//! Bounded memory: 20 low-latency viewers (blocking playlist reloads + every new
//! part, like hls.js) on one stream for 45 s share one muxer, and the
//! gateway's RSS stays within a bound derived from the HLS byte cap.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{get, hint_parts, Gateway};

const VIEWERS: usize = 20;
/// Three times the muxer's window (7 segments of 2 s): past the point where it is full.
const RUN: Duration = Duration::from_secs(45);
const MAX_BYTES: usize = 8 << 20;

/// One viewer: follows the preload hint with blocking reloads and downloads each part.
fn viewer(port: u16, stop: &AtomicBool, parts: &AtomicU64, errors: &AtomicU64) {
    let mut hint: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let path = match &hint {
            Some(uri) => {
                let (msn, part) = hint_parts(uri);
                format!("/hls/demo/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}")
            }
            None => "/hls/demo/stream.m3u8".to_owned(),
        };
        let playlist = get(port, &path);
        if playlist.status != 200 {
            errors.fetch_add(1, Ordering::Relaxed);
            hint = None;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let text = playlist.text();
        if let Some(uri) = &hint {
            if text.contains(&format!("URI=\"{uri}\"")) {
                let part = get(port, &format!("/hls/demo/{uri}"));
                if part.status == 200 {
                    parts.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        hint = text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
            .map(|u| u.trim_end_matches('"').to_owned());
    }
}

#[test]
fn twenty_viewers_for_45_s_stay_within_the_byte_cap() {
    let gateway = Gateway::hls(&format!("max_bytes = {MAX_BYTES}"));
    gateway.wait_ok("/hls/demo/stream.m3u8");
    let rss_before = gateway.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let parts = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let port = gateway.http_port;
    let started = Instant::now();
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|_| {
            let (stop, parts, errors) = (stop.clone(), parts.clone(), errors.clone());
            std::thread::spawn(move || viewer(port, &stop, &parts, &errors))
        })
        .collect();
    let mut rss_peak = rss_before;
    while started.elapsed() < RUN {
        std::thread::sleep(Duration::from_secs(5));
        rss_peak = rss_peak.max(gateway.rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    for viewer in viewers {
        viewer.join().unwrap();
    }
    let rss_after = gateway.rss_kib();
    let parts = parts.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "{VIEWERS} viewers x {:?}: {parts} parts fetched, {errors} errors; gateway RSS before {rss_before} KiB, peak {rss_peak} KiB, after {rss_after} KiB",
        RUN
    );
    // The viewers really played: each followed the live edge part by part.
    assert!(
        parts >= (VIEWERS as u64) * 10,
        "viewers fetched only {parts} parts ({errors} errors)\n{}",
        gateway.log()
    );
    // Generous bound: the muxer holds at most MAX_BYTES; allow 4x that for allocator slack and in-flight responses.
    let bound_kib = rss_before + (4 * MAX_BYTES as u64) / 1024;
    assert!(
        rss_peak <= bound_kib,
        "RSS grew to {rss_peak} KiB (bound {bound_kib} KiB)"
    );
}
