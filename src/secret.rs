//! Keeping secrets out of logs, errors and the API: config passwords and tokens
//! ([`Secret`]) and credentials or tokens in source URLs ([`Redacted`]). A leaf
//! module: the config, the sources and the HTTP app all use it.

use std::fmt;

use serde::Deserialize;

/// A password or token from the config: shown as `***` in Debug output and logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL shown without its password (and without a query, which may hold tokens).
pub struct Redacted<'a>(pub &'a url::Url);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Only fails for URLs that cannot have credentials, which have no password.
            let _ = url.set_password(Some("***"));
        }
        if url.query().is_some() {
            url.set_query(Some("***"));
        }
        f.write_str(url.as_str())
    }
}

/// Redacts the `user:password@` part of text that did not parse as a URL.
pub fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***@{}", &text[..scheme_end + 3], &text[at + 1..])
        }
        _ => text.to_owned(),
    }
}
