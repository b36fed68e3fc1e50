//! RTSP responses as a client reads them off a camera's connection, with the
//! message parser streamgate uses (`rtsp-types`), then the typed headers a
//! client reads from them (Session, Transport, RTP-Info, Public, CSeq,
//! Content-Length). The bytes arrive in chunks whose size the first byte picks.
//!
//! Checks: no panic; every message parsed consumes at least one byte and no
//! more than was buffered, and the body is as long as the header named exactly
//! `Content-Length` declares. (Not the typed lookup: rtsp-types 0.1.3 matches
//! header names by prefix, see crates/rtsp's framing test
//! `a_header_named_like_content_length_declares_no_body`, found here.)
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
    let declared = response
        .headers()
        .find(|(name, _)| name.as_str().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.as_str().parse::<usize>().ok());
    assert_eq!(declared.unwrap_or(0), response.body().len());
}
