//! Pictures of non-Ring streams: `GET /api/streams/{name}/snapshot.jpg` (routed
//! with the Ring one in `ring_media`) and `snapshot.png`, `?width=&height=` (one
//! of them keeps the aspect ratio).
//!
//! With the `ffmpeg` feature, the GOP cache's latest keyframe is decoded
//! (`streamgate-snapshot`) on a blocking thread: once per keyframe, size and
//! format, however many requests come in meanwhile (they wait for that one
//! decode), and at most [`MAX_DECODES`] decodes at a time (beyond that 503 with
//! `Retry-After`). Without the feature the route answers 501 and says why, so a
//! default build needs no system libraries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{require_token, ErrorBody};
use super::state::AppState;
use crate::sources::RING_PREFIX;

#[cfg(feature = "ffmpeg")]
pub use self::decoding::Snapshots;

/// Decodes running at once, all streams together: each takes a core for tens
/// of milliseconds, and the gateway's forwarding must keep its cores.
#[cfg(feature = "ffmpeg")]
const MAX_DECODES: usize = 2;

/// The encoding the route's extension names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Jpeg,
    Png,
}

/// The `snapshot.png` route, behind the API token like every `/api/*` route.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(snapshot_png))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PngQuery {
    /// 1-8192; alone, the height follows the aspect ratio.
    width: Option<u32>,
    /// 1-8192; alone, the width follows the aspect ratio.
    height: Option<u32>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct StreamPath {
    /// The stream's name.
    name: String,
}

/// A PNG of the stream's latest keyframe (not for Ring streams: Ring's images
/// are JPEG, see `snapshot.jpg`).
#[utoipa::path(get, path = "/api/streams/{name}/snapshot.png", tag = "streams", params(StreamPath, PngQuery),
    responses((status = OK, description = "The image", content_type = "image/png", body = Vec<u8>),
              (status = BAD_REQUEST, description = "Bad size, or a Ring stream", body = ErrorBody),
              (status = NOT_FOUND, description = "No such stream", body = ErrorBody),
              (status = NOT_IMPLEMENTED, description = "Built without the ffmpeg feature", body = ErrorBody),
              (status = SERVICE_UNAVAILABLE, description = "No keyframe yet, or too many decodes at once (Retry-After)", body = ErrorBody)))]
async fn snapshot_png(
    State(state): State<AppState>,
    Path(StreamPath { name }): Path<StreamPath>,
    Query(query): Query<PngQuery>,
) -> Response {
    let ring = {
        let streams = state.streams.read();
        streams
            .get(&name)
            .map(|stream| stream.config.source.to_string().starts_with(RING_PREFIX))
    };
    match ring {
        None => error(StatusCode::NOT_FOUND, format!("no stream named {name:?}")),
        Some(true) => error(
            StatusCode::BAD_REQUEST,
            "Ring snapshots are JPEG: ask for snapshot.jpg",
        ),
        Some(false) => picture(&state, &name, query.width, query.height, Encoding::Png).await,
    }
}

/// The picture of the non-Ring stream `name`, as the route answers it.
#[cfg(not(feature = "ffmpeg"))]
pub async fn picture(
    _state: &AppState,
    _name: &str,
    _width: Option<u32>,
    _height: Option<u32>,
    _encoding: Encoding,
) -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "snapshots of non-Ring streams need the ffmpeg feature: this gateway was built without the ffmpeg feature",
    )
}

/// The picture of the non-Ring stream `name`, as the route answers it.
#[cfg(feature = "ffmpeg")]
pub async fn picture(
    state: &AppState,
    name: &str,
    width: Option<u32>,
    height: Option<u32>,
    encoding: Encoding,
) -> Response {
    state
        .snapshots
        .picture(state, name, width, height, encoding)
        .await
}

#[cfg(feature = "ffmpeg")]
mod decoding {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::UNIX_EPOCH;

    use axum::http::{header, HeaderValue};
    use bytes::Bytes;
    use streamgate_snapshot::{ImageFormat, Keyframe, Size, SnapshotError};
    use tokio::sync::{OnceCell, Semaphore};

    use super::*;

    /// Images kept per stream for its current keyframe; past that (many sizes
    /// asked for) they are dropped, bounding the memory an API client can take.
    const MAX_IMAGES_PER_STREAM: usize = 8;

    /// A decode's outcome, kept like an image so a bad keyframe is decoded once.
    type Outcome = Result<Bytes, (StatusCode, String)>;

    /// The cache of decoded pictures and the decode permits. Cheap to clone.
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
        images: HashMap<(Size, Encoding), Arc<OnceCell<Outcome>>>,
    }

    /// No decode permit was free.
    struct Busy;

    impl Encoding {
        fn format(self) -> ImageFormat {
            match self {
                Encoding::Jpeg => ImageFormat::Jpeg,
                Encoding::Png => ImageFormat::Png,
            }
        }
    }

    impl Snapshots {
        pub async fn picture(
            &self,
            state: &AppState,
            name: &str,
            width: Option<u32>,
            height: Option<u32>,
            encoding: Encoding,
        ) -> Response {
            let Some(hub) = state.streams.hub(name) else {
                return error(StatusCode::NOT_FOUND, format!("no stream named {name:?}"));
            };
            let size = match (Size { width, height }).validate() {
                Ok(size) => size,
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            let Some(keyframe) = hub.latest_keyframe() else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no picture of {name} yet: no keyframe is cached (the source is not playing, or has sent none since it started)"),
                );
            };
            let Some(track) = hub
                .tracks()
                .iter()
                .find(|t| t.id == keyframe.track)
                .cloned()
            else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no picture of {name} yet: its video track is not described"),
                );
            };
            let cell = self.cell(state, name, keyframe.pts, size, encoding);
            let taken = keyframe.wallclock;
            let decodes = Arc::clone(&self.decodes);
            let outcome = cell
                .get_or_try_init(|| async move {
                    let _permit = decodes.try_acquire_owned().map_err(|_| Busy)?;
                    let format = encoding.format();
                    let decoded = tokio::task::spawn_blocking(move || {
                        streamgate_snapshot::render(
                            &Keyframe {
                                codec: track.codec,
                                params: &track.params,
                                units: &keyframe.units,
                            },
                            size,
                            format,
                        )
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
                .await;
            match outcome {
                Ok(Ok(image)) => {
                    let content_type = encoding.format().content_type();
                    let mut response = (
                        [
                            (header::CONTENT_TYPE, content_type),
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        image.clone(),
                    )
                        .into_response();
                    // When the picture was taken, as Ring snapshots say it.
                    if let Ok(ms) = taken.duration_since(UNIX_EPOCH) {
                        response.headers_mut().insert(
                            "x-media-timestamp",
                            HeaderValue::from(ms.as_millis() as u64),
                        );
                    }
                    response
                }
                Ok(Err((status, message))) => error(*status, message.clone()),
                Err(Busy) => {
                    let mut response = error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{MAX_DECODES} snapshots are being decoded; retry later"),
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    response
                }
            }
        }

        /// The cell of this keyframe's picture at `size`: a newer keyframe drops
        /// the stream's older pictures, and streams no longer configured are
        /// forgotten.
        fn cell(
            &self,
            state: &AppState,
            name: &str,
            keyframe_pts: u64,
            size: Size,
            encoding: Encoding,
        ) -> Arc<OnceCell<Outcome>> {
            let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh = streams
                .get(name)
                .is_none_or(|images| images.keyframe_pts != keyframe_pts);
            if fresh {
                let configured = state.streams.read();
                streams.retain(|other, _| other != name && configured.get(other).is_some());
            }
            let stream = streams
                .entry(name.to_owned())
                .or_insert_with(|| StreamImages {
                    keyframe_pts,
                    images: HashMap::new(),
                });
            if stream.images.len() >= MAX_IMAGES_PER_STREAM
                && !stream.images.contains_key(&(size, encoding))
            {
                stream.images.clear();
            }
            Arc::clone(stream.images.entry((size, encoding)).or_default())
        }
    }
}
