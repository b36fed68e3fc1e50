//! The HTTP app's limits (`[http] request_timeout`, `max_concurrent_requests`,
//! `max_body`), built from tower and tower-http layers so no handler has to
//! remember them:
//!
//! - body caps ([`body`]): a declared `Content-Length` over the cap is answered
//!   413 before any of the body is read (a lying length cannot hold the
//!   connection); a chunked body is cut off at the cap (413 from the extractor);
//! - the request timeout ([`refused`] behind `tower::timeout`): 408 when a
//!   handler, reading its body included, is not done in time;
//! - the in-flight cap (`GlobalConcurrencyLimit` + `LoadShed`): 503 at once
//!   rather than queueing, so a flood cannot build an unbounded backlog.
//!
//! A response future's end releases its slot: a streaming answer (SSE, a clip
//! file) holds no slot and is not timed once its head is out.
//! 408 and 503 carry `Connection: close`, so the refused connection ends.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use streamgate_pipeline::RateLimitedLog;
use tower::BoxError;
use tower_http::limit::RequestBodyLimitLayer;

use super::error_body::ErrorBody;
use crate::config::HttpConfig;

/// A route's body cap: over it, 413 (at once for a declared length).
pub fn body(max: usize) -> RequestBodyLimitLayer {
    RequestBodyLimitLayer::new(max)
}

/// What the error layers answer with, and their rate-limited log lines.
#[derive(Clone)]
pub struct Refusals {
    config: Arc<HttpConfig>,
    logs: Arc<[Mutex<RateLimitedLog>; 2]>,
}

impl Refusals {
    pub fn new(config: &HttpConfig) -> Refusals {
        Refusals {
            config: Arc::new(config.clone()),
            logs: Arc::default(),
        }
    }

    /// The answer to an error of the timeout or load-shedding layer.
    pub fn answer(&self, error: &BoxError) -> Response {
        let (kind, status, message) = if error.is::<tower::timeout::error::Elapsed>() {
            let timeout = humantime::format_duration(self.config.request_timeout);
            (
                0,
                StatusCode::REQUEST_TIMEOUT,
                format!("the request was not complete within {timeout} ([http] request_timeout)"),
            )
        } else if error.is::<tower::load_shed::error::Overloaded>() {
            let max = self.config.max_concurrent_requests;
            (
                1,
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{max} requests are in flight ([http] max_concurrent_requests); retry later"
                ),
            )
        } else {
            tracing::error!(%error, "HTTP request failed in a middleware layer");
            let body = ErrorBody {
                error: "internal error".into(),
            };
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
        };
        let due = self.logs[kind]
            .lock()
            .map(|mut log| log.occurred(Instant::now()))
            .unwrap_or(None);
        if let Some(left_out) = due {
            tracing::warn!(
                status = status.as_u16(),
                left_out,
                "HTTP request refused: {message}"
            );
        }
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
