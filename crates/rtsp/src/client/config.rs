//! How one RTSP camera source is configured.

use std::fmt;
use std::path::PathBuf;
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

/// How an `rtsps://` camera's certificate is checked (unused for `rtsp://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// `false` accepts any certificate (self-signed cameras): the link is
    /// encrypted but the camera is not authenticated.
    pub verify: bool,
    /// Accept exactly the certificate with this SHA-256 (of its DER), and no
    /// other; chain and name are not checked. Wins over `verify`.
    pub fingerprint: Option<Fingerprint>,
    /// PEM file of extra trusted CAs (a private CA), beside the webpki roots.
    pub ca: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            verify: true,
            fingerprint: None,
            ca: None,
        }
    }
}

/// A certificate's SHA-256, written `sha256:` + 64 hex digits (colons allowed
/// between bytes, as `openssl x509 -fingerprint -sha256` prints them).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A `tls_fingerprint` that is not `sha256:` and 32 hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad certificate fingerprint {0:?}: expected \"sha256:\" and 64 hex digits")]
pub struct BadFingerprint(pub String);

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadFingerprint(s.to_owned());
        let hex = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256:"))
            .map(|_| s[7..].replace(':', ""))
            .ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
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
    /// Certificate checks of an `rtsps://` camera.
    pub tls: TlsOptions,
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
            tls: TlsOptions::default(),
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
            .field("tls", &self.tls)
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
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let plain: Fingerprint = format!("sha256:{hex}").parse().unwrap();
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(format!("SHA256:{colons}").parse::<Fingerprint>(), Ok(plain));
        assert_eq!(plain.to_string(), format!("sha256:{hex}"));
        for bad in [
            "",
            "sha256:",
            "sha1:ab",
            "sha256:abz",
            &format!("sha256:{hex}00"),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_url() {
        let config = SourceConfig::new("rtsp://admin:hunter22@cam/1");
        assert!(!format!("{config:?}").contains("hunter22"));
    }
}
