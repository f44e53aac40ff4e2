//! The reference builder, for tests only: hnsw_rs builds the HNSW graph and we extract
//! its adjacency. The native builder (`native.rs`) is what Strata runs; this one is the
//! cross-check its recall is tested against (`tests.rs`), so hnsw_rs is only a
//! dev-dependency.
//!
//! Flow: insert every row with hnsw_rs `parallel_insert_slice` (rayon) under the build
//! distance of `build_distance.rs` → walk every hnsw_rs point (origin id = our row,
//! `p_id.0` = its top layer) and copy its per-layer neighbour ids into compact CSR
//! layers → drop the hnsw_rs structure.
//!
//! Invariants of the result are those listed in `graph.rs`; extraction enforces them
//! (drops self-links, duplicates and links to rows that do not reach the layer) rather
//! than trusting hnsw_rs's internal bookkeeping.

use hnsw_rs::prelude::{Distance, Hnsw};

use super::build_distance::BuildDistance;
use super::graph::{Csr, Graph, GraphParams, UpperLayer};
use super::level0::Level0;
use super::{Space, connect};

/// hnsw_rs never uses more than 16 layers; asking for more is silently clamped.
const MAX_LAYERS: usize = 16;

impl Distance<f32> for BuildDistance {
    #[inline]
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        self.between(a, b)
    }
}

/// Builds with hnsw_rs, with the same preconditions and empty-input handling as
/// [`Graph::build_with`].
pub(crate) fn build(vectors: &[f32], dim: usize, space: Space, params: GraphParams) -> Graph {
    let n = vectors.len().checked_div(dim).unwrap_or(0);
    if n == 0 {
        return Graph::empty();
    }
    let vectors = &vectors[..n * dim];
    let m = params.m.clamp(2, 255);
    // A beam narrower than the neighbour budget cannot fill the neighbour lists.
    let ef_construction = params.ef_construction.max(m);
    let dist = BuildDistance::for_space(space, vectors, dim);
    let hnsw = Hnsw::<f32, BuildDistance>::new(m, n, MAX_LAYERS, ef_construction, dist);
    let items: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).enumerate().map(|(row, v)| (v, row)).collect();
    hnsw.parallel_insert_slice(&items);
    drop(items);

    let graph = extract(&hnsw, vectors, dim, space);
    tracing::debug!(rows = n, layers = 1 + graph.upper.len(), base_edges = graph.base.edges(), "built hnsw graph");
    graph
}

/// Copies hnsw_rs's adjacency into CSR layers, cleaning each list and repairing
/// layer-0 connectivity (see `connect.rs`).
fn extract(hnsw: &Hnsw<'_, f32, BuildDistance>, vectors: &[f32], dim: usize, space: Space) -> Graph {
    let n = vectors.len() / dim;
    let indexation = hnsw.get_point_indexation();
    let mut levels = vec![u8::MAX; n];
    // lists[row][layer] = neighbour rows as hnsw_rs ordered them (nearest first).
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for point in indexation {
        let row = point.get_origin_id();
        let level = point.get_point_id().0;
        assert!(row < n && levels[row] == u8::MAX, "hnsw_rs returned row {row} twice or out of range");
        levels[row] = level;
        // hnsw_rs may park a link on a layer above the point's own level during
        // insertion; only layers 0..=level are part of the graph.
        lists[row] = point
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
    for (row, layers) in lists.iter_mut().enumerate() {
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

    let upper = (1..=top)
        .map(|layer| {
            let nodes: Vec<u32> = (0..n).filter(|&r| levels[r] as usize >= layer).map(|r| r as u32).collect();
            let adj = Csr::from_lists(nodes.iter().map(|&r| lists[r as usize][layer].as_slice()));
            UpperLayer { nodes, adj }
        })
        .collect();
    let mut base_lists: Vec<Vec<u32>> = lists.into_iter().map(|mut layers| layers.swap_remove(0)).collect();
    let repaired = connect::repair(&mut base_lists, entry, vectors, dim, space);
    if repaired > 0 {
        tracing::debug!(rows = n, added_edges = repaired, "repaired hnsw layer-0 connectivity");
    }
    let base = Level0::from_lists(base_lists.iter().map(Vec::as_slice));
    Graph { n: n as u32, entry, base, upper }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NativeParams;

    type Build = fn(&[f32], usize, Space, GraphParams) -> Graph;

    /// Both builders, for tests that must hold for either.
    fn builders() -> [(&'static str, Build); 2] {
        [("hnsw_rs", build), ("native", |v, d, s, p| Graph::build_with(v, d, s, p, NativeParams::default()))]
    }

    #[test]
    fn tiny_inputs() {
        let params = GraphParams { m: 8, ef_construction: 16 };
        for (name, build) in builders() {
            assert!(build(&[], 4, Space::L2, params).is_empty());
            let one = build(&[1.0, 2.0], 2, Space::Dot, params);
            assert_eq!(one.len(), 1);
            assert_eq!(one.base.edges(), 0);
            let two = build(&[1.0, 0.0, 0.0, 1.0], 2, Space::Cosine, params);
            assert_eq!(two.base.neighbours(0), &[1], "{name}");
            assert_eq!(two.base.neighbours(1), &[0], "{name}");
        }
    }

    #[test]
    fn extreme_params_are_clamped() {
        let v: Vec<f32> = (0..40).map(|i| i as f32).collect();
        for (_, build) in builders() {
            let g = build(&v, 2, Space::L2, GraphParams { m: 10_000, ef_construction: 0 });
            assert_eq!(g.len(), 20);
            let g = build(&v, 2, Space::L2, GraphParams { m: 0, ef_construction: 1 });
            assert_eq!(g.len(), 20);
            g.validate().unwrap();
        }
    }
}
