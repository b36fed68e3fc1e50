//! `source = "whep://…"` / `"wheps://…"` (HTTP / HTTPS): a WHEP endpoint pulled by
//! `streamgate-whep`'s client, with the keys `bearer_token`, `max_session`,
//! `webrtc_bind` and `trickle`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use streamgate_pipeline::Hub;
use streamgate_whep::{endpoint_url, BearerToken, TrickleMode, WhepConfig, WhepSource};

use super::kind::{
    Feed, Form, Location, OptionError, Options, RunningSource, Services, SourceKind, SourceReport,
    UrlFeed,
};
use streamgate_redact::{RedactedUrl, Secret};

pub struct Whep;

#[derive(Deserialize)]
struct WhepOptions {
    /// `Authorization: Bearer` token for the endpoint (never logged).
    bearer_token: Option<Secret>,
    /// The server's session cap; sessions are rotated make-before-break before it.
    #[serde(default, with = "humantime_serde")]
    max_session: Option<Duration>,
    /// Local IP the WebRTC sockets bind to (default: every interface but loopback).
    webrtc_bind: Option<std::net::IpAddr>,
    trickle: Option<WhepTrickle>,
}

/// `trickle = "auto" | true | false` of a `whep://` stream: trickle ICE by PATCH once the
/// server announces it (default), always, or never (full gathering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TrickleSetting")]
struct WhepTrickle(TrickleMode);

#[derive(Deserialize)]
#[serde(untagged)]
enum TrickleSetting {
    Flag(bool),
    Word(String),
}

impl TryFrom<TrickleSetting> for WhepTrickle {
    type Error = String;

    fn try_from(setting: TrickleSetting) -> Result<Self, Self::Error> {
        Ok(WhepTrickle(match setting {
            TrickleSetting::Flag(true) => TrickleMode::On,
            TrickleSetting::Flag(false) => TrickleMode::Off,
            TrickleSetting::Word(word) => match word.as_str() {
                "auto" => TrickleMode::Auto,
                other => return Err(format!("expected true, false or \"auto\", not {other:?}")),
            },
        }))
    }
}

impl SourceKind for Whep {
    fn form(&self) -> Form {
        Form::Url(&["whep", "wheps"])
    }

    fn keys(&self) -> &'static [&'static str] {
        &["bearer_token", "max_session", "webrtc_bind", "trickle"]
    }

    fn check(&self, options: &Options) -> Result<(), OptionError> {
        options.typed::<WhepOptions>().map(drop)
    }

    fn plan(
        &self,
        location: &Location,
        options: &Options,
        _: &Path,
    ) -> Result<Box<dyn Feed>, String> {
        Ok(Box::new(UrlFeed::<WhepOptions>::plan(location, options)?))
    }
}

impl Feed for UrlFeed<WhepOptions> {
    fn start(self: Box<Self>, hub: Hub, _: &Services) -> Result<Box<dyn RunningSource>, String> {
        let UrlFeed { url, options } = *self;
        let endpoint = endpoint_url(url.as_str()).map_err(|e| e.to_string())?;
        let mut config = WhepConfig::new(endpoint);
        config.bearer_token = options.bearer_token.map(BearerToken::Fixed);
        config.max_session = options.max_session;
        if let Some(ip) = options.webrtc_bind {
            config.bind_ip = ip;
        }
        if let Some(WhepTrickle(mode)) = options.trickle {
            config.trickle = mode;
        }
        tracing::info!(stream = %hub.name(), source = %RedactedUrl(&url), max_session = ?config.max_session, "starting WHEP source");
        let source = WhepSource::start(config, hub)
            .map_err(|e| format!("WHEP source {}: {e}", RedactedUrl(&url)))?;
        Ok(Box::new(source))
    }
}

impl RunningSource for WhepSource {
    fn report(&self) -> SourceReport {
        let status = self.status();
        // Rotations are planned replacements, not reconnects.
        let reconnects = status
            .sessions_opened
            .saturating_sub(1)
            .saturating_sub(status.rotations);
        SourceReport::of_client(
            status.state,
            status.last_error,
            reconnects,
            "WHEP session failed",
        )
    }

    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // DELETEs the sessions.
        Box::pin(WhepSource::stop(*self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_takes_a_flag_or_auto() {
        #[derive(Debug, Deserialize)]
        struct Stream {
            trickle: WhepTrickle,
        }
        let parse = |value: &str| {
            toml::from_str::<Stream>(&format!("trickle = {value}")).map(|s| s.trickle.0)
        };
        assert_eq!(parse("true").unwrap(), TrickleMode::On);
        assert_eq!(parse("false").unwrap(), TrickleMode::Off);
        assert_eq!(parse("\"auto\"").unwrap(), TrickleMode::Auto);
        let error = parse("\"sometimes\"").unwrap_err().to_string();
        assert!(
            error.contains("expected true, false or \"auto\""),
            "{error}"
        );
    }
}
