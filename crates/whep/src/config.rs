//! What a WHEP source is told: the endpoint, the secret that opens it, and the
//! bounds on every wait. Secrets and URLs are redacted wherever they are shown.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use streamgate_pipeline::supervisor::Rotation;
pub(crate) use streamgate_redact::redact_url;
use streamgate_redact::{redact_unparsed, Secret};
use url::Url;

/// A STUN/TURN server for ICE, from the config or a `Link: rel="ice-server"` header.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Errors in a WHEP source's configuration.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not a WHEP URL ({0}): expected whep://, wheps://, http:// or https://")]
    Scheme(String),
    #[error("invalid WHEP URL: {0}")]
    Url(#[from] url::ParseError),
}

/// When to trickle ICE candidates by PATCH (RFC 9725 §4.3) instead of gathering them all
/// before the offer is sent. Whatever the mode, a session whose server announced
/// `Accept-Patch` gets ICE restarts by PATCH when its connection drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrickleMode {
    /// Full gathering until a session's `201 Created` announces `Accept-Patch:
    /// application/trickle-ice-sdpfrag`; the source's later sessions then trickle. A
    /// server that does not announce it (Ring) never sees an incomplete offer.
    #[default]
    Auto,
    /// Trickle from the first session (the offer carries no candidates); PATCHes stop
    /// at a 405/501 answer.
    On,
    /// Always full gathering.
    Off,
}

/// Where the `Authorization: Bearer` token of a source's WHEP requests comes from.
#[derive(Clone)]
pub enum BearerToken {
    /// The same token on every request (`bearer_token` in the config).
    Fixed(Secret),
    /// Asked for before every request: an OAuth access token that is refreshed
    /// while the source runs (Ring's Partner API).
    Provided(Arc<dyn TokenProvider>),
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BearerToken::Fixed(_) => f.write_str("BearerToken::Fixed(***)"),
            BearerToken::Provided(_) => f.write_str("BearerToken::Provided"),
        }
    }
}

/// A token that changes over time (see [`BearerToken::Provided`]).
#[async_trait::async_trait]
pub trait TokenProvider: Send + Sync {
    /// The token to send now. The error (which names no secret) fails the request
    /// and shows in the source's status, e.g. "the Ring account needs re-linking".
    async fn token(&self) -> Result<Secret, String>;
}

/// Configuration of one WHEP source.
#[derive(Debug, Clone)]
pub struct WhepConfig {
    /// The WHEP endpoint (http or https; see [`endpoint_url`]).
    pub endpoint: Url,
    pub bearer_token: Option<BearerToken>,
    /// Sessions are rotated (make-before-break) before they reach this age: set it to the
    /// server's cap (Ring: 30 s battery, 60 s wired). `None`: keep a session until it ends.
    pub max_session: Option<Duration>,
    /// How long before `max_session` the next session is opened. It must cover the
    /// worst case of a new session: gathering (up to `gather_timeout`), POST, ICE and
    /// DTLS, then waiting for its first keyframe (a camera's GOP, a few seconds).
    pub rotation_lead: Duration,
    pub ice_servers: Vec<IceServer>,
    /// Local address the WebRTC UDP sockets bind to. `0.0.0.0` means every non-loopback
    /// interface; a loopback address (tests) is bound as given.
    pub bind_ip: IpAddr,
    /// Bound on ICE gathering before the offer is sent (full-gathering mode).
    pub gather_timeout: Duration,
    /// Whether the offer leaves before ICE gathering ends, its candidates following by PATCH.
    pub trickle: TrickleMode,
    /// Bound on each HTTP request (POST, DELETE).
    pub http_timeout: Duration,
    /// Bound from the answer to a connected peer (ICE + DTLS).
    pub connect_timeout: Duration,
    /// A session that delivers no RTP for this long is treated as failed.
    pub no_media_timeout: Duration,
    /// Stream even with nobody watching; otherwise sessions open on the Hub's first
    /// subscriber and close `idle_grace` after its last (a capped camera saves battery).
    pub always_on: bool,
    pub idle_grace: Duration,
}

impl WhepConfig {
    /// Defaults for everything but the endpoint.
    pub fn new(endpoint: Url) -> Self {
        WhepConfig {
            endpoint,
            bearer_token: None,
            max_session: None,
            rotation_lead: Duration::from_secs(10),
            ice_servers: Vec::new(),
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            gather_timeout: Duration::from_secs(3),
            trickle: TrickleMode::Auto,
            http_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            no_media_timeout: Duration::from_secs(10),
            always_on: false,
            idle_grace: Duration::from_secs(10),
        }
    }

    /// The session cap sessions are rotated before, if any: the next one opens
    /// `rotation_lead` before `max_session`, never before half of it
    /// ([`Rotation::rotate_after`]).
    pub fn rotation(&self) -> Option<Rotation> {
        self.max_session.map(|max_session| Rotation {
            max_session,
            lead: self.rotation_lead,
        })
    }
}

/// Maps a configured source to the HTTP URL to POST to: `whep://` → `http://`,
/// `wheps://` → `https://`; `http(s)://` are taken as they are.
pub fn endpoint_url(source: &str) -> Result<Url, ConfigError> {
    let (scheme, rest) = source
        .split_once("://")
        .ok_or_else(|| ConfigError::Scheme(redact_source(source)))?;
    let http_scheme = match scheme.to_ascii_lowercase().as_str() {
        "whep" | "http" => "http",
        "wheps" | "https" => "https",
        _ => return Err(ConfigError::Scheme(redact_source(source))),
    };
    Ok(Url::parse(&format!("{http_scheme}://{rest}"))?)
}

fn redact_source(source: &str) -> String {
    match Url::parse(source) {
        Ok(url) => redact_url(&url),
        Err(_) => redact_unparsed(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_whep_schemes_to_http() {
        assert_eq!(
            endpoint_url("whep://cam:8080/whep/live").unwrap().as_str(),
            "http://cam:8080/whep/live"
        );
        assert_eq!(
            endpoint_url("wheps://api.example/v1/x").unwrap().as_str(),
            "https://api.example/v1/x"
        );
        assert_eq!(endpoint_url("https://a/b").unwrap().as_str(), "https://a/b");
        assert!(matches!(
            endpoint_url("rtsp://a/b"),
            Err(ConfigError::Scheme(_))
        ));
        assert!(matches!(
            endpoint_url("no scheme"),
            Err(ConfigError::Scheme(_))
        ));
    }

    #[test]
    fn secrets_never_print() {
        let token = Secret::new("s3cr3t-token");
        assert!(!format!("{token:?} {token}").contains("s3cr3t"));
        let url = Url::parse("http://user:pw@cam/whep?token=s3cr3t").unwrap();
        let shown = redact_url(&url);
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("pw") && !shown.contains("user"),
            "{shown}"
        );
        assert!(
            matches!(endpoint_url("ftp://u:pw@h/"), Err(ConfigError::Scheme(s)) if !s.contains("pw"))
        );
    }

    #[test]
    fn rotation_leaves_time_to_stream() {
        let mut config = WhepConfig::new(Url::parse("http://h/").unwrap());
        let rotate_after = |config: &WhepConfig| config.rotation().map(|r| r.rotate_after());
        assert_eq!(rotate_after(&config), None);
        config.max_session = Some(Duration::from_secs(60));
        assert_eq!(rotate_after(&config), Some(Duration::from_secs(50)));
        config.max_session = Some(Duration::from_secs(30));
        assert_eq!(rotate_after(&config), Some(Duration::from_secs(20)));
        config.max_session = Some(Duration::from_secs(6));
        assert_eq!(rotate_after(&config), Some(Duration::from_secs(3)));
    }
}
