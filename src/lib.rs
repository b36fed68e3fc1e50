//! The gateway's application layer, shared by the `streamgate` binary and its
//! integration tests. Protocol code lives in the `streamgate-*` library crates.
//!
//! Layers, each using only those below it (`scripts/check-import-cycles` keeps
//! it so):
//! - `http`: the HTTP app (API, metrics, dashboard, HLS viewers);
//! - `mqtt`: the event bus published to an MQTT broker (Home Assistant discovery);
//! - `events`: the event bus (webhook events and the gateway's own, stored, then broadcast);
//! - `ring`: Ring discovery, turning linked accounts' devices into streams;
//! - `cluster` (feature `cluster`): this node's share of the streams, from etcd;
//! - `reload`: applying a changed config (or discovered streams) to the registry;
//! - `published`: the RTSP server's view of the registry, and the streams
//!   publishers create (`[rtsp] publish = "any"`);
//! - `webrtc`: the WHEP server's socket task (viewers fed from the Hubs);
//! - `streams`: the registry of running streams, each a Hub and its source;
//! - `config`: the TOML file's shape and checks;
//! - `sources`: one module per kind of source, behind one shape;

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod events;
pub mod http;
pub mod mqtt;
pub mod published;
pub mod reload;
pub mod ring;
pub mod sources;
pub mod streams;
pub mod webrtc;
