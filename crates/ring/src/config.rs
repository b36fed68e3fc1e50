//! What the client needs to know about the partner app and how hard to push Ring.

use std::time::Duration;

use streamgate_redact::Secret;
use url::Url;

/// Ring's API base; every path is under `/v1` [doc].
pub const RING_API_URL: &str = "https://api.amazonvision.com";
/// Ring's OAuth token endpoint [doc].
pub const RING_TOKEN_URL: &str = "https://oauth.ring.com/oauth/token";

/// The partner app's credentials and the client's limits.
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// API base (`https://api.amazonvision.com`); paths `v1/…` are joined to it.
    pub api_url: Url,
    /// OAuth token endpoint.
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// Signs the account-link nonce (and, later, webhooks).
    pub hmac_key: Secret,
    /// Ring allows 100/s per client id [doc]; this stays below it, shared by every account.
    pub max_requests_per_second: u32,
    /// Refresh an access token this long before it expires.
    pub refresh_before: Duration,
    /// Per HTTP request (connect, send, read the whole body).
    pub http_timeout: Duration,
    /// Retries of one request after 429 or 5xx.
    pub max_retries: u32,
    /// First backoff between retries (doubled each time) when no `Retry-After` is given;
    /// Ring says to back off from 1 s [doc].
    pub retry_base: Duration,
    /// Longest wait between two tries, whatever `Retry-After` asks.
    pub max_retry_wait: Duration,
    /// Oldest account-link `time` accepted (Ring: 600 s [doc-copy]).
    pub link_max_age: Duration,
    /// How far in the future an account-link `time` may be (clock skew).
    pub link_max_skew: Duration,
    /// Life of a refresh token from when it is issued. Ring documents ~30 days but
    /// returns no expiry field [guess].
    pub refresh_token_life: Duration,
    /// Largest response body read (a list of 10,000 devices is a few MiB).
    pub max_body_bytes: usize,
}

impl RingConfig {
    /// Ring's URLs and the documented limits.
    pub fn new(client_id: String, client_secret: Secret, hmac_key: Secret) -> Self {
        RingConfig {
            api_url: Url::parse(RING_API_URL).expect("constant URL parses"),
            token_url: Url::parse(RING_TOKEN_URL).expect("constant URL parses"),
            client_id,
            client_secret,
            hmac_key,
            max_requests_per_second: 90,
            refresh_before: Duration::from_secs(10 * 60),
            http_timeout: Duration::from_secs(10),
            max_retries: 5,
            retry_base: Duration::from_secs(1),
            max_retry_wait: Duration::from_secs(60),
            link_max_age: Duration::from_secs(600),
            link_max_skew: Duration::from_secs(30),
            refresh_token_life: Duration::from_secs(30 * 24 * 3600),
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rings_and_debug_hides_secrets() {
        let config = RingConfig::new(
            "id".into(),
            Secret::new("s3cret-value"),
            Secret::new("hmac-value"),
        );
        assert_eq!(config.api_url.as_str(), "https://api.amazonvision.com/");
        assert_eq!(config.token_url.as_str(), RING_TOKEN_URL);
        assert_eq!(config.max_requests_per_second, 90);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-value") && !shown.contains("hmac-value"));
    }
}
