//! streamgate's sans-IO RTP layer: packet views, RTCP, SDP, depacketizers and
//! packetizers per codec, reorder and timestamp continuity. No tokio, no sockets:
//! every type takes bytes and time as inputs, so it is unit-tested and fuzzed
//! without a runtime. The pipeline that runs it (ingest, Hub) is
//! `streamgate-pipeline`; pcap replay is `streamgate-replay`.
//!
//! ```text
//! source RTP (Bytes) ─► RtpPacket ─► ReorderBuffer ─► codec::Depacketizer ─► Timeline ─► Frame
//! ```
//!
//! Payload bytes are sliced from the received buffers and shared as `Bytes`; the
//! only copy is FU/FU-A reassembly, once per frame.
//!
//! The surface is curated: the protocol namespaces (`packet`, `rtcp`, `sdp`,
//! `codec`) are modules, the pipeline's building blocks are re-exported here, and
//! the rest stays private.

pub mod codec;
mod frame;
mod ids;
pub mod packet;
mod reorder;
pub mod rtcp;
pub mod sdp;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod timeline;
mod track;

pub use frame::{Frame, OutPacket, RTP_HEADER_LEN};
pub use ids::{Before, ExtSeqNo, PayloadType, SeqNo, Ssrc};
pub use packet::{RtpPacket, RtpPacketBuilder};
pub use reorder::{Pushed, Released, ReorderBuffer, ReorderConfig};
pub use timeline::{AnchorHint, Mapped, Timeline, MAX_JUMP};
pub use track::{Codec, CodecParams, MediaKind, TrackId, TrackInfo};
