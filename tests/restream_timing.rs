//! End to end: timestamps of an RTSP restream stay on one line across source
//! restarts. The gateway pulls the aiortc WHEP server (sessions capped at 12 s, so
//! the source restarts several times, each time with new RTP timestamps and new
//! RTCP sender reports that it forwards to the ingest) and ffprobe reads the
//! restream packet by packet. ffmpeg re-bases every packet on the sender reports
//! it receives, so a jump in the outputs' NTP↔RTP mapping shows up here as a pts
//! that goes back or repeats.

use crate::support;
use crate::whep_common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::{peer, run, text, Gateway};
use whep_common::WhepServer;

/// Seconds of stream read: long enough for three session rotations.
const READ_SECONDS: u32 = 40;

#[test]
fn ffprobe_sees_strictly_increasing_pts_across_whep_session_restarts() {
    let server = WhepServer::start(&["--max-session", "12"]);
    let gateway = Gateway::demo(
        "",
        &format!(
            "[streams.cam]\nsource = \"whep://127.0.0.1:{}/whep/live\"\nwebrtc_bind = \"127.0.0.1\"\nmax_session = \"12s\"\n",
            server.port
        ),
    );
    let output = run(
        Command::new(peer("ffprobe"))
            .args(["-v", "error", "-rtsp_transport", "tcp"])
            .args(["-read_intervals", &format!("%+{READ_SECONDS}")])
            .args(["-show_entries", "packet=stream_index,pts", "-of", "csv=p=0"])
            .arg(gateway.rtsp_url("cam")),
        Duration::from_secs(u64::from(READ_SECONDS) + 60),
    );
    let log = gateway.log();
    assert!(
        output.status.success(),
        "ffprobe failed: {}\ngateway log:\n{log}",
        text(&output.stderr)
    );
    let sessions = server.count("event", "session-created");
    assert!(
        sessions >= 3,
        "{READ_SECONDS} s of 12 s sessions: {sessions} sessions"
    );
    assert!(
        log.contains("switched to the next WHEP session"),
        "the source restarted while being read:\n{log}"
    );

    let mut pts_by_stream: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
    for line in text(&output.stdout).lines() {
        let mut fields = line.split(',');
        let (Some(stream), Some(pts)) = (fields.next(), fields.next()) else {
            continue;
        };
        pts_by_stream
            .entry(stream.to_owned())
            .or_default()
            .push(pts.parse().ok());
    }
    assert_eq!(
        pts_by_stream.len(),
        2,
        "video and audio: {:?}",
        pts_by_stream.keys()
    );
    for (stream, pts) in &pts_by_stream {
        // ffmpeg's H.264 parser never times the first access unit it assembles from
        // RTP (libavcodec/parser.c: packets without a byte position), whatever the
        // server sends: that one packet alone may lack a pts.
        let timed = if stream == "0" { &pts[1..] } else { &pts[..] };
        assert!(timed.len() > 100, "stream {stream}: {} packets", pts.len());
        let missing = timed.iter().filter(|p| p.is_none()).count();
        assert_eq!(missing, 0, "stream {stream}: packets without pts");
        let timed: Vec<i64> = timed.iter().flatten().copied().collect();
        if let Some(at) = timed.windows(2).position(|w| w[1] <= w[0]) {
            let around = &timed[at.saturating_sub(3)..(at + 5).min(timed.len())];
            panic!(
                "stream {stream}: pts go back or repeat at packet {at}: {around:?}\ngateway log:\n{log}"
            );
        }
    }
}
