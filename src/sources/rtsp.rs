//! `source = "rtsp://…"` or `"rtsps://…"`: an RTSP camera pulled by
//! `streamgate-rtsp`'s client, with the keys `transport`, `always_on` and
//! `idle_grace`, and for `rtsps://` `tls_verify`, `tls_fingerprint` and `tls_ca`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use streamgate_pipeline::Hub;
use streamgate_rtsp::client::{Fingerprint, RtspSource, SourceConfig, TransportMode};

use super::kind::{
    Feed, Form, Location, OptionError, Options, RunningSource, Services, SourceKind, SourceReport,
    UrlFeed,
};
use streamgate_redact::RedactedUrl;

pub struct Rtsp;

/// `transport = "tcp" | "udp" | "auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
struct RtspTransport(TransportMode);

impl TryFrom<String> for RtspTransport {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(RtspTransport).map_err(|e| e.to_string())
    }
}

/// `tls_fingerprint = "sha256:…"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
struct TlsFingerprint(Fingerprint);

impl TryFrom<String> for TlsFingerprint {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(TlsFingerprint).map_err(|e| e.to_string())
    }
}

#[derive(Deserialize)]
struct RtspOptions {
    transport: Option<RtspTransport>,
    always_on: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    idle_grace: Option<Duration>,
    tls_verify: Option<bool>,
    tls_fingerprint: Option<TlsFingerprint>,
    tls_ca: Option<PathBuf>,
}

impl SourceKind for Rtsp {
    fn form(&self) -> Form {
        Form::Url(&["rtsp", "rtsps"])
    }

    fn keys(&self) -> &'static [&'static str] {
        &[
            "transport",
            "always_on",
            "idle_grace",
            "tls_verify",
            "tls_fingerprint",
            "tls_ca",
        ]
    }

    fn check(&self, options: &Options) -> Result<(), OptionError> {
        options.typed::<RtspOptions>().map(drop)
    }

    fn plan(
        &self,
        location: &Location,
        options: &Options,
        base: &Path,
    ) -> Result<Box<dyn Feed>, String> {
        let mut feed = UrlFeed::<RtspOptions>::plan(location, options)?;
        // Relative to the config file (an absolute path stays as it is).
        feed.options.tls_ca = feed.options.tls_ca.map(|ca| base.join(ca));
        Ok(Box::new(feed))
    }
}

impl Feed for UrlFeed<RtspOptions> {
    fn start(self: Box<Self>, hub: Hub, _: &Services) -> Result<Box<dyn RunningSource>, String> {
        let UrlFeed { url, options } = *self;
        let mut config = SourceConfig::new(url.as_str());
        if let Some(RtspTransport(transport)) = options.transport {
            config.transport = transport;
        }
        config.always_on = options.always_on.unwrap_or(false);
        config.idle_grace = options
            .idle_grace
            .unwrap_or(SourceConfig::DEFAULT_IDLE_GRACE);
        config.tls.verify = options.tls_verify.unwrap_or(true);
        config.tls.fingerprint = options.tls_fingerprint.map(|TlsFingerprint(f)| f);
        config.tls.ca = options.tls_ca;
        tracing::info!(
            stream = %hub.name(),
            source = %RedactedUrl(&url),
            transport = %config.transport,
            always_on = config.always_on,
            "starting RTSP camera source"
        );
        let source = RtspSource::spawn(hub, config)
            .map_err(|e| format!("RTSP source {}: {e}", RedactedUrl(&url)))?;
        Ok(Box::new(source))
    }
}

impl RunningSource for RtspSource {
    fn report(&self) -> SourceReport {
        let status = self.status();
        let reconnects = status.sessions.saturating_sub(1);
        SourceReport::of_client(
            status.state,
            status.last_error,
            reconnects,
            "RTSP session failed",
        )
    }

    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // retina TEARDOWNs the session.
        Box::pin(RtspSource::stop(*self))
    }
}
