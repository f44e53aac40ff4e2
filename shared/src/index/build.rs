//! Graph construction: hnsw_rs builds the HNSW graph, we extract its adjacency.
//!
//! Flow: pick the build-time vectors for the space → insert them all with hnsw_rs
//! `parallel_insert_slice` (rayon) under our own squared-L2 [`Distance`] → walk every
//! hnsw_rs point (origin id = our row, `p_id.0` = its top layer) and copy its per-layer
//! neighbour ids into compact CSR layers → drop the hnsw_rs structure.
//!
//! Why squared L2 for every space: hnsw_rs asserts distances are `>= 0` while building,
//! and only the ordering of distances matters to construction. So
//! - `L2` builds on the vectors as given (squared L2 orders like L2);
//! - `Cosine` builds on the (caller-normalised) vectors: `|a-b|² = 2 - 2·a·b`, which
//!   orders exactly like `1 - a·b`;
//! - `Dot` uses the MIPS→L2 augmentation: each row gets one extra coordinate
//!   `sqrt(M² - |x|²)` with `M` the largest norm in the batch. For a query `(q, 0)`,
//!   `|(q,0) - x'|² = |q|² + M² - 2·q·x`, which orders exactly like `-q·x`; so searching
//!   the extracted graph with `-dot` on the original vectors follows the same routes the
//!   construction saw.
//!
//! Invariants of the result are those listed in `graph.rs`; extraction enforces them
//! (drops self-links, duplicates and links to rows that do not reach the layer) rather
//! than trusting hnsw_rs's internal bookkeeping.

use std::borrow::Cow;

use hnsw_rs::prelude::{Distance, Hnsw};

use super::Space;
use super::distance::kernels;
use super::graph::{Csr, Graph, GraphParams, UpperLayer};

/// hnsw_rs never uses more than 16 layers; asking for more is silently clamped.
const MAX_LAYERS: usize = 16;

/// Squared L2 with our SIMD kernel, made total for hnsw_rs: a NaN (only possible with
/// non-finite input, which callers reject) becomes `f32::MAX` instead of tripping
/// hnsw_rs's `dist >= 0` assertions and panicking a build thread.
struct BuildDistance {
    l2_squared: fn(&[f32], &[f32]) -> f32,
}

impl Distance<f32> for BuildDistance {
    #[inline]
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = (self.l2_squared)(a, b);
        if d >= 0.0 { d } else { f32::MAX }
    }
}

pub(super) fn build(vectors: &[f32], dim: usize, space: Space, params: GraphParams) -> Graph {
    debug_assert!(dim > 0, "dimension must be positive");
    debug_assert_eq!(vectors.len() % dim.max(1), 0, "vectors must be n × dim");
    if dim == 0 {
        return Graph::empty();
    }
    let n = vectors.len() / dim;
    assert!(u32::try_from(n).is_ok(), "a graph holds at most u32::MAX rows, got {n}");
    if n == 0 {
        return Graph::empty();
    }

    let (data, build_dim): (Cow<'_, [f32]>, usize) = match space {
        Space::L2 | Space::Cosine => (Cow::Borrowed(&vectors[..n * dim]), dim),
        Space::Dot => (Cow::Owned(augment_for_mips(&vectors[..n * dim], dim)), dim + 1),
    };

    let m = params.m.clamp(2, 255);
    // A beam narrower than the neighbour budget cannot fill the neighbour lists.
    let ef_construction = params.ef_construction.max(m);
    let dist = BuildDistance { l2_squared: kernels().l2_squared };
    let mut hnsw = Hnsw::<f32, BuildDistance>::new(m, n, MAX_LAYERS, ef_construction, dist);
    if std::env::var("KP").is_ok() {
        hnsw.set_keeping_pruned(true);
    }
    if std::env::var("EC").is_ok() {
        hnsw.set_extend_candidates(true);
    }
    let items: Vec<(&[f32], usize)> = data.chunks_exact(build_dim).enumerate().map(|(row, v)| (v, row)).collect();
    hnsw.parallel_insert_slice(&items);
    drop(items);

    let graph = extract(&hnsw, n);
    tracing::debug!(
        rows = n,
        layers = 1 + graph.upper.len(),
        base_edges = graph.base.neighbours.len(),
        "built hnsw graph"
    );
    graph
}

/// Appends `sqrt(M² - |x|²)` to every row so all rows have norm `M` (see module docs).
fn augment_for_mips(vectors: &[f32], dim: usize) -> Vec<f32> {
    let dot = kernels().dot;
    let norms_sq: Vec<f32> = vectors.chunks_exact(dim).map(|v| dot(v, v)).collect();
    let max_sq = norms_sq.iter().copied().fold(0.0f32, f32::max);
    let mut out = Vec::with_capacity(norms_sq.len() * (dim + 1));
    for (v, norm_sq) in vectors.chunks_exact(dim).zip(&norms_sq) {
        out.extend_from_slice(v);
        // Rounding can make max_sq - norm_sq slightly negative for the longest rows.
        out.push((max_sq - norm_sq).max(0.0).sqrt());
    }
    out
}

/// Copies hnsw_rs's adjacency into CSR layers.
fn extract(hnsw: &Hnsw<'_, f32, BuildDistance>, n: usize) -> Graph {
    let indexation = hnsw.get_point_indexation();
    let mut levels = vec![u8::MAX; n];
    // per_row[row][layer] = neighbour rows as hnsw_rs ordered them (nearest first).
    let mut per_row: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for point in indexation {
        let row = point.get_origin_id();
        let level = point.get_point_id().0;
        assert!(row < n && levels[row] == u8::MAX, "hnsw_rs returned row {row} twice or out of range");
        levels[row] = level;
        // hnsw_rs may park a link on a layer above the point's own level during
        // insertion; only layers 0..=level are part of the graph.
        per_row[row] = point
            .get_neighborhood_id()
            .into_iter()
            .take(level as usize + 1)
            .map(|layer| layer.into_iter().map(|nb| nb.get_origin_id() as u32).collect())
            .collect();
    }
    assert!(levels.iter().all(|&l| l != u8::MAX), "hnsw_rs lost rows during build");

    let top = levels.iter().copied().max().unwrap_or(0) as usize;
    let entry = indexation
        .get_layer_iterator(top)
        .next()
        .map(|p| p.get_origin_id() as u32)
        .expect("the top layer holds at least the row that defines it");

    // Clean each list: no self-links, no duplicates, only rows that reach this layer.
    let mut scratch = Vec::new();
    for (row, layers) in per_row.iter_mut().enumerate() {
        for (layer, list) in layers.iter_mut().enumerate() {
            scratch.clear();
            for &nb in list.iter() {
                let ok = nb as usize != row
                    && (nb as usize) < n
                    && levels[nb as usize] as usize >= layer
                    && !scratch.contains(&nb);
                if ok {
                    scratch.push(nb);
                }
            }
            list.clear();
            list.extend_from_slice(&scratch);
        }
    }

    let base = Csr::from_lists(per_row.iter().map(|layers| layers[0].as_slice()));
    let upper = (1..=top)
        .map(|layer| {
            let nodes: Vec<u32> = (0..n).filter(|&r| levels[r] as usize >= layer).map(|r| r as u32).collect();
            let adj = Csr::from_lists(nodes.iter().map(|&r| per_row[r as usize][layer].as_slice()));
            UpperLayer { nodes, adj }
        })
        .collect();
    Graph { n: n as u32, entry, base, upper }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_equalises_norms() {
        let v = [3.0, 4.0, 1.0, 0.0, 0.0, 0.0];
        let a = augment_for_mips(&v, 2);
        assert_eq!(a.len(), 9);
        for row in a.chunks_exact(3) {
            let norm_sq: f32 = row.iter().map(|x| x * x).sum();
            assert!((norm_sq - 25.0).abs() < 1e-4);
        }
    }

    #[test]
    fn tiny_inputs() {
        let params = GraphParams { m: 8, ef_construction: 16 };
        assert!(Graph::build(&[], 4, Space::L2, params).is_empty());
        let one = Graph::build(&[1.0, 2.0], 2, Space::Dot, params);
        assert_eq!(one.len(), 1);
        assert!(one.base.neighbours.is_empty());
        let two = Graph::build(&[1.0, 0.0, 0.0, 1.0], 2, Space::Cosine, params);
        assert_eq!(two.base.neighbours(0), &[1]);
        assert_eq!(two.base.neighbours(1), &[0]);
    }

    #[test]
    fn extreme_params_are_clamped() {
        let v: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let g = Graph::build(&v, 2, Space::L2, GraphParams { m: 10_000, ef_construction: 0 });
        assert_eq!(g.len(), 20);
        let g = Graph::build(&v, 2, Space::L2, GraphParams { m: 0, ef_construction: 1 });
        assert_eq!(g.len(), 20);
    }
}
