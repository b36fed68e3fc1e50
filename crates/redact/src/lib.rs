//! How streamgate shows anything that may hold a secret: source URLs with
//! credentials (`rtsp://user:pass@cam/…`), URLs with tokens in their query
//! (`wheps://…?token=…`), and text that failed to parse as a URL. Every crate
//! that logs or reports a URL goes through here, so there is one rule:
//!
//! - user info becomes `***@` (it shows that credentials are set, not which);
//! - the value of a query parameter whose name contains a secret-sounding word
//!   ([`SECRET_QUERY_WORDS`]: `password`, `token`, `key`, `sig`, …) becomes `***`;
//!   other parameters (`channel=1`, `subtype=0`) stay, as users need them to tell
//!   streams apart.
//!
//! [`Scrubber`] goes further for text that comes from elsewhere (a library's error
//! message): it replaces every secret a URL carries, in decoded and encoded form.

use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;

/// Shown instead of a secret.
pub const REDACTED: &str = "***";

/// Words that make a query parameter secret when its name contains one
/// (case-insensitive): `password`, `pwd`, `access_token`, `api_key`, `X-Amz-Signature`, …
pub const SECRET_QUERY_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "token",
    "auth",
    "key",
    "secret",
    "sig",
    "credential",
];

/// Whether the query parameter `name` holds a secret.
pub fn is_secret_query_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_WORDS.iter().any(|word| name.contains(word))
}

/// A URL shown with its secrets replaced by `***` (see the crate docs).
pub struct RedactedUrl<'a>(pub &'a Url);

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0))
    }
}

/// `url` as it may be logged or shown in the API.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let had_credentials = !url.username().is_empty() || url.password().is_some();
    // Both fail only for URLs that cannot have credentials, which have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_secret_query_key(&key) {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    let shown = shown.to_string();
    match shown.split_once("://") {
        Some((scheme, rest)) if had_credentials => format!("{scheme}://{REDACTED}@{rest}"),
        _ => shown,
    }
}

/// Text that did not parse as a URL, as it may be shown: anything between the
/// scheme and the last `@` becomes `***`, and so does a query.
pub fn redact_unparsed(text: &str) -> String {
    let text = match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{REDACTED}@{}", &text[..scheme_end + 3], &text[at + 1..])
        }
        _ => text.to_owned(),
    };
    match text.split_once('?') {
        Some((before, _)) => format!("{before}?{REDACTED}"),
        None => text,
    }
}

/// Replaces the secrets of one URL (user, password, secret query values; decoded
/// and percent-encoded) wherever they appear in a text.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

/// Secrets shorter than this are too likely to match ordinary text to be scrubbed
/// from it (such a secret is still never shown in a URL: [`redact_url`] drops it).
const MIN_SCRUBBED_LEN: usize = 3;

impl Scrubber {
    pub fn of(url: &Url) -> Scrubber {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let mut secrets = Vec::new();
        if !url.username().is_empty() {
            secrets.extend([url.username().to_owned(), decode(url.username())]);
        }
        if let Some(password) = url.password() {
            secrets.extend([password.to_owned(), decode(password)]);
        }
        for pair in url.query().unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if is_secret_query_key(&decode(key)) {
                secrets.extend([value.to_owned(), decode(value)]);
            }
        }
        secrets.retain(|s| s.len() >= MIN_SCRUBBED_LEN);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Scrubber { secrets }
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), REDACTED)
        })
    }
}

/// A secret from the config or the environment (password, bearer token): `***` in
/// `Debug` and `Display`, so no log line or error can print it by accident.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the secret, compared in constant time.
    pub fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), given)
    }
}

/// An error and its causes on one line (`a: b: c`), for errors whose text is
/// already free of secrets (e.g. reqwest's after `without_url()`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

/// Compares without an early exit, so the time taken does not tell how much of
/// a guessed secret (token, password, session id) was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_themselves() {
        let secret = Secret::new("s3cr3t");
        assert!(secret.matches(b"s3cr3t"));
        assert!(!secret.matches(b"s3cr3"));
        assert!(!secret.matches(b"s3cr3T"));
        assert!(!secret.matches(b""));
    }

    fn shown(url: &str) -> String {
        redact_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn credentials_become_stars_and_the_rest_stays() {
        assert_eq!(
            shown("rtsp://admin:hunter2@192.0.2.1:554/s"),
            "rtsp://***@192.0.2.1:554/s"
        );
        assert_eq!(shown("rtsp://admin@cam/s"), "rtsp://***@cam/s");
        assert_eq!(shown("rtsp://cam/s"), "rtsp://cam/s");
    }

    #[test]
    fn secret_query_values_become_stars_and_others_stay() {
        assert_eq!(
            shown("rtsp://10.0.0.9/cam?channel=1&user=bob&password=hunter22"),
            "rtsp://10.0.0.9/cam?channel=1&user=bob&password=***"
        );
        assert_eq!(
            shown("https://h/whep?access_token=abc&X-Amz-Signature=def&api_key=g&sig=h&PWD=i"),
            "https://h/whep?access_token=***&X-Amz-Signature=***&api_key=***&sig=***&PWD=***"
        );
    }

    #[test]
    fn unparsed_text_loses_user_info_and_query() {
        assert_eq!(
            redact_unparsed("rtsp://admin:hunter2@[::1/x"),
            "rtsp://***@[::1/x"
        );
        assert_eq!(redact_unparsed("whep://[x?token=abc"), "whep://[x?***");
        assert_eq!(redact_unparsed("camera1"), "camera1");
    }

    #[test]
    fn the_scrubber_replaces_decoded_and_encoded_secrets() {
        let url = Url::parse("rtsp://admin:s%40cret99@cam/x?token=t0k3n&channel=1").unwrap();
        let scrubber = Scrubber::of(&url);
        assert_eq!(
            scrubber.scrub("auth admin s@cret99 s%40cret99 t0k3n channel"),
            "auth *** *** *** *** channel"
        );
        assert_eq!(Scrubber::default().scrub("as is"), "as is");
    }

    #[test]
    fn secrets_print_as_stars() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
    }
}
