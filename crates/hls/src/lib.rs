//! Low-latency HLS output for streamgate.
//!
//! ```text
//! Hub ─► muxer task (one per stream, shared by all viewers) ─► Segmenter ─► SegmentStore
//!                                                                              │
//!                             axum router: /hls/NAME/{index,stream}.m3u8, parts ◄┘
//! ```
//!
//! The segmenter and playlist writer are sans-IO (frames in, bytes out); the muxer
//! task and HTTP handlers are thin tokio/axum layers around them. A stream replaced
//! under its name (a new Hub) keeps its muxer and playlist: the muxer follows the
//! new Hub and continues the numbering after an `EXT-X-DISCONTINUITY`.
//!
//! Boxes are written with `mp4-atom` rather than `mp4`: it already encodes every
//! sample entry needed here (`avc1`/`avcC`, `hvc1`/`hvcC`, `mp4a`/`esds`,
//! `Opus`/`dOps`) and `moof`/`trun` with signed composition offsets, so this crate
//! only derives their fields from the parameter sets ([`codecs`]) and writes the
//! `mdat` header itself to copy each payload once.

pub mod codecs;
pub mod config;
pub mod fmp4;
pub mod http;
pub mod muxer;
pub mod playlist;
pub mod segmenter;

pub use config::{HlsConfig, HlsConfigError};
pub use http::router;
pub use muxer::HubLookup;

use streamgate_rtp::{Codec, TrackId};

/// Why a stream cannot be muxed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("track {track}: no {name} yet")]
    MissingParameter { track: TrackId, name: &'static str },
    #[error("track {track}: malformed {name}")]
    BadParameter { track: TrackId, name: &'static str },
    #[error("codec {0:?} cannot be carried in fMP4 HLS")]
    UnsupportedCodec(Codec),
    #[error("the stream has no track HLS can carry")]
    NoMuxableTrack,
    #[error("fragment larger than 4 GiB")]
    TooLarge,
    #[error("MP4 encoding failed: {0}")]
    Encode(String),
}
