//! The cluster as HTTP shows it: `GET /api/cluster` (members and owners, as
//! this node last read them from etcd), and the 307 that sends an HLS reader
//! or a WHEP viewer's offer for a stream owned by another node there. The routes and view types are the same in every build;
//! without the `cluster` feature or `[cluster]`, there is no cluster to show.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::require_token;
use super::error_body::ErrorBody;
use super::state::AppState;

/// `GET /api/cluster`.
#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    pub members: Vec<MemberView>,
}

/// A live node.
#[derive(Serialize, ToSchema)]
#[schema(as = Member)]
pub struct MemberView {
    pub node: String,
    /// Where RTSP readers of its streams are sent.
    pub advertise_rtsp: String,
    /// Where HLS readers of its streams are sent.
    pub advertise_http: String,
    /// The streams it owns (runs the source of).
    pub streams: Vec<String>,
}

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cluster))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
}

/// The members of the cluster and the streams each owns.
#[utoipa::path(get, path = "/api/cluster", tag = "api",
    responses((status = OK, description = "Members", body = ClusterView),
              (status = NOT_FOUND, description = "This node is not in a cluster", body = ErrorBody),
              (status = UNAUTHORIZED, description = "Missing or wrong bearer token", body = ErrorBody)))]
async fn cluster(State(state): State<AppState>) -> Response {
    match view(&state) {
        Some(view) => Json(view).into_response(),
        None => {
            let error = "this node is not in a cluster ([cluster], feature `cluster`)".to_owned();
            (StatusCode::NOT_FOUND, Json(ErrorBody { error })).into_response()
        }
    }
}

#[cfg(feature = "cluster")]
fn view(state: &AppState) -> Option<ClusterView> {
    let cluster = state.cluster.as_ref()?;
    let view = cluster.view();
    let members = view
        .members
        .values()
        .map(|member| MemberView {
            node: member.node.clone(),
            advertise_rtsp: member.rtsp.clone(),
            advertise_http: member.http.clone(),
            streams: view
                .owners
                .iter()
                .filter(|(_, owner)| owner.node == member.node)
                .map(|(stream, _)| stream.clone())
                .collect(),
        })
        .collect();
    Some(ClusterView {
        node: cluster.node().to_owned(),
        members,
    })
}

#[cfg(not(feature = "cluster"))]
fn view(_: &AppState) -> Option<ClusterView> {
    None
}

/// Sends a reader of a stream owned by another node there with a 307 (the
/// same method, path and body): HLS requests (`/hls/NAME/...`) and WHEP
/// offers (`POST /whep/NAME`; the session URLs under it stay where the
/// session is).
pub async fn redirect_to_owner(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    #[cfg(feature = "cluster")]
    if let Some(location) = owner_location(&state, &request) {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response();
    }
    let _ = &state;
    next.run(request).await
}

#[cfg(feature = "cluster")]
fn owner_location(state: &AppState, request: &Request) -> Option<String> {
    let cluster = state.cluster.as_ref()?;
    let path = request.uri().path();
    let name = match path.strip_prefix("/hls/") {
        Some(rest) => rest.split('/').next()?,
        None => path
            .strip_prefix("/whep/")
            .filter(|name| !name.contains('/') && request.method() == axum::http::Method::POST)?,
    };
    if state.streams.read().get(name).is_some() {
        return None;
    }
    let owner = cluster.elsewhere(name)?;
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    Some(format!("{}{path}", owner.http))
}
