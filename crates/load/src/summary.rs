//! Many reader reports folded into one verdict with percentiles.

use serde::Serialize;

use crate::reader::{ReaderReport, ReaderTransport};
use crate::whep::WhepReport;

/// Nearest-rank percentiles of a sample.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    /// One line of a human-readable report.
    fn line(name: &str, unit: &str, v: &Percentiles) -> String {
        let f = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.1}"));
        format!(
            "  {name:<18} min {:>9} p50 {:>9} p95 {:>9} p99 {:>9} max {:>9} {unit} ({} samples)\n",
            f(v.min),
            f(v.p50),
            f(v.p95),
            f(v.p99),
            f(v.max),
            v.samples
        )
    }

    pub fn of(mut values: Vec<f64>) -> Percentiles {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values.get(index.saturating_sub(1)).copied()
        };
        Percentiles {
            samples: values.len(),
            min: values.first().copied(),
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
    /// RTSP: a frame's arrival after its capture time by the sender reports;
    /// LL-HLS parts: a blocking reload's answer after its part was ready.
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
        let mut failures = packet_failures(
            (self.lost, self.expected, self.loss_ratio),
            max_loss,
            self.backward_timestamps,
        );
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
        let p = Percentiles::line;
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
        out += &p("latency", "ms", &self.latency_ms);
        out += &p("bitrate/reader", "kbit/s", &self.bitrate_kbps);
        out += &verdict(&self.failures);
        out
    }
}

/// Many WHEP viewers' reports folded into one verdict.
#[derive(Debug, Serialize)]
pub struct WhepSummary {
    pub viewers: usize,
    pub seconds: f64,
    /// Viewers whose ICE and DTLS completed.
    pub connected: usize,
    /// Viewers that failed (refused offer, no connection, a WebRTC error).
    pub failed_viewers: usize,
    /// Viewers that got no decodable keyframe.
    pub viewers_without_keyframe: usize,
    /// Viewers whose first video frame was not a decodable keyframe.
    pub viewers_not_starting_on_keyframe: usize,
    /// Sessions whose DELETE did not succeed.
    pub undeleted_sessions: usize,
    pub packets: u64,
    pub bytes: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub backward_timestamps: u64,
    pub answer_ms: Percentiles,
    pub connected_ms: Percentiles,
    pub first_rtp_ms: Percentiles,
    /// Time to first frame: the first decodable keyframe, complete.
    pub first_keyframe_ms: Percentiles,
    pub video_frames_per_viewer: Percentiles,
    pub audio_frames_per_viewer: Percentiles,
    /// Why the run fails (empty: it passed).
    pub failures: Vec<String>,
    pub viewer_reports: Vec<WhepReport>,
}

impl WhepSummary {
    pub fn new(reports: Vec<WhepReport>, seconds: f64, max_loss: f64) -> WhepSummary {
        let sum = |f: fn(&WhepReport) -> u64| reports.iter().map(f).sum::<u64>();
        let count = |f: fn(&WhepReport) -> bool| reports.iter().filter(|r| f(r)).count();
        let times = |f: fn(&WhepReport) -> Option<f64>| {
            Percentiles::of(reports.iter().filter_map(f).collect())
        };
        let (expected, lost) = (sum(|r| r.expected), sum(|r| r.lost));
        let mut summary = WhepSummary {
            viewers: reports.len(),
            seconds,
            connected: count(|r| r.connected_ms.is_some()),
            failed_viewers: count(|r| r.error.is_some()),
            viewers_without_keyframe: count(|r| r.first_keyframe_ms.is_none()),
            viewers_not_starting_on_keyframe: count(|r| r.keyframe_first == Some(false)),
            undeleted_sessions: count(|r| r.answer_ms.is_some() && !r.deleted),
            packets: sum(|r| r.packets),
            bytes: sum(|r| r.bytes),
            expected,
            lost,
            loss_ratio: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            backward_timestamps: sum(|r| r.backward_timestamps),
            answer_ms: times(|r| r.answer_ms),
            connected_ms: times(|r| r.connected_ms),
            first_rtp_ms: times(|r| r.first_rtp_ms),
            first_keyframe_ms: times(|r| r.first_keyframe_ms),
            video_frames_per_viewer: Percentiles::of(
                reports.iter().map(|r| r.video_frames as f64).collect(),
            ),
            audio_frames_per_viewer: Percentiles::of(
                reports.iter().map(|r| r.audio_frames as f64).collect(),
            ),
            failures: Vec::new(),
            viewer_reports: reports,
        };
        summary.failures = summary.judge(max_loss);
        summary
    }

    fn judge(&self, max_loss: f64) -> Vec<String> {
        let mut failures = packet_failures(
            (self.lost, self.expected, self.loss_ratio),
            max_loss,
            self.backward_timestamps,
        );
        for (count, what) in [
            (
                self.viewers_not_starting_on_keyframe,
                "did not start on a decodable keyframe",
            ),
            (self.viewers_without_keyframe, "got no decodable keyframe"),
            (self.undeleted_sessions, "could not DELETE their session"),
        ] {
            if count > 0 {
                failures.push(format!("{count} viewers {what}"));
            }
        }
        if self.failed_viewers > 0 {
            let first = self
                .viewer_reports
                .iter()
                .find_map(|r| r.error.as_deref())
                .unwrap_or("");
            failures.push(format!(
                "{} viewers failed (first: {first})",
                self.failed_viewers
            ));
        }
        failures
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let p = Percentiles::line;
        let mut out = format!(
            "{} WHEP viewers for {:.1} s: {} connected, {} failed; {} packets, {:.1} MB, \
             lost {} of {} ({:.4}%), timestamps stepped back {} times\n",
            self.viewers,
            self.seconds,
            self.connected,
            self.failed_viewers,
            self.packets,
            self.bytes as f64 / 1e6,
            self.lost,
            self.expected,
            self.loss_ratio * 100.0,
            self.backward_timestamps,
        );
        out += &p("answer", "ms", &self.answer_ms);
        out += &p("connected", "ms", &self.connected_ms);
        out += &p("first RTP", "ms", &self.first_rtp_ms);
        out += &p("first keyframe", "ms", &self.first_keyframe_ms);
        out += &p("video frames/viewer", "", &self.video_frames_per_viewer);
        out += &p("audio frames/viewer", "", &self.audio_frames_per_viewer);
        out += &verdict(&self.failures);
        out
    }
}

/// PASS, or one FAIL line per failure.
fn verdict(failures: &[String]) -> String {
    if failures.is_empty() {
        return "PASS\n".to_owned();
    }
    failures.iter().map(|f| format!("FAIL: {f}\n")).collect()
}

/// What the packets of every reader or viewer together fail: loss over
/// `max_loss` (`lost`, `expected`, their ratio) and timestamps stepping back.
fn packet_failures(
    (lost, expected, loss_ratio): (u64, u64, f64),
    max_loss: f64,
    backward_timestamps: u64,
) -> Vec<String> {
    let mut failures = Vec::new();
    if loss_ratio > max_loss {
        failures.push(format!(
            "loss {:.4}% ({lost} of {expected} packets) exceeds --max-loss {}%",
            loss_ratio * 100.0,
            max_loss * 100.0
        ));
    }
    if backward_timestamps > 0 {
        failures.push(format!(
            "RTP timestamps stepped back {backward_timestamps} times"
        ));
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.min, p.p50, p.p95, p.p99, p.max),
            (Some(1.0), Some(50.0), Some(95.0), Some(99.0), Some(100.0))
        );
        assert_eq!(Percentiles::of(Vec::new()).p50, None);
    }

    fn viewer(index: usize, lost: u64) -> WhepReport {
        WhepReport {
            index,
            url: "http://127.0.0.1/whep/cam".to_owned(),
            error: None,
            answer_ms: Some(10.0),
            connected_ms: Some(20.0),
            first_rtp_ms: Some(30.0),
            first_keyframe_ms: Some(40.0 + index as f64),
            keyframe_first: Some(true),
            video_frames: 100,
            audio_frames: 0,
            packets: 300,
            bytes: 300_000,
            expected: 300 + lost,
            lost,
            backward_timestamps: 0,
            deleted: true,
        }
    }

    #[test]
    fn whep_viewers_that_failed_lost_or_stayed_are_failures() {
        let clean = WhepSummary::new(vec![viewer(0, 0), viewer(1, 0)], 5.0, 0.0);
        assert_eq!(clean.failures, Vec::<String>::new());
        assert_eq!(clean.first_keyframe_ms.min, Some(40.0));
        assert_eq!(clean.first_keyframe_ms.max, Some(41.0));
        let mut refused = viewer(2, 0);
        refused.error = Some("POST: HTTP 503".to_owned());
        refused.connected_ms = None;
        refused.first_keyframe_ms = None;
        refused.keyframe_first = None;
        let mut stayed = viewer(3, 0);
        stayed.deleted = false;
        let summary = WhepSummary::new(vec![viewer(0, 3), refused, stayed], 5.0, 0.0);
        assert_eq!((summary.connected, summary.failed_viewers), (2, 1));
        assert_eq!(summary.undeleted_sessions, 1);
        assert_eq!(summary.failures.len(), 4, "{:?}", summary.failures);
        assert!(summary.failures[0].starts_with("loss"));
        assert!(summary.failures[3].contains("POST: HTTP 503"));
    }
}
