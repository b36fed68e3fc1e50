//! streamgate's per-stream pipeline: the ingest that turns a source's RTP into
//! [`Frame`](streamgate_rtp::Frame)s, and the [`Hub`] that fans them out (GOP
//! cache, bounded per-subscriber queues), plus what every network source shares:
//! the stepped [`Backoff`], the lifecycle [`SourceState`] it reports, and the
//! [`Supervisor`] that runs that lifecycle (on demand, idle grace, backoff,
//! stall, make-before-break rotation) for every source kind.
//!
//! ```text
//! source ─► StreamIngest (reorder, depacketize, timeline, output headers) ─► Hub ─► outputs
//! ```
//!
//! The Hub is the only tokio-dependent part (channels and a `Notify`); the rest
//! is sans-IO with time as an input (the supervisor's tests run in simulated time).

mod backoff;
mod hub;
mod ingest;
mod rate_limited_log;
mod source_state;
pub mod supervisor;

pub use backoff::{Backoff, HEALTHY_RESET};
pub use hub::{Hub, HubConfig, HubStats, Subscription};
pub use ingest::{IngestError, IngestStats, StreamIngest};
pub use rate_limited_log::RateLimitedLog;
pub use source_state::SourceState;
pub use supervisor::{Supervisor, SupervisorConfig};
