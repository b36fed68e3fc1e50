//! Splits the bytes a client sends on its RTSP connection into requests and
//! interleaved (`$`) data frames, with a cap on how much it will buffer.
//!
//! Sans-IO: the connection task feeds whatever it read with [`RequestReader::push`]
//! and pulls complete messages with [`RequestReader::next_message`]. Parsing is done by
//! `rtsp-types` (the RTSP 1.0/2.0 message parser gst-plugins-rs uses: requests,
//! responses and interleaved data in one nom parser), so no hand-rolled header
//! parser sits on the network path.

use bytes::{Buf, BytesMut};
use rtsp_types::{Message, ParseError, Request};

/// Largest request (head + body) a client may send. RTSP requests from players
/// are a few hundred bytes; 16 KiB leaves room for long URLs and auth headers.
pub const MAX_REQUEST_LEN: usize = 16 * 1024;

/// An interleaved frame is `$`, channel, 16-bit length and at most 65535 bytes.
pub const MAX_INTERLEAVED_LEN: usize = 4 + u16::MAX as usize;

/// One message from the client.
#[derive(Debug)]
pub enum Incoming {
    Request(Box<Request<Vec<u8>>>),
    /// An interleaved frame (RTCP receiver reports over TCP): channel and length.
    Interleaved {
        channel: u8,
        len: usize,
    },
}

/// Why the connection must answer 400 and close.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("request larger than {MAX_REQUEST_LEN} bytes")]
    TooLarge,
    #[error("malformed RTSP message")]
    Malformed,
    #[error("client sent an RTSP response, not a request")]
    UnexpectedResponse,
}

/// Accumulates received bytes and yields complete messages.
#[derive(Debug, Default)]
pub struct RequestReader {
    buf: BytesMut,
}

impl RequestReader {
    pub fn new() -> Self {
        RequestReader::default()
    }

    /// Appends received bytes; refuses (without buffering) once the pending
    /// message would exceed its cap.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramingError> {
        let cap = if self.buf.first().or(data.first()) == Some(&b'$') {
            MAX_INTERLEAVED_LEN
        } else {
            MAX_REQUEST_LEN
        };
        // Several small messages may be pipelined; the cap applies to what is
        // still unparsed, so allow one full message beyond what is pending.
        if self.buf.len().saturating_add(data.len()) > cap.saturating_mul(2) {
            return Err(FramingError::TooLarge);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, FramingError> {
        // Clients may send stray CRLFs between messages (keep-alive pings).
        while matches!(self.buf.first(), Some(b'\r' | b'\n')) {
            self.buf.advance(1);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.buf[0] == b'$' {
            return self.next_interleaved();
        }
        match Message::<Vec<u8>>::parse(&self.buf[..]) {
            Ok((Message::Request(request), consumed)) => {
                if consumed > MAX_REQUEST_LEN {
                    return Err(FramingError::TooLarge);
                }
                self.buf.advance(consumed);
                Ok(Some(Incoming::Request(Box::new(request))))
            }
            Ok((Message::Response(_), _)) => Err(FramingError::UnexpectedResponse),
            // A `$` frame is handled above; rtsp-types never returns Data otherwise.
            Ok((Message::Data(_), _)) => Err(FramingError::Malformed),
            Err(ParseError::Incomplete(_)) if self.buf.len() > MAX_REQUEST_LEN => {
                Err(FramingError::TooLarge)
            }
            Err(ParseError::Incomplete(_)) => Ok(None),
            Err(ParseError::Error) => Err(FramingError::Malformed),
        }
    }

    fn next_interleaved(&mut self) -> Result<Option<Incoming>, FramingError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let channel = self.buf[1];
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        let total = 4 + len;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(total);
        Ok(Some(Incoming::Interleaved { channel, len }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtsp_types::Method;

    fn next_request(reader: &mut RequestReader) -> Request<Vec<u8>> {
        match reader.next_message() {
            Ok(Some(Incoming::Request(r))) => *r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn splits_pipelined_requests_and_interleaved_frames() {
        let mut reader = RequestReader::new();
        let mut input = b"OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\n\r\n".to_vec();
        input.extend_from_slice(&[b'$', 1, 0, 3, 9, 9, 9]);
        input.extend_from_slice(b"GET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        for chunk in input.chunks(5) {
            reader.push(chunk).unwrap();
        }
        assert_eq!(next_request(&mut reader).method(), &Method::Options);
        assert!(matches!(
            reader.next_message(),
            Ok(Some(Incoming::Interleaved { channel: 1, len: 3 }))
        ));
        assert_eq!(next_request(&mut reader).method(), &Method::GetParameter);
        assert!(matches!(reader.next_message(), Ok(None)));
    }

    #[test]
    fn waits_for_the_body() {
        let mut reader = RequestReader::new();
        reader
            .push(b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 3\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        assert!(matches!(reader.next_message(), Ok(None)));
        reader.push(b"cd").unwrap();
        assert_eq!(next_request(&mut reader).body(), b"abcd");
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut reader = RequestReader::new();
        let mut result = Ok(());
        let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
        reader.push(b"OPTIONS rtsp://h/s RTSP/1.0\r\n").unwrap();
        for _ in 0..40 {
            result = reader
                .push(line.as_bytes())
                .and_then(|()| reader.next_message().map(|_| ()));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(FramingError::TooLarge));
    }

    #[test]
    fn a_response_is_not_a_request() {
        let mut reader = RequestReader::new();
        reader.push(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n").unwrap();
        assert!(matches!(
            reader.next_message(),
            Err(FramingError::UnexpectedResponse)
        ));
    }
}
