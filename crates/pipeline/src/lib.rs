//! streamgate's per-stream pipeline: the ingest that turns a source's RTP into
//! [`Frame`](streamgate_rtp::Frame)s, and the [`Hub`] that fans them out (GOP
//! cache, bounded per-subscriber queues), plus what every network source shares:
//! the stepped [`Backoff`] and the lifecycle [`SourceState`] it reports.
//!
//! ```text
//! source ─► StreamIngest (reorder, depacketize, timeline, output headers) ─► Hub ─► outputs
//! ```
//!
//! The Hub is the only tokio-dependent part (channels and a `Notify`); the rest
//! is sans-IO with time as an input.

mod backoff;
mod hub;
mod ingest;
mod rate_limited_log;
mod source_state;

pub use backoff::{Backoff, HEALTHY_RESET};
pub use hub::{Hub, HubConfig, HubStats, Subscription};
pub use ingest::{IngestError, IngestStats, StreamIngest};
pub use rate_limited_log::RateLimitedLog;
pub use source_state::SourceState;
