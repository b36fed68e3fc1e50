//! Rendezvous (highest random weight) hashing: each stream goes to the live
//! member with the highest score for the pair. Every node computes the same
//! answer from the same member list, with no coordination; when a member
//! leaves, only its streams move, and when one joins it takes about 1/n of them.
//!
//! The hash is FNV-1a finished with splitmix64's mixer: fixed, so nodes built
//! by different compiler versions agree (std's `DefaultHasher` does not promise
//! that), and mixed so that similar names (`cam-1`, `cam-2`) still spread.

/// The weight of `node` for `stream`.
pub fn score(node: &str, stream: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    // 0xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") differ.
    for &byte in node
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(stream.as_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The member that should own `stream`: the highest score, ties to the
/// smaller name (so the answer never depends on the members' order).
pub fn pick<'a>(stream: &str, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members
        .into_iter()
        .max_by(|a, b| score(a, stream).cmp(&score(b, stream)).then(b.cmp(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("gw-{i}")).collect()
    }

    fn spread(members: &[String], streams: usize) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for s in 0..streams {
            let owner = pick(&format!("cam-{s}"), members.iter().map(String::as_str)).unwrap();
            *counts.entry(owner).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn streams_spread_over_the_members() {
        let members = nodes(3);
        let counts = spread(&members, 3000);
        assert_eq!(counts.len(), 3);
        for (node, count) in counts {
            // 1000 each expected; ±10% is many standard deviations (~26).
            assert!((900..=1100).contains(&count), "{node}: {count}");
        }
    }

    #[test]
    fn the_order_of_members_does_not_matter() {
        let members = nodes(5);
        let mut reversed = members.clone();
        reversed.reverse();
        for s in 0..100 {
            let stream = format!("cam-{s}");
            assert_eq!(
                pick(&stream, members.iter().map(String::as_str)),
                pick(&stream, reversed.iter().map(String::as_str))
            );
        }
    }

    #[test]
    fn a_leaving_member_moves_only_its_streams() {
        let members = nodes(4);
        let fewer: Vec<String> = members.iter().filter(|m| *m != "gw-2").cloned().collect();
        for s in 0..1000 {
            let stream = format!("cam-{s}");
            let before = pick(&stream, members.iter().map(String::as_str)).unwrap();
            let after = pick(&stream, fewer.iter().map(String::as_str)).unwrap();
            if before != "gw-2" {
                assert_eq!(before, after, "{stream} moved");
            }
        }
    }

    #[test]
    fn no_members_no_owner() {
        assert_eq!(pick("cam", std::iter::empty()), None);
    }

    #[test]
    fn node_and_stream_are_kept_apart() {
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }
}
