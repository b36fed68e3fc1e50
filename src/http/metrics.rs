//! `GET /metrics`: the OpenMetrics text exposition (which Prometheus scrapes as
//! well as its own text format), encoded by `prometheus-client`. The figures
//! already live in the Hubs, the source reports and the outputs' reader records,
//! so collectors read them at scrape time instead of keeping copies in metric
//! objects.
//!
//! Per stream: the Hub's ingest counters (frames, packets, bytes), drops and
//! readers, the source's state and reconnects; per stream and output protocol:
//! readers and bytes sent, and packets sent over RTSP (HLS answers files, not
//! packets). Per Ring event type and device: webhook events stored. Per process: resident memory, CPU seconds and open file
//! descriptors from `/proc/self`.

use std::fmt::{self, Write};
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use streamgate_pipeline::HubStats;
use streamgate_rtsp::server::PublishStatus;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;
use crate::sources::SourceReport;

/// Linux's USER_HZ: the unit of `/proc/self/stat`'s CPU times (fixed at 100 by the kernel ABI).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The OpenMetrics text format's content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StreamCollector(state.clone())));
    registry.register_collector(Box::new(ProcessCollector));
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .layer(axum::Extension(Arc::new(registry)))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "metrics", security(()),
    responses((status = OK, description = "Metrics", content_type = "application/openmetrics-text")))]
async fn metrics(axum::Extension(registry): axum::Extension<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    // Writing to a String cannot fail; a collector's error would leave a partial text.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(%error, "encoding the metrics failed");
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// A label value escaped as the text format requires (`\`, `"`, newline):
/// prometheus-client writes label values as they are, and some (the source
/// client's state) come from other crates.
#[derive(Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A per-stream counter read from the Hub's stats; names as exposed, less the
/// `_total` the encoder adds to counters.
struct HubCounter {
    name: &'static str,
    help: &'static str,
    value: fn(&HubStats) -> u64,
}

const HUB_COUNTERS: [HubCounter; 5] = [
    HubCounter {
        name: "streamgate_stream_frames",
        help: "Frames (access units) the source published.",
        value: |s| s.frames,
    },
    HubCounter {
        name: "streamgate_stream_packets",
        help: "RTP packets the source published.",
        value: |s| s.packets,
    },
    HubCounter {
        name: "streamgate_stream_bytes",
        help: "Payload bytes the source published.",
        value: |s| s.bytes,
    },
    HubCounter {
        name: "streamgate_stream_drops",
        help: "Frames skipped for slow readers, all readers together.",
        value: |s| s.drops,
    },
    HubCounter {
        name: "streamgate_stream_keyframe_requests",
        help: "Keyframe requests readers sent to the source.",
        value: |s| s.keyframe_requests,
    },
];

/// Per stream and output protocol figures, read from the registry and the
/// outputs' reader records on each scrape.
struct StreamCollector(AppState);

impl fmt::Debug for StreamCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamCollector")
    }
}

/// One stream's figures, read under the registry's lock and encoded after it.
struct Row {
    name: String,
    stats: HubStats,
    report: SourceReport,
    /// `source = "publish"` streams only.
    publish: Option<PublishStatus>,
}

/// The labels of a stream's series.
fn stream(row: &Row) -> [(&'static str, Escaped<'_>); 1] {
    [("stream", Escaped(&row.name))]
}

/// The labels of a stream's series for one output protocol.
fn on<'a>(row: &'a Row, protocol: &'a str) -> [(&'static str, Escaped<'a>); 2] {
    [
        ("stream", Escaped(&row.name)),
        ("protocol", Escaped(protocol)),
    ]
}

/// Encodes one family: `values` gives each series' labels and value.
fn family<'r, M: EncodeMetric, const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: impl IntoIterator<Item = ([(&'static str, Escaped<'r>); N], M)>,
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in values {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let AppState {
            streams,
            rtsp_readers,
            hls_viewers,
            ..
        } = &self.0;
        let rows: Vec<Row> = streams
            .read()
            .iter()
            .map(|(name, stream)| Row {
                name: name.to_string(),
                stats: stream.hub.stats(),
                report: stream.report(),
                publish: stream.publish_point().map(|point| point.status()),
            })
            .collect();

        for counter in &HUB_COUNTERS {
            let values = rows
                .iter()
                .map(|row| (stream(row), ConstCounter::new((counter.value)(&row.stats))));
            family(
                &mut encoder,
                counter.name,
                counter.help,
                MetricType::Counter,
                values,
            )?;
        }
        family(
            &mut encoder,
            "streamgate_stream_readers",
            "Readers of the stream now: RTSP sessions plus one per running HLS muxer.",
            MetricType::Gauge,
            rows.iter()
                .map(|row| (stream(row), ConstGauge::new(row.stats.subscribers))),
        )?;
        let rtsp: Vec<_> = rows
            .iter()
            .map(|row| rtsp_readers.totals(&row.name))
            .collect();
        family(
            &mut encoder,
            "streamgate_output_packets",
            "RTP and RTCP packets sent to the stream's readers, by output protocol (RTSP only: HLS answers files).",
            MetricType::Counter,
            rows.iter()
                .zip(&rtsp)
                .map(|(row, rtsp)| (on(row, "rtsp"), ConstCounter::new(rtsp.packets))),
        )?;
        family(
            &mut encoder,
            "streamgate_output_bytes",
            "Bytes sent to the stream's readers, by output protocol (HLS: playlists and media answered).",
            MetricType::Counter,
            rows.iter().zip(&rtsp).flat_map(|(row, rtsp)| {
                [
                    (on(row, "rtsp"), ConstCounter::new(rtsp.bytes)),
                    (on(row, "hls"), ConstCounter::new(hls_viewers.bytes(&row.name))),
                ]
            }),
        )?;
        // WHEP viewers, when the binary runs the WebRTC server.
        let webrtc_viewers = self.0.whep.as_ref().map(|whep| whep.counts.viewers_of());
        family(
            &mut encoder,
            "streamgate_readers",
            "Readers of the stream now, by output protocol (RTSP: playing sessions; HLS: viewers of the last 10 s).",
            MetricType::Gauge,
            rows.iter().flat_map(|row| {
                let webrtc = webrtc_viewers
                    .as_ref()
                    .map(|viewers| viewers.get(&row.name).copied().unwrap_or(0));
                [
                    (on(row, "rtsp"), ConstGauge::new(rtsp_readers.list(Some(&row.name)).len())),
                    (on(row, "hls"), ConstGauge::new(hls_viewers.of(&row.name).len())),
                ]
                .into_iter()
                .chain(webrtc.map(|n| (on(row, "webrtc"), ConstGauge::new(n))))
            }),
        )?;
        if let Some(whep) = &self.0.whep {
            use std::sync::atomic::Ordering::Relaxed;
            let counts = &whep.counts;
            for (name, help, value) in [
                ("streamgate_webrtc_skipped_frames", "Frames WHEP viewers missed because they fell behind (each skipped to the next keyframe).", &counts.skipped_frames),
                ("streamgate_webrtc_send_drops", "WebRTC datagrams dropped because the UDP socket's send buffer was full.", &counts.send_drops),
                ("streamgate_webrtc_sessions", "WHEP sessions created.", &counts.sessions_total),
                ("streamgate_webrtc_gop_resends", "Cached GOPs resent to WHEP viewers whose keyframe request the source did not answer.", &counts.gop_resends),
            ] {
                let counter = ConstCounter::new(value.load(Relaxed));
                counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
            }
        }
        family(
            &mut encoder,
            "streamgate_hls_viewers",
            "Client addresses that fetched the stream's HLS playlists or media in the last 10 s.",
            MetricType::Gauge,
            rows.iter().map(|row| {
                (
                    stream(row),
                    ConstGauge::new(hls_viewers.of(&row.name).len()),
                )
            }),
        )?;
        family(
            &mut encoder,
            "streamgate_rtsp_refused",
            "RTSP input refused by the server's limits, by reason: lying lengths, slow requests, frames on channels never set up, connections over the caps.",
            MetricType::Counter,
            rtsp_readers
                .limit_counts()
                .all()
                .map(|(kind, count)| ([("reason", Escaped(kind.name()))], ConstCounter::new(count))),
        )?;
        family(
            &mut encoder,
            "streamgate_publish_dropped_packets",
            "Packets from RTSP publishers dropped, by reason: bad (does not parse or fit the announced tracks, or before RECORD), foreign (UDP from another address than the publisher's), overflow (UDP faster than the stream takes it).",
            MetricType::Counter,
            rows.iter().flat_map(|row| {
                row.publish.iter().flat_map(move |p| {
                    [
                        ("bad", p.bad_packets),
                        ("foreign", p.foreign_packets),
                        ("overflow", p.overflow_packets),
                    ]
                    .map(|(reason, count)| {
                        let labels = [("stream", Escaped(&row.name)), ("reason", Escaped(reason))];
                        (labels, ConstCounter::new(count))
                    })
                })
            }),
        )?;
        family(
            &mut encoder,
            "streamgate_source_reconnects",
            "Times the source connected again after its first session.",
            MetricType::Counter,
            rows.iter()
                .map(|row| (stream(row), ConstCounter::new(row.report.reconnects))),
        )?;
        let ring_events = self
            .0
            .events
            .as_ref()
            .map(|bus| bus.counts())
            .unwrap_or_default();
        family(
            &mut encoder,
            "streamgate_ring_events",
            "Ring webhook events stored (duplicates and stale deliveries not counted), by event type and device (empty for account events).",
            MetricType::Counter,
            ring_events.iter().map(|((kind, device), count)| {
                let labels = [("type", Escaped(kind)), ("device", Escaped(device))];
                (labels, ConstCounter::new(*count))
            }),
        )?;
        if let Some(mqtt) = &self.0.mqtt {
            use std::sync::atomic::Ordering::Relaxed;
            let published = mqtt.published.load(Relaxed);
            let dropped = mqtt.dropped.load(Relaxed);
            family(
                &mut encoder,
                "streamgate_mqtt_messages",
                "MQTT messages handed to the client (`published`) or dropped while the broker was unreachable or behind (`dropped`).",
                MetricType::Counter,
                [("published", published), ("dropped", dropped)]
                    .map(|(outcome, count)| ([("outcome", Escaped(outcome))], ConstCounter::new(count))),
            )?;
        }
        family(
            &mut encoder,
            "streamgate_source_up",
            "1 while the source runs, 0 while it has failed; `state` is the source client's own state.",
            MetricType::Gauge,
            rows.iter().map(|row| {
                let up = u64::from(row.report.health == crate::sources::StreamHealth::Running);
                let labels = [
                    ("stream", Escaped(&row.name)),
                    ("state", Escaped(&row.report.source_state)),
                ];
                (labels, ConstGauge::new(up))
            }),
        )
    }
}

/// RSS, CPU seconds and open fds from `/proc/self` (absent off Linux).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // One series without labels: encoded on the descriptor, so no `{}`.
        let mut single = |name, help, metric: &dyn EncodeMetric| {
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        if let Some(rss) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| resident_bytes(&status))
        {
            let help = "Resident memory size in bytes.";
            single("process_resident_memory_bytes", help, &ConstGauge::new(rss))?;
        }
        if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_seconds(&stat))
        {
            let help = "User and system CPU time spent in seconds.";
            single("process_cpu_seconds", help, &ConstCounter::new(cpu))?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let help = "Number of open file descriptors.";
            single("process_open_fds", help, &ConstGauge::new(fds.count()))?;
        }
        Ok(())
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
        #[derive(Debug)]
        struct Odd;
        impl Collector for Odd {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
                let labels = [("state", Escaped("a\"b\\c\nd"))];
                family(
                    &mut encoder,
                    "odd",
                    "Odd.",
                    MetricType::Gauge,
                    [(labels, ConstGauge::new(1))],
                )
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Odd));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("odd{state=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
    }
}
