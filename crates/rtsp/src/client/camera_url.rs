//! A camera's `rtsp://` or `rtsps://` URL split into what may be shown and what may not.
//!
//! retina refuses URLs with credentials (they would end up in its error messages),
//! so the user and password are taken out here and handed to retina separately.
//! Everything that prints the URL prints [`CameraUrl`]'s `Display`, which never
//! contains them; [`CameraUrl::redact`] scrubs any text that might (defence in depth
//! for error strings that come from elsewhere). Both follow `streamgate-redact`'s rule.

use std::fmt;

use percent_encoding::percent_decode_str;
use streamgate_redact::{redact_url, Scrubber};
use url::Url;

use super::SourceError;

/// A parsed `rtsp://` URL with its credentials held apart.
#[derive(Clone)]
pub struct CameraUrl {
    /// The URL retina connects to: no user info.
    url: Url,
    credentials: Option<retina::client::Credentials>,
    /// The URL as it may appear in logs and API output.
    redacted: String,
    /// Replaces the URL's secrets in text that comes from elsewhere.
    scrubber: Scrubber,
}

impl CameraUrl {
    /// Parses `rtsp[s]://[user[:password]@]host[:port]/path[?query]`.
    pub fn parse(input: &str) -> Result<CameraUrl, SourceError> {
        let mut url = Url::parse(input).map_err(|e| SourceError::BadUrl {
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "rtsp" | "rtsps") {
            return Err(SourceError::BadUrl {
                reason: format!("scheme {:?} is not rtsp or rtsps", url.scheme()),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(SourceError::BadUrl {
                reason: "no host".into(),
            });
        }
        let redacted = redact_url(&url);
        let scrubber = Scrubber::of(&url);
        let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let credentials = retina::client::Credentials {
                username: decode(url.username()),
                password: url.password().map(decode).unwrap_or_default(),
            };
            let _ = url.set_username("");
            let _ = url.set_password(None);
            credentials
        });
        Ok(CameraUrl {
            url,
            credentials,
            redacted,
            scrubber,
        })
    }

    /// `rtsps://`: RTSP over TLS, served by our own client, not retina.
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "rtsps"
    }

    /// The URL without credentials, for retina.
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn credentials(&self) -> Option<retina::client::Credentials> {
        self.credentials.clone()
    }

    /// `text` with every credential of this URL replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.scrubber.scrub(text)
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The redacted form: safe for logs and API output.
impl fmt::Display for CameraUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Same as `Display`, so a `{:?}` in a log line cannot leak either.
impl fmt::Debug for CameraUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CameraUrl({})", self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_and_never_shown() {
        let url = CameraUrl::parse("rtsp://admin:s%40cret99@cam.local:8554/stream1").unwrap();
        assert_eq!(url.url().as_str(), "rtsp://cam.local:8554/stream1");
        let creds = url.credentials().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("admin", "s@cret99")
        );
        let shown = format!("{url} {url:?}");
        assert!(
            !shown.contains("s@cret99")
                && !shown.contains("s%40cret99")
                && !shown.contains("admin"),
            "{shown}"
        );
        assert_eq!(url.to_string(), "rtsp://***@cam.local:8554/stream1");
        assert_eq!(
            url.redact("auth as admin with s@cret99 / s%40cret99"),
            "auth as *** with *** / ***"
        );
    }

    #[test]
    fn secret_query_values_are_redacted() {
        let url = CameraUrl::parse(
            "rtsp://10.0.0.9/cam/realmonitor?channel=1&user=bob&password=hunter22",
        )
        .unwrap();
        assert_eq!(
            url.url().as_str(),
            "rtsp://10.0.0.9/cam/realmonitor?channel=1&user=bob&password=hunter22"
        );
        assert!(url.credentials().is_none());
        assert_eq!(
            url.to_string(),
            "rtsp://10.0.0.9/cam/realmonitor?channel=1&user=bob&password=***"
        );
        assert_eq!(
            url.redact("GET ...password=hunter22"),
            "GET ...password=***"
        );
    }

    #[test]
    fn rtsps_urls_are_tls() {
        let url = CameraUrl::parse("rtsps://u:pw123@10.0.0.1:7441/abc?channel=1").unwrap();
        assert!(url.is_tls());
        assert_eq!(url.to_string(), "rtsps://***@10.0.0.1:7441/abc?channel=1");
        assert!(!CameraUrl::parse("rtsp://10.0.0.1/x").unwrap().is_tls());
    }

    #[test]
    fn url_without_credentials_is_shown_as_is() {
        let url = CameraUrl::parse("rtsp://127.0.0.1:554/live").unwrap();
        assert!(url.credentials().is_none());
        assert_eq!(url.to_string(), "rtsp://127.0.0.1:554/live");
        assert_eq!(url.redact("nothing secret"), "nothing secret");
    }

    #[test]
    fn bad_urls_are_rejected_without_echoing_secrets() {
        for bad in [
            "http://user:pw123@cam/x",
            "rtsp://",
            "not a url",
            "rtsps://",
        ] {
            let err = CameraUrl::parse(bad).unwrap_err();
            assert!(matches!(err, SourceError::BadUrl { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("pw123"), "{err}");
        }
    }
}
