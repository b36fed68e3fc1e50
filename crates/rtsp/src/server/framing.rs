//! Splits the bytes a client sends on its RTSP connection into requests and
//! interleaved (`$`) data frames, with a cap on how much it will buffer and a
//! deadline for each message to be complete.
//!
//! Sans-IO: the connection task feeds whatever it read with [`RequestReader::push`]
//! (with the time it was read), pulls complete messages with
//! [`RequestReader::next_message`], and asks [`RequestReader::poll_timeout`] when
//! to call [`RequestReader::handle_timeout`]. Parsing is done by `rtsp-types`
//! (the RTSP 1.0/2.0 message parser gst-plugins-rs uses: requests, responses and
//! interleaved data in one nom parser), so no hand-rolled header parser sits on
//! the network path. The one exception is a scan of a complete head's
//! `Content-Length` lines ([`declared_length`]), because `rtsp-types` trusts
//! the first one it sees and then waits for that many bytes: the scan refuses a
//! length over the cap (413) and a negative, non-numeric or conflicting one
//! (400) as soon as the head is in, instead of waiting for a body that may
//! never come.
//!
//! Limits, and the status each is answered with ([`FramingError::status`]):
//! - a head over [`MAX_REQUEST_LEN`] (or buffered input past twice the cap): 400;
//! - a declared body that would take the request over [`MAX_REQUEST_LEN`]: 413;
//! - a `Content-Length` that is not a length: 400;
//! - a message (request or interleaved frame) not complete within the request
//!   timeout of its first byte (slowloris): 408. Time between messages is not
//!   counted here: that is the session timeout's business.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rtsp_types::{Message, ParseError, Request};

use super::response::Status;

/// Largest request (head + body) a client may send. RTSP requests from players
/// are a few hundred bytes; 16 KiB leaves room for long URLs and auth headers.
pub const MAX_REQUEST_LEN: usize = 16 * 1024;

/// An interleaved frame is `$`, channel, 16-bit length and at most 65535 bytes.
pub const MAX_INTERLEAVED_LEN: usize = 4 + u16::MAX as usize;

/// How long a message may take from its first byte to its last, by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `Content-Length` value quoted back in an error (they echo client input).
const QUOTED_VALUE_LEN: usize = 24;

/// One message from the client.
#[derive(Debug)]
pub enum Incoming {
    Request(Box<Request<Vec<u8>>>),
    /// An interleaved frame: RTCP receiver reports of a reader, or a
    /// publisher's RTP and RTCP (a slice of the received bytes, not a copy).
    Interleaved {
        channel: u8,
        data: Bytes,
    },
}

/// Why the connection must answer [`FramingError::status`] and close.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("request larger than {MAX_REQUEST_LEN} bytes")]
    TooLarge,
    /// The head is in and declares a body that takes the request over the cap.
    #[error("Content-Length {declared} takes the request over the {MAX_REQUEST_LEN}-byte cap")]
    BodyTooLarge {
        /// The declared length (`u64::MAX` when it does not even fit).
        declared: u64,
    },
    /// Negative, non-numeric, empty or conflicting `Content-Length` headers.
    #[error("Content-Length {0}")]
    BadContentLength(String),
    #[error("request not complete within {0:?} of its first byte")]
    Timeout(Duration),
    #[error("malformed RTSP message")]
    Malformed,
    #[error("client sent an RTSP response, not a request")]
    UnexpectedResponse,
}

impl FramingError {
    /// The status the connection answers with before it closes.
    pub fn status(&self) -> Status {
        match self {
            FramingError::BodyTooLarge { .. } => Status::RequestEntityTooLarge,
            FramingError::Timeout(_) => Status::RequestTimeout,
            _ => Status::BadRequest,
        }
    }
}

/// Accumulates received bytes and yields complete messages.
#[derive(Debug)]
pub struct RequestReader {
    buf: BytesMut,
    request_timeout: Duration,
    /// When the first byte of the message now pending arrived; `None` between
    /// messages.
    pending_since: Option<Instant>,
    /// When the last bytes arrived (the start of a pipelined message left over).
    last_push: Option<Instant>,
    /// When the pending message is worth parsing.
    schedule: ParseSchedule,
}

impl Default for RequestReader {
    fn default() -> Self {
        RequestReader::with_request_timeout(DEFAULT_REQUEST_TIMEOUT)
    }
}

impl RequestReader {
    pub fn new() -> Self {
        RequestReader::default()
    }

    /// A reader whose messages must be complete within `request_timeout` of their first byte.
    pub fn with_request_timeout(request_timeout: Duration) -> Self {
        RequestReader {
            buf: BytesMut::new(),
            request_timeout,
            pending_since: None,
            last_push: None,
            schedule: ParseSchedule::default(),
        }
    }

    /// Appends bytes received at `now`; refuses (without buffering) once the
    /// pending message would exceed its cap.
    pub fn push(&mut self, data: &[u8], now: Instant) -> Result<(), FramingError> {
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
        self.last_push = Some(now);
        self.skip_blank_lines();
        if self.pending_since.is_none() && !self.buf.is_empty() {
            self.pending_since = Some(now);
        }
        Ok(())
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// When the pending message's time is up; `None` when no message is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending_since.map(|since| since + self.request_timeout)
    }

    /// Err once a message has been pending for the request timeout at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), FramingError> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => Err(FramingError::Timeout(self.request_timeout)),
            _ => Ok(()),
        }
    }

    /// Clients may send stray CRLFs between messages (keep-alive pings).
    fn skip_blank_lines(&mut self) {
        let blank = self
            .buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        self.buf.advance(blank);
    }

    /// Drops a returned message's bytes; what follows is a new message, pending
    /// since the bytes that brought it (at the latest).
    fn consume(&mut self, len: usize) {
        self.buf.advance(len);
        self.schedule = ParseSchedule::default();
        self.skip_blank_lines();
        self.pending_since = if self.buf.is_empty() {
            None
        } else {
            self.last_push
        };
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, FramingError> {
        self.skip_blank_lines();
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.buf[0] == b'$' {
            return Ok(self.next_interleaved());
        }
        if let Some(head_len) = self.schedule.head_arrived(&self.buf) {
            if head_len > MAX_REQUEST_LEN {
                return Err(FramingError::TooLarge);
            }
            let body = declared_length(&self.buf[..head_len])?;
            if body > (MAX_REQUEST_LEN - head_len) as u64 {
                return Err(FramingError::BodyTooLarge { declared: body });
            }
            self.schedule.parse_at(head_len + body as usize);
        }
        if !self.schedule.due(self.buf.len()) {
            return match self.buf.len() > MAX_REQUEST_LEN {
                true => Err(FramingError::TooLarge),
                false => Ok(None),
            };
        }
        match Message::<Vec<u8>>::parse(&self.buf[..]) {
            Ok((Message::Request(request), consumed)) => {
                if consumed > MAX_REQUEST_LEN {
                    return Err(FramingError::TooLarge);
                }
                self.consume(consumed);
                Ok(Some(Incoming::Request(Box::new(request))))
            }
            Ok((Message::Response(_), _)) => Err(FramingError::UnexpectedResponse),
            // A `$` frame is handled above; rtsp-types never returns Data otherwise.
            Ok((Message::Data(_), _)) => Err(FramingError::Malformed),
            Err(ParseError::Incomplete(_)) if self.buf.len() > MAX_REQUEST_LEN => {
                Err(FramingError::TooLarge)
            }
            Err(ParseError::Incomplete(needed)) => {
                self.schedule.incomplete(self.buf.len(), needed);
                Ok(None)
            }
            Err(ParseError::Error) => Err(FramingError::Malformed),
        }
    }

    fn next_interleaved(&mut self) -> Option<Incoming> {
        let (channel, data) = split_interleaved(&mut self.buf)?;
        self.consume(0);
        Some(Incoming::Interleaved { channel, data })
    }
}

/// Takes a complete interleaved frame (`$`, channel, 16-bit length, data) off
/// the front of `buf`, without copying its data; `None` until it is all in.
pub(crate) fn split_interleaved(buf: &mut BytesMut) -> Option<(u8, Bytes)> {
    if buf.len() < 4 {
        return None;
    }
    let channel = buf[1];
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let total = 4 + len;
    if buf.len() < total {
        return None;
    }
    Some((channel, buf.split_to(total).freeze().slice(4..)))
}

/// When a pending message is worth handing to `rtsp-types`, which parses from
/// the start of the buffer each time: parsing on every read would cost a client
/// that sends a byte at a time quadratic time. Instead each byte is searched
/// once for the end of the head; the parser runs once the head and its declared
/// body are in, and before the head is in only each time the buffer has
/// doubled, so a message that is garbage from its first bytes is still refused
/// at once.
#[derive(Debug, Default)]
pub(crate) struct ParseSchedule {
    /// Bytes of the buffer already searched for the head's end.
    searched: usize,
    /// The head's length, once it is in.
    head_len: Option<usize>,
    /// The buffered length at which the parser runs next.
    parse_at: usize,
}

impl ParseSchedule {
    /// The head's length, when this call finds its end (once per message),
    /// searching only the bytes that came since the last call.
    pub(crate) fn head_arrived(&mut self, buf: &[u8]) -> Option<usize> {
        if self.head_len.is_some() {
            return None;
        }
        let from = self.searched.saturating_sub(3).min(buf.len());
        self.searched = buf.len();
        self.head_len = head_len(&buf[from..]).map(|len| from + len);
        self.head_len
    }

    /// The head is in: the message is complete at `len` bytes.
    pub(crate) fn parse_at(&mut self, len: usize) {
        self.parse_at = len;
    }

    /// Whether the parser may find a whole message in `buffered` bytes.
    pub(crate) fn due(&self, buffered: usize) -> bool {
        buffered >= self.parse_at
    }

    /// The parser found `buffered` bytes incomplete, `needed` short if it knows.
    pub(crate) fn incomplete(&mut self, buffered: usize, needed: Option<NonZeroUsize>) {
        let needed = needed.map_or(1, NonZeroUsize::get);
        self.parse_at = match self.head_len {
            Some(_) => buffered + needed,
            None => (buffered * 2).max(buffered + needed),
        };
    }
}

/// Length of the head (request line, headers and the blank line) once it is in.
pub(crate) fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The body length a complete head declares: 0 without `Content-Length`; Err
/// for a value that is not a decimal length or for several that differ. A
/// value too long for `u64` is `u64::MAX` (over any cap, so answered 413).
pub fn declared_length(head: &[u8]) -> Result<u64, FramingError> {
    let mut declared: Option<u64> = None;
    // Skip the request line; header names are tokens, so a name never spans lines.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let quoted = || {
            let text = String::from_utf8_lossy(value);
            let short: String = text.chars().take(QUOTED_VALUE_LEN).collect();
            format!("{short:?}")
        };
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength(format!(
                "{} is not a length",
                quoted()
            )));
        }
        let length = value.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let length = length.unwrap_or(u64::MAX);
        match declared {
            Some(earlier) if earlier != length => {
                return Err(FramingError::BadContentLength(format!(
                    "given twice, as {earlier} and {}",
                    quoted()
                )));
            }
            _ => declared = Some(length),
        }
    }
    Ok(declared.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtsp_types::Method;

    fn now() -> Instant {
        Instant::now()
    }

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
            reader.push(chunk, now()).unwrap();
        }
        assert_eq!(next_request(&mut reader).method(), &Method::Options);
        assert!(matches!(
            reader.next_message(),
            Ok(Some(Incoming::Interleaved { channel: 1, data })) if data[..] == [9, 9, 9]
        ));
        assert_eq!(next_request(&mut reader).method(), &Method::GetParameter);
        assert!(matches!(reader.next_message(), Ok(None)));
    }

    #[test]
    fn waits_for_the_body() {
        let mut reader = RequestReader::new();
        reader
            .push(
                b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 3\r\nContent-Length: 4\r\n\r\nab",
                now(),
            )
            .unwrap();
        assert!(matches!(reader.next_message(), Ok(None)));
        reader.push(b"cd", now()).unwrap();
        assert_eq!(next_request(&mut reader).body(), b"abcd");
    }

    /// From the `rtsp_response` fuzz target: rtsp-types 0.1.3 compares header
    /// names by their common prefix, so its typed lookups take
    /// `Content-Lengthtent-Length` for `Content-Length`. The framing reads the
    /// body by the exact name, as rtsp-types' own parser does: the look-alike
    /// declares nothing and the next request follows at once.
    #[test]
    fn a_header_named_like_content_length_declares_no_body() {
        let mut reader = RequestReader::new();
        reader
            .push(
                b"OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\nContent-Lengthtent-Length: 468\r\n\r\n\
                  OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 2\r\n\r\n",
                now(),
            )
            .unwrap();
        assert!(next_request(&mut reader).body().is_empty());
        let second = next_request(&mut reader);
        assert_eq!(
            second
                .header(&rtsp_types::headers::CSEQ)
                .map(|v| v.as_str()),
            Some("2")
        );
    }

    /// rtsp-types parses from the buffer's start: a head that comes a byte at
    /// a time is parsed a handful of times (each time the buffer doubled, then
    /// once whole), not once per byte.
    #[test]
    fn a_head_sent_a_byte_at_a_time_is_parsed_a_few_times() {
        let head = format!(
            "OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(8000)
        );
        let mut schedule = ParseSchedule::default();
        let mut parses = 0;
        for len in 1..=head.len() {
            let buf = &head.as_bytes()[..len];
            if let Some(head_len) = schedule.head_arrived(buf) {
                schedule.parse_at(head_len);
            }
            if !schedule.due(len) {
                continue;
            }
            parses += 1;
            match Message::<Vec<u8>>::parse(buf) {
                Ok((Message::Request(_), consumed)) => {
                    assert_eq!((len, consumed), (head.len(), head.len()));
                    break;
                }
                Err(ParseError::Incomplete(needed)) => schedule.incomplete(len, needed),
                other => panic!("{other:?} at {len} bytes"),
            }
        }
        // 1, 2, 4, ... 8192 bytes, then the whole head.
        assert!((2..=15).contains(&parses), "{parses} parses");
    }

    /// The doubling still refuses bytes that are no request from the first read.
    #[test]
    fn a_tls_hello_on_the_plain_port_is_refused_at_once() {
        let mut reader = RequestReader::new();
        reader
            .push(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], now())
            .unwrap();
        assert_eq!(reader.next_message().unwrap_err(), FramingError::Malformed);
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut reader = RequestReader::new();
        let mut result = Ok(());
        let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
        reader
            .push(b"OPTIONS rtsp://h/s RTSP/1.0\r\n", now())
            .unwrap();
        for _ in 0..40 {
            result = reader
                .push(line.as_bytes(), now())
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
        reader
            .push(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n", now())
            .unwrap();
        assert!(matches!(
            reader.next_message(),
            Err(FramingError::UnexpectedResponse)
        ));
    }

    fn head_with(lengths: &[&str]) -> Vec<u8> {
        let mut head = b"SET_PARAMETER rtsp://h/s RTSP/1.0\r\nCSeq: 4\r\n".to_vec();
        for length in lengths {
            head.extend_from_slice(format!("Content-Length:{length}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    /// The head alone decides: no body byte has to arrive for the answer.
    #[test]
    fn lying_lengths_are_refused_as_soon_as_the_head_is_in() {
        let cases: [(&[&str], FramingError); 8] = [
            (
                &[" 99999999999"],
                FramingError::BodyTooLarge {
                    declared: 99_999_999_999,
                },
            ),
            (&[" 16384"], FramingError::BodyTooLarge { declared: 16384 }),
            (
                &[" 123456789012345678901234567890"],
                FramingError::BodyTooLarge { declared: u64::MAX },
            ),
            (
                &[" -5"],
                FramingError::BadContentLength("\"-5\" is not a length".into()),
            ),
            (
                &[" +5"],
                FramingError::BadContentLength("\"+5\" is not a length".into()),
            ),
            (
                &[" 12abc"],
                FramingError::BadContentLength("\"12abc\" is not a length".into()),
            ),
            (
                &[""],
                FramingError::BadContentLength("\"\" is not a length".into()),
            ),
            (
                &[" 4", "5"],
                FramingError::BadContentLength("given twice, as 4 and \"5\"".into()),
            ),
        ];
        for (lengths, expected) in cases {
            let mut reader = RequestReader::new();
            let head = head_with(lengths);
            // Fed in pieces: nothing is decided before the blank line.
            let (start, end) = head.split_at(head.len() - 2);
            reader.push(start, now()).unwrap();
            assert!(matches!(reader.next_message(), Ok(None)), "{lengths:?}");
            reader.push(end, now()).unwrap();
            let status = expected.status();
            assert_eq!(reader.next_message().unwrap_err(), expected, "{lengths:?}");
            let want = match expected {
                FramingError::BodyTooLarge { .. } => 413,
                _ => 400,
            };
            assert_eq!(status.code(), want);
        }
    }

    #[test]
    fn repeated_equal_lengths_and_any_case_are_accepted() {
        let mut reader = RequestReader::new();
        let mut input = head_with(&[" 2", "2"]);
        input.extend_from_slice(b"ok");
        input.extend_from_slice(b"GET_PARAMETER rtsp://h/s RTSP/1.0\r\ncontent-LENGTH: 0\r\n\r\n");
        reader.push(&input, now()).unwrap();
        assert_eq!(next_request(&mut reader).body(), b"ok");
        assert_eq!(next_request(&mut reader).method(), &Method::GetParameter);
        // The largest body that still fits.
        let head = head_with(&[" 0"]);
        let fits = MAX_REQUEST_LEN - head.len();
        let head = head_with(&[&format!(" {fits}")]);
        let fits = MAX_REQUEST_LEN - head.len();
        let mut input = head_with(&[&format!(" {fits}")]);
        input.resize(MAX_REQUEST_LEN, b'x');
        reader.push(&input, now()).unwrap();
        assert_eq!(next_request(&mut reader).body().len(), fits);
    }

    /// Each message has the request timeout from its first byte; the time
    /// between messages (and stray CRLFs there) does not count.
    #[test]
    fn a_message_must_be_complete_within_the_request_timeout() {
        let timeout = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut reader = RequestReader::with_request_timeout(timeout);
        assert_eq!(reader.poll_timeout(), None);
        reader.push(b"\r\n", at(0)).unwrap();
        assert_eq!(
            reader.poll_timeout(),
            None,
            "keep-alive CRLF starts nothing"
        );
        reader
            .push(b"OPTIONS rtsp://h/s RTSP/1.0\r\n", at(1))
            .unwrap();
        assert_eq!(reader.poll_timeout(), Some(at(11)));
        // Trickling bytes does not move the deadline.
        reader.push(b"CSeq: 1\r\n", at(9)).unwrap();
        assert!(matches!(reader.next_message(), Ok(None)));
        assert_eq!(reader.poll_timeout(), Some(at(11)));
        assert_eq!(reader.handle_timeout(at(10)), Ok(()));
        // Completed in time, with the start of the next one pipelined behind it.
        reader
            .push(b"\r\nOPTIONS rtsp://h/s RTSP/1.0\r\n", at(10))
            .unwrap();
        assert_eq!(next_request(&mut reader).method(), &Method::Options);
        assert!(matches!(reader.next_message(), Ok(None)));
        assert_eq!(reader.poll_timeout(), Some(at(20)));
        assert_eq!(
            reader.handle_timeout(at(20)),
            Err(FramingError::Timeout(timeout))
        );
        assert_eq!(FramingError::Timeout(timeout).status().code(), 408);

        // An interleaved frame is held to the same deadline.
        let mut reader = RequestReader::with_request_timeout(timeout);
        reader.push(&[b'$', 1, 0, 8, 1, 2], at(0)).unwrap();
        assert!(matches!(reader.next_message(), Ok(None)));
        assert!(reader.handle_timeout(at(10)).is_err());
        reader.push(&[3, 4, 5, 6, 7, 8], at(5)).unwrap();
        assert!(matches!(
            reader.next_message(),
            Ok(Some(Incoming::Interleaved { channel: 1, data })) if data.len() == 8
        ));
        assert_eq!(reader.poll_timeout(), None, "nothing pending after it");
        assert_eq!(reader.handle_timeout(at(100)), Ok(()));
    }
}
