//! The client's error: what Ring answered, or why no answer was had. No variant holds
//! the client secret, the HMAC key or a token: they are never copied into one, and the
//! texts taken from Ring's answers are its own error fields, not the request.

use std::fmt;
use std::time::Duration;

use crate::ids::AccountId;
use crate::jsonapi::ErrorDocument;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// A JSON:API error document (`errors[0]`, and how many more there were).
    #[error("{0}")]
    Api(ApiError),
    /// The token endpoint refused (`{error, error_description}` or JSON:API `errors[]`).
    #[error(
        "token endpoint answered {status}: {error}{}",
        description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    Token {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The account's refresh token was refused or has expired: the user must link again.
    #[error("Ring account {account} must be linked again: {reason}")]
    NeedsRelinking { account: AccountId, reason: String },
    /// 503 "Device is currently offline".
    #[error("device is offline{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    DeviceOffline { detail: Option<String> },
    /// Still 429 after every retry.
    #[error("rate limited by Ring after {retries} retries{}", retry_after.map(|d| format!(" (Retry-After {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        retries: u32,
        retry_after: Option<Duration>,
    },
    /// Connecting, sending or reading failed (the URL is left out of the text).
    #[error("{what}: {detail}")]
    Transport { what: &'static str, detail: String },
    #[error("{what}: no answer within {} s", timeout.as_secs_f32())]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("{what}: answer larger than {limit} bytes")]
    BodyTooLarge { what: &'static str, limit: usize },
    /// An answer that is not what the docs describe: what was wrong, not the body.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// A media request refused before it was sent (Ring's limits, checked here).
    #[error("invalid media request: {0}")]
    InvalidMediaRequest(#[from] crate::media::MediaRequestError),
    #[error("token store: {0}")]
    Store(#[from] StoreError),
    #[error("unknown Ring account {0}")]
    UnknownAccount(AccountId),
    /// The configuration cannot be used (a URL that cannot be a base).
    #[error("Ring client configuration: {0}")]
    Config(String),
}

impl RingError {
    /// An `invalid_grant` from the token endpoint, in either error shape.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, RingError::Token { error, .. } if error == "invalid_grant")
    }

    /// The HTTP status Ring answered with, where there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RingError::Api(api) => Some(api.status),
            RingError::Token { status, .. } => Some(*status),
            RingError::DeviceOffline { .. } => Some(503),
            RingError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The error for a non-success answer of the API: its JSON:API `errors[]` when it has
    /// one, else the status alone. 503 "offline" becomes [`RingError::DeviceOffline`].
    pub fn from_api_answer(status: u16, body: &[u8]) -> RingError {
        let error = ApiError::from_answer(status, body);
        if status == 503 && error.says_offline() {
            return RingError::DeviceOffline {
                detail: error.detail.or(Some(error.title)),
            };
        }
        RingError::Api(error)
    }
}

/// One JSON:API error object, as Ring sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: u16,
    pub title: String,
    pub detail: Option<String>,
    pub code: Option<String>,
    /// Further error objects in the same document.
    pub more: usize,
}

impl ApiError {
    fn from_answer(status: u16, body: &[u8]) -> ApiError {
        let first = serde_json::from_slice::<ErrorDocument>(body)
            .ok()
            .and_then(|doc| {
                let more = doc.errors.len().saturating_sub(1);
                doc.errors.into_iter().next().map(|e| (e, more))
            });
        match first {
            Some((e, more)) => ApiError {
                status,
                title: e.title.unwrap_or_else(|| reason_phrase(status).to_owned()),
                detail: e.detail,
                code: e.code,
                more,
            },
            None => ApiError {
                status,
                title: reason_phrase(status).to_owned(),
                detail: None,
                code: None,
                more: 0,
            },
        }
    }

    fn says_offline(&self) -> bool {
        let offline = |s: &str| s.to_ascii_lowercase().contains("offline");
        offline(&self.title) || self.detail.as_deref().is_some_and(offline)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ring answered {} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(code) = &self.code {
            write!(f, " (code {code})")?;
        }
        match self.status {
            401 => f.write_str(" [the client id or secret was refused]")?,
            403 => f.write_str(" [the access token was refused or lacks the scope]")?,
            _ => {}
        }
        if self.more > 0 {
            write!(f, " (+{} more errors)", self.more)?;
        }
        Ok(())
    }
}

/// A name for a status when Ring gave no title.
fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_api_errors_keep_status_title_detail_code() {
        let body = br#"{"errors":[{"status":"404","title":"Not Found","detail":"no such device","code":"DEVICE_NOT_FOUND","source":{"pointer":"/data"},"meta":{"x":1}},{"title":"second"}]}"#;
        let RingError::Api(api) = RingError::from_api_answer(404, body) else {
            panic!("not an API error");
        };
        assert_eq!(api.status, 404);
        assert_eq!(api.title, "Not Found");
        assert_eq!(api.detail.as_deref(), Some("no such device"));
        assert_eq!(api.code.as_deref(), Some("DEVICE_NOT_FOUND"));
        assert_eq!(api.more, 1);
        assert_eq!(
            api.to_string(),
            "Ring answered 404 Not Found: no such device (code DEVICE_NOT_FOUND) (+1 more errors)"
        );
    }

    #[test]
    fn offline_503_is_device_offline_and_other_bodies_keep_the_status() {
        let body = br#"{"errors":[{"status":"503","title":"Device is currently offline"}]}"#;
        assert!(matches!(
            RingError::from_api_answer(503, body),
            RingError::DeviceOffline { .. }
        ));
        let busy =
            br#"{"errors":[{"status":"503","title":"Service Unavailable","code":"SERVER_BUSY"}]}"#;
        assert!(matches!(
            RingError::from_api_answer(503, busy),
            RingError::Api(_)
        ));
        let RingError::Api(api) = RingError::from_api_answer(403, b"<html>nope</html>") else {
            panic!("not an API error");
        };
        assert_eq!((api.status, api.title.as_str()), (403, "Forbidden"));
        assert!(api.to_string().contains("access token was refused"));
    }
}
