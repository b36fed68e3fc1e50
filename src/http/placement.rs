//! Which node runs a stream, for the API's stream views: this node for the
//! registry's streams, and in a cluster the owners of the others. Below both
//! `api` (which shows it) and `cluster` (the cluster routes).

use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;

/// A stream of the cluster whose source runs on another node.
#[derive(Serialize, ToSchema)]
#[schema(as = RemoteStream)]
pub struct RemoteStreamView {
    pub name: String,
    pub owner: String,
}

/// The node running the streams of this registry: this one, in a cluster.
pub fn this_node(state: &AppState) -> Option<String> {
    #[cfg(feature = "cluster")]
    return state.cluster.as_ref().map(|c| c.node().to_owned());
    #[cfg(not(feature = "cluster"))]
    {
        let _ = state;
        None
    }
}

/// The cluster's streams that run on other nodes.
pub fn remote_streams(state: &AppState) -> Vec<RemoteStreamView> {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = &state.cluster {
        let local = state.streams.read();
        return cluster
            .view()
            .owners
            .into_iter()
            .filter(|(name, owner)| owner.node != cluster.node() && local.get(name).is_none())
            .map(|(name, owner)| RemoteStreamView {
                name,
                owner: owner.node,
            })
            .collect();
    }
    let _ = state;
    Vec::new()
}
