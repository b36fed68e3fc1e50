//! Splits what an RTSPS camera sends into responses and interleaved frames,
//! with a cap on each response. Sans-IO, like the server's
//! [`RequestReader`](crate::server::framing::RequestReader), and on the same
//! pieces: `rtsp-types` parses, and a complete head's `Content-Length` is
//! checked first ([`declared_length`]), so a length over the cap fails as soon
//! as the head is in instead of waiting for a body that never comes. A body
//! shorter than declared is waited for (the caller's step timeout ends that);
//! one longer than declared leaves bytes that are not a message: malformed.

use bytes::{Buf, BytesMut};
use rtsp_types::{Message, ParseError, Response};

use crate::server::framing::{declared_length, split_interleaved, ParseSchedule};
use crate::server::framing::{FramingError, MAX_INTERLEAVED_LEN};

/// Largest response (head + body): room for the largest SDP we read plus headers.
pub const MAX_RESPONSE_LEN: usize = streamgate_rtp::sdp::MAX_SDP_LEN + 16 * 1024;

/// One message from the camera.
#[derive(Debug)]
pub enum Received {
    Response(Box<Response<Vec<u8>>>),
    Interleaved { channel: u8, data: bytes::Bytes },
}

/// Why the camera's bytes cannot be read (the connection is given up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("camera sent a response larger than {MAX_RESPONSE_LEN} bytes")]
    TooLarge,
    #[error("camera sent {0}")]
    BadContentLength(String),
    #[error("camera sent bytes that are not RTSP")]
    Malformed,
    #[error("camera sent a request, not a response")]
    UnexpectedRequest,
}

#[derive(Debug, Default)]
pub struct ResponseReader {
    buf: BytesMut,
    /// When the pending response is worth parsing.
    schedule: ParseSchedule,
}

impl ResponseReader {
    /// Appends received bytes; refuses once more is buffered than one message may need.
    pub fn push(&mut self, data: &[u8]) -> Result<(), ReadError> {
        let cap = MAX_RESPONSE_LEN.max(MAX_INTERLEAVED_LEN);
        if self.buf.len().saturating_add(data.len()) > cap.saturating_mul(2) {
            return Err(ReadError::TooLarge);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Received>, ReadError> {
        let blank = self
            .buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        self.buf.advance(blank);
        match self.buf.first() {
            None => return Ok(None),
            Some(b'$') => {
                return Ok(split_interleaved(&mut self.buf)
                    .map(|(channel, data)| Received::Interleaved { channel, data }))
            }
            Some(_) => {}
        }
        if let Some(head_len) = self.schedule.head_arrived(&self.buf) {
            if head_len > MAX_RESPONSE_LEN {
                return Err(ReadError::TooLarge);
            }
            let body = declared_length(&self.buf[..head_len]).map_err(|e| match e {
                FramingError::BadContentLength(what) => {
                    ReadError::BadContentLength(format!("Content-Length {what}"))
                }
                _ => ReadError::Malformed,
            })?;
            if body > (MAX_RESPONSE_LEN - head_len) as u64 {
                return Err(ReadError::TooLarge);
            }
            self.schedule.parse_at(head_len + body as usize);
        }
        if !self.schedule.due(self.buf.len()) {
            return match self.buf.len() > MAX_RESPONSE_LEN {
                true => Err(ReadError::TooLarge),
                false => Ok(None),
            };
        }
        match Message::<Vec<u8>>::parse(&self.buf[..]) {
            Ok((Message::Response(response), consumed)) => {
                self.buf.advance(consumed);
                self.schedule = ParseSchedule::default();
                Ok(Some(Received::Response(Box::new(response))))
            }
            Ok((Message::Request(_), _)) => Err(ReadError::UnexpectedRequest),
            Ok((Message::Data(_), _)) => Err(ReadError::Malformed),
            Err(ParseError::Incomplete(_)) if self.buf.len() > MAX_RESPONSE_LEN => {
                Err(ReadError::TooLarge)
            }
            Err(ParseError::Incomplete(needed)) => {
                self.schedule.incomplete(self.buf.len(), needed);
                Ok(None)
            }
            Err(ParseError::Error) => Err(ReadError::Malformed),
        }
    }
}
