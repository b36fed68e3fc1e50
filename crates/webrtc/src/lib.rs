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
//! Keyframe requests: a viewer's PLI or FIR becomes a keyframe request to the
//! source, at most one per viewer a second ([`ServerEvent::KeyframeRequest`];
//! the caller passes it to the Hub). Whether the source can make a keyframe is
//! not known here, and need not be: RTSP cameras (retina) and captures cannot,
//! WHEP and Ring sources send PLI upstream but their camera may ignore it. So
//! when no keyframe reaches the viewer within [`viewer::KEYFRAME_WAIT`], the
//! viewer resends its cached GOP (the keyframe and the video frames since: the
//! Hub's GOP cache as it reached this viewer, the same shared frames and
//! payloads) to itself only, with its own sequence numbers going on and
//! timestamps that never go back. The whole GOP rather than the keyframe alone:
//! the live frames after it refer to pictures the decoder lost, which the
//! resent frames rebuild. The viewer keeps its own copy of the GOP (pointers
//! only) because the Hub's cache may already be ahead of a lagging viewer, and
//! a frame it would get twice breaks decoding as surely as a missing one.
//!
//! WHIP publishers are one more kind of session on the same socket
//! ([`publisher`]): their received RTP goes back to the caller as
//! [`ServerEvent::Rtp`], for the stream's ingest.
//!
//! `testing` (feature `test-util`) connects str0m clients to a server in
//! simulated time, for the tests and the `fanout` bench.

pub mod payloads;
pub mod publisher;
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
