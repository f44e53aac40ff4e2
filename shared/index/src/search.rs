//! Query execution: exact brute force and best-first search over a [`Graph`].
//!
//! Flow of a graph search: resolve the space's distance to a monomorphised metric (one
//! indirect call per distance) → greedy descent from the entry point through the upper
//! layers (tombstoned rows are valid stepping stones) → beam search on layer 0 with a
//! min-heap of candidates to expand and a bounded max-heap of the best non-deleted rows
//! → sort ascending, keep `k`. The walk is bound by memory latency, so expanding a row
//! first issues every load it will need before waiting on any: the visited marks of all
//! its neighbours and the adjacency list of the row likely expanded next, then the
//! vectors of the unvisited neighbours; only then are distances computed.
//!
//! Tombstones follow hnswlib: a deleted row is expanded like any other (it keeps the
//! graph connected) but never enters the result heap, and the beam only stops early
//! once that heap is full, so deleted rows never use up top-k slots.
//!
//! Which rows an expansion scores and which scored rows may become results is the
//! layer-0 [`Walk`]'s decision: [`Every`] here (score every unvisited neighbour, keep
//! tombstones out), the filtered two-hop walk in `filtered.rs`. The beam is generic over
//! it, so each walk compiles to its own loop with nothing decided per neighbour.
//!
//! Invariants: no allocation per visited node (the visited set is a thread-local,
//! generation-stamped `Vec<u16>`, the two heaps and the expansion scratch are
//! allocated once per query); ordering
//! is total (`f32::total_cmp`, ties broken by row) so results are deterministic and a
//! NaN can never panic a comparison.

#[cfg(test)]
use std::cell::Cell;
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::Space;
use super::distance::prefetch;
use super::graph::Graph;
use super::level0::Level0;

/// One search hit: a row of the searched vectors and its distance to the query
/// (lower = closer, in the space's convention).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub row: u32,
    pub distance: f32,
}

/// A heap entry ordered by distance, then row (`total_cmp`, so the order is total and
/// deterministic). Shared by search and the native builder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scored {
    pub(crate) dist: f32,
    pub(crate) row: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.dist.total_cmp(&other.dist).then(self.row.cmp(&other.row))
    }
}

impl From<Scored> for Candidate {
    fn from(s: Scored) -> Self {
        Candidate { row: s.row, distance: s.dist }
    }
}

/// A space's distance with the CPU kernel already resolved. Generic code over this
/// trait is monomorphised per space, leaving one indirect call per distance.
pub(crate) trait Metric: Copy {
    fn eval(self, a: &[f32], b: &[f32]) -> f32;
}

#[cfg(test)]
thread_local! {
    /// Distances computed by search and brute force on this thread (tests only: the
    /// filtered tests compare how much work the walks do).
    pub(crate) static DISTANCES: Cell<u64> = const { Cell::new(0) };
}

/// Counts one query-time distance (tests only; compiles to nothing otherwise).
#[inline(always)]
fn count_distance() {
    #[cfg(test)]
    DISTANCES.with(|d| d.set(d.get() + 1));
}

#[derive(Clone, Copy)]
pub(crate) struct L2Metric(pub(crate) fn(&[f32], &[f32]) -> f32);
#[derive(Clone, Copy)]
pub(crate) struct CosineMetric(pub(crate) fn(&[f32], &[f32]) -> f32);
#[derive(Clone, Copy)]
pub(crate) struct DotMetric(pub(crate) fn(&[f32], &[f32]) -> f32);

impl Metric for L2Metric {
    #[inline(always)]
    fn eval(self, a: &[f32], b: &[f32]) -> f32 {
        count_distance();
        (self.0)(a, b)
    }
}
impl Metric for CosineMetric {
    #[inline(always)]
    fn eval(self, a: &[f32], b: &[f32]) -> f32 {
        count_distance();
        1.0 - (self.0)(a, b)
    }
}
impl Metric for DotMetric {
    #[inline(always)]
    fn eval(self, a: &[f32], b: &[f32]) -> f32 {
        count_distance();
        -(self.0)(a, b)
    }
}

/// Runs `$body` with `$m` bound to the metric of `$space`. Must agree with
/// [`Space::distance`]; the unit tests check that it does.
macro_rules! with_metric {
    ($space:expr, |$m:ident| $body:expr) => {{
        let k = $crate::distance::kernels();
        match $space {
            Space::L2 => {
                let $m = $crate::search::L2Metric(k.l2_squared);
                $body
            }
            Space::Cosine => {
                let $m = $crate::search::CosineMetric(k.dot);
                $body
            }
            Space::Dot => {
                let $m = $crate::search::DotMetric(k.dot);
                $body
            }
        }
    }};
}
pub(crate) use with_metric;

/// Exact search over all rows (used for small segments and the unflushed WAL tail).
/// Returns up to `k` non-deleted rows sorted by ascending distance (ties by row).
/// A `query` whose length is not `dim` debug-asserts and otherwise yields no results.
pub fn brute_force(
    vectors: &[f32],
    dim: usize,
    space: Space,
    query: &[f32],
    k: usize,
    is_deleted: &dyn Fn(u32) -> bool,
) -> Vec<Candidate> {
    debug_assert!(dim > 0 && query.len() == dim, "query has {} values, dim is {dim}", query.len());
    debug_assert_eq!(vectors.len() % dim.max(1), 0, "vectors must be n × dim");
    if k == 0 || dim == 0 || query.len() != dim {
        return Vec::new();
    }
    with_metric!(space, |m| brute_force_with(m, vectors, dim, query, k, is_deleted))
}

fn brute_force_with<M: Metric>(
    m: M,
    vectors: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    is_deleted: &dyn Fn(u32) -> bool,
) -> Vec<Candidate> {
    let mut best = BinaryHeap::<Scored>::with_capacity(k.min(vectors.len() / dim) + 1);
    for (row, v) in vectors.chunks_exact(dim).enumerate() {
        let s = Scored { dist: m.eval(query, v), row: row as u32 };
        // Test the cheap comparison first: once the heap is full almost every row
        // loses it, so the tombstone callback runs only for would-be winners.
        let admits = best.len() < k || best.peek().is_some_and(|worst| s < *worst);
        if admits && !is_deleted(s.row) {
            best.push(s);
            if best.len() > k {
                best.pop();
            }
        }
    }
    best.into_sorted_vec().into_iter().map(Candidate::from).collect()
}

/// Marks which rows a query has already reached. A row is visited when its mark equals
/// the current generation, so starting a query is O(1) instead of clearing the array.
/// Marks are 16-bit: half the memory (and cache misses) of 32-bit ones, at the price of
/// clearing the array once every 65,535 queries. Shared by search (one per thread) and
/// the native builder (one per worker).
pub(crate) struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    const fn new() -> Self {
        Self { marks: Vec::new(), generation: 0 }
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        Self { marks: vec![0; n], generation: 0 }
    }

    /// Begins a new query over `n` rows: every row becomes unvisited.
    pub(crate) fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Stale marks would alias the new generation once it wraps: reset once.
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `row`; true if it was not yet visited in this query.
    #[inline]
    pub(crate) fn insert(&mut self, row: u32) -> bool {
        let mark = &mut self.marks[row as usize];
        let fresh = *mark != self.generation;
        *mark = self.generation;
        fresh
    }

    /// Whether `row` is visited in this query (without marking it).
    #[inline]
    pub(crate) fn contains(&self, row: u32) -> bool {
        self.marks[row as usize] == self.generation
    }

    /// Starts loading `row`'s mark (a hint only: changes nothing, ignores rows out of range).
    #[inline(always)]
    pub(crate) fn prefetch(&self, row: u32) {
        if let Some(mark) = self.marks.get(row as usize) {
            prefetch(std::slice::from_ref(mark));
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited::new()) };
}

#[allow(clippy::too_many_arguments)]
pub(super) fn search_graph(
    graph: &Graph,
    vectors: &[f32],
    dim: usize,
    space: Space,
    query: &[f32],
    k: usize,
    ef: usize,
    is_deleted: &dyn Fn(u32) -> bool,
) -> Vec<Candidate> {
    search_bounded(graph, vectors, dim, space, query, k, ef, is_deleted, Every, usize::MAX).unwrap_or_default()
}

/// Checks the shapes, picks the metric and the visited set, and runs `walk` on layer 0;
/// abandoned (`None`) once layer 0 has scored more than `max_scored` rows (for callers
/// with a cheaper way to finish a walk that turns out expensive; `usize::MAX` for none).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn search_bounded<W: Walk>(
    graph: &Graph,
    vectors: &[f32],
    dim: usize,
    space: Space,
    query: &[f32],
    k: usize,
    ef: usize,
    is_deleted: &dyn Fn(u32) -> bool,
    walk: W,
    max_scored: usize,
) -> Option<Vec<Candidate>> {
    let n = graph.n as usize;
    let shapes_match = dim > 0 && query.len() == dim && Some(vectors.len()) == n.checked_mul(dim);
    debug_assert!(
        shapes_match || n == 0,
        "graph of {n} rows searched with {} values of dim {dim} and a query of {}",
        vectors.len(),
        query.len()
    );
    if k == 0 || n == 0 || !shapes_match {
        return Some(Vec::new());
    }
    let beam = Beam { graph, vectors, dim, query, ef: ef.max(k), is_deleted, max_scored };
    let mut best = VISITED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut visited) => with_metric!(space, |m| beam.run(m, &mut visited, walk)),
        // Re-entered from inside a callback on this thread: use a private set.
        Err(_) => with_metric!(space, |m| beam.run(m, &mut Visited::new(), walk)),
    })?;
    best.truncate(k);
    Some(best.into_iter().map(Candidate::from).collect())
}

/// The inputs of one graph query.
pub(super) struct Beam<'a> {
    graph: &'a Graph,
    vectors: &'a [f32],
    dim: usize,
    query: &'a [f32],
    ef: usize,
    pub(super) is_deleted: &'a dyn Fn(u32) -> bool,
    /// Rows layer 0 may score before the search is abandoned.
    max_scored: usize,
}

impl Beam<'_> {
    #[inline(always)]
    pub(super) fn vector(&self, row: u32) -> &[f32] {
        let start = row as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// Returns up to `ef` rows `walk` admits, ascending; `None` once layer 0 scored more
    /// than `max_scored` rows.
    fn run<M: Metric, W: Walk>(&self, m: M, visited: &mut Visited, walk: W) -> Option<Vec<Scored>> {
        let graph = self.graph;
        let entry = Scored { dist: m.eval(self.query, self.vector(graph.entry)), row: graph.entry };
        let mut heaps = Heaps::with_capacity(self.ef);
        let mut seeds = vec![entry];
        // Upper layers only route, whatever the filter: a beam of one is the classic
        // greedy descent, and tombstoned or failing rows are valid stepping stones.
        for layer_graph in graph.upper.iter().rev() {
            let layer = Layer { ef: 1, filter: false, look_ahead: None };
            seeds = self.layer(m, visited, &mut heaps, &seeds, layer, Every, |row| layer_graph.neighbours_of(row))?;
        }
        // Layer 0 looks ahead: its slots are found without a load, and it does nearly
        // all the expansions.
        let layer = Layer { ef: self.ef, filter: true, look_ahead: Some(&graph.base) };
        self.layer(m, visited, &mut heaps, &seeds, layer, walk, |row| graph.base.neighbours(row as usize))
    }

    /// Best-first search of one layer from `seeds`, keeping the `ef` best rows (only
    /// those `walk` admits when `filter`), returned ascending; `None` once a filtered
    /// layer scored more than `max_scored` rows.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn layer<'g, M: Metric, W: Walk>(
        &self,
        m: M,
        visited: &mut Visited,
        heaps: &mut Heaps,
        seeds: &[Scored],
        Layer { ef, filter, look_ahead }: Layer<'_>,
        walk: W,
        neighbours: impl Fn(u32) -> &'g [u32],
    ) -> Option<Vec<Scored>> {
        let Heaps { candidates, results, batch, bridges } = heaps;
        candidates.clear();
        results.clear();
        visited.start(self.graph.n as usize);
        for &s in seeds {
            // A seed is expanded even when it may not be a result (deleted, or failing
            // the filter): it is where the upper layers say the query's region is.
            visited.insert(s.row);
            candidates.push(Reverse(s));
            if !filter || walk.admits(self, s.row) {
                results.push(s);
            }
        }
        while results.len() > ef {
            results.pop();
        }
        // Distance of the worst kept result (infinite while nothing is kept).
        let mut bound = results.peek().map_or(f32::INFINITY, |s| s.dist);
        let mut scored = 0usize;

        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && c.dist > bound {
                break;
            }
            let list = neighbours(c.row);
            // Issue the loads of this expansion before waiting on any of them: the
            // neighbours' marks (random rows of an n-entry array)...
            for &nb in list {
                visited.prefetch(nb);
            }
            // ...the adjacency slot of the row that is next in line (lists live apart
            // from vectors, so scoring a row does not bring its list into cache as
            // hnswlib's interleaved layout does; a closer row found meanwhile only makes
            // this a wasted hint)...
            if let Some(level0) = look_ahead
                && let Some(Reverse(next)) = candidates.peek()
            {
                prefetch(level0.slot(next.row as usize));
            }
            // ...and the vector of every row to score, so their misses overlap.
            batch.clear();
            walk.gather(self, visited, list, batch, bridges, results.len() < ef);
            scored += batch.len();
            if filter && scored > self.max_scored {
                return None;
            }
            for &nb in batch.iter() {
                let d = m.eval(self.query, self.vector(nb));
                if results.len() < ef || d < bound {
                    let s = Scored { dist: d, row: nb };
                    candidates.push(Reverse(s));
                    if !filter || walk.admits(self, nb) {
                        results.push(s);
                        if results.len() > ef {
                            results.pop();
                        }
                        bound = results.peek().map_or(f32::INFINITY, |w| w.dist);
                    }
                }
            }
        }
        // Drain rather than `into_sorted_vec` so the heap keeps its buffer for the next layer.
        let mut out: Vec<Scored> = results.drain().collect();
        out.sort_unstable();
        Some(out)
    }
}

/// How layer 0 picks the rows an expansion scores and which scored rows may become
/// results. Implementations are small `Copy` values and every method is inlined, so
/// [`Beam::layer`] is compiled once per walk with no per-neighbour dispatch.
pub(super) trait Walk: Copy {
    /// Whether the scored `row` may enter the results (asked on layer 0 only).
    fn admits(self, beam: &Beam<'_>, row: u32) -> bool;

    /// Appends to `batch` the rows to score for an expansion whose row has the
    /// neighbours `list`: marks each visited and prefetches its vector. `bridges` is
    /// scratch space; `hungry` says the result heap is not yet full.
    fn gather(
        self,
        beam: &Beam<'_>,
        visited: &mut Visited,
        list: &[u32],
        batch: &mut Vec<u32>,
        bridges: &mut Vec<u32>,
        hungry: bool,
    );
}

/// The unfiltered walk (also `FilteredWalk::Plain`, whose callback folds the filter
/// into `is_deleted`): every unvisited neighbour is scored, tombstones are never results.
#[derive(Clone, Copy)]
pub(super) struct Every;

impl Walk for Every {
    #[inline(always)]
    fn admits(self, beam: &Beam<'_>, row: u32) -> bool {
        !(beam.is_deleted)(row)
    }

    #[inline(always)]
    fn gather(
        self,
        beam: &Beam<'_>,
        visited: &mut Visited,
        list: &[u32],
        batch: &mut Vec<u32>,
        _: &mut Vec<u32>,
        _: bool,
    ) {
        for &nb in list {
            if visited.insert(nb) {
                prefetch(beam.vector(nb));
                batch.push(nb);
            }
        }
    }
}

/// How one layer is searched.
#[derive(Clone, Copy)]
struct Layer<'g> {
    /// Rows kept.
    ef: usize,
    /// Keep rows the walk does not admit out of the result (layer 0 only: upper layers
    /// only route).
    filter: bool,
    /// Prefetch the next candidate's layer-0 slot while expanding the current one.
    look_ahead: Option<&'g Level0>,
}

/// The two heaps of a layer search and the expansion scratch, reused across the layers
/// of one query.
struct Heaps {
    /// Rows still to expand, closest first.
    candidates: BinaryHeap<Reverse<Scored>>,
    /// Best rows found so far, worst on top.
    results: BinaryHeap<Scored>,
    /// Rows the current expansion scores.
    batch: Vec<u32>,
    /// Failing neighbours the current two-hop expansion crosses.
    bridges: Vec<u32>,
}

impl Heaps {
    fn with_capacity(ef: usize) -> Self {
        Self {
            candidates: BinaryHeap::with_capacity(2 * ef),
            results: BinaryHeap::with_capacity(ef + 1),
            batch: Vec::new(),
            bridges: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_agree_with_space_distance() {
        let a = [0.5, -1.0, 2.0, 0.25];
        let b = [1.5, 0.5, -0.5, 3.0];
        for space in [Space::L2, Space::Cosine, Space::Dot] {
            let via_metric = with_metric!(space, |m| m.eval(&a, &b));
            assert_eq!(via_metric, space.distance(&a, &b), "{space:?}");
        }
    }

    #[test]
    fn brute_force_orders_filters_and_bounds() {
        let v = [0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0];
        let q = [0.9, 0.0];
        let all = brute_force(&v, 2, Space::L2, &q, 10, &|_| false);
        assert_eq!(all.iter().map(|c| c.row).collect::<Vec<_>>(), [1, 0, 2, 3]);
        let some = brute_force(&v, 2, Space::L2, &q, 2, &|r| r == 1);
        assert_eq!(some.iter().map(|c| c.row).collect::<Vec<_>>(), [0, 2]);
        assert!(brute_force(&v, 2, Space::L2, &q, 0, &|_| false).is_empty());
        assert!(brute_force(&[], 2, Space::L2, &q, 3, &|_| false).is_empty());
    }

    #[test]
    fn nan_query_does_not_panic() {
        let v = [0.0, 1.0, 2.0, 3.0];
        let r = brute_force(&v, 2, Space::Dot, &[f32::NAN, 0.0], 2, &|_| false);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn visited_generations_wrap() {
        let mut v = Visited::new();
        v.start(4);
        assert!(v.insert(2));
        assert!(!v.insert(2));
        // Row 2 holds generation 1's mark; when the counter wraps back to 1 the row must
        // not look visited, so the wrap clears every mark.
        v.generation = u16::MAX;
        v.start(4);
        assert_eq!(v.generation, 1);
        assert!(v.insert(2), "a mark from generation 1 survived the wrap");
    }

    #[test]
    fn visited_prefetch_is_only_a_hint() {
        let mut v = Visited::new();
        v.start(4);
        v.prefetch(1);
        v.prefetch(u32::MAX); // out of range: ignored, no panic
        assert!(!v.contains(1), "a prefetch must not mark a row");
        assert!(v.insert(1), "a prefetch must not mark a row");
        assert!(v.contains(1));
        prefetch::<u32>(&[]);
    }
}
