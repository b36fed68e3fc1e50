//! The gateway's application layer, shared by the `streamgate` binary and its
//! integration tests: configuration and the stream registry. Protocol code
//! lives in the `streamgate-*` library crates.

pub mod config;
pub mod rtsp_source;
pub mod streams;
pub mod whep;
