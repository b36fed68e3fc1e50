//! WHEP server sessions: browsers and apps play a stream over WebRTC.
//!
//! Sans-IO on [str0m](https://docs.rs/str0m): each viewer is an `Rtc` state
//! machine in RTP mode and ICE-lite; [`WhepServer`] holds them all behind one
//! UDP socket and takes datagrams, Hub frames and time as input. The binary's
//! thin task owns the socket and the Hub subscriptions. str0m rather than
//! webrtc-rs (the WHEP client's stack): webrtc-rs gives every connection its
//! own sockets and tasks, which does not fit hundreds of viewers on one port.
//!
//! Media: the source's RTP packets go out as they are (H.264 FU-A is
//! packetization mode 1; ingest already puts parameter sets before each IDR);
//! per viewer only SSRC, sequence number, timestamp offset and payload type
//! change. AAC has no WebRTC payload format browsers decode, so AAC tracks are
//! left out (with a warning). SRTP encrypts per viewer, so each viewer's
//! datagram is necessarily its own buffer; the payload it is made from is shared.
//! Frames that reach a viewer before ICE and DTLS are done (the GOP cache) are
//! kept and sent on connection, so the first picture needs no wait for the next
//! keyframe.
//!
//! `testing` (feature `test-util`) connects str0m clients to a server in
//! simulated time, for the tests and the `fanout` bench.

pub mod payloads;
pub mod server;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod viewer;

pub use server::{ServerEvent, SessionId, WhepServer};
pub use str0m::config::DtlsCert;
pub use viewer::{Local, OfferError};

/// The process's one DTLS certificate (every viewer's answer carries its
/// fingerprint); also installs the crypto provider.
pub fn process_certificate() -> Option<DtlsCert> {
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider.dtls_provider.generate_certificate();
    provider.install_process_default();
    cert
}
