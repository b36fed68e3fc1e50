//! SIGHUP reloads the config's streams in the running binary: an added stream
//! becomes readable, a removed one disappears, a changed one restarts (its reader
//! is ended), and an unchanged stream's ffmpeg reader keeps decoding without a break.

use crate::support;

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use support::{fixture, start_reader, Gateway, DEADLINE};

/// Waits until the reader's frame count passes `at_least`; returns the count.
fn frames_past(frames: &Receiver<u64>, at_least: u64, gateway: &Gateway) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    let mut decoded = 0;
    while decoded <= at_least {
        let left = deadline.saturating_duration_since(Instant::now());
        decoded = frames.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "reader stopped at {decoded} frames (wanted > {at_least}); log:\n{}",
                gateway.log()
            )
        });
    }
    decoded
}

/// The reader's newest frame count (drains the reports so far).
fn latest(frames: &Receiver<u64>, gateway: &Gateway) -> u64 {
    let newest = frames.try_iter().last();
    newest.unwrap_or_else(|| frames_past(frames, 0, gateway))
}

#[test]
fn sighup_adds_removes_and_changes_streams_without_touching_unchanged_ones() {
    let pcap = fixture("ffmpeg_h264_aac.pcap");
    let keep = "[streams.keep]\nsource = \"demo\"\n";
    let gateway = Gateway::start(&format!(
        "{keep}[streams.gone]\nsource = \"demo\"\n[streams.changing]\nsource = \"demo\"\n"
    ));
    let url = |name: &str| format!("rtsp://127.0.0.1:{}/{name}", gateway.rtsp_port);
    let (mut keep_reader, keep_frames) = start_reader(&url("keep"));
    let (mut changing_reader, changing_frames) = start_reader(&url("changing"));
    frames_past(&keep_frames, 25, &gateway);
    frames_past(&changing_frames, 25, &gateway);

    gateway.reload(&format!(
        "{keep}[streams.changing]\nsource = \"pcap:{pcap}\"\n[streams.added]\nsource = \"pcap:{pcap}\"\n"
    ));
    gateway.wait_for(
        || gateway.request("GET", "/api/streams/added", None).0 == 200,
        "the added stream in the API",
    );
    assert_eq!(gateway.request("GET", "/api/streams/gone", None).0, 404);
    let (_, changing) = gateway.request("GET", "/api/streams/changing", None);
    assert!(changing.contains("\"source\":\"pcap:"), "{changing}");
    let log = gateway.log();
    assert!(
        log.contains("streams reloaded")
            && log.contains("added=[\"added\"]")
            && log.contains("changed=[\"changing\"]")
            && log.contains("removed=[\"gone\"]")
            && log.contains("unchanged=[\"keep\"]"),
        "{log}"
    );

    // The changed stream's reader was ended by its restart.
    let deadline = Instant::now() + DEADLINE;
    while changing_reader.try_wait().expect("wait ffmpeg").is_none() {
        assert!(
            Instant::now() < deadline,
            "the changed stream's reader still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The unchanged stream's reader goes on: two more seconds of frames (25 fps), still one process.
    let now = latest(&keep_frames, &gateway);
    frames_past(&keep_frames, now + 50, &gateway);
    assert!(
        keep_reader.try_wait().expect("wait ffmpeg").is_none(),
        "the unchanged stream's reader exited"
    );

    // The added stream is readable.
    let (mut added_reader, added_frames) = start_reader(&url("added"));
    frames_past(&added_frames, 25, &gateway);

    // A bad file is refused as a whole: nothing changes.
    gateway.reload("[streams.keep]\nsource = \"nope\"\n");
    gateway.wait_for(
        || {
            gateway
                .log()
                .contains("reload failed, keeping the running streams")
        },
        "the refused reload in the log",
    );
    assert_eq!(gateway.request("GET", "/api/streams/added", None).0, 200);
    let now = latest(&keep_frames, &gateway);
    frames_past(&keep_frames, now + 25, &gateway);

    for reader in [&mut keep_reader, &mut added_reader] {
        let _ = reader.kill();
        let _ = reader.wait();
    }
}
