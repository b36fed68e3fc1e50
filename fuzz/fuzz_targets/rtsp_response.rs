//! RTSP responses as a client reads them off a camera's connection, with the
//! message parser streamgate uses (`rtsp-types`), then the typed headers a
//! client reads from them (Session, Transport, RTP-Info, Public, CSeq,
//! Content-Length). The bytes arrive in chunks whose size the first byte picks.
//!
//! Checks: no panic, and every message parsed consumes at least one byte and no
//! more than was buffered. Not the body's length: rtsp-types 0.1.3 takes it
//! from headers our exact-name reading does not see (typed lookups match names
//! by prefix, and stray `\n\r` line ends shift names; the input is kept in
//! fuzz/seeds/rtsp_response/lenient-content-length). streamgate frames no
//! response with rtsp-types (retina reads the cameras'); its server frames
//! requests by the exact name, see crates/rtsp's framing test
//! `a_header_named_like_content_length_declares_no_body`, found here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtsp_types::headers::{self, RtpInfos, Session, Transports};
use rtsp_types::{Message, ParseError};

/// The most a client buffers for one message (the server's request cap).
const MAX_MESSAGE: usize = streamgate_rtsp::server::framing::MAX_REQUEST_LEN;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut buffer: Vec<u8> = Vec::new();
    for piece in input.chunks(chunk) {
        buffer.extend_from_slice(piece);
        loop {
            match Message::<Vec<u8>>::parse(&buffer) {
                Ok((message, consumed)) => {
                    assert!(consumed > 0 && consumed <= buffer.len());
                    if let Message::Response(response) = &message {
                        read_headers(response);
                    }
                    buffer.drain(..consumed);
                }
                Err(ParseError::Incomplete(_)) if buffer.len() <= MAX_MESSAGE => break,
                Err(_) => return,
            }
        }
    }
});

fn read_headers(response: &rtsp_types::Response<Vec<u8>>) {
    let _ = response.typed_header::<Session>();
    let _ = response.typed_header::<Transports>();
    let _ = response.typed_header::<RtpInfos>();
    let _ = response.typed_header::<headers::Public>();
    let _ = response.typed_header::<headers::CSeq>();
}
