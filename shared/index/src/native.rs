//! Native HNSW construction: hnswlib's insertion algorithm, run in parallel, writing our
//! compact [`Graph`] directly (no third-party structure to extract from).
//!
//! Flow: draw every row's level up front from a seeded generator
//! (`floor(-ln(U) / ln(M))`, capped at [`MAX_LEVEL`]) → row 0 becomes the entry point
//! alone → the other rows are inserted in data order by `threads` workers that take the
//! next row from a shared counter. One insertion (hnswlib `addPoint`): greedy descent
//! through the layers above the row's level, then on each layer from its level down a
//! beam search of width `ef_construction` and neighbour selection by hnswlib's heuristic
//! (`getNeighborsByHeuristic2`: keep a candidate only if it is closer to the new row
//! than to every neighbour kept so far, at most `M`); then the row's own lists are
//! stored and back-links added; a back-link that overflows a list (`2M` on layer 0, `M`
//! above) re-runs the heuristic over that list plus the new row. At the end the lists become CSR layers and layer 0 gets the
//! connectivity repair of `connect.rs`.
//!
//! Distances are the build distance (`BuildDistance` in `build_distance.rs`: squared L2
//! for `L2` and normalised `Cosine`, `M² - a·b` for `Dot`), so both builders optimise
//! the same ordering and the search routes the construction optimised for.
//!
//! Concurrency (see [`Lists`]): every row's lists are fixed blocks of atomics written
//! under the row's mutex and read lock-free; the entry point sits behind a mutex that an
//! insertion raising the top level holds until it is linked, as hnswlib does, so two
//! rows never open new layers at the same time. With one thread and a fixed seed the
//! graph is a pure function of the input.
//!
//! Invariants of the output: those listed in `graph.rs`; before the repair every list
//! is free of self-links and duplicates and holds at most `2M` (layer 0) or `M` ids.

use std::collections::BinaryHeap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::build_distance::BuildDistance;
// A row and its build distance to the row being inserted, ordered by distance then row
// (total and deterministic): the same heap entry the search uses.
use super::distance::prefetch;
use super::graph::{Csr, Graph, GraphParams, NativeParams, UpperLayer};
use super::level0::Level0;
use super::search::Scored as Near;
use super::search::Visited;
use super::{Space, connect};

/// Highest level a row may draw: 16 layers, as hnsw_rs allows (the codec accepts 64).
/// Only reached with probability `M^-15` per row, so the cap never shapes real graphs.
const MAX_LEVEL: usize = 15;

/// Adjacency under construction, shared by all workers.
///
/// Every list is a fixed block of atomics `[len, id_0, …, id_{cap-1}]`. Writers hold the
/// row's mutex, store the ids, then publish `len` with `Release`; readers (other
/// workers' searches) load `len` with `Acquire` and the ids `Relaxed`, without the
/// lock. A reader racing a writer may see part old and part new list, but every slot
/// below any published `len` was written before that publication with a row of that
/// layer, so a reader only ever sees valid ids (the visited set absorbs a duplicate).
/// hnswlib instead locks a list while reading it; lock-free reads keep the hot loop
/// free of atomic read-modify-writes and never stall a search behind a pruning.
struct Lists {
    m: usize,
    m0: usize,
    /// Layer 0: `n` blocks of `1 + m0`.
    base: Vec<AtomicU32>,
    /// Per row: one block of `1 + m` per layer `1..=level` (empty for level-0 rows).
    /// Allocated for every row before any insertion, so a link never waits for memory.
    upper: Vec<Box<[AtomicU32]>>,
    /// One mutex per row, guarding writes to all of that row's lists.
    locks: Vec<Mutex<()>>,
}

impl Lists {
    fn new(levels: &[u8], m: usize) -> Self {
        let m0 = 2 * m;
        let zeros = |len: usize| (0..len).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        Self {
            m,
            m0,
            base: zeros(levels.len() * (1 + m0)),
            upper: levels.iter().map(|&l| zeros(l as usize * (1 + m)).into_boxed_slice()).collect(),
            locks: levels.iter().map(|_| Mutex::new(())).collect(),
        }
    }

    /// Most ids a list of `layer` may hold.
    fn cap(&self, layer: usize) -> usize {
        if layer == 0 { self.m0 } else { self.m }
    }

    /// The block `[len, ids…]` of `row` on `layer` (the row must reach the layer).
    #[inline]
    fn block(&self, row: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let w = 1 + self.m0;
            &self.base[row as usize * w..][..w]
        } else {
            let w = 1 + self.m;
            &self.upper[row as usize][(layer - 1) * w..][..w]
        }
    }

    /// The published ids of a block (lock-free; see the type's docs).
    #[inline]
    fn ids(block: &[AtomicU32]) -> impl Iterator<Item = u32> + '_ {
        let len = (block[0].load(Acquire) as usize).min(block.len() - 1);
        block[1..=len].iter().map(|slot| slot.load(Relaxed))
    }

    /// Replaces a block's ids; the caller holds the row's lock.
    fn store(block: &[AtomicU32], ids: &[Near]) {
        for (slot, near) in block[1..].iter().zip(ids) {
            slot.store(near.row, Relaxed);
        }
        block[0].store(ids.len().min(block.len() - 1) as u32, Release);
    }

    fn lock(&self, row: u32) -> MutexGuard<'_, ()> {
        // The mutex guards no data of its own, so a panicked holder leaves nothing
        // half-updated that poisoning could warn about (and the panic propagates anyway).
        self.locks[row as usize].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per-worker reusable buffers: nothing is allocated per insertion.
struct Scratch {
    /// Rows reached by the current layer search (the search's generation-stamped set).
    visited: Visited,
    /// Beam frontier, closest first (a max-heap of reversed entries).
    frontier: BinaryHeap<std::cmp::Reverse<Near>>,
    /// The `ef` best rows found, farthest on top.
    best: BinaryHeap<Near>,
    /// `best` in ascending order.
    sorted: Vec<Near>,
    /// Neighbours selected for the new row, per layer, ascending.
    kept: Vec<Vec<Near>>,
    /// Candidates and result of pruning an overflowing neighbour list.
    pool: Vec<Near>,
    pruned: Vec<Near>,
    /// Unvisited neighbours of the row being expanded.
    batch: Vec<u32>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Self {
            visited: Visited::with_capacity(n),
            frontier: BinaryHeap::new(),
            best: BinaryHeap::new(),
            sorted: Vec::new(),
            kept: vec![Vec::new(); MAX_LEVEL + 1],
            pool: Vec::new(),
            pruned: Vec::new(),
            batch: Vec::new(),
        }
    }
}

/// Everything one build shares between its workers.
struct Construction<'a> {
    vectors: &'a [f32],
    dim: usize,
    dist: BuildDistance,
    ef: usize,
    levels: Vec<u8>,
    lists: Lists,
    /// `(entry row, top level)`. Held for a whole insertion that raises the top level.
    entry: Mutex<(u32, usize)>,
}

impl Construction<'_> {
    #[inline]
    fn vector(&self, row: u32) -> &[f32] {
        &self.vectors[row as usize * self.dim..][..self.dim]
    }

    #[inline]
    fn dist(&self, a: &[f32], b: u32) -> f32 {
        self.dist.between(a, self.vector(b))
    }

    /// Inserts `q` (hnswlib `addPoint`); rows inserted before are in the graph.
    fn insert(&self, s: &mut Scratch, q: u32) {
        let level = self.levels[q as usize] as usize;
        let qv = self.vector(q);
        let mut global = Some(self.entry.lock().unwrap_or_else(PoisonError::into_inner));
        let (entry, top) = **global.as_ref().expect("just locked");
        if level <= top {
            // Only an insertion that opens new layers keeps the lock (see module docs).
            global = None;
        }
        let mut cur = Near { dist: self.dist(qv, entry), row: entry };
        for layer in (level + 1..=top).rev() {
            cur = self.greedy(qv, cur, layer);
        }
        let linked = 0..=level.min(top);
        for layer in linked.clone().rev() {
            self.search_layer(s, qv, cur, layer);
            select(self, &s.sorted, self.lists.m, &mut s.kept[layer]);
            cur = s.kept[layer][0];
        }
        // hnswlib links each layer right after searching it. Here every own list is
        // stored before the first back-link makes `q` reachable: otherwise another
        // worker could descend through `q` and find its lower lists still empty (a beam
        // that starts there sees only `q`; hnswlib blocks on `q`'s lock instead), or
        // link itself into a list of `q` that `q` then overwrites. With one worker the
        // graph is the same either way: a layer's search reads only that layer's
        // lists, and back-links on the layers above touch only theirs.
        {
            let _guard = self.lists.lock(q);
            for layer in linked.clone() {
                Lists::store(self.lists.block(q, layer), &s.kept[layer]);
            }
        }
        for layer in linked.rev() {
            self.link_back(s, q, layer);
        }
        if let Some(mut global) = global {
            *global = (q, level);
        }
    }

    /// Greedy walk on an upper layer: move to any closer neighbour until none is.
    fn greedy(&self, qv: &[f32], mut cur: Near, layer: usize) -> Near {
        loop {
            let from = cur.row;
            for nb in Lists::ids(self.lists.block(from, layer)) {
                let d = self.dist(qv, nb);
                if d < cur.dist {
                    cur = Near { dist: d, row: nb };
                }
            }
            if cur.row == from {
                return cur;
            }
        }
    }

    /// Beam search of width `ef` on `layer` from `start` (hnswlib `searchBaseLayer`);
    /// leaves the beam's rows in `s.sorted`, ascending.
    fn search_layer(&self, s: &mut Scratch, qv: &[f32], start: Near, layer: usize) {
        s.visited.start(self.levels.len());
        s.visited.insert(start.row);
        s.frontier.clear();
        s.best.clear();
        s.frontier.push(std::cmp::Reverse(start));
        s.best.push(start);
        let mut bound = start.dist;
        while let Some(std::cmp::Reverse(c)) = s.frontier.pop() {
            if c.dist > bound && s.best.len() >= self.ef {
                break;
            }
            // Gather the unvisited neighbours and start loading all their vectors before
            // computing any distance: the loads then overlap instead of each distance
            // waiting for its own cache misses. Construction streams several MB of
            // vectors per insertion and is bound by memory, not arithmetic (measured:
            // +25-45% build rate from this alone).
            s.batch.clear();
            for nb in Lists::ids(self.lists.block(c.row, layer)) {
                if s.visited.insert(nb) {
                    prefetch(self.vector(nb));
                    s.batch.push(nb);
                }
            }
            for i in 0..s.batch.len() {
                let nb = s.batch[i];
                let d = self.dist(qv, nb);
                if s.best.len() < self.ef || d < bound {
                    let near = Near { dist: d, row: nb };
                    s.frontier.push(std::cmp::Reverse(near));
                    s.best.push(near);
                    if s.best.len() > self.ef {
                        s.best.pop();
                    }
                    bound = s.best.peek().map_or(f32::INFINITY, |w| w.dist);
                }
            }
        }
        s.sorted.clear();
        s.sorted.extend(s.best.drain());
        s.sorted.sort_unstable();
    }

    /// Links every row kept for `q` on `layer` back to `q`, pruning full lists (the
    /// second half of hnswlib `mutuallyConnectNewElement`).
    fn link_back(&self, s: &mut Scratch, q: u32, layer: usize) {
        let lists = &self.lists;
        let cap = lists.cap(layer);
        let Scratch { kept, pool, pruned, .. } = s;
        for &nb in kept[layer].iter() {
            let _guard = lists.lock(nb.row);
            let block = lists.block(nb.row, layer);
            let len = block[0].load(Relaxed) as usize;
            if len < cap {
                block[1 + len].store(q, Relaxed);
                block[0].store(len as u32 + 1, Release);
                continue;
            }
            // Full: choose among the old list and `q`, as seen from `nb`. The distance
            // `nb`–`q` is already known (the kernels are exactly symmetric).
            let nv = self.vector(nb.row);
            pool.clear();
            pool.push(Near { dist: nb.dist, row: q });
            pool.extend(Lists::ids(block).map(|id| Near { dist: self.dist(nv, id), row: id }));
            pool.sort_unstable();
            select(self, pool, cap, pruned);
            Lists::store(block, pruned);
        }
    }
}

/// hnswlib's `getNeighborsByHeuristic2`: from `sorted` (ascending distance to some row
/// `x`), keep a candidate only if it is closer to `x` than to every candidate kept so
/// far, up to `m`. Fewer than `m` candidates are all kept. Spreading the neighbours
/// over directions is what lets greedy routing cross between clusters.
fn select(c: &Construction<'_>, sorted: &[Near], m: usize, out: &mut Vec<Near>) {
    out.clear();
    if sorted.len() < m {
        out.extend_from_slice(sorted);
        return;
    }
    for &cand in sorted {
        if out.len() >= m {
            break;
        }
        let cv = c.vector(cand.row);
        if out.iter().all(|kept| c.dist(cv, kept.row) >= cand.dist) {
            out.push(cand);
        }
    }
}

/// Levels `floor(-ln(U) / ln(m))`, U uniform in (0, 1], from SplitMix64 seeded with
/// `seed` (a fixed, dependency-free generator: the same seed gives the same levels on
/// every platform and version).
fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let mult = 1.0 / (m as f64).ln();
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            ((-u.ln() * mult) as usize).min(MAX_LEVEL) as u8
        })
        .collect()
}

/// The constructed graph before connectivity repair.
pub(super) struct Raw {
    pub(super) entry: u32,
    pub(super) base: Vec<Vec<u32>>,
    pub(super) upper: Vec<UpperLayer>,
}

/// Builds the graph (construction, then layer-0 repair). `vectors` must hold
/// `n × dim` values with `n ≥ 1` and `dim ≥ 1`.
pub(super) fn build(vectors: &[f32], dim: usize, space: Space, params: GraphParams, opts: NativeParams) -> Graph {
    let n = vectors.len() / dim;
    let raw = construct(vectors, dim, space, params, opts);
    let Raw { entry, mut base, upper } = raw;
    let repaired = connect::repair(&mut base, entry, vectors, dim, space);
    if repaired > 0 {
        tracing::debug!(rows = n, added_edges = repaired, "repaired hnsw layer-0 connectivity");
    }
    let base = Level0::from_lists(base.iter().map(Vec::as_slice));
    Graph { n: n as u32, entry, base, upper }
}

/// Runs the insertions (see module docs) and converts the lists to layers.
pub(super) fn construct(vectors: &[f32], dim: usize, space: Space, params: GraphParams, opts: NativeParams) -> Raw {
    let n = vectors.len() / dim;
    debug_assert!(n >= 1 && u32::try_from(n).is_ok());
    let m = params.m.clamp(2, 255);
    let levels = draw_levels(n, m, opts.seed);
    let c = Construction {
        vectors: &vectors[..n * dim],
        dim,
        dist: BuildDistance::for_space(space, vectors, dim),
        // A beam narrower than the neighbour budget cannot fill the neighbour lists.
        ef: params.ef_construction.max(m),
        lists: Lists::new(&levels, m),
        entry: Mutex::new((0, levels[0] as usize)),
        levels,
    };
    // Every insertion reads vectors and lists at random: huge pages spare the TLB.
    super::huge_pages::advise(c.vectors);
    super::huge_pages::advise(&c.lists.base);
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = match opts.max_threads {
        0 => available,
        cap => available.min(cap),
    }
    .min(n - 1)
    .max(1);
    // Row 0 is the initial entry point: inserting it alone means just that.
    if threads == 1 {
        let mut s = Scratch::new(n);
        for q in 1..n as u32 {
            c.insert(&mut s, q);
        }
    } else {
        let next = AtomicUsize::new(1);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    lower_thread_priority();
                    let mut s = Scratch::new(n);
                    loop {
                        let q = next.fetch_add(1, Relaxed);
                        if q >= n {
                            break;
                        }
                        c.insert(&mut s, q as u32);
                    }
                });
            }
        });
    }

    let (entry, top) = *c.entry.lock().unwrap_or_else(PoisonError::into_inner);
    let base = (0..n as u32).map(|row| Lists::ids(c.lists.block(row, 0)).collect()).collect();
    let upper = (1..=top)
        .map(|layer| {
            let nodes: Vec<u32> = (0..n as u32).filter(|&r| c.levels[r as usize] as usize >= layer).collect();
            let mut adj = Csr { offsets: Vec::with_capacity(nodes.len() + 1), neighbours: Vec::new() };
            adj.offsets.push(0);
            for &row in &nodes {
                adj.neighbours.extend(Lists::ids(c.lists.block(row, layer)));
                adj.offsets.push(adj.neighbours.len());
            }
            UpperLayer { nodes, adj }
        })
        .collect();
    tracing::debug!(rows = n, threads, layers = 1 + top, "built hnsw graph (native)");
    Raw { entry, base, upper }
}

/// Graph builds are background work (flushes, compactions): run their worker threads at a
/// lower CPU priority so request handling (parsing, WAL commits, searches) keeps its
/// latency while a build saturates the cores. Best effort; Linux only.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority(2) on the calling thread (who = 0 names the calling thread on
    // Linux) with a valid niceness; it touches no memory of ours.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_geometric_law() {
        let levels = draw_levels(100_000, 16, 1);
        let above = |l: u8| levels.iter().filter(|&&x| x >= l).count() as f64 / levels.len() as f64;
        // P(level >= l) = 16^-l.
        assert!((above(1) - 1.0 / 16.0).abs() < 0.005, "{}", above(1));
        assert!((above(2) - 1.0 / 256.0).abs() < 0.001, "{}", above(2));
        assert_eq!(draw_levels(50, 16, 9), draw_levels(50, 16, 9));
        assert_ne!(draw_levels(50, 16, 9), draw_levels(50, 16, 10));
        assert!(draw_levels(10_000, 2, 3).iter().all(|&l| l as usize <= MAX_LEVEL));
    }
}
