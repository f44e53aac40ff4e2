//! The immutable HNSW graph: per-layer CSR adjacency over `u32` row ids, nothing else.
//!
//! Role: the part of an HNSW index a segment persists next to its vectors. Vectors are
//! never stored here; every operation that needs them takes the segment's flat
//! row-major `n × dim` slice.
//!
//! Flow: [`Graph::build`] (our parallel HNSW construction, `native.rs`, then layer-0
//! connectivity repair, `connect.rs`; the tests' hnsw_rs reference, `reference.rs`,
//! produces the same layout) →
//! [`Graph::encode`] / [`Graph::decode`] (`codec.rs`) → [`Graph::search`] and
//! [`Graph::search_filtered`] (`search.rs`, `filtered.rs`).
//!
//! Invariants (established by `build`, re-checked by `decode`, relied upon by `search`
//! to index without bounds surprises):
//! - layer 0 holds every row `0..n`; its node index is the row itself;
//! - upper layer `l` holds a strictly increasing list of rows, a subset of layer `l-1`;
//! - every neighbour id is `< n`, and a neighbour on an upper layer is itself a node of
//!   that layer;
//! - `offsets` of every CSR start at 0, never decrease and end at `neighbours.len()`;
//! - `entry` is `< n` and a node of the top layer (for `n == 0` it is 0 and unused).
//! - after `build`, layer 0 is strongly connected, so every row is reachable from
//!   wherever a search lands (`decode` does not re-check this: search never relies on
//!   it for memory safety, only for recall).

use std::fmt;

use super::Space;
use super::filtered::{self, FilteredWalk};
use super::level0::Level0;
use super::search::{self, Candidate};

/// HNSW construction parameters.
#[derive(Clone, Copy, Debug)]
pub struct GraphParams {
    /// Maximum neighbours per node on upper layers (layer 0 keeps up to `2 * m`, as in
    /// hnswlib and hnsw_rs). Clamped to `2..=255`: hnsw_rs exits the process above 256
    /// and truncates its connection count to `u8`, so 256 itself would silently become 0
    /// (the native builder has no such limit but keeps the clamp so both agree).
    pub m: usize,
    /// Beam width while inserting; larger builds slower and gives better recall.
    pub ef_construction: usize,
}

impl Default for GraphParams {
    fn default() -> Self {
        Self { m: 16, ef_construction: 200 }
    }
}

/// Knobs of the native builder that do not change what a good graph is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeParams {
    /// Most worker threads to use; `0` means `std::thread::available_parallelism()`
    /// (never more than that either way). With `1` and a fixed `seed` the graph is
    /// deterministic.
    pub max_threads: usize,
    /// Seed of the level draw (hnswlib's `random_seed`).
    pub seed: u64,
}

impl Default for NativeParams {
    fn default() -> Self {
        // hnswlib's default seed; any constant keeps builds reproducible.
        Self { max_threads: 0, seed: 100 }
    }
}

/// Compressed sparse rows: the neighbours of node index `i` are
/// `neighbours[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Csr {
    pub(super) offsets: Vec<usize>,
    pub(super) neighbours: Vec<u32>,
}

impl Csr {
    /// Builds a CSR from per-node lists, in node order.
    #[cfg(test)]
    pub(super) fn from_lists<'a>(lists: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut offsets = vec![0];
        let mut neighbours = Vec::new();
        for list in lists {
            neighbours.extend_from_slice(list);
            offsets.push(neighbours.len());
        }
        Self { offsets, neighbours }
    }

    pub(super) fn node_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Neighbours of node index `i`.
    #[inline]
    pub(super) fn neighbours(&self, i: usize) -> &[u32] {
        &self.neighbours[self.offsets[i]..self.offsets[i + 1]]
    }

    fn memory_bytes(&self) -> usize {
        self.offsets.capacity() * size_of::<usize>() + self.neighbours.capacity() * size_of::<u32>()
    }
}

/// One layer above layer 0: which rows reach it and their links there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UpperLayer {
    /// Rows present on this layer, strictly increasing (so lookup is a binary search;
    /// upper layers are ~n/m nodes and greedy descent touches a handful of them).
    pub(super) nodes: Vec<u32>,
    /// Adjacency indexed by position in `nodes`; neighbour values are row ids.
    pub(super) adj: Csr,
}

impl UpperLayer {
    /// Neighbours of `row` on this layer, empty if the row is not on it.
    #[inline]
    pub(super) fn neighbours_of(&self, row: u32) -> &[u32] {
        match self.nodes.binary_search(&row) {
            Ok(i) => self.adj.neighbours(i),
            Err(_) => &[],
        }
    }
}

/// An immutable HNSW graph over rows `0..n` of a segment.
#[derive(Clone, PartialEq, Eq)]
pub struct Graph {
    /// Number of rows (nodes of layer 0).
    pub(super) n: u32,
    /// Where every search starts: a node of the top layer.
    pub(super) entry: u32,
    /// Layer 0 adjacency, node index = row, in search layout.
    pub(super) base: Level0,
    /// Layers 1.. in ascending order (`upper[0]` is layer 1).
    pub(super) upper: Vec<UpperLayer>,
}

impl fmt::Debug for Graph {
    // A summary: the adjacency of a real segment is megabytes of numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("n", &self.n)
            .field("entry", &self.entry)
            .field("layers", &(1 + self.upper.len()))
            .field("base_edges", &self.base.edges())
            .finish()
    }
}

impl Graph {
    /// A graph with no rows; searching it returns nothing.
    pub(super) fn empty() -> Self {
        Self { n: 0, entry: 0, base: Level0::from_lists(std::iter::empty::<&[u32]>()), upper: Vec::new() }
    }

    /// Builds the graph over the `n = vectors.len() / dim` rows of `vectors` with the
    /// default builder settings; see [`Graph::build_with`].
    pub fn build(vectors: &[f32], dim: usize, space: Space, params: GraphParams) -> Graph {
        Self::build_with(vectors, dim, space, params, NativeParams::default())
    }

    /// Builds the graph over the `n = vectors.len() / dim` rows of `vectors` with the
    /// native builder's `options` (threads, seed).
    ///
    /// CPU-heavy and blocking (spawns its own worker threads); callers run it off the
    /// async runtime. For [`Space::Cosine`] the vectors must already be normalised.
    /// Panics if there are more than `u32::MAX` rows.
    pub fn build_with(vectors: &[f32], dim: usize, space: Space, params: GraphParams, options: NativeParams) -> Graph {
        debug_assert!(dim > 0, "dimension must be positive");
        debug_assert_eq!(vectors.len() % dim.max(1), 0, "vectors must be n × dim");
        let n = vectors.len().checked_div(dim).unwrap_or(0);
        assert!(u32::try_from(n).is_ok(), "a graph holds at most u32::MAX rows, got {n}");
        if n == 0 {
            return Graph::empty();
        }
        let vectors = &vectors[..n * dim];
        let graph = super::native::build(vectors, dim, space, params, options);
        graph.advise_huge_pages();
        graph
    }

    /// Layer 0 is what a search walks at random: back it with huge pages where the OS
    /// allows (see `huge_pages.rs`).
    fn advise_huge_pages(&self) {
        self.base.advise_huge_pages();
    }

    /// Number of rows the graph covers.
    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Serialises the graph: versioned magic header, layers, crc32 trailer.
    pub fn encode(&self) -> Vec<u8> {
        super::codec::encode(self)
    }

    /// Parses bytes written by [`Graph::encode`]. Never panics: truncated, corrupted or
    /// foreign input is a [`DecodeError`](crate::DecodeError) ("corrupt hnsw graph: …").
    pub fn decode(bytes: &[u8]) -> Result<Graph, crate::DecodeError> {
        let graph = super::codec::decode(bytes)?;
        graph.advise_huge_pages();
        Ok(graph)
    }

    /// Heap bytes held by this graph (for cache weighting).
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.base.memory_bytes()
            + self.upper.capacity() * size_of::<UpperLayer>()
            + self.upper.iter().map(|l| l.nodes.capacity() * size_of::<u32>() + l.adj.memory_bytes()).sum::<usize>()
    }

    /// Best-first HNSW search: greedy descent from the entry point through upper layers,
    /// then a beam of width `max(ef, k)` on layer 0.
    ///
    /// Rows for which `is_deleted(row)` is true are still traversed (they keep the graph
    /// connected) but never enter the result, so deleted rows never use up top-k.
    /// Returns up to `k` candidates sorted by ascending distance (ties by row).
    ///
    /// `vectors` must be the `len() × dim` slice the graph was built from and `query`
    /// must have `dim` values; on a mismatch this debug-asserts and otherwise returns no
    /// results.
    #[allow(clippy::too_many_arguments)]
    pub fn search(
        &self,
        vectors: &[f32],
        dim: usize,
        space: Space,
        query: &[f32],
        k: usize,
        ef: usize,
        is_deleted: &dyn Fn(u32) -> bool,
    ) -> Vec<Candidate> {
        search::search_graph(self, vectors, dim, space, query, k, ef, is_deleted)
    }

    /// Top-k rows with `passes(row) && !is_deleted(row)`, ascending distance (ties by
    /// row): [`Graph::search`] restricted to the rows an attribute filter matches.
    ///
    /// Upper layers route unfiltered; `walk` says how layer 0 treats failing rows (see
    /// [`FilteredWalk`]). Deleted rows keep their [`Graph::search`] meaning: traversed,
    /// never returned. When fewer than `k` rows pass, the walk visits every reachable
    /// row and returns all of them that are not deleted. For a filter that matches only
    /// a few rows, scanning them with [`brute_force_rows`](crate::brute_force_rows) is
    /// cheaper and exact. Shapes as in [`Graph::search`].
    #[allow(clippy::too_many_arguments)]
    pub fn search_filtered(
        &self,
        vectors: &[f32],
        dim: usize,
        space: Space,
        query: &[f32],
        k: usize,
        ef: usize,
        is_deleted: &dyn Fn(u32) -> bool,
        passes: &dyn Fn(u32) -> bool,
        walk: FilteredWalk,
    ) -> Vec<Candidate> {
        let unbounded = usize::MAX;
        self.search_filtered_within(vectors, dim, space, query, k, ef, is_deleted, passes, walk, unbounded)
            .unwrap_or_default()
    }

    /// [`Graph::search_filtered`] that gives up (`None`) once layer 0 has scored more
    /// than `max_scored` rows: for a caller with a bounded alternative (an exact scan of
    /// the matching rows) when the walk turns out to need far more work than the
    /// filter's selectivity predicted, as it does for filters anti-correlated with the
    /// query.
    #[allow(clippy::too_many_arguments)]
    pub fn search_filtered_within(
        &self,
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
        filtered::search_filtered_within(self, vectors, dim, space, query, k, ef, is_deleted, passes, walk, max_scored)
    }
}

#[cfg(test)]
impl Graph {
    /// Checks every invariant in the module docs, plus what the builders promise beyond
    /// them: no self-links, no duplicate neighbours, layer 0 strongly connected.
    pub(super) fn validate(&self) -> Result<(), String> {
        let n = self.n as usize;
        if self.base.rows() != n {
            return Err(format!("layer 0 has {} nodes for {n} rows", self.base.rows()));
        }
        let base = Csr::from_lists(self.base.lists());
        let layers = std::iter::once((None, &base)).chain(self.upper.iter().map(|l| (Some(&l.nodes), &l.adj)));
        let mut below: Option<&Vec<u32>> = None;
        for (layer, (nodes, adj)) in layers.enumerate() {
            let on_layer = |row: u32| nodes.is_none_or(|nodes| nodes.binary_search(&row).is_ok());
            if let Some(nodes) = nodes {
                if nodes.is_empty() || nodes.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!("layer {layer}: nodes empty or not strictly increasing"));
                }
                if !nodes.iter().all(|r| (*r as usize) < n && below.is_none_or(|b| b.binary_search(r).is_ok())) {
                    return Err(format!("layer {layer}: a node is missing from the layer below"));
                }
                below = Some(nodes);
            }
            if adj.node_count() != nodes.map_or(n, Vec::len) || adj.offsets.last() != Some(&adj.neighbours.len()) {
                return Err(format!("layer {layer}: malformed offsets"));
            }
            for i in 0..adj.node_count() {
                let row = nodes.map_or(i as u32, |nodes| nodes[i]);
                let list = adj.neighbours(i);
                if let Some(bad) = list.iter().find(|&&nb| nb == row || (nb as usize) >= n || !on_layer(nb)) {
                    return Err(format!("layer {layer}: row {row} links to {bad}"));
                }
                if (1..list.len()).any(|j| list[..j].contains(&list[j])) {
                    return Err(format!("layer {layer}: row {row} has duplicate neighbours {list:?}"));
                }
            }
        }
        if n == 0 {
            return Ok(());
        }
        if self.entry as usize >= n
            || self.upper.last().is_some_and(|top| top.nodes.binary_search(&self.entry).is_err())
        {
            return Err(format!("entry {} is not a node of the top layer", self.entry));
        }
        let lists: Vec<&[u32]> = self.base.lists().collect();
        let mut reverse = vec![Vec::new(); n];
        for (row, list) in lists.iter().enumerate() {
            for &nb in *list {
                reverse[nb as usize].push(row as u32);
            }
        }
        let reverse: Vec<&[u32]> = reverse.iter().map(Vec::as_slice).collect();
        for (adj, what) in [(&lists, "reachable from"), (&reverse, "able to reach")] {
            let mut seen = vec![false; n];
            let mut stack = vec![self.entry];
            seen[self.entry as usize] = true;
            while let Some(x) = stack.pop() {
                for &nb in adj[x as usize] {
                    if !std::mem::replace(&mut seen[nb as usize], true) {
                        stack.push(nb);
                    }
                }
            }
            if let Some(row) = seen.iter().position(|s| !s) {
                return Err(format!("layer 0: row {row} is not {what} the entry"));
            }
        }
        Ok(())
    }
}
