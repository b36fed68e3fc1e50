//! streamgate's zero-copy RTP pipeline.
//!
//! ```text
//! source RTP (Bytes) ─► packet::RtpPacket ─► reorder ─► codec depacketizer ─► timeline
//!                                                                              │
//!                              Hub (GOP cache, bounded fan-out) ◄── ingest ◄───┘
//! ```
//!
//! Every module is sans-IO except the Hub (tokio channels) and `replay` (a paced
//! pcap source). Payload bytes are sliced from the received buffers and shared as
//! `Bytes`; the only copy is FU/FU-A reassembly, once per frame.

pub mod backoff;
pub mod codec;
pub mod frame;
pub mod hub;
pub mod ingest;
pub mod packet;
pub mod reorder;
pub mod replay;
pub mod rtcp;
pub mod sdp;
pub mod source_state;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod timeline;
pub mod track;

pub use frame::{Frame, OutPacket};
pub use packet::RtpPacket;

pub use track::{Codec, CodecParams, MediaKind, TrackId, TrackInfo};
