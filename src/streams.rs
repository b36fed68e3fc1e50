//! The stream registry: one [`Hub`] per configured stream and the source that
//! feeds it. Outputs (RTSP server, HLS, the HTTP API) look streams up here by
//! name; this module knows no HTTP and no source kind (see `sources`).
//!
//! Starting is split in two so `check-config` can run the first half: [`plan`]
//! loads and checks everything a source needs (captures, SDP) without starting
//! anything, [`Streams::start`] starts the sources.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use streamgate_pipeline::{Hub, HubConfig};

use crate::config::{Config, StreamConfig, StreamName};
use crate::sources::{Failed, Feed, Options, RunningSource, Services, Source, SourceReport};
use streamgate_rtsp::server::PublishConfig;

/// A stream that failed its checks; the message names the stream.
#[derive(thiserror::Error, Debug)]
#[error("stream {stream}: {message}")]
pub struct StreamError {
    stream: StreamName,
    message: String,
}

/// One configured stream, checked and ready to start.
pub struct PlannedStream {
    pub name: StreamName,
    /// The stream's table as configured (for the API and to spot changes on reload).
    pub config: StreamConfig,
    feed: Box<dyn Feed>,
    by_publisher: bool,
}

impl PlannedStream {
    /// A stream its publisher creates on an unconfigured path (`[rtsp] publish
    /// = "any"`): `source = "publish"` with the `[rtsp]` publish settings.
    pub fn by_publisher(name: StreamName, publish: PublishConfig) -> PlannedStream {
        let config = StreamConfig {
            source: Source::try_from("publish".to_owned()).expect("publish is a source kind"),
            rtsp_username: None,
            rtsp_password: None,
            viewer_token: None,
            options: Options::default(),
        };
        PlannedStream {
            name,
            config,
            feed: crate::sources::publish_feed(publish),
            by_publisher: true,
        }
    }
}

/// Loads every stream's source material (paths relative to `base`, the config
/// file's directory).
pub fn plan(config: &Config, base: &Path) -> Result<Vec<PlannedStream>, StreamError> {
    config
        .streams
        .iter()
        .map(|(name, stream)| plan_stream(name, stream, base))
        .collect()
}

/// Loads one stream's source material.
pub fn plan_stream(
    name: &StreamName,
    stream: &StreamConfig,
    base: &Path,
) -> Result<PlannedStream, StreamError> {
    let feed = stream
        .source
        .plan(&stream.options, base)
        .map_err(|message| StreamError {
            stream: name.clone(),
            message,
        })?;
    Ok(PlannedStream {
        name: name.clone(),
        config: stream.clone(),
        feed,
        by_publisher: false,
    })
}

/// A running stream.
pub struct Stream {
    pub hub: Hub,
    pub config: StreamConfig,
    /// Created by its publisher, not the config: reloads leave it alone, and it
    /// goes when the publisher does.
    pub by_publisher: bool,
    source: Box<dyn RunningSource>,
}

impl Stream {
    /// Creates the stream's Hub and starts its source. Must be called inside a
    /// tokio runtime.
    fn start(planned: PlannedStream, services: &Services) -> Stream {
        let PlannedStream {
            name,
            config,
            feed,
            by_publisher,
        } = planned;
        let hub = Hub::new(name.as_str(), HubConfig::default());
        let source = feed.start(hub.clone(), services).unwrap_or_else(|message| {
            tracing::error!(stream = %name, "{message}");
            Box::new(Failed(message))
        });
        Stream {
            hub,
            config,
            by_publisher,
            source,
        }
    }

    /// Stops the source and closes the Hub, so every reader sees the end.
    pub async fn stop(self) {
        self.source.stop().await;
        self.hub.close();
        tracing::debug!(stream = %self.hub.name(), "stream stopped");
    }

    /// The source's health, client state, last error and reconnects (redacted).
    pub fn report(&self) -> SourceReport {
        self.source.report()
    }

    /// Where RTSP publishers push (a `source = "publish"` stream).
    pub fn publish_point(&self) -> Option<streamgate_rtsp::server::PublishPoint> {
        self.source.publish_point()
    }
}

/// All running streams, by name, and the services their sources start with.
pub struct Streams {
    streams: BTreeMap<StreamName, Stream>,
    services: Services,
}

impl Streams {
    /// Creates each stream's Hub and starts its source. Must be called inside a
    /// tokio runtime.
    pub fn start(planned: Vec<PlannedStream>, services: Services) -> Streams {
        let streams = planned
            .into_iter()
            .map(|planned| (planned.name.clone(), Stream::start(planned, &services)))
            .collect();
        Streams { streams, services }
    }

    /// Starts `planned` under its name; returns the stream it replaces, for the
    /// caller to [`Stream::stop`].
    pub fn insert(&mut self, planned: PlannedStream) -> Option<Stream> {
        let name = planned.name.clone();
        let stream = Stream::start(planned, &self.services);
        self.streams.insert(name, stream)
    }

    /// Takes a stream out of the registry (outputs stop finding it); the caller
    /// [`Stream::stop`]s it.
    pub fn remove(&mut self, name: &str) -> Option<Stream> {
        let key = self.streams.keys().find(|n| n.as_str() == name)?.clone();
        self.streams.remove(&key)
    }

    pub fn get(&self, name: &str) -> Option<&Stream> {
        self.streams
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, s)| s)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&StreamName, &Stream)> {
        self.streams.iter()
    }

    /// Takes every stream out (the registry keeps its services), for the caller
    /// to [`Streams::shutdown`].
    pub fn take(&mut self) -> Streams {
        Streams {
            streams: std::mem::take(&mut self.streams),
            services: self.services.clone(),
        }
    }

    /// Stops every source and closes every Hub (subscribers see the end).
    pub async fn shutdown(self) {
        for stream in self.streams.into_values() {
            stream.stop().await;
        }
    }
}

/// The registry as the HTTP app, the RTSP server and reloads share it.
#[derive(Clone)]
pub struct SharedStreams(Arc<RwLock<Streams>>);

impl SharedStreams {
    pub fn new(streams: Streams) -> SharedStreams {
        SharedStreams(Arc::new(RwLock::new(streams)))
    }

    /// Read access; a panic elsewhere never locks the outputs out.
    pub fn read(&self) -> RwLockReadGuard<'_, Streams> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Streams> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Hub of the stream named `name`, if there is one.
    pub fn hub(&self, name: &str) -> Option<Hub> {
        self.read().get(name).map(|stream| stream.hub.clone())
    }
}
