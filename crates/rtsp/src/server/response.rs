//! RTSP responses, serialized by hand: `rtsp-types` keeps headers in a map and
//! would merge the several `WWW-Authenticate` challenges a 401 needs into one
//! comma-joined line, which ffmpeg and GStreamer do not split.

use bytes::{BufMut, Bytes, BytesMut};
use rtsp_types::Version;

/// Status codes this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Found,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    NotEnoughBandwidth,
    SessionNotFound,
    MethodNotValidInThisState,
    UnsupportedTransport,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Found => 302,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::RequestEntityTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::NotEnoughBandwidth => 453,
            Status::SessionNotFound => 454,
            Status::MethodNotValidInThisState => 455,
            Status::UnsupportedTransport => 461,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::Found => "Found",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::RequestEntityTooLarge => "Request Entity Too Large",
            Status::UnsupportedMediaType => "Unsupported Media Type",
            Status::NotEnoughBandwidth => "Not Enough Bandwidth",
            Status::SessionNotFound => "Session Not Found",
            Status::MethodNotValidInThisState => "Method Not Valid in This State",
            Status::UnsupportedTransport => "Unsupported Transport",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// A response being built; headers keep their order and may repeat.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: Status,
    version: Version,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Response {
    /// A response to a request with this CSeq (echoed when the client sent one).
    pub fn new(status: Status, version: Version, cseq: Option<&str>) -> Self {
        let mut response = Response {
            status,
            version,
            headers: Vec::new(),
            body: Bytes::new(),
        };
        if let Some(cseq) = cseq {
            response.headers.push(("CSeq", sanitize(cseq)));
        }
        response.headers.push((
            "Server",
            concat!("streamgate/", env!("CARGO_PKG_VERSION")).to_string(),
        ));
        response
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, sanitize(&value.into())));
        self
    }

    pub fn body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.headers
            .push(("Content-Type", content_type.to_string()));
        self.body = body.into();
        self
    }

    pub fn to_bytes(&self) -> Bytes {
        let version = match self.version {
            Version::V2_0 => "2.0",
            _ => "1.0",
        };
        let mut out = BytesMut::with_capacity(256 + self.body.len());
        out.put_slice(
            format!(
                "RTSP/{version} {} {}\r\n",
                self.status.code(),
                self.status.reason()
            )
            .as_bytes(),
        );
        for (name, value) in &self.headers {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.put_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
        out.freeze()
    }
}

/// Header values echo client input (CSeq, URLs): never let one break the framing.
fn sanitize(value: &str) -> String {
    value.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_repeated_headers_and_body() {
        let bytes = Response::new(Status::Unauthorized, Version::V1_0, Some("7\r\nX: y"))
            .header("WWW-Authenticate", "Digest a")
            .header("WWW-Authenticate", "Basic b")
            .body("application/sdp", "v=0\r\n")
            .to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("RTSP/1.0 401 Unauthorized\r\nCSeq: 7X: y\r\n"));
        assert!(text.contains("WWW-Authenticate: Digest a\r\nWWW-Authenticate: Basic b\r\n"));
        assert!(text.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"));
    }
}
