//! Pictures of non-Ring streams: `GET /api/streams/{name}/snapshot.jpg` (routed
//! with the Ring one in `ring_media`) and `snapshot.png`, `?width=&height=` (one
//! of them keeps the aspect ratio).
//!
//! With the `ffmpeg` feature, the GOP cache's latest keyframe is decoded
//! (`streamgate-snapshot`) on a blocking thread: once per keyframe, size and
//! format, however many requests come in meanwhile (they wait for that one
//! decode), and at most `cache::MAX_DECODES` decodes at a time (beyond that 503 with
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

use super::api::require_token;
use super::error_body::ErrorBody;
use super::state::AppState;
use crate::sources::RING_PREFIX;

#[cfg(feature = "ffmpeg")]
pub mod cache;

/// The encoding the route's extension names (without the feature too, so the
/// routes are the same in both builds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[utoipa::path(get, path = "/api/streams/{name}/snapshot.png", tag = "api", params(StreamPath, PngQuery),
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
    use axum::http::{header, HeaderValue};
    use std::time::UNIX_EPOCH;
    use streamgate_snapshot::{ImageFormat, Size};

    let size = match (Size { width, height }).validate() {
        Ok(size) => size,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let format = match encoding {
        Encoding::Jpeg => ImageFormat::Jpeg,
        Encoding::Png => ImageFormat::Png,
    };
    match state
        .snapshots
        .image(&state.streams, name, size, format)
        .await
    {
        Ok(image) => {
            let mut response = (
                [
                    (header::CONTENT_TYPE, format.content_type()),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                image.bytes,
            )
                .into_response();
            // When the picture was taken, as Ring snapshots say it.
            if let Ok(ms) = image.taken.duration_since(UNIX_EPOCH) {
                response.headers_mut().insert(
                    "x-media-timestamp",
                    HeaderValue::from(ms.as_millis() as u64),
                );
            }
            response
        }
        Err(cache::Refusal::Status(status, message)) => error(status, message),
        Err(cache::Refusal::Busy) => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} snapshots are being decoded; retry later",
                    cache::MAX_DECODES
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}
