//! Many reader reports folded into one verdict with percentiles.

use serde::Serialize;

use crate::reader::{ReaderReport, ReaderTransport};

/// Nearest-rank percentiles of a sample.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values.get(index.saturating_sub(1)).copied()
        };
        Percentiles {
            samples: values.len(),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: values.last().copied(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ReadSummary {
    pub readers: usize,
    pub transport: ReaderTransport,
    pub seconds: f64,
    /// Readers that ended early (an RTSP or transport error, or the server hung up).
    pub failed_readers: usize,
    pub packets: u64,
    pub bytes: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    /// Times a track's RTP timestamp stepped back, all readers together.
    pub backward_timestamps: u64,
    /// Readers whose first video frame was not a decodable keyframe.
    pub readers_not_starting_on_keyframe: usize,
    /// Readers that got no video frame at all.
    pub readers_without_video: usize,
    pub first_keyframe_ms: Percentiles,
    pub play_ms: Percentiles,
    pub latency_ms: Percentiles,
    pub bitrate_kbps: Percentiles,
    /// Why the run fails (empty: it passed).
    pub failures: Vec<String>,
    pub reader_reports: Vec<ReaderReport>,
}

impl ReadSummary {
    pub fn new(
        reports: Vec<ReaderReport>,
        transport: ReaderTransport,
        seconds: f64,
        max_loss: f64,
    ) -> ReadSummary {
        let sum = |f: fn(&ReaderReport) -> u64| reports.iter().map(f).sum::<u64>();
        let (expected, lost) = (sum(|r| r.expected), sum(|r| r.lost));
        let loss_ratio = if expected == 0 {
            0.0
        } else {
            lost as f64 / expected as f64
        };
        let mut summary = ReadSummary {
            readers: reports.len(),
            transport,
            seconds,
            failed_readers: reports.iter().filter(|r| r.error.is_some()).count(),
            packets: sum(|r| r.packets),
            bytes: sum(|r| r.bytes),
            expected,
            lost,
            loss_ratio,
            backward_timestamps: sum(|r| r.backward_timestamps),
            readers_not_starting_on_keyframe: reports
                .iter()
                .filter(|r| r.keyframe_first == Some(false))
                .count(),
            readers_without_video: reports
                .iter()
                .filter(|r| r.keyframe_first.is_none())
                .count(),
            first_keyframe_ms: Percentiles::of(
                reports.iter().filter_map(|r| r.first_keyframe_ms).collect(),
            ),
            play_ms: Percentiles::of(reports.iter().filter_map(|r| r.play_ms).collect()),
            latency_ms: Percentiles::of(
                reports
                    .iter()
                    .flat_map(|r| r.latency_ms.iter().copied())
                    .collect(),
            ),
            bitrate_kbps: Percentiles::of(reports.iter().map(|r| r.bitrate_kbps).collect()),
            failures: Vec::new(),
            reader_reports: reports,
        };
        summary.failures = summary.judge(max_loss);
        summary
    }

    fn judge(&self, max_loss: f64) -> Vec<String> {
        let mut failures = Vec::new();
        if self.loss_ratio > max_loss {
            failures.push(format!(
                "loss {:.4}% ({} of {} packets) exceeds --max-loss {}%",
                self.loss_ratio * 100.0,
                self.lost,
                self.expected,
                max_loss * 100.0
            ));
        }
        if self.backward_timestamps > 0 {
            failures.push(format!(
                "RTP timestamps stepped back {} times",
                self.backward_timestamps
            ));
        }
        if self.readers_not_starting_on_keyframe > 0 {
            failures.push(format!(
                "{} readers did not start on a decodable keyframe",
                self.readers_not_starting_on_keyframe
            ));
        }
        if self.readers_without_video > 0 {
            failures.push(format!(
                "{} readers got no video frame",
                self.readers_without_video
            ));
        }
        if self.failed_readers > 0 {
            let first = self
                .reader_reports
                .iter()
                .find_map(|r| r.error.as_deref())
                .unwrap_or("");
            failures.push(format!(
                "{} readers ended early (first: {first})",
                self.failed_readers
            ));
        }
        failures
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let p = |name: &str, unit: &str, v: &Percentiles| {
            let f = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.1}"));
            format!(
                "  {name:<18} p50 {:>9} p95 {:>9} p99 {:>9} max {:>9} {unit} ({} samples)\n",
                f(v.p50),
                f(v.p95),
                f(v.p99),
                f(v.max),
                v.samples
            )
        };
        let mut out = format!(
            "{} {:?} readers for {:.1} s: {} packets, {:.1} MB, lost {} of {} ({:.4}%), \
             timestamps stepped back {} times, {} ended early\n",
            self.readers,
            self.transport,
            self.seconds,
            self.packets,
            self.bytes as f64 / 1e6,
            self.lost,
            self.expected,
            self.loss_ratio * 100.0,
            self.backward_timestamps,
            self.failed_readers,
        );
        out += &p("time to PLAY", "ms", &self.play_ms);
        out += &p("first keyframe", "ms", &self.first_keyframe_ms);
        out += &p("latency (SR)", "ms", &self.latency_ms);
        out += &p("bitrate/reader", "kbit/s", &self.bitrate_kbps);
        if self.failures.is_empty() {
            out += "PASS\n";
        } else {
            for failure in &self.failures {
                out += &format!("FAIL: {failure}\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.p50, p.p95, p.p99, p.max),
            (Some(50.0), Some(95.0), Some(99.0), Some(100.0))
        );
        assert_eq!(Percentiles::of(Vec::new()).p50, None);
    }
}
