//! The registry as the RTSP server sees it, including streams that exist only
//! while their publisher does (`[rtsp] publish = "any"`, MediaMTX's
//! `all_others`): an ANNOUNCE to a path no stream has creates a
//! `source = "publish"` stream named by the path, with the `[rtsp]` publish
//! settings. Once its publisher left and the grace passed without another (the
//! point cut the readers off), the stream is taken out of the registry, so
//! the API stops listing it and the path is free again.

use streamgate_rtsp::server::{
    Credentials, PublishConfig, PublishPoint, StreamDirectory, StreamEntry,
};

use crate::config::StreamName;
use crate::streams::{PlannedStream, SharedStreams, Stream};

/// Looks streams up for the RTSP server and creates publishers' streams.
pub struct Directory {
    streams: SharedStreams,
    /// Set with `publish = "any"`: the settings of the streams publishers create.
    open: Option<PublishConfig>,
    /// In a cluster: who serves the streams not running here.
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Directory {
    pub fn new(streams: SharedStreams, open: Option<PublishConfig>) -> Directory {
        Directory {
            streams,
            open,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

impl StreamDirectory for Directory {
    fn lookup(&self, name: &str) -> Option<StreamEntry> {
        self.streams.read().get(name).map(entry)
    }

    #[cfg(feature = "cluster")]
    fn elsewhere(&self, name: &str) -> Option<String> {
        Some(self.cluster.as_ref()?.elsewhere(name)?.rtsp)
    }

    fn open_publish(&self) -> Option<Option<Credentials>> {
        self.open.as_ref().map(|open| open.credentials.clone())
    }

    fn create_publish(&self, name: &str) -> Option<StreamEntry> {
        let open = self.open.clone()?;
        let stream_name = StreamName::from_publish_path(name)
            .inspect_err(|reason| tracing::info!("RTSP publisher refused: {reason}"))
            .ok()?;
        let (entry, point) = {
            let mut streams = self.streams.write();
            // Another publisher's ANNOUNCE got here first: that stream it is.
            if let Some(stream) = streams.get(name) {
                return Some(entry(stream));
            }
            streams.insert(PlannedStream::by_publisher(stream_name, open));
            let stream = streams.get(name)?;
            (entry(stream), stream.publish_point()?)
        };
        tracing::info!(stream = name, "stream created by its RTSP publisher");
        tokio::spawn(remove_when_abandoned(
            self.streams.clone(),
            name.to_owned(),
            point,
        ));
        Some(entry)
    }
}

/// The server's view of a running stream.
fn entry(stream: &Stream) -> StreamEntry {
    StreamEntry {
        hub: stream.hub.clone(),
        credentials: credentials(&stream.config.rtsp_username, &stream.config.rtsp_password),
        publish: stream.publish_point(),
    }
}

/// A username and password pair as the RTSP server checks them.
pub fn credentials(
    username: &Option<String>,
    password: &Option<streamgate_redact::Secret>,
) -> Option<Credentials> {
    username
        .clone()
        .zip(password.clone())
        .map(|(username, password)| Credentials {
            username,
            password: password.expose().to_owned(),
        })
}

/// Takes the publisher's stream `name` out of the registry and stops it once
/// its publisher is gone for good; a configured stream of the same name that
/// replaced it on a reload is left alone.
async fn remove_when_abandoned(streams: SharedStreams, name: String, point: PublishPoint) {
    loop {
        point.abandoned().await;
        let removed = {
            let mut running = streams.write();
            let ours = running
                .get(&name)
                .and_then(Stream::publish_point)
                .is_some_and(|current| current.same(&point));
            if !ours {
                return;
            }
            // A publisher came back as the grace ran out: it keeps the stream.
            if point.status().publisher.is_some() {
                continue;
            }
            running.remove(&name)
        };
        if let Some(stream) = removed {
            tracing::info!(stream = name, "publisher gone: stream removed");
            stream.stop().await;
        }
        return;
    }
}
