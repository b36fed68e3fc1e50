//! How one RTSP camera source is configured.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How RTP is carried from the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    /// Interleaved on the RTSP TCP connection: works through NAT and firewalls, no loss.
    #[default]
    Tcp,
    /// RTP/AVP over UDP: lower latency on a LAN; lost packets stay lost.
    Udp,
    /// Try UDP; if its SETUP fails or no packet arrives before the stall timeout, use
    /// TCP from then on (for the life of the source).
    Auto,
}

impl TransportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportMode::Tcp => "tcp",
            TransportMode::Udp => "udp",
            TransportMode::Auto => "auto",
        }
    }
}

impl fmt::Display for TransportMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport name that is not `tcp`, `udp` or `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown RTSP transport {0:?}: expected tcp, udp or auto")]
pub struct UnknownTransport(pub String);

impl FromStr for TransportMode {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(TransportMode::Tcp),
            "udp" => Ok(TransportMode::Udp),
            "auto" => Ok(TransportMode::Auto),
            _ => Err(UnknownTransport(s.to_owned())),
        }
    }
}

/// One camera source. `url` may carry credentials; they are never logged or shown.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub url: String,
    pub transport: TransportMode,
    /// Stay connected with no consumer (default: connect on the first consumer).
    pub always_on: bool,
    /// How long an on-demand source stays connected after its last consumer leaves.
    pub idle_grace: Duration,
    /// Bound on each connection step (TCP connect, DESCRIBE, SETUP, PLAY): a camera
    /// that accepts and never answers fails after this.
    pub connect_timeout: Duration,
    /// No RTP packet for this long while playing counts as a failure (reconnect).
    pub stall_timeout: Duration,
}

impl SourceConfig {
    pub const DEFAULT_IDLE_GRACE: Duration = Duration::from_secs(10);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

    /// A TCP, on-demand source with the default timeouts.
    pub fn new(url: impl Into<String>) -> SourceConfig {
        SourceConfig {
            url: url.into(),
            transport: TransportMode::default(),
            always_on: false,
            idle_grace: Self::DEFAULT_IDLE_GRACE,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            stall_timeout: Self::DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Leaves the URL out: it may hold a password.
impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("url", &"<redacted>")
            .field("transport", &self.transport)
            .field("always_on", &self.always_on)
            .field("idle_grace", &self.idle_grace)
            .field("connect_timeout", &self.connect_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_names_round_trip() {
        for mode in [TransportMode::Tcp, TransportMode::Udp, TransportMode::Auto] {
            assert_eq!(mode.as_str().parse::<TransportMode>(), Ok(mode));
        }
        assert_eq!("UDP".parse::<TransportMode>(), Ok(TransportMode::Udp));
        assert!("http"
            .parse::<TransportMode>()
            .unwrap_err()
            .to_string()
            .contains("tcp, udp or auto"));
    }

    #[test]
    fn debug_never_shows_the_url() {
        let config = SourceConfig::new("rtsp://admin:hunter22@cam/1");
        assert!(!format!("{config:?}").contains("hunter22"));
    }
}
