//! `cameras`: N virtual RTSP cameras in one process, each its own Hub fed by a
//! looped replay of one capture, served by the gateway's own RTSP server on
//! `/cam0` .. `/cam{N-1}`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_replay::Capture;
use streamgate_rtsp::server::{RtspServer, ServerConfig, StreamEntry};

use crate::verbatim;

#[derive(Debug, clap::Args)]
pub struct CamerasArgs {
    /// Number of cameras (paths /cam0 .. /cam{N-1}).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub count: u32,
    /// Address the RTSP server listens on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8554")]
    pub listen: SocketAddr,
    /// pcap/pcapng of RTP over UDP; default: the bundled 720p H.264 + AAC capture.
    #[arg(long, requires = "sdp")]
    pub pcap: Option<PathBuf>,
    /// The SDP describing the capture's tracks.
    #[arg(long, requires = "pcap")]
    pub sdp: Option<PathBuf>,
    /// Serve only the capture's video (no audio track in the SDP, no audio packets).
    #[arg(long)]
    pub video_only: bool,
    /// Send the capture's RTP headers as recorded (gaps and timestamp resets
    /// included) instead of through the gateway's ingest, which repairs them.
    #[arg(long)]
    pub verbatim: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Spread the cameras' starts over this many seconds, so their keyframes do
    /// not all fall on the same instant.
    #[arg(long, default_value_t = 2.0)]
    pub stagger: f64,
}

/// What the cameras served, for the final summary.
#[derive(Debug, Serialize)]
pub struct CamerasSummary {
    pub cameras: u32,
    pub url_prefix: String,
    pub seconds: f64,
    pub frames: u64,
    pub bytes: u64,
    /// Frames skipped for slow readers, all cameras together.
    pub reader_drops: u64,
}

/// The capture `--pcap`/`--sdp` name (the bundled one without), its video only
/// with `video_only`.
pub fn load_capture(
    pcap: Option<&Path>,
    sdp: Option<&Path>,
    video_only: bool,
) -> Result<Capture, streamgate_replay::ReplayError> {
    let (capture, name) = match (pcap, sdp) {
        (Some(pcap), Some(sdp)) => (Capture::load(pcap, sdp)?, pcap.display().to_string()),
        _ => (
            streamgate_replay::demo_capture()?,
            "the bundled capture".to_owned(),
        ),
    };
    match video_only {
        true => capture.video_only(&name),
        false => Ok(capture),
    }
}

pub async fn run(args: CamerasArgs) -> Result<CamerasSummary, Box<dyn std::error::Error>> {
    let capture = Arc::new(load_capture(
        args.pcap.as_deref(),
        args.sdp.as_deref(),
        args.video_only,
    )?);
    let hubs: Arc<Vec<Hub>> = Arc::new(
        (0..args.count)
            .map(|i| Hub::new(format!("cam{i}"), HubConfig::default()))
            .collect(),
    );
    let directory_hubs = Arc::clone(&hubs);
    let directory = move |name: &str| {
        let index: usize = name.strip_prefix("cam")?.parse().ok()?;
        directory_hubs.get(index).map(|hub| StreamEntry {
            hub: hub.clone(),
            credentials: None,
            publish: None,
        })
    };
    let server = RtspServer::bind(
        ServerConfig {
            listen: args.listen,
            // Load runs read every camera from one machine.
            max_connections_per_client: usize::MAX,
            ..ServerConfig::default()
        },
        Arc::new(directory),
    )
    .await?;
    let url_prefix = format!("rtsp://{}/cam", server.local_addr()?);
    let server = tokio::spawn(server.run());

    let stagger = Duration::try_from_secs_f64(args.stagger.max(0.0)).unwrap_or_default();
    let mut replays = Vec::new();
    for (i, hub) in hubs.iter().enumerate() {
        // Tracks are known before the first packet, so DESCRIBE never waits on the stagger.
        hub.set_tracks(capture.tracks.iter().map(|t| t.info.clone()).collect());
        let delay = stagger.mul_f64(i as f64 / f64::from(args.count));
        let (capture, hub, verbatim) = (Arc::clone(&capture), hub.clone(), args.verbatim);
        replays.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if verbatim {
                verbatim::run(capture, hub).await;
            } else if let Err(e) = streamgate_replay::run(capture, hub, 1.0, true).await {
                tracing::error!(error = %e, "replay stopped");
            }
        }));
    }
    // The line scripts and tests wait for.
    println!(
        "serving {} cameras at {url_prefix}0 .. {url_prefix}{}",
        args.count,
        args.count - 1
    );

    let started = tokio::time::Instant::now();
    match args.duration {
        Some(seconds) => {
            let limit = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(limit) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    for replay in &replays {
        replay.abort();
    }
    server.abort();
    let stats: Vec<_> = hubs.iter().map(Hub::stats).collect();
    Ok(CamerasSummary {
        cameras: args.count,
        url_prefix,
        seconds: started.elapsed().as_secs_f64(),
        frames: stats.iter().map(|s| s.frames).sum(),
        bytes: stats.iter().map(|s| s.bytes).sum(),
        reader_drops: stats.iter().map(|s| s.drops).sum(),
    })
}
