//! The decoded pictures of non-Ring streams and the decode permits (feature
//! `ffmpeg`), apart from the route so the shared state can hold them: each
//! keyframe is decoded once per size and format, on a blocking thread, with at
//! most [`MAX_DECODES`] decodes at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::http::StatusCode;
use bytes::Bytes;
use streamgate_snapshot::{ImageFormat, Keyframe, Size, SnapshotError};
use tokio::sync::{OnceCell, Semaphore};

use crate::streams::SharedStreams;

/// Decodes running at once, all streams together: each takes a core for tens
/// of milliseconds, and the gateway's forwarding must keep its cores.
pub const MAX_DECODES: usize = 2;

/// Images kept per stream for its current keyframe; past that (many sizes
/// asked for) they are dropped, bounding the memory an API client can take.
const MAX_IMAGES_PER_STREAM: usize = 8;

/// A picture and when its keyframe was taken.
pub struct Image {
    pub bytes: Bytes,
    pub taken: SystemTime,
}

/// Why there is no picture: the answer's status and message.
pub enum Refusal {
    /// Every decode permit is taken: 503 with `Retry-After`.
    Busy,
    Status(StatusCode, String),
}

/// A decode's outcome, kept like an image so a bad keyframe is decoded once.
type Outcome = Result<Bytes, (StatusCode, String)>;

/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Snapshots {
    decodes: Arc<Semaphore>,
    streams: Arc<Mutex<HashMap<String, StreamImages>>>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            decodes: Arc::new(Semaphore::new(MAX_DECODES)),
            streams: Arc::default(),
        }
    }
}

/// One stream's images, all of one keyframe (its `pts`, continuous for the
/// stream's life, names it). A cell is filled by the one request that decodes;
/// the others wait on it.
struct StreamImages {
    keyframe_pts: u64,
    images: HashMap<(Size, ImageFormat), Arc<OnceCell<Outcome>>>,
}

impl Snapshots {
    /// The picture of `name`'s latest keyframe at `size` (validated by the caller).
    pub async fn image(
        &self,
        streams: &SharedStreams,
        name: &str,
        size: Size,
        format: ImageFormat,
    ) -> Result<Image, Refusal> {
        let unavailable = |why: &str| {
            Refusal::Status(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no picture of {name} yet: {why}"),
            )
        };
        let hub = streams.hub(name).ok_or_else(|| {
            Refusal::Status(StatusCode::NOT_FOUND, format!("no stream named {name:?}"))
        })?;
        let keyframe = hub.latest_keyframe().ok_or_else(|| {
            unavailable("no keyframe is cached (the source is not playing, or has sent none since it started)")
        })?;
        let track = hub
            .tracks()
            .iter()
            .find(|t| t.id == keyframe.track)
            .cloned()
            .ok_or_else(|| unavailable("its video track is not described"))?;
        let taken = keyframe.wallclock;
        let cell = self.cell(streams, name, keyframe.pts, size, format);
        let decodes = Arc::clone(&self.decodes);
        let outcome = cell
            .get_or_try_init(|| async move {
                let _permit = decodes.try_acquire_owned().map_err(|_| Refusal::Busy)?;
                let decoded = tokio::task::spawn_blocking(move || {
                    let keyframe = Keyframe {
                        codec: track.codec,
                        params: &track.params,
                        units: &keyframe.units,
                    };
                    streamgate_snapshot::render(&keyframe, size, format)
                })
                .await;
                Ok(match decoded {
                    Ok(Ok(image)) => Ok(Bytes::from(image)),
                    Ok(Err(e @ SnapshotError::BadSize { .. })) => {
                        Err((StatusCode::BAD_REQUEST, e.to_string()))
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(stream = %name, error = %e, "snapshot decode failed");
                        Err((
                            StatusCode::BAD_GATEWAY,
                            format!("the keyframe of {name} did not give a picture: {e}"),
                        ))
                    }
                    Err(e) => Err((
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the snapshot decode failed: {e}"),
                    )),
                })
            })
            .await?;
        match outcome {
            Ok(bytes) => Ok(Image {
                bytes: bytes.clone(),
                taken,
            }),
            Err((status, message)) => Err(Refusal::Status(*status, message.clone())),
        }
    }

    /// The cell of this keyframe's picture: a newer keyframe drops the stream's
    /// older pictures, and streams no longer configured are forgotten.
    fn cell(
        &self,
        configured: &SharedStreams,
        name: &str,
        keyframe_pts: u64,
        size: Size,
        format: ImageFormat,
    ) -> Arc<OnceCell<Outcome>> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = streams
            .get(name)
            .is_none_or(|images| images.keyframe_pts != keyframe_pts);
        if fresh {
            let configured = configured.read();
            streams.retain(|other, _| other != name && configured.get(other).is_some());
        }
        let stream = streams
            .entry(name.to_owned())
            .or_insert_with(|| StreamImages {
                keyframe_pts,
                images: HashMap::new(),
            });
        if stream.images.len() >= MAX_IMAGES_PER_STREAM
            && !stream.images.contains_key(&(size, format))
        {
            stream.images.clear();
        }
        Arc::clone(stream.images.entry((size, format)).or_default())
    }
}
