//! What a node knows of the cluster (members and owner keys, as read and
//! watched from etcd) and the decision taken from it: which streams this node
//! claims, releases and runs. Pure functions of the view, so every rule is a
//! unit test.
//!
//! Keys, under the cluster's prefix (each on its writer's lease, so a node's
//! keys vanish with it):
//! - `members/NODE`: a live node and where readers reach it;
//! - `owners/STREAM`: the node that runs the stream's source.

use std::collections::{BTreeMap, BTreeSet};

use crate::rendezvous;

/// A live node: its name and the base URLs readers are sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    /// `rtsp://host:port`: RTSP readers of the streams it owns.
    pub rtsp: String,
    /// `http://host:port`: HLS readers of the streams it owns.
    pub http: String,
}

/// A member key whose value is not what [`Member::encode`] writes.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
#[error("member {node}: {reason}")]
pub struct MemberError {
    node: String,
    reason: &'static str,
}

impl Member {
    /// The member key's value: one `NAME URL` line per advertised address.
    pub fn encode(&self) -> String {
        format!("rtsp {}\nhttp {}\n", self.rtsp, self.http)
    }

    pub fn decode(node: &str, value: &[u8]) -> Result<Member, MemberError> {
        let error = |reason| MemberError {
            node: node.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(value).map_err(|_| error("value is not UTF-8"))?;
        let (mut rtsp, mut http) = (None, None);
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("rtsp", url)) => rtsp = Some(url.to_owned()),
                Some(("http", url)) => http = Some(url.to_owned()),
                _ => {}
            }
        }
        Ok(Member {
            node: node.to_owned(),
            rtsp: rtsp.ok_or_else(|| error("no rtsp address"))?,
            http: http.ok_or_else(|| error("no http address"))?,
        })
    }
}

/// A stream's owner key: the node, and the lease the key is attached to (a
/// node's own key from an earlier lease is not its current claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub lease: i64,
}

/// One key of the cluster's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Member(String),
    Owner(String),
}

impl Key {
    /// The key's full path under `prefix`.
    pub fn path(&self, prefix: &str) -> String {
        match self {
            Key::Member(node) => format!("{prefix}members/{node}"),
            Key::Owner(stream) => format!("{prefix}owners/{stream}"),
        }
    }

    /// `None` for keys under `prefix` that are not the cluster's.
    pub fn parse(prefix: &str, path: &str) -> Option<Key> {
        let rest = path.strip_prefix(prefix)?;
        if let Some(node) = rest.strip_prefix("members/") {
            return Some(Key::Member(node.to_owned()));
        }
        rest.strip_prefix("owners/")
            .map(|stream| Key::Owner(stream.to_owned()))
    }
}

/// Members and owners as this node last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub members: BTreeMap<String, Member>,
    pub owners: BTreeMap<String, Owner>,
}

/// What a node does next, from [`View::plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Streams with no owner that rendezvous hashing gives to this node.
    pub claim: Vec<String>,
    /// Streams this node owns but should not: gone from the stream list, or
    /// given by rendezvous to another live member (one that joined). Their
    /// sources stop before the keys are deleted.
    pub release: Vec<String>,
    /// The sources this node runs: its current claims, less what it releases.
    pub run: BTreeSet<String>,
}

impl View {
    /// A member key was written (a bad value is skipped: that node is not
    /// counted as live, so nothing is sent to an address nobody can read).
    pub fn put(&mut self, key: Key, value: &[u8], lease: i64) -> Result<(), MemberError> {
        match key {
            Key::Member(node) => {
                let member = Member::decode(&node, value);
                match member {
                    Ok(member) => self.members.insert(node, member),
                    Err(error) => {
                        self.members.remove(&node);
                        return Err(error);
                    }
                };
            }
            Key::Owner(stream) => {
                let node = String::from_utf8_lossy(value).into_owned();
                self.owners.insert(stream, Owner { node, lease });
            }
        }
        Ok(())
    }

    pub fn delete(&mut self, key: Key) {
        match key {
            Key::Member(node) => {
                self.members.remove(&node);
            }
            Key::Owner(stream) => {
                self.owners.remove(&stream);
            }
        }
    }

    /// The live member that runs `stream`, if any.
    pub fn owner(&self, stream: &str) -> Option<&Member> {
        self.members.get(&self.owners.get(stream)?.node)
    }

    /// What node `me`, holding `lease`, does about `streams` (every stream
    /// of the cluster). A node that does not see its own member key yet
    /// claims nothing: the others do not count it as live either.
    pub fn plan(&self, me: &str, lease: i64, streams: &BTreeSet<String>) -> Plan {
        let live = || self.members.keys().map(String::as_str);
        let choice = |stream: &str| rendezvous::pick(stream, live());
        let registered = self.members.contains_key(me);
        let mut plan = Plan::default();
        for stream in streams {
            match self.owners.get(stream) {
                None if registered && choice(stream) == Some(me) => plan.claim.push(stream.clone()),
                Some(owner) if owner.node == me && owner.lease == lease => {
                    if registered && choice(stream) != Some(me) {
                        plan.release.push(stream.clone());
                    } else {
                        plan.run.insert(stream.clone());
                    }
                }
                _ => {}
            }
        }
        for (stream, owner) in &self.owners {
            if owner.node == me && owner.lease == lease && !streams.contains(stream) {
                plan.release.push(stream.clone());
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: i64 = 7;

    fn member(node: &str) -> Member {
        Member {
            node: node.to_owned(),
            rtsp: format!("rtsp://{node}:8554"),
            http: format!("http://{node}:8080"),
        }
    }

    fn view(members: &[&str], owners: &[(&str, &str)]) -> View {
        let mut view = View::default();
        for node in members {
            view.put(
                Key::Member((*node).into()),
                member(node).encode().as_bytes(),
                LEASE,
            )
            .unwrap();
        }
        for (stream, node) in owners {
            view.put(Key::Owner((*stream).into()), node.as_bytes(), LEASE)
                .unwrap();
        }
        view
    }

    fn streams(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("cam-{i}")).collect()
    }

    #[test]
    fn members_round_trip_through_their_key_value() {
        let gw = member("gw-1");
        assert_eq!(Member::decode("gw-1", gw.encode().as_bytes()), Ok(gw));
        assert!(Member::decode("gw-1", b"rtsp rtsp://a:1\n").is_err());
        assert!(Member::decode("gw-1", &[0xff]).is_err());
    }

    #[test]
    fn keys_round_trip_under_the_prefix() {
        for key in [Key::Member("gw-1".into()), Key::Owner("cam".into())] {
            assert_eq!(Key::parse("/sg/", &key.path("/sg/")), Some(key));
        }
        assert_eq!(Key::parse("/sg/", "/sg/other/x"), None);
        assert_eq!(Key::parse("/sg/", "/elsewhere/members/x"), None);
    }

    #[test]
    fn unowned_streams_are_claimed_once_by_the_rendezvous_choice() {
        let nodes = ["gw-1", "gw-2", "gw-3"];
        let view = view(&nodes, &[]);
        let all = streams(30);
        let mut claimed = BTreeMap::new();
        for node in nodes {
            let plan = view.plan(node, LEASE, &all);
            assert!(plan.release.is_empty() && plan.run.is_empty());
            assert!(!plan.claim.is_empty(), "{node} claims nothing of 30");
            for stream in plan.claim {
                assert_eq!(claimed.insert(stream, node), None);
            }
        }
        assert_eq!(claimed.len(), all.len());
    }

    #[test]
    fn owned_streams_are_run_and_not_claimed_again() {
        let all = streams(10);
        let empty = view(&["gw-1", "gw-2"], &[]);
        let mine = empty.plan("gw-1", LEASE, &all).claim;
        let owners: Vec<(&str, &str)> = all
            .iter()
            .map(|s| (s.as_str(), if mine.contains(s) { "gw-1" } else { "gw-2" }))
            .collect();
        let settled = view(&["gw-1", "gw-2"], &owners);
        let plan = settled.plan("gw-1", LEASE, &all);
        assert!(plan.claim.is_empty() && plan.release.is_empty());
        assert_eq!(plan.run, mine.into_iter().collect());
    }

    #[test]
    fn a_node_not_yet_registered_claims_nothing() {
        let view = view(&["gw-2"], &[]);
        assert_eq!(view.plan("gw-1", LEASE, &streams(10)), Plan::default());
    }

    #[test]
    fn a_joining_member_gets_its_streams_released_to_it() {
        let all = streams(20);
        let alone: Vec<(&str, &str)> = all.iter().map(|s| (s.as_str(), "gw-1")).collect();
        let view = view(&["gw-1", "gw-2"], &alone);
        let plan = view.plan("gw-1", LEASE, &all);
        assert!(!plan.release.is_empty(), "gw-2 gets none of 20");
        for stream in &plan.release {
            assert_eq!(rendezvous::pick(stream, ["gw-1", "gw-2"]), Some("gw-2"));
            assert!(!plan.run.contains(stream));
        }
        assert_eq!(plan.run.len() + plan.release.len(), all.len());
        // gw-2 waits for the keys to go before claiming.
        assert!(view.plan("gw-2", LEASE, &all).claim.is_empty());
    }

    #[test]
    fn a_dead_owners_streams_are_claimed_by_the_survivors() {
        let all = streams(12);
        let owners: Vec<(&str, &str)> = all.iter().map(|s| (s.as_str(), "gw-3")).collect();
        let mut view = view(&["gw-1", "gw-2", "gw-3"], &owners);
        // Its lease expired: etcd deletes its member key and its owner keys.
        view.delete(Key::Member("gw-3".into()));
        for stream in &all {
            view.delete(Key::Owner(stream.clone()));
        }
        let one = view.plan("gw-1", LEASE, &all).claim;
        let two = view.plan("gw-2", LEASE, &all).claim;
        assert_eq!(one.len() + two.len(), all.len());
        assert!(one.iter().all(|s| !two.contains(s)));
    }

    #[test]
    fn a_key_of_an_earlier_lease_is_not_a_claim() {
        let all = streams(1);
        let view = view(&["gw-1"], &[("cam-0", "gw-1")]);
        // The node restarted its session with lease 8: the old key expires on its own.
        assert_eq!(view.plan("gw-1", LEASE + 1, &all), Plan::default());
    }

    #[test]
    fn streams_gone_from_the_list_are_released() {
        let view = view(&["gw-1"], &[("old", "gw-1")]);
        let plan = view.plan("gw-1", LEASE, &BTreeSet::new());
        assert_eq!(plan.release, vec!["old".to_owned()]);
    }

    #[test]
    fn readers_are_sent_to_a_live_owner_only() {
        let mut view = view(&["gw-1", "gw-2"], &[("cam", "gw-2")]);
        assert_eq!(view.owner("cam"), Some(&member("gw-2")));
        view.delete(Key::Member("gw-2".into()));
        assert_eq!(view.owner("cam"), None);
        assert_eq!(view.owner("other"), None);
    }
}
