//! The shape every source kind has: how its `source = "..."` is written, the
//! `[streams.NAME]` keys it owns, how it plans (loads and checks what it needs
//! without starting) and how it starts into a Hub, returning a handle the registry
//! stops and asks for a report. The registry, API and metrics only see this shape.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde::de::DeserializeOwned;
use streamgate_pipeline::Hub;
use streamgate_pipeline::SourceState as ClientState;

use super::ring_link::RingLink;

/// One kind of source (a replayed capture, an RTSP camera, a WHEP endpoint, ...).
/// Implementations are unit structs listed once in `sources::KINDS`.
pub trait SourceKind: Sync {
    /// How the `source` value is written.
    fn form(&self) -> Form;
    /// Keys of `[streams.NAME]` only this kind reads; on another kind's stream
    /// they are errors.
    fn keys(&self) -> &'static [&'static str];
    /// Checks the values of the kind's keys (types, units) without loading anything.
    fn check(&self, _options: &Options) -> Result<(), OptionError> {
        Ok(())
    }
    /// Loads and checks what the source needs (captures, SDP); paths are
    /// relative to `base`. The message names no secret.
    fn plan(
        &self,
        location: &Location,
        options: &Options,
        base: &Path,
    ) -> Result<Box<dyn Feed>, String>;
}

/// How a kind's `source` value is written.
#[derive(Debug, Clone, Copy)]
pub enum Form {
    /// Exactly this word (`"demo"`).
    Word(&'static str),
    /// This prefix and a path (`"pcap:PATH"`); `example` is a path for the error
    /// message when the path is missing.
    Path {
        prefix: &'static str,
        example: &'static str,
    },
    /// A URL with one of these schemes and a host (`"rtsp://…"`).
    Url(&'static [&'static str]),
}

impl Form {
    /// The kind's name in messages: `demo`, `pcap:`, `rtsp://`.
    pub fn label(&self) -> String {
        match self {
            Form::Word(word) => (*word).to_owned(),
            Form::Path { prefix, .. } => (*prefix).to_owned(),
            // `rtsp(s)://`: the kind takes both, and its keys apply to both.
            Form::Url([plain, secure]) if *secure == format!("{plain}s") => {
                format!("{plain}(s)://")
            }
            Form::Url(schemes) => schemes
                .iter()
                .map(|scheme| format!("{scheme}://"))
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

/// What a `source` value points at, once its kind recognised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A [`Form::Word`] source: nothing more to say.
    Builtin,
    /// A [`Form::Path`] source's path, as written (relative to the config file).
    Path(PathBuf),
    /// A [`Form::Url`] source's URL (may hold credentials: show it [`streamgate_redact::RedactedUrl`]).
    Url(url::Url),
}

/// The values of a stream's kind-specific keys as written, each with its place in
/// the file. Shows only the key names: values may be secrets (`bearer_token`).
#[derive(Clone, Default, PartialEq)]
pub struct Options(pub(crate) BTreeMap<String, toml::Spanned<toml::Value>>);

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// A key's value that its kind refuses; `at` is its byte offset in the file.
#[derive(Debug)]
pub struct OptionError {
    pub at: usize,
    pub message: String,
}

impl Options {
    /// The keys set, in the order they were written, with their values' offsets.
    pub fn keys(&self) -> impl Iterator<Item = (&str, usize)> {
        let mut keys: Vec<_> = self
            .0
            .iter()
            .map(|(key, value)| (key.as_str(), value.span().start))
            .collect();
        keys.sort_by_key(|&(_, at)| at);
        keys.into_iter()
    }

    /// The options as the kind's typed struct (every field optional). Each key
    /// is tried alone first, so an error points at the value that caused it.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, OptionError> {
        let table = |entries: &mut dyn Iterator<Item = (&String, &toml::Spanned<toml::Value>)>| {
            toml::Value::Table(
                entries
                    .map(|(key, value)| (key.clone(), value.get_ref().clone()))
                    .collect(),
            )
        };
        for entry in &self.0 {
            if let Err(error) = T::deserialize(table(&mut std::iter::once(entry))) {
                return Err(OptionError {
                    at: entry.1.span().start,
                    message: error.message().trim().to_owned(),
                });
            }
        }
        T::deserialize(table(&mut self.0.iter())).map_err(|error| OptionError {
            at: 0,
            message: error.message().trim().to_owned(),
        })
    }
}

/// What sources may use besides their Hub: services the binary runs once.
#[derive(Clone, Default)]
pub struct Services {
    /// The Ring Partner API client and the devices discovery found (`[ring]`).
    pub ring: Option<RingLink>,
}

/// A planned source, ready to start.
pub trait Feed: Send {
    /// Starts feeding `hub`, with the binary's `services` at hand; must be called
    /// inside a tokio runtime. The error is a message for the stream's health (no
    /// secrets in it).
    fn start(
        self: Box<Self>,
        hub: Hub,
        services: &Services,
    ) -> Result<Box<dyn RunningSource>, String>;
}

/// A planned URL source (`rtsp://`, `whep://`, …): the URL and the kind's typed
/// options. Each URL kind implements [`Feed`] for its own options type.
pub struct UrlFeed<O> {
    pub url: url::Url,
    pub options: O,
}

impl<O: DeserializeOwned> UrlFeed<O> {
    /// The plan of a [`Form::Url`] kind: its URL and options, checked.
    pub fn plan(location: &Location, options: &Options) -> Result<Self, String> {
        let Location::Url(url) = location else {
            return Err(format!("a URL source without a URL: {location:?}"));
        };
        let options = options.typed().map_err(|e| e.message)?;
        Ok(UrlFeed {
            url: url.clone(),
            options,
        })
    }
}

/// A started source.
pub trait RunningSource: Send + Sync {
    /// Its health, client state, last error and reconnects, read now.
    fn report(&self) -> SourceReport;
    /// Stops it for good (network sources end their sessions: TEARDOWN, DELETE).
    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Where RTSP publishers push into the stream (`source = "publish"` only).
    fn publish_point(&self) -> Option<streamgate_rtsp::server::PublishPoint> {
        None
    }
}

/// Whether a stream's source runs. Not the source client's own state
/// ([`ClientState`]: idle, connecting, playing, ...), which the report carries beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamHealth {
    Running,
    /// The source cannot run now; the message says why (no secrets in it).
    Failed(String),
}

impl StreamHealth {
    /// `running` or `failed`, for the API, metrics and dashboard.
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamHealth::Running => "running",
            StreamHealth::Failed(_) => "failed",
        }
    }
}

/// A source's health in words, its client's state, last error and reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub health: StreamHealth,
    /// The client's state (`playing`, `retrying`, ...); a source without a
    /// client (replay) repeats the health word.
    pub source_state: String,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

impl SourceReport {
    /// A source without a client of its own: only running or failed.
    pub fn of_health(health: StreamHealth) -> SourceReport {
        SourceReport {
            source_state: health.as_str().to_owned(),
            last_error: match &health {
                StreamHealth::Failed(message) => Some(message.clone()),
                StreamHealth::Running => None,
            },
            health,
            reconnects: 0,
        }
    }

    /// A network client's report: failed while it waits to retry (with its last
    /// error, or `failure` when it recorded none), running otherwise.
    pub fn of_client(
        state: ClientState,
        last_error: Option<String>,
        reconnects: u64,
        failure: &str,
    ) -> SourceReport {
        let health = match state.retry_in() {
            Some(retry_in) => StreamHealth::Failed(format!(
                "{} (retrying in {retry_in:?})",
                last_error.as_deref().unwrap_or(failure)
            )),
            None => StreamHealth::Running,
        };
        SourceReport {
            last_error: match &health {
                StreamHealth::Failed(message) => Some(message.clone()),
                StreamHealth::Running => last_error,
            },
            health,
            source_state: state.to_string(),
            reconnects,
        }
    }
}

/// A source that could not start: reports why until it is stopped.
pub struct Failed(pub String);

impl RunningSource for Failed {
    fn report(&self) -> SourceReport {
        SourceReport::of_health(StreamHealth::Failed(self.0.clone()))
    }

    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_retrying_client_is_failed_with_its_last_error_and_running_otherwise() {
        let retrying = ClientState::Retrying {
            retry_in: Duration::from_secs(5),
        };
        let report = |state, error: Option<&str>| {
            SourceReport::of_client(state, error.map(str::to_owned), 2, "session failed")
        };
        let refused = report(retrying, Some("refused"));
        assert_eq!(
            refused.health,
            StreamHealth::Failed("refused (retrying in 5s)".into())
        );
        assert_eq!(
            refused.last_error.as_deref(),
            Some("refused (retrying in 5s)")
        );
        assert_eq!(refused.source_state, "retrying");
        assert_eq!(refused.reconnects, 2);
        assert_eq!(
            report(retrying, None).health,
            StreamHealth::Failed("session failed (retrying in 5s)".into())
        );
        let playing = report(ClientState::Playing, Some("refused"));
        assert_eq!(playing.health, StreamHealth::Running);
        assert_eq!(playing.source_state, "playing");
        // The last error stays visible while the client plays again.
        assert_eq!(playing.last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn typed_options_point_at_the_bad_value() {
        #[derive(serde::Deserialize, Debug)]
        struct Typed {
            flag: Option<bool>,
            count: Option<u32>,
        }
        let ok: Typed = Options(toml::from_str("flag = true").unwrap())
            .typed()
            .unwrap();
        assert_eq!((ok.flag, ok.count), (Some(true), None));
        let text = "flag = true\ncount = \"x\"\n";
        let options: Options = Options(toml::from_str(text).unwrap());
        let error = options.typed::<Typed>().unwrap_err();
        assert_eq!(error.at, text.find("\"x\"").unwrap());
        assert!(error.message.contains("invalid type"), "{error:?}");
    }
}
