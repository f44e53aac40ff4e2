//! Filtered search: the top-k rows an attribute filter matches. Three plans, chosen by
//! the caller (a query planner) from the filter's selectivity:
//! - few rows match: [`brute_force_rows`] scans exactly those rows (exact, and cheapest
//!   while they are few);
//! - most rows match: [`FilteredWalk::Plain`], the tombstone walk of `search.rs` with
//!   "fails the filter" counted as deleted (hnswlib's filtered search);
//! - the middle range: [`FilteredWalk::TwoHop`] (ACORN-1), which scores only matching
//!   rows and crosses non-matching ones by looking at their neighbours.
//!
//! Both walks share the graph search of `search.rs`: the same greedy descent through
//! the upper layers (unfiltered: they only route) and the same layer-0 beam, which is
//! generic over a [`Walk`] that decides which rows an expansion scores and which may
//! become results. The unfiltered search and `Plain` compile to the code that existed
//! before filtered search did; the walk is chosen once per query, never per neighbour.
//!
//! Invariants: results only ever hold rows that pass and are not deleted; deleted rows
//! keep their unfiltered meaning (traversed, never returned).

use std::collections::BinaryHeap;

use super::Space;
use super::distance::prefetch;
use super::graph::Graph;
use super::level0::Level0;
use super::search::{Beam, Candidate, Every, Metric, Scored, Visited, Walk, search_bounded, with_metric};

/// How a filtered layer-0 walk treats rows that fail the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilteredWalk {
    /// Failing rows are scored and expanded like tombstones (hnswlib's filtered search):
    /// best when most rows match.
    Plain,
    /// ACORN-1 style two-hop expansion: a failing neighbour is not scored; instead its
    /// own neighbours that pass are (up to a cap per expansion), so the walk stays
    /// connected through the matching subgraph and distances are computed only for
    /// passing rows. For the middle range of selectivity.
    TwoHop,
}

/// Passing rows one [`FilteredWalk::TwoHop`] expansion gathers at most, in multiples of
/// the graph's layer-0 degree bound (its slot capacity, `2m` for a graph built with
/// `m`). Once a row's direct neighbours are taken, every further row comes from a
/// bridge's list, so without a cap a dense filter would score up to degree² rows per
/// expansion. One degree is ACORN-1's truncation of the expanded list to the list size;
/// two leave room for the second hop at the sparse end, where each bridge adds few new
/// rows, while an expansion still scores at most twice the rows an unfiltered one does
/// (plus its failing neighbours during the hungry start, see [`TwoHop`]).
/// Measured with the ignored harness in `filtered_tests.rs` (200k × 128, uncorrelated
/// filter, ef 64; recall@10 / distances per query): at 1 % and 5 % the cap is never
/// reached (2-hop lists overlap and few of their rows pass); at 10 % every cap kept
/// recall 1.000, 1× with 2178 distances, 2× 2615, 4× 2627; at 20 % 1× lost recall
/// (0.990 / 2248) where 2× and 4× kept it (1.000 / 3077 and 3535); at 50 % all kept it
/// (2099, 3054, 3661 distances), and there the plain walk is cheaper anyway (1241).
const TWO_HOP_CAP_DEGREES: usize = 2;

/// Bridges whose adjacency a [`FilteredWalk::TwoHop`] expansion prefetches ahead of
/// reading it: enough to overlap a few misses, few enough that a dense filter (which
/// reaches the cap after a few bridges) does not waste loads on the rest. Measured
/// (harness data, ef 64, µs per query for 0 / 4 / all bridges ahead): 5 %: 582 / 393 /
/// 444; 10 %: 663 / 472 / 531; 20 %: 464 / 380 / 392.
const BRIDGES_AHEAD: usize = 4;

/// Filtered graph search, abandoned past `max_scored` rows: see
/// [`crate::Graph::search_filtered`] and [`crate::Graph::search_filtered_within`].
#[allow(clippy::too_many_arguments)]
pub(super) fn search_filtered_within(
    graph: &Graph,
    vectors: &[f32],
    dim: usize,
    space: Space,
    query: &[f32],
    k: usize,
    ef: usize,
    is_deleted: &dyn Fn(u32) -> bool,
    passes: &dyn Fn(u32) -> bool,
    walk: FilteredWalk,
    max_scored: usize,
) -> Option<Vec<Candidate>> {
    match walk {
        // hnswlib's filtered search is its tombstone walk with failing rows counted as
        // deleted: the unfiltered code path exactly, with a wider predicate.
        FilteredWalk::Plain => {
            let excluded = |row: u32| !passes(row) || is_deleted(row);
            search_bounded(graph, vectors, dim, space, query, k, ef, &excluded, Every, max_scored)
        }
        FilteredWalk::TwoHop => {
            let cap = TWO_HOP_CAP_DEGREES * graph.base.slot_capacity();
            let walk = TwoHop { base: &graph.base, passes, cap };
            search_bounded(graph, vectors, dim, space, query, k, ef, is_deleted, walk, max_scored)
        }
    }
}

/// [`FilteredWalk::TwoHop`] on layer 0 (ACORN-1): score the passing neighbours, then
/// cross each failing neighbour (a "bridge") to its passing neighbours, in list order
/// (closest links first), until `cap` passing rows are gathered.
///
/// Visited marks: a passing row is marked when gathered (it is scored once, as in any
/// walk). A bridge is marked once all its passing neighbours have been gathered, i.e.
/// once its list was read to the end, as ACORN marks it: crossing it again from another
/// row could only find rows already visited, so re-reading its list would cost a slot
/// load and a filter test per link for nothing. A bridge whose list the cap cut short is
/// left unmarked, so a later expansion can cross it again and take the rest (the rows
/// already taken are marked and skipped); marking it would lose those rows for good.
///
/// The hungry start: while the result heap holds fewer than `ef` rows, failing
/// neighbours are also scored and queued, as tombstones are (they are still crossed as
/// bridges too). Without it a query whose region has no passing row within two hops
/// (a filter correlated with position: matching rows in other clusters) ends with an
/// empty queue and no results, and one whose greedy descent landed in the wrong
/// cluster stays there; with it the walk widens around the query, best first, as the
/// plain walk does, until it holds `ef` passing rows, and then scores passing rows
/// only. Ending the start at `k` rows instead of `ef` is cheaper but much less robust
/// when few rows pass: on the harness data at 1 %, ef 64, recall@10 0.89 (1228
/// distances) with the start until `ef`, 0.63 (542) until `k`, 0.49 (388) without; at
/// 10 % all three reach 1.000 with 2615 / 2467 / 2349 distances (the plain walk: 9817).
/// On the tests' 10k-row fixture without the start, 10 % correlated recall was 0.08.
#[derive(Clone, Copy)]
struct TwoHop<'a> {
    base: &'a Level0,
    passes: &'a dyn Fn(u32) -> bool,
    cap: usize,
}

impl Walk for TwoHop<'_> {
    #[inline(always)]
    fn admits(self, beam: &Beam<'_>, row: u32) -> bool {
        (self.passes)(row) && !(beam.is_deleted)(row)
    }

    #[inline(always)]
    fn gather(
        self,
        beam: &Beam<'_>,
        visited: &mut Visited,
        list: &[u32],
        batch: &mut Vec<u32>,
        bridges: &mut Vec<u32>,
        hungry: bool,
    ) {
        bridges.clear();
        let mut gathered = 0;
        for &nb in list {
            if (self.passes)(nb) {
                if visited.insert(nb) {
                    prefetch(beam.vector(nb));
                    batch.push(nb);
                    gathered += 1;
                }
            } else if hungry {
                // Scored and queued like a tombstone, and crossed below.
                if visited.insert(nb) {
                    prefetch(beam.vector(nb));
                    batch.push(nb);
                    bridges.push(nb);
                }
            } else if !visited.contains(nb) {
                bridges.push(nb);
            }
        }
        for &b in bridges.iter().take(BRIDGES_AHEAD) {
            prefetch(self.base.slot(b as usize));
        }
        for (i, &b) in bridges.iter().enumerate() {
            if let Some(&ahead) = bridges.get(i + BRIDGES_AHEAD) {
                prefetch(self.base.slot(ahead as usize));
            }
            let mut complete = true;
            for &nb in self.base.neighbours(b as usize) {
                if gathered >= self.cap {
                    complete = false;
                    break;
                }
                if (self.passes)(nb) && visited.insert(nb) {
                    prefetch(beam.vector(nb));
                    batch.push(nb);
                    gathered += 1;
                }
            }
            if !complete {
                break;
            }
            visited.insert(b);
        }
    }
}

/// Rows [`brute_force_rows`] loads ahead: it pulls this many ids from the iterator,
/// prefetches all their vectors, then scores them, so the misses of one group overlap
/// (matching rows are scattered, which defeats the hardware prefetcher once they are
/// sparse).
const SCAN_GROUP: usize = 16;

/// Exact search over the given `rows` only (the plan "few rows match: scan exactly the
/// matching rows"). `rows` should be ascending, each `< vectors.len() / dim`; a row
/// out of range debug-asserts and is otherwise skipped. Returns up to `k` of them that
/// are not deleted, sorted by ascending distance (ties by row): for ascending distinct
/// `rows` the same as [`brute_force`](crate::brute_force) with `is_deleted` extended to every other row.
/// A `query` whose length is not `dim` debug-asserts and otherwise yields no results.
pub fn brute_force_rows(
    vectors: &[f32],
    dim: usize,
    space: Space,
    query: &[f32],
    k: usize,
    rows: &mut dyn Iterator<Item = u32>,
    is_deleted: &dyn Fn(u32) -> bool,
) -> Vec<Candidate> {
    debug_assert!(dim > 0 && query.len() == dim, "query has {} values, dim is {dim}", query.len());
    debug_assert_eq!(vectors.len() % dim.max(1), 0, "vectors must be n × dim");
    if k == 0 || dim == 0 || query.len() != dim {
        return Vec::new();
    }
    with_metric!(space, |m| brute_force_rows_with(m, vectors, dim, query, k, rows, is_deleted))
}

fn brute_force_rows_with<M: Metric>(
    m: M,
    vectors: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    rows: &mut dyn Iterator<Item = u32>,
    is_deleted: &dyn Fn(u32) -> bool,
) -> Vec<Candidate> {
    let n = vectors.len() / dim;
    let vector = |row: u32| &vectors[row as usize * dim..][..dim];
    let mut best = BinaryHeap::<Scored>::with_capacity(k.min(n) + 1);
    let mut group = [0u32; SCAN_GROUP];
    loop {
        let mut len = 0;
        for row in &mut *rows {
            debug_assert!((row as usize) < n, "row {row} of {n}");
            if (row as usize) < n {
                prefetch(vector(row));
                group[len] = row;
                len += 1;
                if len == SCAN_GROUP {
                    break;
                }
            }
        }
        for &row in &group[..len] {
            let s = Scored { dist: m.eval(query, vector(row)), row };
            // As in `brute_force_with`: the tombstone callback only for would-be winners.
            let admits = best.len() < k || best.peek().is_some_and(|worst| s < *worst);
            if admits && !is_deleted(row) {
                best.push(s);
                if best.len() > k {
                    best.pop();
                }
            }
        }
        if len < SCAN_GROUP {
            break;
        }
    }
    best.into_sorted_vec().into_iter().map(Candidate::from).collect()
}
