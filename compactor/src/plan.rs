//! Choosing what to compact: a pure function of a manifest's segment list and the config.
//!
//! Two policies, in order:
//! 1. **Size-tiered merge.** Segments are grouped by the tier of their live rows (see
//!    [`tier_of`]). The lowest tier holding at least `tier_fanout` segments has its
//!    smallest segments merged, as many as fit `max_merge_rows` up to `tier_fanout` (at
//!    least two, or the tier is left alone). Lowest tier first: small segments cost the
//!    most per row at query time and are the cheapest to merge.
//! 2. **Tombstone rewrite.** Otherwise every segment whose deleted/rows ratio reaches
//!    `tombstone_ratio` is rewritten (together, while they fit `max_merge_rows`), dropping
//!    its deleted rows.
//!
//! Termination: a tiered merge turns at least two segments into at most one, and a rewrite
//! turns a segment at the ratio into one with no deleted rows, so repeating selection on
//! the result of each compaction always reaches a state with nothing to do.
//!
//! Inputs are returned sorted by `(max_seq, id)`, oldest first: the merge lays rows out in
//! that order and, should two inputs ever hold a live copy of one id, keeps the newer.

use std::collections::BTreeMap;

use strata_storage::manifest::SegmentMeta;

use crate::config::CompactorConfig;

/// Why a set of segments was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Size-tiered merge of segments of this tier.
    Tiered(u32),
    /// Rewrite of segments with too many deleted rows.
    Tombstones,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Tiered(t) => write!(f, "tier {t}"),
            Reason::Tombstones => f.write_str("tombstones"),
        }
    }
}

/// Segments to compact into one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Selection {
    pub inputs: Vec<SegmentMeta>,
    pub reason: Reason,
}

/// The tier of a segment with `live` rows: 0 below `base`, then `t` for
/// `[base·fanout^(t-1), base·fanout^t)`.
pub(crate) fn tier_of(live: u32, base: u32, fanout: usize) -> u32 {
    let fanout = fanout.max(2) as u64;
    let mut bound = u64::from(base.max(1));
    let mut tier = 0;
    while u64::from(live) >= bound {
        tier += 1;
        bound = bound.saturating_mul(fanout);
    }
    tier
}

fn deleted_ratio(s: &SegmentMeta) -> f64 {
    if s.rows == 0 { 1.0 } else { f64::from(s.deleted()) / f64::from(s.rows) }
}

/// What to compact next among `segments`, or `None` when the shard is in shape.
pub(crate) fn select(segments: &[SegmentMeta], config: &CompactorConfig) -> Option<Selection> {
    select_tiered(segments, config).or_else(|| select_tombstoned(segments, config)).map(|mut s| {
        s.inputs.sort_by(|a, b| (a.max_seq, &a.id).cmp(&(b.max_seq, &b.id)));
        s
    })
}

fn select_tiered(segments: &[SegmentMeta], config: &CompactorConfig) -> Option<Selection> {
    let mut tiers: BTreeMap<u32, Vec<&SegmentMeta>> = BTreeMap::new();
    for s in segments {
        tiers.entry(tier_of(s.live_rows(), config.tier_base_rows, config.tier_fanout)).or_default().push(s);
    }
    for (tier, mut members) in tiers {
        if members.len() < config.tier_fanout {
            continue;
        }
        members.sort_by(|a, b| (a.live_rows(), &a.id).cmp(&(b.live_rows(), &b.id)));
        let mut total = 0u64;
        let mut inputs = Vec::new();
        for s in members.into_iter().take(config.tier_fanout) {
            let next = total + u64::from(s.live_rows());
            if next > config.max_merge_rows {
                // Sorted ascending: no later member fits either.
                break;
            }
            total = next;
            inputs.push(s.clone());
        }
        if inputs.len() >= 2 {
            return Some(Selection { inputs, reason: Reason::Tiered(tier) });
        }
    }
    None
}

fn select_tombstoned(segments: &[SegmentMeta], config: &CompactorConfig) -> Option<Selection> {
    let mut candidates: Vec<&SegmentMeta> = segments
        .iter()
        .filter(|s| (s.deleted() > 0 || s.rows == 0) && deleted_ratio(s) >= config.tombstone_ratio)
        .collect();
    candidates.sort_by(|a, b| deleted_ratio(b).total_cmp(&deleted_ratio(a)).then_with(|| a.id.cmp(&b.id)));
    let mut total = 0u64;
    let mut inputs: Vec<SegmentMeta> = Vec::new();
    for s in candidates {
        let next = total + u64::from(s.live_rows());
        // The first candidate always goes: rewriting it alone never grows it.
        if !inputs.is_empty() && next > config.max_merge_rows {
            continue;
        }
        total = next;
        inputs.push(s.clone());
    }
    (!inputs.is_empty()).then_some(Selection { inputs, reason: Reason::Tombstones })
}

#[cfg(test)]
mod tests {
    use strata_storage::manifest::TombstoneRef;

    use super::*;

    fn seg(id: &str, rows: u32, deleted: u32) -> SegmentMeta {
        SegmentMeta {
            id: id.into(),
            rows,
            bytes: 0,
            min_seq: 1,
            max_seq: 1,
            has_graph: false,
            has_attr_index: false,
            tombstone: (deleted > 0).then_some(TombstoneRef { generation: 1, deleted }),
            level: 0,
        }
    }

    fn ids(s: &Selection) -> Vec<&str> {
        let mut v: Vec<&str> = s.inputs.iter().map(|s| s.id.as_str()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn tiers_follow_the_documented_bounds() {
        assert_eq!(tier_of(0, 10, 4), 0);
        assert_eq!(tier_of(9, 10, 4), 0);
        assert_eq!(tier_of(10, 10, 4), 1);
        assert_eq!(tier_of(39, 10, 4), 1);
        assert_eq!(tier_of(40, 10, 4), 2);
        assert_eq!(tier_of(159, 10, 4), 2);
        assert_eq!(tier_of(160, 10, 4), 3);
        assert!(tier_of(u32::MAX, 1, 2) <= 33);
    }

    #[test]
    fn the_lowest_full_tier_merges_its_smallest_segments() {
        let config = CompactorConfig { tier_fanout: 3, tier_base_rows: 10, ..Default::default() };
        // Tier 0: a, b (2 segments); tier 1: c, d, e, f (4 segments).
        let segs = [seg("a", 5, 0), seg("b", 6, 0), seg("c", 30, 0), seg("d", 12, 0), seg("e", 20, 0), seg("f", 11, 0)];
        let s = select(&segs, &config).unwrap();
        assert_eq!(s.reason, Reason::Tiered(1));
        assert_eq!(ids(&s), ["d", "e", "f"]);
        // Live rows decide the tier: with deletes, c drops to tier 0, which is now full.
        let segs = [seg("a", 5, 0), seg("b", 6, 0), seg("c", 30, 25)];
        let s = select(&segs, &config).unwrap();
        assert_eq!((s.reason, ids(&s)), (Reason::Tiered(0), vec!["a", "b", "c"]));
        assert_eq!(select(&[seg("a", 5, 0), seg("b", 6, 0)], &config), None);
    }

    #[test]
    fn merges_respect_max_merge_rows() {
        let config = CompactorConfig { tier_fanout: 3, tier_base_rows: 10, max_merge_rows: 25, ..Default::default() };
        let s = select(&[seg("a", 12, 0), seg("b", 11, 0), seg("c", 13, 0)], &config).unwrap();
        assert_eq!(ids(&s), ["a", "b"]);
        let config = CompactorConfig { max_merge_rows: 20, ..config };
        assert_eq!(select(&[seg("a", 12, 0), seg("b", 11, 0), seg("c", 13, 0)], &config), None);
    }

    #[test]
    fn segments_with_many_deletes_are_rewritten() {
        let config =
            CompactorConfig { tier_fanout: 4, tier_base_rows: 10, tombstone_ratio: 0.25, ..Default::default() };
        let segs = [seg("a", 100, 10), seg("b", 100, 30), seg("c", 8, 8), seg("d", 100, 0)];
        let s = select(&segs, &config).unwrap();
        assert_eq!((s.reason, ids(&s)), (Reason::Tombstones, vec!["b", "c"]));
        // The worst one always goes, others only while they fit.
        let config = CompactorConfig { max_merge_rows: 50, ..config };
        let s = select(&[seg("a", 100, 30), seg("b", 100, 40)], &config).unwrap();
        assert_eq!(ids(&s), ["b"]);
        assert_eq!(select(&[seg("a", 100, 10)], &config), None);
    }

    #[test]
    fn inputs_come_oldest_first() {
        let config = CompactorConfig { tier_fanout: 2, ..Default::default() };
        let mut newer = seg("x", 1, 0);
        newer.max_seq = 9;
        let s = select(&[newer, seg("y", 1, 0)], &config).unwrap();
        assert_eq!(s.inputs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["y", "x"]);
    }
}
