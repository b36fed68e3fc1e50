//! The stream registry: one [`Hub`] per configured stream and the task that
//! feeds it. Outputs (RTSP server, HLS) look streams up here by name.
//!
//! Starting is split in two so `check-config` can run the first half: [`plan`]
//! loads and checks everything a source needs (captures, SDP) without starting
//! anything, [`Streams::start`] spawns the source tasks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use streamgate_pipeline::{Hub, HubConfig};
use streamgate_replay::{Capture, ReplayError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, Source, StreamConfig, StreamName};
use crate::rtsp_source::{self, RtspFeed};
use crate::whep::{self, WhepFeed};
use streamgate_rtsp::client::RtspSource;
use streamgate_whep::WhepSource;

/// What a stream's source task is doing, for logs and (later) the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    Running,
    /// The source cannot run; the message says why (no secrets in it).
    Failed(String),
}

/// Mirrors a network source's status (RTSP camera, WHEP) into the stream's state
/// until the source ends: failed, with its last error, while it waits to retry;
/// running otherwise. `state_of` picks the lifecycle state and last error out of
/// the source's status; `failure` names the failure when it recorded no error.
pub async fn mirror_source_status<T>(
    mut status: watch::Receiver<T>,
    state: watch::Sender<SourceState>,
    state_of: impl Fn(&T) -> (streamgate_pipeline::SourceState, Option<&str>),
    failure: &'static str,
) {
    loop {
        let mapped = {
            let status = status.borrow_and_update();
            let (source_state, last_error) = state_of(&status);
            match source_state.retry_in() {
                Some(retry_in) => SourceState::Failed(format!(
                    "{} (retrying in {retry_in:?})",
                    last_error.unwrap_or(failure)
                )),
                None => SourceState::Running,
            }
        };
        state.send_replace(mapped);
        if status.changed().await.is_err() {
            break;
        }
    }
}

/// A stream that failed its checks; the message names the stream.
#[derive(thiserror::Error, Debug)]
#[error("stream {stream}: {source}")]
pub struct StreamError {
    stream: StreamName,
    source: ReplayError,
}

/// How a stream will be fed, decided and loaded before anything starts.
pub enum Feed {
    /// A capture replayed in real time, looped.
    Replay(Arc<Capture>),
    /// A WHEP endpoint and its options.
    Whep(WhepFeed),
    /// An RTSP camera and its options.
    Rtsp(RtspFeed),
    /// A source kind whose client is not part of this build yet.
    NotYetSupported,
}

/// One configured stream, checked and ready to start.
pub struct PlannedStream {
    pub name: StreamName,
    pub source: Source,
    /// The stream's table as configured (for the API and to spot changes on reload).
    pub config: StreamConfig,
    pub feed: Feed,
}

/// Loads every stream's source material (paths relative to `base`, the config
/// file's directory). The demo capture is loaded once and shared.
pub fn plan(config: &Config, base: &Path) -> Result<Vec<PlannedStream>, StreamError> {
    let mut demo: Option<Arc<Capture>> = None;
    config
        .streams
        .iter()
        .map(|(name, stream)| plan_stream(name, stream, base, &mut demo))
        .collect()
}

/// Loads one stream's source material; `demo` caches the demo capture across calls.
pub fn plan_stream(
    name: &StreamName,
    stream: &StreamConfig,
    base: &Path,
    demo: &mut Option<Arc<Capture>>,
) -> Result<PlannedStream, StreamError> {
    let fail = |source| StreamError {
        stream: name.clone(),
        source,
    };
    let feed = match &stream.source {
        Source::Demo => match demo {
            Some(capture) => Feed::Replay(capture.clone()),
            None => {
                let capture = Arc::new(streamgate_replay::demo_capture().map_err(fail)?);
                *demo = Some(capture.clone());
                Feed::Replay(capture)
            }
        },
        Source::Pcap(pcap) => {
            let (pcap, sdp) = stream.capture_files(pcap, base);
            Feed::Replay(Arc::new(Capture::load(&pcap, &sdp).map_err(fail)?))
        }
        Source::Whep(url) => Feed::Whep(WhepFeed {
            url: url.clone(),
            bearer_token: stream.bearer_token.clone(),
            max_session: stream.max_session,
            webrtc_bind: stream.webrtc_bind,
            trickle: stream.trickle,
        }),
        Source::Rtsp(url) => Feed::Rtsp(RtspFeed {
            url: url.clone(),
            transport: stream.transport,
            always_on: stream.always_on,
            idle_grace: stream.idle_grace,
        }),
    };
    Ok(PlannedStream {
        name: name.clone(),
        source: stream.source.clone(),
        config: stream.clone(),
        feed,
    })
}

/// A running stream.
pub struct Stream {
    pub hub: Hub,
    pub source: Source,
    pub config: StreamConfig,
    state: watch::Receiver<SourceState>,
    task: Option<JoinHandle<()>>,
    /// Stopped gracefully at shutdown (its sessions are DELETEd).
    whep: Option<WhepSource>,
    /// Stopped at shutdown (retina TEARDOWNs its session).
    rtsp: Option<RtspSource>,
}

impl Stream {
    /// Creates the stream's Hub and starts its source (always on, for now).
    /// Must be called inside a tokio runtime.
    fn start(
        PlannedStream {
            name,
            source,
            config,
            feed,
        }: PlannedStream,
    ) -> Stream {
        let hub = Hub::new(name.as_str(), HubConfig::default());
        let (state_tx, state) = watch::channel(SourceState::Running);
        let mut whep = None;
        let mut rtsp = None;
        let task = match feed {
            Feed::Replay(capture) => {
                tracing::info!(stream = %name, %source, tracks = capture.tracks.len(), "starting replay source");
                Some(tokio::spawn(replay_task(
                    name.clone(),
                    capture,
                    hub.clone(),
                    state_tx,
                )))
            }
            Feed::Whep(feed) => match whep::start(feed, hub.clone(), state_tx.clone()) {
                Ok((source, task)) => {
                    whep = Some(source);
                    Some(task)
                }
                Err(message) => {
                    tracing::error!(stream = %name, "{message}");
                    state_tx.send_replace(SourceState::Failed(message));
                    None
                }
            },
            Feed::Rtsp(feed) => match rtsp_source::start(feed, hub.clone(), state_tx.clone()) {
                Ok((source, task)) => {
                    rtsp = Some(source);
                    Some(task)
                }
                Err(message) => {
                    tracing::error!(stream = %name, "{message}");
                    state_tx.send_replace(SourceState::Failed(message));
                    None
                }
            },
            Feed::NotYetSupported => {
                let message = format!("source {source} is not supported by this build yet");
                tracing::error!(stream = %name, "{message}");
                state_tx.send_replace(SourceState::Failed(message));
                None
            }
        };
        Stream {
            hub,
            source,
            config,
            state,
            task,
            whep,
            rtsp,
        }
    }

    /// Stops the source and closes the Hub, so every reader sees the end.
    pub async fn stop(mut self) {
        if let Some(whep) = self.whep.take() {
            whep.stop().await;
        }
        if let Some(rtsp) = self.rtsp.take() {
            rtsp.stop().await;
        }
        if let Some(task) = self.task.take() {
            task.abort();
            // A cancelled task's JoinError is the expected outcome here.
            let _ = task.await;
        }
        self.hub.close();
        tracing::debug!(stream = %self.hub.name(), "stream stopped");
    }

    pub fn state(&self) -> SourceState {
        self.state.borrow().clone()
    }

    /// A `whep://` stream's detailed status (sessions, rotations, last error; redacted).
    pub fn whep_status(&self) -> Option<streamgate_whep::WhepStatus> {
        self.whep.as_ref().map(WhepSource::status)
    }

    /// An `rtsp://` stream's detailed status (state, transport, last error; redacted).
    pub fn rtsp_status(&self) -> Option<streamgate_rtsp::client::SourceStatus> {
        self.rtsp.as_ref().map(RtspSource::status)
    }
}

/// All configured streams, by name.
pub struct Streams {
    streams: BTreeMap<StreamName, Stream>,
}

impl Streams {
    /// Creates each stream's Hub and starts its source (always on, for now).
    /// Must be called inside a tokio runtime.
    pub fn start(planned: Vec<PlannedStream>) -> Streams {
        let streams = planned
            .into_iter()
            .map(|planned| (planned.name.clone(), Stream::start(planned)))
            .collect();
        Streams { streams }
    }

    /// Starts `planned` under its name; returns the stream it replaces, for the
    /// caller to [`Stream::stop`].
    pub fn insert(&mut self, planned: PlannedStream) -> Option<Stream> {
        self.streams
            .insert(planned.name.clone(), Stream::start(planned))
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

    /// Stops every source and closes every Hub (subscribers see the end).
    pub async fn shutdown(self) {
        for stream in self.streams.into_values() {
            stream.stop().await;
        }
    }
}

async fn replay_task(
    name: StreamName,
    capture: Arc<Capture>,
    hub: Hub,
    state: watch::Sender<SourceState>,
) {
    if let Err(error) = streamgate_replay::run(capture, hub, 1.0, true).await {
        tracing::error!(stream = %name, %error, "replay source failed");
        state.send_replace(SourceState::Failed(error.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streamgate_pipeline::SourceState as Lifecycle;

    use super::*;

    /// Sends `lifecycle` and `error` as the source's status; true once the
    /// stream's state becomes `expected`.
    async fn mirrors(
        status: &watch::Sender<(Lifecycle, Option<String>)>,
        state: &mut watch::Receiver<SourceState>,
        (lifecycle, error): (Lifecycle, Option<&str>),
        expected: SourceState,
    ) -> bool {
        status.send_replace((lifecycle, error.map(str::to_owned)));
        let reached = state.wait_for(|state| *state == expected);
        tokio::time::timeout(Duration::from_secs(5), reached)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn a_retrying_source_is_failed_with_its_last_error_and_running_otherwise() {
        let (status, status_rx) = watch::channel((Lifecycle::Connecting, None::<String>));
        let (state_tx, mut state) = watch::channel(SourceState::Failed("not yet".into()));
        let mirror = tokio::spawn(mirror_source_status(
            status_rx,
            state_tx,
            |(lifecycle, error)| (*lifecycle, error.as_deref()),
            "session failed",
        ));
        let retrying = Lifecycle::Retrying {
            retry_in: Duration::from_secs(5),
        };
        let refused = SourceState::Failed("refused (retrying in 5s)".into());
        assert!(mirrors(&status, &mut state, (retrying, Some("refused")), refused).await);
        let unnamed = SourceState::Failed("session failed (retrying in 5s)".into());
        assert!(mirrors(&status, &mut state, (retrying, None), unnamed).await);
        let playing = (Lifecycle::Playing, Some("refused"));
        assert!(mirrors(&status, &mut state, playing, SourceState::Running).await);
        drop(status);
        mirror.await.expect("the mirror ends with its source");
    }
}
