//! Why a camera connection failed or ended. Every message is safe to show: URLs in
//! it are redacted and retina's multi-line diagnostics are cut to their first line.

use std::time::Duration;

/// A failure of one camera connection (the source retries it) or of its configuration.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The configured URL cannot be used (not retried).
    #[error("bad camera URL: {reason}")]
    BadUrl { reason: String },
    /// The camera did not complete a step in time (accepts TCP but never answers).
    #[error("camera did not answer {step} within {timeout:?}")]
    Timeout {
        step: &'static str,
        timeout: Duration,
    },
    /// The camera refused or failed a request, e.g. `401 Unauthorized response to DESCRIBE`.
    #[error("{message}")]
    Rtsp {
        status: Option<u16>,
        message: String,
    },
    /// The camera offers no track this gateway can carry.
    #[error("camera offers no usable track ({offered})")]
    NoUsableTracks { offered: String },
    /// The camera offers its media only as SRTP (`RTP/SAVP`), which is not carried.
    #[error("camera offers only SRTP (RTP/SAVP), which is not supported ({offered})")]
    SrtpOnly { offered: String },
    /// The TLS connection to an `rtsps://` camera failed: its certificate, or the
    /// TLS setup itself.
    #[error("TLS: {0}")]
    Tls(String),
    /// The camera's SDP cannot be read.
    #[error("bad SDP from camera: {0}")]
    Sdp(String),
    /// Playing, but no RTP packet for the stall timeout.
    #[error("no packets from camera for {0:?}")]
    Stalled(Duration),
    /// The camera closed the connection.
    #[error("camera closed the connection")]
    Closed,
}

impl SourceError {
    /// Wraps a retina error: its first line (the rest is connection diagnostics),
    /// led by the status and a hint when the camera refused a request, redacted.
    pub(crate) fn from_retina(err: &retina::Error, redact: impl Fn(&str) -> String) -> SourceError {
        let text = err.to_string();
        let first_line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("RTSP error");
        // Framing errors end in "; buffered:" before a hex dump of the peer's bytes.
        let first_line = first_line.split("; buffered").next().unwrap_or(first_line);
        let first_line = first_line.trim_end_matches(':');
        let status = err.status_code();
        let message = match status.map(status_hint) {
            Some(hint) => format!("{hint}: {first_line}"),
            None => first_line.to_owned(),
        };
        SourceError::Rtsp {
            status,
            message: redact(&message),
        }
    }

    /// The camera answered `method` with a failure `status` (our own RTSPS client).
    pub(crate) fn answered(status: u16, reason: &str, method: &str) -> SourceError {
        SourceError::Rtsp {
            status: Some(status),
            message: format!(
                "{}: {status} {reason} response to {method}",
                status_hint(status)
            ),
        }
    }

    /// A camera that breaks the protocol (our own RTSPS client).
    pub(crate) fn protocol(message: impl Into<String>) -> SourceError {
        SourceError::Rtsp {
            status: None,
            message: message.into(),
        }
    }

    /// The RTSP status code the camera answered with, if that is what failed.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            SourceError::Rtsp { status, .. } => *status,
            _ => None,
        }
    }
}

/// What an RTSP status means for whoever configured the camera.
fn status_hint(status: u16) -> String {
    let hint = match status {
        401 => "Unauthorized (check the user and password in the URL)",
        403 => "Forbidden (the user may not view this stream)",
        404 => "Not Found (check the stream path in the URL)",
        454 => "Session Not Found",
        461 => "Unsupported Transport (try another transport)",
        503 => "Service Unavailable (the camera may be at its client limit)",
        _ => return format!("camera answered {status}"),
    };
    format!("camera answered {status} {hint}")
}
