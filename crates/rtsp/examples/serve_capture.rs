//! Serves the bundled demo capture (looped at real time) over RTSP on its own,
//! without the gateway binary: `cargo run -p streamgate-rtsp --example
//! serve_capture -- 127.0.0.1:8554`, then `ffplay rtsp://127.0.0.1:8554/demo`.

use std::sync::Arc;
use std::time::Instant;

use streamgate_pipeline::StreamIngest;
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_replay::demo_capture;
use streamgate_rtsp::server::{RtspServer, ServerConfig, StreamEntry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8554".into())
        .parse()?;
    let capture = demo_capture()?;
    let hub = Hub::new("demo", HubConfig::default());
    let directory_hub = hub.clone();
    let directory = move |name: &str| {
        (name == "demo").then(|| StreamEntry {
            hub: directory_hub.clone(),
            credentials: None,
            publish: None,
        })
    };
    let server = RtspServer::bind(
        ServerConfig {
            listen,
            ..ServerConfig::default()
        },
        Arc::new(directory),
    )
    .await?;
    tokio::spawn(server.run());
    let mut ingest =
        StreamIngest::new(hub, capture.tracks.iter().map(|t| t.info.clone()).collect());
    loop {
        let start = tokio::time::Instant::now();
        for (offset, track, packet) in &capture.packets {
            tokio::time::sleep_until(start + *offset).await;
            let _ = ingest.push_rtp(*track, packet.clone(), Instant::now());
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        ingest.source_restarted();
    }
}
