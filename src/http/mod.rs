//! The HTTP app on `[http] listen`: the management API (`/api/*`), `/healthz`,
//! `/metrics`, the dashboard at `/` and the HLS routes, in one axum [`Router`]
//! built by [`app`] so tests drive it with `tower::ServiceExt::oneshot`.
//!
//! This layer reads the registry (`crate::streams`) and the sources' reports;
//! nothing below it knows HTTP. Every route of this module's own is registered
//! with its `#[utoipa::path]` through `utoipa_axum`, so `/api/openapi.json`
//! documents exactly what is served (the WHEP routes too); the HLS routes are
//! `streamgate-hls`'s.

mod api;
mod cluster;
mod dashboard;
mod error_body;
mod events;
mod hls_viewers;
mod limits;
mod metrics;
mod placement;
mod ring;
mod ring_media;
mod snapshot;
mod state;
mod whep;
mod whip;

use axum::error_handling::HandleErrorLayer;
use axum::{middleware, Extension, Router};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use hls_viewers::HlsViewers;

use crate::config::HttpConfig;
pub use state::{AppState, SignIns};

/// The document's fixed parts; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "streamgate API",
        description = "Manage and inspect streamgate's streams. When `[http] api_token` (or STREAMGATE_API_TOKEN) is set, every /api/* request needs `Authorization: Bearer TOKEN` (or, from a browser, the sign-in cookie of /ring/sign-in). Errors are JSON: {\"error\": \"message\"}."
    ),
    security(("bearer" = [])),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the document's `security` names.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", scheme);
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = OK, description = "ok", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The whole HTTP app on `[http] listen`, within `limits` (see [`limits`]).
pub fn app(state: AppState, hls: streamgate_hls::HlsConfig, limits: &HttpConfig) -> Router {
    let refusals = limits::Refusals::new(limits);
    let answer = |refusals: limits::Refusals| {
        HandleErrorLayer::new(move |error| {
            let refusals = refusals.clone();
            async move { refusals.answer(&error) }
        })
    };
    // Timed: every route but the HLS ones (a blocking reload waits up to the
    // HLS hold by design), the clip download (as long as the clip) and WHEP (a
    // POST waits for a starting source).
    let timeout = ServiceBuilder::new()
        .layer(answer(refusals.clone()))
        .timeout(limits.request_timeout);
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api::router(&state))
        .merge(cluster::router(&state))
        .routes(routes!(healthz))
        .merge(metrics::router(&state))
        .merge(dashboard::router())
        .merge(ring::router(&state))
        .merge(ring_media::router(&state))
        .merge(snapshot::router(&state))
        .merge(events::router(&state))
        .layer(timeout)
        .merge(ring_media::downloads(&state))
        .merge(whep::router().layer(middleware::from_fn_with_state(
            state.clone(),
            cluster::redirect_to_owner,
        )))
        .merge(whip::router())
        .split_for_parts();
    let document = document.to_json().expect("the OpenAPI document serializes");
    let lookup = {
        let streams = state.streams.clone();
        move |name: &str| streams.hub(name)
    };
    router
        .layer(Extension(api::Document(document.into())))
        .with_state(state.clone())
        .merge(
            streamgate_hls::router(lookup, hls)
                .layer(middleware::from_fn_with_state(
                    state.hls_viewers.clone(),
                    hls_viewers::track,
                ))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    cluster::redirect_to_owner,
                )),
        )
        .layer(
            ServiceBuilder::new()
                .layer(answer(refusals))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(
                    limits.max_concurrent_requests.get(),
                ))
                .layer(limits::body(limits.max_body)),
        )
}
