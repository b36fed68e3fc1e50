//! The token endpoint's forms and answers (`POST /oauth/token`, form-encoded [doc]).
//!
//! Answers are read field by field from a JSON value, never through serde's error
//! messages, which quote the offending value: a malformed answer must not put a token
//! into an error text. Errors are undocumented [guess]: both `{error,
//! error_description}` (RFC 6749 §5.2) and JSON:API `errors[]` are accepted.

use std::time::Duration;

use serde_json::Value;
use streamgate_redact::Secret;

use crate::config::RingConfig;
use crate::error::RingError;
use crate::jsonapi::ErrorDocument;

/// Access-token life when an answer leaves out `expires_in` (Ring: ~4 h [doc]).
pub const DEFAULT_ACCESS_LIFE: Duration = Duration::from_secs(14_400);

/// OAuth error codes recognised in a JSON:API error's `code` or `title`.
const OAUTH_ERRORS: &[&str] = &[
    "invalid_grant",
    "invalid_client",
    "invalid_request",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_grant_type",
];

/// `grant_type=authorization_code` (no PKCE in one-way linking [doc]).
pub fn authorization_code_form<'a>(
    config: &'a RingConfig,
    code: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", "authorization_code"),
        ("client_id", &config.client_id),
        ("client_secret", config.client_secret.expose()),
        ("code", code),
    ]
}

/// `grant_type=refresh_token`.
pub fn refresh_token_form<'a>(
    config: &'a RingConfig,
    refresh_token: &'a Secret,
) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", "refresh_token"),
        ("client_id", &config.client_id),
        ("client_secret", config.client_secret.expose()),
        ("refresh_token", refresh_token.expose()),
    ]
}

/// A successful token answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub expires_in: Duration,
    pub scope: Option<String>,
}

/// Reads a 2xx answer: `access_token`, `refresh_token` (non-empty strings),
/// `expires_in` (seconds, a number or a numeric string), `scope`, and `token_type`,
/// which must be `Bearer` when present.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, RingError> {
    let malformed = |what: &str| RingError::Malformed(format!("token answer: {what}"));
    let value: Value =
        serde_json::from_slice(body).map_err(|_| malformed("not a JSON document"))?;
    let object = value
        .as_object()
        .ok_or_else(|| malformed("not a JSON object"))?;
    let secret = |name: &str| match object.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(Secret::new(s.as_str())),
        Some(_) => Err(malformed(&format!("{name} is not a non-empty string"))),
        None => Err(malformed(&format!("no {name}"))),
    };
    let access_token = secret("access_token")?;
    let refresh_token = secret("refresh_token")?;
    let expires_in = match object.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_ACCESS_LIFE,
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| malformed("expires_in is not a positive whole number"))?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| malformed("expires_in is not a positive whole number"))?,
        Some(_) => return Err(malformed("expires_in is not a number")),
    };
    match object.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(malformed("token_type is not Bearer")),
    }
    let scope = match object.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(scope)) => Some(scope.clone()),
        Some(_) => return Err(malformed("scope is not a string")),
    };
    Ok(TokenResponse {
        access_token,
        refresh_token,
        expires_in,
        scope,
    })
}

/// The error for a non-2xx token answer, from either error shape.
pub fn parse_token_error(status: u16, body: &[u8]) -> RingError {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(error) = text(value.get("error")) {
            return RingError::Token {
                status,
                error,
                description: text(value.get("error_description")),
            };
        }
        if let Ok(doc) = serde_json::from_value::<ErrorDocument>(value) {
            if let Some(first) = doc.errors.into_iter().next() {
                let named = [first.code.as_deref(), first.title.as_deref()]
                    .into_iter()
                    .flatten()
                    .find_map(oauth_error_name);
                let error = named
                    .map(str::to_owned)
                    .or(first.code)
                    .or(first.title)
                    .unwrap_or_else(|| format!("HTTP {status}"));
                return RingError::Token {
                    status,
                    error,
                    description: first.detail,
                };
            }
        }
    }
    RingError::Token {
        status,
        error: format!("HTTP {status}"),
        description: None,
    }
}

/// `"invalid_grant"` for `invalid_grant`, `Invalid Grant`, `INVALID-GRANT`, ….
fn oauth_error_name(text: &str) -> Option<&'static str> {
    let normal = text.trim().to_ascii_lowercase().replace([' ', '-'], "_");
    OAUTH_ERRORS.iter().copied().find(|name| *name == normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answer_as_documented_parses() {
        let body = br#"{"access_token":"at-1","refresh_token":"rt-1","scope":"ava.v1:read","expires_in":14400,"token_type":"Bearer","extra":1}"#;
        let answer = parse_token_response(body).unwrap();
        assert_eq!(answer.access_token.expose(), "at-1");
        assert_eq!(answer.refresh_token.expose(), "rt-1");
        assert_eq!(answer.expires_in, Duration::from_secs(14400));
        assert_eq!(answer.scope.as_deref(), Some("ava.v1:read"));
        let lenient =
            br#"{"access_token":"a","refresh_token":"r","expires_in":"60","token_type":"bearer"}"#;
        assert_eq!(
            parse_token_response(lenient).unwrap().expires_in,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn malformed_token_answers_say_what_is_wrong_without_the_values() {
        let cases: &[(&[u8], &str)] = &[
            (b"<html>", "not a JSON document"),
            (b"[]", "not a JSON object"),
            (br#"{"refresh_token":"secret-r"}"#, "no access_token"),
            (br#"{"access_token":"secret-a","refresh_token":7}"#, "refresh_token is not"),
            (br#"{"access_token":"secret-a","refresh_token":"secret-r","expires_in":"secret-x"}"#, "expires_in"),
            (br#"{"access_token":"secret-a","refresh_token":"secret-r","token_type":"mac"}"#, "token_type"),
        ];
        for (body, expected) in cases {
            let error = parse_token_response(body).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(shown.contains(expected), "{shown}");
            assert!(!shown.contains("secret-"), "{shown}");
        }
    }

    #[test]
    fn both_token_error_shapes_are_read_and_invalid_grant_recognised() {
        let oauth = parse_token_error(
            400,
            br#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
        );
        assert!(oauth.is_invalid_grant());
        assert_eq!(
            oauth.to_string(),
            "token endpoint answered 400: invalid_grant (refresh token expired)"
        );
        let jsonapi = parse_token_error(
            400,
            br#"{"errors":[{"status":"400","title":"Invalid Grant","detail":"code already used"}]}"#,
        );
        assert!(jsonapi.is_invalid_grant());
        let coded = parse_token_error(400, br#"{"errors":[{"code":"INVALID_GRANT"}]}"#);
        assert!(coded.is_invalid_grant());
        let client = parse_token_error(401, br#"{"error":"invalid_client"}"#);
        assert!(!client.is_invalid_grant());
        assert_eq!(client.status(), Some(401));
        let other = parse_token_error(
            401,
            br#"{"errors":[{"status":"401","title":"Invalid Client"}]}"#,
        );
        assert!(matches!(other, RingError::Token { ref error, .. } if error == "invalid_client"));
        let bare = parse_token_error(502, b"Bad Gateway");
        assert_eq!(bare.to_string(), "token endpoint answered 502: HTTP 502");
    }
}
