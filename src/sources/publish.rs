//! `source = "publish"`: the stream is pushed into the gateway by a publisher:
//! into the RTSP server (ffmpeg `-f rtsp`, GStreamer `rtspclientsink`) with
//! ANNOUNCE/RECORD, or over WHIP (`POST /whip/NAME`, `http::whip`). Starting
//! it makes the stream's [`PublishPoint`], which the RTSP server and the WHIP
//! endpoint find through [`RunningSource::publish_point`]; it reports `idle`
//! until a publisher records and `playing` while one does. Keys:
//! `publish_username`/`publish_password` (separate from the read
//! credentials; the password is also the WHIP bearer token),
//! `publish_replace`, `publish_grace`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use streamgate_pipeline::{Hub, SourceState};
use streamgate_redact::Secret;
use streamgate_rtsp::server::{Credentials, PublishConfig, PublishPoint};

use super::kind::{
    Feed, Form, Location, OptionError, Options, RunningSource, Services, SourceKind, SourceReport,
    StreamHealth,
};

pub struct Publish;

#[derive(Deserialize)]
struct PublishOptions {
    publish_username: Option<String>,
    publish_password: Option<Secret>,
    publish_replace: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    publish_grace: Option<Duration>,
}

impl SourceKind for Publish {
    fn form(&self) -> Form {
        Form::Word("publish")
    }

    fn keys(&self) -> &'static [&'static str] {
        &[
            "publish_username",
            "publish_password",
            "publish_replace",
            "publish_grace",
        ]
    }

    fn check(&self, options: &Options) -> Result<(), OptionError> {
        let typed = options.typed::<PublishOptions>()?;
        if typed.publish_username.is_some() != typed.publish_password.is_some() {
            let at = options.keys().next().map_or(0, |(_, at)| at);
            return Err(OptionError {
                at,
                message: "set both `publish_username` and `publish_password`, or neither".into(),
            });
        }
        Ok(())
    }

    fn plan(&self, _: &Location, options: &Options, _: &Path) -> Result<Box<dyn Feed>, String> {
        let typed = options.typed::<PublishOptions>().map_err(|e| e.message)?;
        let credentials =
            typed
                .publish_username
                .zip(typed.publish_password)
                .map(|(username, password)| Credentials {
                    username,
                    password: password.expose().to_owned(),
                });
        Ok(feed(PublishConfig {
            credentials,
            replace: typed.publish_replace.unwrap_or(false),
            grace: typed.publish_grace.unwrap_or(PublishConfig::DEFAULT_GRACE),
        }))
    }
}

/// The feed of a publish stream with `config`; also how a stream its publisher
/// creates (`[rtsp] publish = "any"`) starts, with the `[rtsp]` settings.
pub fn feed(config: PublishConfig) -> Box<dyn Feed> {
    Box::new(PublishFeed(config))
}

struct PublishFeed(PublishConfig);

impl Feed for PublishFeed {
    fn start(self: Box<Self>, hub: Hub, _: &Services) -> Result<Box<dyn RunningSource>, String> {
        tracing::info!(stream = %hub.name(), replace = self.0.replace, grace = ?self.0.grace, "waiting for an RTSP publisher");
        Ok(Box::new(PublishSource(PublishPoint::new(hub, self.0))))
    }
}

struct PublishSource(PublishPoint);

impl RunningSource for PublishSource {
    fn report(&self) -> SourceReport {
        let status = self.0.status();
        let state = match status.publisher {
            Some(_) => SourceState::Playing,
            None => SourceState::Idle,
        };
        SourceReport {
            health: StreamHealth::Running,
            source_state: state.to_string(),
            last_error: None,
            reconnects: status.sessions.saturating_sub(1),
        }
    }

    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.0.close();
        Box::pin(async {})
    }

    fn publish_point(&self) -> Option<PublishPoint> {
        Some(self.0.clone())
    }
}
