//! `streamgate-load`: load tools for streamgate and its peers.
//!
//! - `cameras`: N virtual RTSP cameras replaying a capture (see [`cameras`]);
//! - `read`: N checking RTSP readers in one process (see [`reader`]);
//! - `whep`: N checking WebRTC viewers of a WHEP server in one process (see [`whep`]);
//! - `floor`: the simplest server moving the same bytes, the baseline (see [`floor`]).
//!
//! Everything is bounded: reader counts and durations come from the command
//! line, and only the addresses given are contacted.

mod cameras;
mod checks;
mod floor;
mod fmp4;
mod hls_reader;
mod ll_hls;
mod reader;
mod summary;
mod verbatim;
mod whep;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use reader::{LiveCounters, ReaderTransport};
use summary::ReadSummary;

#[derive(Parser)]
#[command(
    version,
    about = "Load tools for streamgate: virtual RTSP cameras and checking readers"
)]
struct Cli {
    /// Print the final summary as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve N virtual cameras over RTSP, replaying a capture in a loop.
    Cameras(cameras::CamerasArgs),
    /// Read RTSP URLs or HLS playlists with N concurrent readers and check what arrives.
    Read(ReadArgs),
    /// Watch WHEP endpoints with N WebRTC viewers and check what arrives.
    Whep(whep::WhepArgs),
    /// Serve a capture with the least work a server can do (one writev per reader per frame).
    Floor(floor::FloorArgs),
}

#[derive(clap::Args)]
struct ReadArgs {
    /// rtsp:// URL, or http:// URL of an HLS playlist, to read; repeat for
    /// several (readers are spread round-robin).
    #[arg(long = "url", required = true)]
    urls: Vec<url::Url>,
    /// Number of concurrent readers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2000))]
    readers: u32,
    /// RTSP transport (HLS readers use HTTP).
    #[arg(long, value_enum, default_value_t = ReaderTransport::Tcp)]
    transport: ReaderTransport,
    /// Seconds to read for (from the start of the run).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Spread the readers' connects over this many seconds.
    #[arg(long, default_value_t = 1.0)]
    ramp: f64,
    /// HLS readers follow LL-HLS parts with blocking playlist reloads, as hls.js
    /// does in low-latency mode, instead of polling for whole segments; each
    /// reload's answer is timed against its part's PROGRAM-DATE-TIME.
    #[arg(long)]
    parts: bool,
    /// Largest acceptable packet loss, as a fraction (0.01 = 1%).
    #[arg(long, default_value_t = 0.0)]
    max_loss: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Cameras(args) => match cameras::run(args).await {
                Ok(summary) => {
                    if cli.json {
                        println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
                    } else {
                        println!(
                            "{} cameras served {} frames ({:.1} MB) in {:.1} s; {} frames skipped for slow readers",
                            summary.cameras, summary.frames, summary.bytes as f64 / 1e6, summary.seconds, summary.reader_drops
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cameras: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Floor(args) => match floor::run(args).await {
                Ok(summary) => {
                    if cli.json {
                        println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
                    } else {
                        println!(
                            "floor server {} wrote {} frames ({:.1} MB) to {} readers",
                            summary.url, summary.frames, summary.bytes as f64 / 1e6, summary.readers
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("floor: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Read(args) => {
                let summary = read(&args).await;
                report(cli.json, &summary, summary.text(), &summary.failures)
            }
            Command::Whep(args) => {
                let live = Arc::new(LiveCounters::default());
                let duration = Duration::try_from_secs_f64(args.duration.max(0.0)).unwrap_or_default();
                let progress = Progress::start(duration, Arc::clone(&live));
                let summary = whep::run(&args, live).await;
                progress.finish();
                report(cli.json, &summary, summary.text(), &summary.failures)
            }
        }
    })
}

async fn read(args: &ReadArgs) -> ReadSummary {
    let duration = Duration::try_from_secs_f64(args.duration.max(0.0)).unwrap_or_default();
    let ramp = Duration::try_from_secs_f64(args.ramp.max(0.0)).unwrap_or_default();
    let started = tokio::time::Instant::now();
    let deadline = started + duration;
    let live = Arc::new(LiveCounters::default());
    let readers: Vec<_> = (0..args.readers as usize)
        .map(|index| {
            let url = args.urls[index % args.urls.len()].clone();
            let (live, transport, parts) = (Arc::clone(&live), args.transport, args.parts);
            let start_at = started + ramp.mul_f64(index as f64 / f64::from(args.readers));
            tokio::spawn(async move {
                tokio::time::sleep_until(start_at).await;
                match url.scheme() {
                    "http" | "https" => hls_reader::read(index, url, parts, deadline, live).await,
                    _ => reader::read(index, url, transport, deadline, live).await,
                }
            })
        })
        .collect();
    let progress = Progress::start(duration, Arc::clone(&live));
    let mut reports = Vec::with_capacity(readers.len());
    for reader in readers {
        if let Ok(report) = reader.await {
            reports.push(report);
        }
    }
    progress.finish();
    ReadSummary::new(
        reports,
        args.transport,
        started.elapsed().as_secs_f64(),
        args.max_loss,
    )
}

/// The progress bar on stderr while a run lasts, from the shared counters.
struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(duration: Duration, live: Arc<LiveCounters>) -> Progress {
        let started = tokio::time::Instant::now();
        let bar = ProgressBar::new(duration.as_secs()).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    bar.set_position(started.elapsed().as_secs());
                    bar.set_message(format!(
                        "{} playing, {} packets, {} lost",
                        live.playing.load(Ordering::Relaxed),
                        live.packets.load(Ordering::Relaxed),
                        live.lost.load(Ordering::Relaxed)
                    ));
                }
            })
        };
        Progress { bar, ticker }
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Prints a run's summary (JSON, or `text`); fails when it has failures.
fn report(
    json: bool,
    summary: &impl serde::Serialize,
    text: String,
    failures: &[String],
) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).unwrap_or_default()
        );
    } else {
        print!("{text}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
