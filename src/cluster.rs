//! The gateway in a cluster (`[cluster]`, feature `cluster`): starts the
//! etcd task of `streamgate-cluster` with the stream names of [`Desired`],
//! has it run what this node owns through [`Desired::set_owned`], and tells
//! the outputs where a stream owned elsewhere is served, so RTSP and HLS
//! readers are redirected there.

use std::collections::BTreeSet;
use std::path::PathBuf;

use streamgate_cluster::{etcd, ClusterSettings, ClusterStatus, Departure, Member, Runner, View};

use crate::config::ClusterConfig;
use crate::reload::Desired;
use crate::streams::SharedStreams;

/// Every key lives under it, so other users of the etcd are left alone.
const PREFIX: &str = "/streamgate/";

/// This node's view of the cluster, shared by the outputs and the API.
#[derive(Clone)]
pub struct Cluster(ClusterStatus);

impl Cluster {
    /// Joins the cluster of `config`: from now on the cluster task decides
    /// which of `desired`'s streams run in `streams`. The [`Departure`] is
    /// for shutdown (SIGTERM): it hands this node's streams over at once.
    pub fn start(
        config: &ClusterConfig,
        desired: Desired,
        streams: SharedStreams,
        base: PathBuf,
    ) -> (Cluster, Departure) {
        let settings = ClusterSettings {
            endpoints: config
                .etcd
                .iter()
                .map(|url| url.as_str().trim_end_matches('/').to_owned())
                .collect(),
            node: config.node.clone(),
            advertise_rtsp: base_url(&config.advertise_rtsp),
            advertise_http: base_url(&config.advertise_http),
            lease_ttl: config.lease_ttl,
            prefix: PREFIX.to_owned(),
        };
        tracing::info!(node = %settings.node, etcd = ?settings.endpoints, ttl = ?settings.lease_ttl, "joining the cluster");
        let names = desired.names();
        let owned = Owned {
            desired,
            streams,
            base,
        };
        let (status, departure) = etcd::start(settings, names, owned);
        (Cluster(status), departure)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.0.node
    }

    pub fn view(&self) -> View {
        self.0.view()
    }

    /// The member serving `stream` when it is not this node (a stream of
    /// this node that is not running yet is no reason to send readers away).
    pub fn elsewhere(&self, stream: &str) -> Option<Member> {
        self.0
            .owner(stream)
            .filter(|owner| owner.node != self.0.node)
    }
}

/// `scheme://host:port`, with no trailing slash: paths are appended to it.
fn base_url(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Runs the streams the cluster task gives this node.
struct Owned {
    desired: Desired,
    streams: SharedStreams,
    base: PathBuf,
}

impl Runner for Owned {
    async fn run(&self, owned: BTreeSet<String>) {
        match self
            .desired
            .set_owned(&self.streams, owned, &self.base)
            .await
        {
            Ok(summary) => tracing::info!(
                started = ?summary.added,
                stopped = ?summary.removed,
                "cluster: this node's streams changed"
            ),
            Err(error) => {
                tracing::error!("cluster: cannot start the streams this node owns: {error}")
            }
        }
    }
}
