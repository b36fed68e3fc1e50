//! Every end-to-end test of the gateway binary, in one test binary: one link
//! instead of one per file, and the test harness runs tests of different files
//! side by side instead of one file after another. Each module is one area; its
//! doc comment says what it shows. Run one with `cargo test --test e2e AREA::`.

mod support;
/// The aiortc WHEP server the WHEP crate's tests use too.
#[path = "../crates/whep/tests/common/mod.rs"]
mod whep_common;

mod api_e2e;
mod api_oneshot;
mod bframes;
mod binary_config;
#[cfg(feature = "cluster")]
mod cluster;
mod dashboard_browser;
mod hls_browser;
mod hls_conformance;
mod hls_ffmpeg;
mod hls_load;
mod hls_replace;
mod http_limits;
mod reload_sighup;
mod restream_timing;
mod ring_browser;
mod ring_events;
mod ring_faults;
mod ring_link;
mod ring_live;
mod ring_media;
mod ring_motion;
mod ring_mqtt;
mod rtsp_auth;
mod rtsp_clients;
mod rtsp_load;
mod rtsp_malformed;
mod rtsp_publish;
mod rtsp_source_bad_cameras;
mod rtsp_source_binary;
mod rtsp_source_camera;
mod rtsp_source_latm;
mod rtsp_source_sync;
mod rtsp_udp_ports;
mod rtsps_listener;
mod rtsps_source;
#[cfg(feature = "ffmpeg")]
mod snapshot_ffmpeg;
mod whep_browser;
mod whep_config;
mod whep_http;
mod whep_peers;
mod whep_restream;
mod whip_ingest;
