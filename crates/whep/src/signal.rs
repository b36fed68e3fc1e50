//! WHEP signalling over HTTP (RFC 9725): POST the offer, read `201 Created` with the
//! session URL and the answer, PATCH trickle-ICE fragments to the session, DELETE it.
//!
//! Redirects (307/308) are followed here rather than by reqwest so the body and method
//! are kept and the session URL is resolved against the URL that finally answered. The
//! bearer token only goes to the configured endpoint's origin: a redirect elsewhere does
//! not receive it.

use std::time::{Duration, SystemTime};

use reqwest::header::{
    HeaderMap, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LINK, LOCATION, RETRY_AFTER,
};
use reqwest::StatusCode;
use url::Url;

use streamgate_redact::Secret;

use crate::config::{redact_url, BearerToken, IceServer};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest answer (or error text) read from a server.
const MAX_BODY: usize = 64 * 1024;
/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Longest server error text kept for the status.
const MAX_REASON: usize = 200;
/// The media type of trickle-ICE / ICE-restart PATCH bodies (RFC 8840).
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// RFC 5789's header (not among `reqwest::header`'s constants).
const ACCEPT_PATCH: &str = "accept-patch";

/// Errors of one WHEP HTTP exchange. None of them carries the bearer token or a URL's
/// user info or query.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("WHEP server answered {status} to {method}: {reason}")]
    Status {
        method: &'static str,
        status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("WHEP {method} to {url} failed: {detail}")]
    Transport {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("WHEP {method} to {url} timed out")]
    Timeout { method: &'static str, url: String },
    #[error("more than {MAX_REDIRECTS} redirects from {url}")]
    TooManyRedirects { url: String },
    #[error("WHEP server answered {status} without a usable Location header")]
    BadLocation { status: u16 },
    #[error("WHEP answer is larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("no bearer token for the WHEP request: {0}")]
    Token(String),
}

impl SignalError {
    /// How long the server asked us to wait (409/503/429 with `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SignalError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the server answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            SignalError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A session the server created: it must be DELETEd whatever happens next.
#[derive(Debug, Clone)]
pub struct Created {
    pub session_url: Url,
    pub content_type: Option<String>,
    pub answer: String,
    pub etag: Option<String>,
    /// The server takes trickle ICE by PATCH (`Accept-Patch: application/trickle-ice-sdpfrag`).
    pub accepts_trickle: bool,
    /// ICE servers the server offered with `Link: <…>; rel="ice-server"`.
    pub ice_servers: Vec<IceServer>,
}

/// The HTTP side of a WHEP client, shared by all of a source's sessions.
#[derive(Debug, Clone)]
pub struct WhepClient {
    http: reqwest::Client,
    token: Option<BearerToken>,
    token_origin: Option<url::Origin>,
}

impl WhepClient {
    pub fn new(
        endpoint: &Url,
        token: Option<BearerToken>,
        timeout: Duration,
    ) -> Result<Self, SignalError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("streamgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| transport_error("POST", endpoint, e))?;
        Ok(WhepClient {
            http,
            token_origin: token.as_ref().map(|_| endpoint.origin()),
            token,
        })
    }

    /// POSTs the offer, following redirects, and returns the created session.
    pub async fn post_offer(&self, endpoint: &Url, offer: &str) -> Result<Created, SignalError> {
        let mut url = endpoint.clone();
        for _ in 0..=MAX_REDIRECTS {
            let (request, sent) = self.authorize(self.http.post(url.clone()), &url).await?;
            let response = request
                .header(CONTENT_TYPE, "application/sdp")
                .body(offer.to_owned())
                .send()
                .await
                .map_err(|e| transport_error("POST", &url, e))?;
            let status = response.status();
            if status == StatusCode::TEMPORARY_REDIRECT || status == StatusCode::PERMANENT_REDIRECT
            {
                url = location(response.headers(), &url).ok_or(SignalError::BadLocation {
                    status: status.as_u16(),
                })?;
                tracing::debug!(to = %redact_url(&url), status = status.as_u16(), "WHEP POST redirected");
                continue;
            }
            let headers = response.headers().clone();
            let body = read_capped(response, "POST", &url).await?;
            if status != StatusCode::CREATED {
                return Err(status_error("POST", status, &headers, &body, sent.as_ref()));
            }
            let session_url =
                location(&headers, &url).ok_or(SignalError::BadLocation { status: 201 })?;
            return Ok(Created {
                session_url,
                content_type: header_str(&headers, CONTENT_TYPE.as_str()).map(str::to_owned),
                answer: String::from_utf8_lossy(&body).into_owned(),
                etag: header_str(&headers, ETAG.as_str()).map(str::to_owned),
                accepts_trickle: headers
                    .get_all(ACCEPT_PATCH)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .any(|t| {
                        t.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .eq_ignore_ascii_case(SDPFRAG)
                    }),
                ice_servers: headers
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(parse_ice_server_links)
                    .collect(),
            });
        }
        Err(SignalError::TooManyRedirects {
            url: redact_url(endpoint),
        })
    }

    /// PATCHes an sdpfrag (RFC 8840) to the session, with `If-Match` when given. Returns
    /// the answer's body (an sdpfrag for an ICE restart, empty for 204) and new `ETag`.
    pub async fn patch_fragment(
        &self,
        session_url: &Url,
        if_match: Option<&str>,
        fragment: String,
    ) -> Result<(String, Option<String>), SignalError> {
        let (request, sent) = self
            .authorize(self.http.patch(session_url.clone()), session_url)
            .await?;
        let mut request = request.header(CONTENT_TYPE, SDPFRAG).body(fragment);
        if let Some(tag) = if_match {
            request = request.header(IF_MATCH, tag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error("PATCH", session_url, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, "PATCH", session_url).await?;
        if !status.is_success() {
            return Err(status_error(
                "PATCH",
                status,
                &headers,
                &body,
                sent.as_ref(),
            ));
        }
        Ok((
            String::from_utf8_lossy(&body).into_owned(),
            header_str(&headers, ETAG.as_str()).map(str::to_owned),
        ))
    }

    /// Ends a session. A 404 counts as done (the server already forgot it).
    pub async fn delete(&self, session_url: &Url) -> Result<(), SignalError> {
        let (request, sent) = self
            .authorize(self.http.delete(session_url.clone()), session_url)
            .await?;
        let response = request
            .send()
            .await
            .map_err(|e| transport_error("DELETE", session_url, e))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let headers = response.headers().clone();
        let body = read_capped(response, "DELETE", session_url).await?;
        Err(status_error(
            "DELETE",
            status,
            &headers,
            &body,
            sent.as_ref(),
        ))
    }

    /// Adds the bearer token when `url` is the endpoint's origin; returns the token
    /// sent, so that a server echoing it cannot leak it into an error.
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<(reqwest::RequestBuilder, Option<Secret>), SignalError> {
        let token = match (&self.token, &self.token_origin) {
            (Some(token), Some(origin)) if url.origin() == *origin => match token {
                BearerToken::Fixed(secret) => secret.clone(),
                BearerToken::Provided(provider) => {
                    provider.token().await.map_err(SignalError::Token)?
                }
            },
            _ => return Ok((request, None)),
        };
        let request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        Ok((request, Some(token)))
    }
}

/// A non-success answer as an error; `sent` is the token the request carried.
fn status_error(
    method: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    sent: Option<&Secret>,
) -> SignalError {
    let mut reason = error_reason(body);
    if let Some(token) = sent {
        // A server that echoes the request must not leak the token into our status.
        let secret = token.expose();
        if !secret.is_empty() {
            reason = reason.replace(secret, "***");
        }
    }
    if reason.trim().is_empty() {
        reason = status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned();
    }
    SignalError::Status {
        method,
        status: status.as_u16(),
        reason,
        retry_after: header_str(headers, RETRY_AFTER.as_str())
            .and_then(|value| parse_retry_after(value, SystemTime::now())),
    }
}

/// An error body as one line: a JSON:API `errors[]` document (Ring's) as its
/// titles and details ("Device is currently offline"), anything else as its text.
fn error_reason(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Document {
        errors: Vec<ErrorObject>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorObject {
        title: Option<String>,
        detail: Option<String>,
    }
    let text = match serde_json::from_slice::<Document>(body) {
        Ok(document) if !document.errors.is_empty() => document
            .errors
            .into_iter()
            .map(|error| match (error.title, error.detail) {
                (Some(title), Some(detail)) if title != detail => format!("{title}: {detail}"),
                (Some(text), _) | (None, Some(text)) => text,
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON)
        .collect()
}

fn transport_error(method: &'static str, url: &Url, error: reqwest::Error) -> SignalError {
    if error.is_timeout() {
        return SignalError::Timeout {
            method,
            url: redact_url(url),
        };
    }
    // reqwest's message names the URL (query included): drop it, we print the redacted one.
    let detail = streamgate_redact::error_chain(&error.without_url());
    SignalError::Transport {
        method,
        url: redact_url(url),
        detail,
    }
}

async fn read_capped(
    mut response: reqwest::Response,
    method: &'static str,
    url: &Url,
) -> Result<Vec<u8>, SignalError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(method, url, e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(SignalError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `Location` header resolved against the URL that answered (WHEP servers often send
/// a relative one).
fn location(headers: &HeaderMap, base: &Url) -> Option<Url> {
    let value = header_str(headers, LOCATION.as_str())?;
    base.join(value.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), capped.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Parses one `Link` header value into the ICE servers it names (RFC 8288 syntax,
/// WHEP's `rel="ice-server"` with optional `username`/`credential`).
pub fn parse_ice_server_links(value: &str) -> Vec<IceServer> {
    split_outside_quotes(value, ',')
        .into_iter()
        .filter_map(|link| {
            let link = link.trim();
            let rest = link.strip_prefix('<')?;
            let (target, params) = rest.split_once('>')?;
            let mut rel_ice = false;
            let mut username = None;
            let mut credential = None;
            for param in split_outside_quotes(params, ';') {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"').to_owned();
                match name.trim().to_ascii_lowercase().as_str() {
                    "rel" => {
                        rel_ice = value
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("ice-server"))
                    }
                    "username" => username = Some(value),
                    "credential" => credential = Some(value),
                    _ => {}
                }
            }
            let scheme = target.split(':').next().unwrap_or("").to_ascii_lowercase();
            (rel_ice && matches!(scheme.as_str(), "stun" | "stuns" | "turn" | "turns")).then(|| {
                IceServer {
                    url: target.trim().to_owned(),
                    username,
                    credential,
                }
            })
        })
        .collect()
}

fn split_outside_quotes(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut bracketed) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => bracketed = true,
            '>' if !quoted => bracketed = false,
            c if c == separator && !quoted && !bracketed => {
                parts.push(&value[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_api_errors_read_as_their_titles() {
        let offline = br#"{"errors":[{"status":"503","title":"Service Unavailable","detail":"Device is currently offline"}]}"#;
        assert_eq!(
            error_reason(offline),
            "Service Unavailable: Device is currently offline"
        );
        let same = br#"{"errors":[{"title":"Rate Limit Exceeded","detail":"Rate Limit Exceeded"},{"detail":"again"}]}"#;
        assert_eq!(error_reason(same), "Rate Limit Exceeded; again");
        assert_eq!(error_reason(b"plain\ntext"), "plaintext");
        assert_eq!(error_reason(br#"{"errors":[]}"#), r#"{"errors":[]}"#);
    }

    #[test]
    fn parses_ice_server_links() {
        let servers = parse_ice_server_links(
            r#"<stun:stun.example.net>; rel="ice-server", <turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; credential="p,w"; credential-type="password", <https://x/>; rel="next""#,
        );
        assert_eq!(servers.len(), 2, "{servers:?}");
        assert_eq!(servers[0].url, "stun:stun.example.net");
        assert_eq!(servers[1].url, "turn:turn.example.net?transport=udp");
        assert_eq!(servers[1].username.as_deref(), Some("u"));
        assert_eq!(servers[1].credential.as_deref(), Some("p,w"));
        assert!(parse_ice_server_links("garbage <<<").is_empty());
        assert!(parse_ice_server_links("<http://x>; rel=\"ice-server\"").is_empty());
    }

    #[test]
    fn resolves_relative_locations() {
        let mut headers = HeaderMap::new();
        let base = Url::parse("http://h:1/whep/live").unwrap();
        headers.insert(LOCATION, "sessions/abc".parse().unwrap());
        assert_eq!(
            location(&headers, &base).unwrap().as_str(),
            "http://h:1/whep/sessions/abc"
        );
        headers.insert(LOCATION, "/s/1".parse().unwrap());
        assert_eq!(
            location(&headers, &base).unwrap().as_str(),
            "http://h:1/s/1"
        );
        headers.insert(LOCATION, "ftp://x/".parse().unwrap());
        assert!(location(&headers, &base).is_none());
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_capped() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:20 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
