//! `GET /metrics`: Prometheus text exposition (format 0.0.4), written by hand from
//! the registry on each scrape. The figures already live in the Hubs and source
//! statuses, so a metrics crate's own registry would only duplicate them.
//!
//! Per stream: the Hub's ingest counters (frames, packets, bytes), drops and
//! readers, the source's state and reconnects; per stream and output protocol:
//! readers and bytes sent, and packets sent over RTSP (HLS answers files, not
//! packets). Per process: resident memory,
//! CPU seconds and open file descriptors from `/proc/self`.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use streamgate_pipeline::HubStats;
use streamgate_rtsp::server::OutputTotals;

use crate::api::{AppState, SourceReport};

/// Linux's USER_HZ: the unit of `/proc/self/stat`'s CPU times (fixed at 100 by the kernel ABI).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
}

/// One metric family: its header, then one sample per stream.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

/// A per-stream counter read from the Hub's stats.
struct HubCounter {
    name: &'static str,
    help: &'static str,
    value: fn(&HubStats) -> u64,
}

const HUB_COUNTERS: [HubCounter; 5] = [
    HubCounter {
        name: "streamgate_stream_frames_total",
        help: "Frames (access units) the source published.",
        value: |s| s.frames,
    },
    HubCounter {
        name: "streamgate_stream_packets_total",
        help: "RTP packets the source published.",
        value: |s| s.packets,
    },
    HubCounter {
        name: "streamgate_stream_bytes_total",
        help: "Payload bytes the source published.",
        value: |s| s.bytes,
    },
    HubCounter {
        name: "streamgate_stream_drops_total",
        help: "Frames skipped for slow readers, all readers together.",
        value: |s| s.drops,
    },
    HubCounter {
        name: "streamgate_stream_keyframe_requests_total",
        help: "Keyframe requests readers sent to the source.",
        value: |s| s.keyframe_requests,
    },
];

/// The whole exposition text.
pub fn render(state: &AppState) -> String {
    let streams = state.read();
    let rows: Vec<(String, HubStats, SourceReport)> = streams
        .iter()
        .map(|(name, stream)| {
            (
                name.to_string(),
                stream.hub.stats(),
                SourceReport::of(stream),
            )
        })
        .collect();
    drop(streams);

    let mut out = String::new();
    for counter in &HUB_COUNTERS {
        let family = Family {
            name: counter.name,
            kind: "counter",
            help: counter.help,
        };
        header(&mut out, &family);
        for (name, stats, _) in &rows {
            sample(
                &mut out,
                family.name,
                &[("stream", name)],
                (counter.value)(stats),
            );
        }
    }

    let readers = Family {
        name: "streamgate_stream_readers",
        kind: "gauge",
        help: "Readers of the stream now: RTSP sessions plus one per running HLS muxer.",
    };
    header(&mut out, &readers);
    for (name, stats, _) in &rows {
        sample(
            &mut out,
            readers.name,
            &[("stream", name)],
            stats.subscribers as u64,
        );
    }

    // Per stream: what its RTSP readers were sent, and the HLS bytes answered.
    let outputs: Vec<(&str, OutputTotals, u64)> = rows
        .iter()
        .map(|(name, _, _)| {
            let rtsp = state.rtsp_readers.totals(name);
            (name.as_str(), rtsp, state.hls_viewers.bytes(name))
        })
        .collect();
    let output_packets = Family {
        name: "streamgate_output_packets_total",
        kind: "counter",
        help: "RTP and RTCP packets sent to the stream's readers, by output protocol (RTSP only: HLS answers files).",
    };
    header(&mut out, &output_packets);
    for (name, rtsp, _) in &outputs {
        let labels = [("stream", *name), ("protocol", "rtsp")];
        sample(&mut out, output_packets.name, &labels, rtsp.packets);
    }
    let output_bytes = Family {
        name: "streamgate_output_bytes_total",
        kind: "counter",
        help: "Bytes sent to the stream's readers, by output protocol (HLS: playlists and media answered).",
    };
    header(&mut out, &output_bytes);
    for (name, rtsp, hls) in &outputs {
        let labels = [("stream", *name), ("protocol", "rtsp")];
        sample(&mut out, output_bytes.name, &labels, rtsp.bytes);
        let labels = [("stream", *name), ("protocol", "hls")];
        sample(&mut out, output_bytes.name, &labels, hls);
    }

    let protocol_readers = Family {
        name: "streamgate_readers",
        kind: "gauge",
        help: "Readers of the stream now, by output protocol (RTSP: playing sessions; HLS: viewers of the last 10 s).",
    };
    header(&mut out, &protocol_readers);
    for (name, _, _) in &rows {
        let rtsp = state.rtsp_readers.list(Some(name)).len();
        sample(
            &mut out,
            protocol_readers.name,
            &[("stream", name), ("protocol", "rtsp")],
            rtsp,
        );
        let hls = state.hls_viewers.of(name).len();
        sample(
            &mut out,
            protocol_readers.name,
            &[("stream", name), ("protocol", "hls")],
            hls,
        );
    }

    let hls_viewers = Family {
        name: "streamgate_hls_viewers",
        kind: "gauge",
        help: "Client addresses that fetched the stream's HLS playlists or media in the last 10 s.",
    };
    header(&mut out, &hls_viewers);
    for (name, _, _) in &rows {
        let viewers = state.hls_viewers.of(name).len();
        sample(&mut out, hls_viewers.name, &[("stream", name)], viewers);
    }

    let reconnects = Family {
        name: "streamgate_source_reconnects_total",
        kind: "counter",
        help: "Times the source connected again after its first session.",
    };
    header(&mut out, &reconnects);
    for (name, _, report) in &rows {
        sample(
            &mut out,
            reconnects.name,
            &[("stream", name)],
            report.reconnects,
        );
    }

    let up = Family {
        name: "streamgate_source_up",
        kind: "gauge",
        help: "1 while the source runs, 0 while it has failed; `state` is the source client's own state.",
    };
    header(&mut out, &up);
    for (name, _, report) in &rows {
        let value = u64::from(report.state == "running");
        sample(
            &mut out,
            up.name,
            &[("stream", name), ("state", &report.source_state)],
            value,
        );
    }

    process_metrics(&mut out);
    out
}

fn header(out: &mut String, family: &Family) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
}

/// Label values escape `\`, `"` and newlines (the exposition format's rule).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// RSS, CPU seconds and open fds from `/proc/self` (absent off Linux).
fn process_metrics(out: &mut String) {
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| resident_bytes(&status))
    {
        let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}");
    }
    if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_seconds(&stat))
    {
        let _ = writeln!(out, "# HELP process_cpu_seconds_total User and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(out, "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}", fds.count());
    }
}

/// `VmRSS:   1234 kB` in `/proc/self/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// utime + stime (fields 14 and 15) of `/proc/self/stat`, in seconds. The command
/// name (field 2) may hold spaces, so fields are counted after its closing `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / CLOCK_TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_parse() {
        assert_eq!(
            resident_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        let stat = "42 (a) b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
