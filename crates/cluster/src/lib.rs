//! Scale-out on etcd v3: many gateways share one set of streams, each stream
//! pulled from its camera by exactly one node (its *owner*), and every node
//! knowing who that is so it can send readers there.
//!
//! etcd gives the three things this needs without a cluster protocol of our
//! own: leases (a node's keys vanish when it stops renewing), transactions
//! (create-if-absent claims, so two nodes never own one stream) and watches
//! (every node sees members and owners change).
//!
//! The decisions are sans-IO and take time as an input: [`rendezvous`] (which
//! live member should own a stream), [`View`] (members and owner keys as read
//! from etcd, and the [`Plan`] of what this node claims, releases and runs) and
//! [`LeaseClock`] (when a node that could not renew must stop its sources, so
//! they are stopped before its lease can expire and another node claims them).
//! [`etcd`] is the thin tokio task that carries them out.

pub mod etcd;
mod lease;
mod rendezvous;
mod view;

pub use etcd::{ClusterSettings, ClusterStatus, Departure, Runner};
pub use lease::LeaseClock;
pub use rendezvous::{pick, score};
pub use view::{Member, MemberError, Plan, View};
