//! RTSP camera source: pulls `rtsp://` cameras (or other RTSP servers) into a
//! stream's [`Hub`](streamgate_pipeline::Hub).
//!
//! # Design
//!
//! - **retina for RTSP.** `retina` is a maintained client tested against many
//!   real cameras (Basic/Digest auth, keep-alives, TCP interleaving, UDP, the
//!   quirks of live555, Reolink, Dahua…); we do not redo that.
//! - **Raw packets, not retina's frames.** The session is read packet by packet
//!   (`Session<Playing>` as a `Stream` of `PacketItem`s, not `demuxed()`) and every
//!   RTP packet goes to [`StreamIngest::push_rtp`](streamgate_pipeline::StreamIngest::push_rtp),
//!   like every other source. So the camera's payloads reach RTSP consumers
//!   unchanged, one reorder/loss/timestamp-continuity path serves all sources, and
//!   codecs retina does not depacketize (Opus) work through our own depacketizers.
//!   retina's frames would also cost a copy per frame and lose the packet boundaries.
//!   retina copies each packet out of its read buffer and then lends it only as a
//!   slice, so we copy it once more into a `Bytes` that the rest of the pipeline
//!   slices without copying (a ~1.2 KB memcpy per packet; retina offers no way to
//!   take its buffer). Over UDP retina drops packets that arrive out of order (it
//!   has no reorder buffer), so the ingest sees them as loss.
//! - **Tracks from our SDP reader.** The DESCRIBE body goes through
//!   [`streamgate_rtp::sdp::parse_tracks`]; retina's streams are paired with those
//!   tracks by order, media kind and payload type, and only those are SET UP.
//!   Parameter sets come from `fmtp` and, in band, from the ingest.
//! - **Continuous time.** One `StreamIngest` lives as long as the source: a
//!   reconnect calls `source_restarted()`, so consumers stay subscribed and their
//!   timestamps keep going forward. Only a camera whose track layout changes
//!   (codec, clock or count) gets a fresh ingest.
//! - **Sender reports go to the ingest** (`PacketItem::Rtcp`, parsed by
//!   [`streamgate_rtp::rtcp`]), which uses them only to keep the camera's
//!   audio/video offset when tracks (re-)anchor, above all after a reconnect;
//!   frames' wall clock stays the ingest's own line, so the restream's reports
//!   never jump (an earlier version let camera reports move the wall clock and
//!   ffmpeg's DTS went back: tests/rtsp_source_camera.rs).
//! - **Keyframe requests** cannot be passed on: RTSP has no PLI path and retina
//!   sends no RTCP feedback. Consumers wait for the camera's next keyframe (the
//!   Hub's GOP cache means a new consumer rarely has to).
//! - **RTSPS (`rtsps://`) has its own minimal client** (`client/rtsps`), because
//!   retina 0.4 has no TLS and no transport hook (`Session::describe` dials its
//!   own `tokio::net::TcpStream`, so it cannot be handed a rustls stream), and
//!   contributing TLS to retina upstream would change its connection layer for
//!   every user and is not ours to schedule. The client is a sans-IO state
//!   machine (OPTIONS, DESCRIBE, SETUP of each usable track as RTP/AVP/TCP
//!   interleaved inside the TLS connection, as UniFi Protect serves it, PLAY,
//!   then GET_PARAMETER or OPTIONS keep-alives at half the session timeout;
//!   Basic and Digest through `http-auth`, retina's own auth crate; responses
//!   parsed by `rtsp-types` with a cap and `Content-Length` checks shared with
//!   the server), inside a thin tokio-rustls task. It yields the same
//!   `SessionEvent`s as the retina path, so the source
//!   task and supervisor do not know which one runs. Certificates
//!   ([`TlsOptions`]): webpki roots plus an optional `tls_ca` by default,
//!   `tls_fingerprint` pins the leaf's SHA-256 (a mismatch names both),
//!   `tls_verify = false` accepts any. What it does not do: UDP (RTSPS media
//!   is interleaved), SRTP (`RTP/SAVP` with `a=crypto`: an SDP offering only
//!   that fails naming the offer), RTCP receiver reports (keep-alives hold the
//!   session), and redirects.
//! - **Secrets.** Credentials are taken out of the URL ([`CameraUrl`]) and given
//!   to retina apart; logs and [`SourceStatus`] only ever show the redacted URL,
//!   and error texts pass through [`CameraUrl::redact`].
//!
//! # Lifecycle ([`RtspSource`])
//!
//! The pipeline's [`Supervisor`] decides when to connect and disconnect; the source
//! task only carries that out with retina. On demand (default): connect when the
//! Hub's subscriber count goes above zero, disconnect after
//! [`SourceConfig::idle_grace`] with none. `always_on` stays connected. Connection
//! failures, EOF, retina read/keep-alive errors, steps that take longer than
//! `connect_timeout`, and `stall_timeout` without a packet all lead to a reconnect
//! after a stepped [`Backoff`] (1 s ×5, 5 s ×5, 10 s ×10, then 60 s), reset by a
//! session that played for a minute. Transport `auto` tries UDP and falls back to
//! TCP for good when UDP fails or brings no packet (at once, not counted as a
//! failure: that is RTSP's own, so it stays here).
//!
//! [`Backoff`]: streamgate_pipeline::Backoff
//! [`Supervisor`]: streamgate_pipeline::Supervisor

mod camera_url;
mod config;
mod error;
pub mod rtsps;
mod session;
mod source;
mod status;

pub use camera_url::CameraUrl;
pub use config::{
    BadFingerprint, Fingerprint, SourceConfig, TlsOptions, TransportMode, UnknownTransport,
};
pub use error::SourceError;
pub use source::RtspSource;
pub use status::SourceStatus;
pub use streamgate_pipeline::SourceState;
