//! streamgate's WHEP client source: pulls a stream from a WHEP endpoint (a WebRTC
//! camera, another gateway, or a cloud camera API such as Ring's, whose live sessions
//! are capped at 30–60 s) into a [`streamgate_pipeline::Hub`], rotating sessions so
//! that readers never notice the caps.
//!
//! ```text
//! WhepSource ─ Runner (source.rs): carries out the pipeline's Supervisor (on demand,
//!                 │  backoff, rotation timing); switch points, ICE restart grace, status
//!                 └─ Session (session.rs): POST offer → 201 + answer → ICE/DTLS … DELETE
//!                       ├─ WhepClient (signal.rs): HTTP, redirects, Retry-After, Link ice-server
//!                       ├─ trickle task (trickle.rs): late local candidates → PATCH sdpfrag
//!                       └─ Peer (peer.rs): webrtc-rs receive-only peer connection
//! received RTP ─► StreamIngest::push_rtp ─► Hub      Hub::keyframe_requested ─► RTCP PLI
//! ```
//!
//! WebRTC stack: `webrtc` (webrtc-rs 0.21), an async layer over its sans-IO core `rtc`.
//! It does everything a WHEP client needs here — full ICE gathering with loopback
//! opt-in, controlling-side nomination, DTLS as server (aiortc answers `setup:active`)
//! with an ECDSA P-256 certificate by default, SRTP GCM/CM profiles, NACK and receiver
//! reports through its default interceptors, RTCP PLI from the application — and it
//! interoperates with aiortc (an independent stack) in the tests. `str0m` would also fit
//! (sans-IO, smaller), but webrtc-rs is the project's named default and was not found
//! lacking, so there was no reason to switch.
//!
//! ICE candidates: full gathering (bounded) before the POST by default, which is what
//! Ring requires; trickle ICE by PATCH once a server announces `Accept-Patch:
//! application/trickle-ice-sdpfrag` (see [`TrickleMode`] and [`trickle`]).
//!
//! ICE restart by PATCH (same module) when a connection drops and the server takes
//! PATCH: webrtc-rs 0.21 restarts ICE on a live connection (`PeerConnection::restart_ice`,
//! then a new offer; the sockets are kept); aiortc has no ICE restart, so the test server swaps the
//! credentials in its aioice connection itself. The source waits a short grace for the
//! restart before opening the next session (make-before-break, then backoff as before).

pub mod config;
pub mod peer;
pub mod sender_reports;
pub mod session;
pub mod signal;
pub mod source;
pub mod status;
pub mod trickle;

pub use config::{endpoint_url, BearerToken, IceServer, TokenProvider, TrickleMode, WhepConfig};
pub use source::{WhepError, WhepSource};
pub use status::WhepStatus;
pub use streamgate_pipeline::SourceState;
