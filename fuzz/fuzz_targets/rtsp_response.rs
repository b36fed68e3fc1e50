//! RTSP responses and interleaved frames as the RTSPS client reads them off a
//! camera's connection ([`ResponseReader`]: `rtsp-types` behind a check of the
//! declared length), then the typed headers the client reads from them
//! (Session, Transport, RTP-Info, Public, CSeq). The bytes arrive in chunks
//! whose size the first byte picks.
//!
//! Checks: no panic, the reader never buffers past its cap, and an
//! interleaved frame is never longer than its 16-bit length allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtsp_types::headers::{self, RtpInfos, Session, Transports};
use streamgate_rtsp::client::rtsps::reader::{Received, ResponseReader, MAX_RESPONSE_LEN};
use streamgate_rtsp::server::framing::MAX_INTERLEAVED_LEN;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut reader = ResponseReader::default();
    for piece in input.chunks(chunk) {
        if reader.push(piece).is_err() {
            return;
        }
        assert!(reader.buffered() <= 2 * MAX_RESPONSE_LEN.max(MAX_INTERLEAVED_LEN));
        loop {
            match reader.next_message() {
                Ok(Some(Received::Response(response))) => read_headers(&response),
                Ok(Some(Received::Interleaved { data, .. })) => {
                    assert!(data.len() <= usize::from(u16::MAX))
                }
                Ok(None) => break,
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
