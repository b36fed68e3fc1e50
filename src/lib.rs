//! The gateway's application layer, shared by the `streamgate` binary and its
//! integration tests: configuration, the stream registry and the HTTP app
//! (API, metrics, dashboard). Protocol code
//! lives in the `streamgate-*` library crates.

pub mod api;
pub mod config;
pub mod dashboard;
pub mod metrics;
pub mod reload;
pub mod rtsp_source;
pub mod streams;
pub mod whep;
