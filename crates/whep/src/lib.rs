//! WHEP client source (being written).
pub mod backoff;
pub mod config;
pub mod keyframe;
pub mod peer;
pub mod session;
pub mod signal;
