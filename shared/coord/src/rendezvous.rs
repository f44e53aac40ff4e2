//! Rendezvous (highest-random-weight) hashing: which nodes own a shard.
//!
//! Every node computes the same answer from the same member list, with no coordination:
//! each candidate scores `hash(node, key)` and the `n` highest scores win. When a node
//! joins or leaves, only the shards it wins or held move, so rebalancing is minimal and it
//! converges: for a stable member list the answer never changes.

/// The `n` owners of `key` among `nodes`, best first. Ties (practically impossible) break by
/// node id so every caller agrees.
pub fn owners<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &str)> = nodes.into_iter().map(|node| (score(node, key), node)).collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, node)| node).collect()
}

/// The single owner of `key`, if there is any node.
pub fn owner<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    owners(key, nodes, 1).into_iter().next()
}

/// FNV-1a over `node`, a separator and `key`, finished with a 64-bit mixer so that
/// similar names still spread evenly.
fn score(node: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0xff]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_distinct() {
        let nodes = ["q1", "q2", "q3"];
        let a = owners("c/0", nodes, 2);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], a[1]);
        assert_eq!(a, owners("c/0", ["q3", "q1", "q2"], 2), "order of the member list must not matter");
        assert_eq!(owners("c/0", nodes, 5).len(), 3);
        assert!(owner("c/0", std::iter::empty()).is_none());
    }

    #[test]
    fn a_join_moves_only_the_shards_the_new_node_wins() {
        let before = ["q1", "q2", "q3"];
        let after = ["q1", "q2", "q3", "q4"];
        let mut moved = 0;
        for shard in 0..1000 {
            let key = format!("coll/{shard}");
            let (o1, o2) = (owner(&key, before).unwrap(), owner(&key, after).unwrap());
            if o1 != o2 {
                assert_eq!(o2, "q4", "a shard may only move to the joining node");
                moved += 1;
            }
        }
        // About a quarter of the shards should move to the fourth node.
        assert!((150..350).contains(&moved), "moved {moved} of 1000");
    }

    #[test]
    fn load_spreads_evenly() {
        let nodes = ["ingest-a", "ingest-b", "ingest-c"];
        let mut counts = [0usize; 3];
        for shard in 0..3000 {
            let o = owner(&format!("c1/{shard}"), nodes).unwrap();
            counts[nodes.iter().position(|n| *n == o).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| (850..1150).contains(&c)), "{counts:?}");
    }
}
