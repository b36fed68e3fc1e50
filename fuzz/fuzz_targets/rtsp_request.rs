//! RTSP request framing and the header parsers behind it: arbitrary bytes, fed in
//! arbitrary chunks, never panic, never buffer past the cap, and every request
//! that parses goes through URL, Transport and Authorization handling cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_rtsp::server::auth::{Authenticator, Credentials};
use streamgate_rtsp::server::framing::{
    Incoming, RequestReader, MAX_INTERLEAVED_LEN, MAX_REQUEST_LEN,
};
use streamgate_rtsp::server::target::Target;
use streamgate_rtsp::server::transport;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so splits at every position get tried.
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut reader = RequestReader::new();
    let now = std::time::Instant::now();
    let auth = Authenticator::new();
    let expected = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    for piece in input.chunks(chunk) {
        if reader.push(piece, now).is_err() {
            return;
        }
        assert!(reader.buffered() <= 2 * MAX_REQUEST_LEN.max(MAX_INTERLEAVED_LEN));
        loop {
            match reader.next_message() {
                Ok(Some(Incoming::Request(request))) => {
                    let _ = Target::parse(request.request_uri());
                    let _ = transport::negotiate(&request, 0);
                    // Only Basic with the right credentials can pass: a Digest
                    // answer cannot, with no nonce ever issued. Schemes are
                    // case-insensitive (RFC 7235).
                    if let Some(value) = request.header(&rtsp_types::headers::AUTHORIZATION) {
                        assert!(
                            !auth.verify(&expected, value.as_str(), "DESCRIBE")
                                || value.as_str().to_ascii_lowercase().contains("basic")
                        );
                    }
                }
                Ok(Some(Incoming::Interleaved { data, .. })) => {
                    assert!(data.len() <= usize::from(u16::MAX))
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
