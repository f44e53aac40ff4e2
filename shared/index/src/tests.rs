//! Cross-module tests of the index: kernels against an f64 reference, codec round trips
//! and corruption, search edge cases, recall of graph search against brute force in
//! every space (with and without tombstones), and the native builder: recall against the
//! hnsw_rs reference builder, determinism, degenerate inputs and parallel validity.
//!
//! Graph builds dominate the runtime (our crate is opt-level 0 in the dev profile), so
//! the 3000-row fixtures are built once per space and shared by the tests that need them.

use std::collections::HashSet;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::*;

const DIM: usize = 32;
const ROWS: usize = 3000;
const QUERIES: usize = 50;
const K: usize = 10;
const EF: usize = 64;
const PARAMS: GraphParams = GraphParams { m: 16, ef_construction: 64 };

/// `rows` vectors around `clusters` random centres in [-1, 1)^dim, noise ±0.15.
fn clustered(rng: &mut StdRng, clusters: usize, rows: usize, dim: usize) -> Vec<f32> {
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let c = rng.random_range(0..clusters);
        out.extend(centres[c * dim..(c + 1) * dim].iter().map(|x| x + (rng.random::<f32>() - 0.5) * 0.3));
    }
    out
}

fn normalize_rows(v: &mut [f32], dim: usize) {
    v.chunks_exact_mut(dim).for_each(normalize);
}

/// Scales every row by a random factor in [0.2, 5) so norms differ a lot.
fn rescale_rows(rng: &mut StdRng, v: &mut [f32], dim: usize) {
    for row in v.chunks_exact_mut(dim) {
        let s = 0.2 + rng.random::<f32>() * 4.8;
        row.iter_mut().for_each(|x| *x *= s);
    }
}

struct Fixture {
    space: Space,
    vectors: Vec<f32>,
    queries: Vec<f32>,
    graph: Graph,
}

fn fixture(space: Space) -> &'static Fixture {
    static L2: OnceLock<Fixture> = OnceLock::new();
    static COSINE: OnceLock<Fixture> = OnceLock::new();
    static DOT: OnceLock<Fixture> = OnceLock::new();
    let cell = match space {
        Space::L2 => &L2,
        Space::Cosine => &COSINE,
        Space::Dot => &DOT,
    };
    cell.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(7 + space as u64);
        let mut all = clustered(&mut rng, 40, ROWS + QUERIES, DIM);
        match space {
            Space::L2 => {}
            Space::Cosine => normalize_rows(&mut all, DIM),
            Space::Dot => rescale_rows(&mut rng, &mut all, DIM),
        }
        let queries = all.split_off(ROWS * DIM);
        let graph = Graph::build(&all, DIM, space, PARAMS);
        Fixture { space, vectors: all, queries, graph }
    })
}

/// Mean recall@k of graph search against brute force under the same tombstones, also
/// checking the shape of every graph result.
fn recall(f: &Fixture, is_deleted: &dyn Fn(u32) -> bool) -> f64 {
    recall_of(f, &f.graph, EF, is_deleted)
}

/// [`recall`] of another `graph` over the fixture's vectors, with beam width `ef`.
fn recall_of(f: &Fixture, graph: &Graph, ef: usize, is_deleted: &dyn Fn(u32) -> bool) -> f64 {
    let mut hits = 0;
    let mut total = 0;
    for q in f.queries.chunks_exact(DIM) {
        let got = graph.search(&f.vectors, DIM, f.space, q, K, ef, is_deleted);
        let want = brute_force(&f.vectors, DIM, f.space, q, K, is_deleted);
        assert_eq!(got.len(), K, "graph search must fill k");
        assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance), "results sorted ascending");
        for c in &got {
            assert!(!is_deleted(c.row), "deleted row {} returned", c.row);
            let row = &f.vectors[c.row as usize * DIM..][..DIM];
            assert_eq!(c.distance, f.space.distance(q, row), "reported distance is the space's");
        }
        let want: HashSet<u32> = want.iter().map(|c| c.row).collect();
        hits += got.iter().filter(|c| want.contains(&c.row)).count();
        total += K;
    }
    hits as f64 / total as f64
}

#[test]
fn recall_l2() {
    let r = recall(fixture(Space::L2), &|_| false);
    assert!(r >= 0.9, "recall {r}");
}

#[test]
fn recall_cosine() {
    let r = recall(fixture(Space::Cosine), &|_| false);
    assert!(r >= 0.9, "recall {r}");
}

#[test]
fn recall_dot() {
    let r = recall(fixture(Space::Dot), &|_| false);
    assert!(r >= 0.9, "recall {r}");
}

#[test]
fn tombstones_never_returned_and_recall_holds() {
    let mut rng = StdRng::seed_from_u64(99);
    let deleted: Vec<bool> = (0..ROWS).map(|_| rng.random::<f32>() < 0.3).collect();
    let is_deleted = |row: u32| deleted[row as usize];
    for space in [Space::L2, Space::Cosine, Space::Dot] {
        let r = recall(fixture(space), &is_deleted);
        assert!(r >= 0.85, "{space:?} recall with 30% deleted: {r}");
    }
}

#[test]
fn dot_finds_large_norm_winners() {
    // Norms span 25×, so maximum inner product is dominated by long vectors, far from
    // the query in L2 terms; top-1 must still match exact search.
    let f = fixture(Space::Dot);
    let mut top1 = 0;
    for q in f.queries.chunks_exact(DIM) {
        let got = f.graph.search(&f.vectors, DIM, Space::Dot, q, K, EF, &|_| false);
        let want = brute_force(&f.vectors, DIM, Space::Dot, q, K, &|_| false);
        assert_eq!(want[0].distance, -dot(q, &f.vectors[want[0].row as usize * DIM..][..DIM]));
        top1 += usize::from(got[0].row == want[0].row);
    }
    assert!(top1 as f64 >= 0.95 * QUERIES as f64, "top-1 matched {top1}/{QUERIES}");
}

#[test]
fn recall_dot_unclustered_varied_norms() {
    // The data on which the MIPS→L2 augmentation build reached only ~0.5 recall (see
    // build_distance.rs): no cluster structure to route by, norms varying 25×.
    let rows = 2000;
    let mut rng = StdRng::seed_from_u64(3);
    let mut all: Vec<f32> = (0..(rows + QUERIES) * DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    rescale_rows(&mut rng, &mut all, DIM);
    let queries = all.split_off(rows * DIM);
    let graph = Graph::build(&all, DIM, Space::Dot, PARAMS);
    let r = recall(&Fixture { space: Space::Dot, vectors: all, queries, graph }, &|_| false);
    assert!(r >= 0.9, "recall {r}");
}

#[test]
fn search_edge_cases() {
    let f = fixture(Space::L2);
    let q = &f.queries[..DIM];
    // ef < k still returns k; k > n returns n.
    assert_eq!(f.graph.search(&f.vectors, DIM, Space::L2, q, 20, 1, &|_| false).len(), 20);
    assert!(f.graph.search(&f.vectors, DIM, Space::L2, q, 0, 64, &|_| false).is_empty());
    // Everything deleted: a full walk, nothing returned.
    assert!(f.graph.search(&f.vectors, DIM, Space::L2, q, 5, 16, &|_| true).is_empty());

    let params = GraphParams { m: 4, ef_construction: 8 };
    let empty = Graph::build(&[], 3, Space::L2, params);
    assert!(empty.search(&[], 3, Space::L2, &[0.0; 3], 5, 5, &|_| false).is_empty());
    let one = Graph::build(&[1.0, 2.0, 3.0], 3, Space::L2, params);
    let r = one.search(&[1.0, 2.0, 3.0], 3, Space::L2, &[1.0, 2.0, 4.0], 5, 1, &|_| false);
    assert_eq!(r, vec![Candidate { row: 0, distance: 1.0 }]);

    let v: Vec<f32> = (0..50).map(|i| i as f32).collect();
    let small = Graph::build(&v, 1, Space::L2, params);
    let all = small.search(&v, 1, Space::L2, &[10.2], 100, 4, &|_| false);
    assert_eq!(all.len(), 50, "k > n returns every reachable row");
    assert_eq!(all[0].row, 10);
    assert!(small.memory_bytes() > 50 * 4);
}

#[test]
fn reentrant_tombstone_callback() {
    // A callback that itself searches on the same thread must not hit the borrowed
    // thread-local visited set.
    let v: Vec<f32> = (0..40).map(|i| i as f32).collect();
    let g = Graph::build(&v, 1, Space::L2, GraphParams { m: 4, ef_construction: 8 });
    let inner = |row: u32| g.search(&v, 1, Space::L2, &[row as f32], 1, 4, &|_| false)[0].row % 2 == 1;
    let r = g.search(&v, 1, Space::L2, &[7.0], 3, 8, &inner);
    assert_eq!(r.iter().map(|c| c.row).collect::<Vec<_>>(), [6, 8, 4]);
}

const SPACES: [Space; 3] = [Space::L2, Space::Cosine, Space::Dot];

fn native(max_threads: usize, seed: u64) -> NativeParams {
    NativeParams { max_threads, seed }
}

#[test]
fn native_recall_matches_the_hnsw_rs_reference() {
    // Fresh data with many queries: both builds are parallel, so their recall varies a
    // little from run to run, and at the fixtures' ef both saturate at ~1.0. Narrow
    // beams (ef from k up) are where routing quality shows; averaging over them and
    // 1000 queries keeps the noise well below the 0.01 tolerance.
    let queries = 1000;
    for space in SPACES {
        let mut rng = StdRng::seed_from_u64(21 + space as u64);
        let mut all = clustered(&mut rng, 40, ROWS + queries, DIM);
        match space {
            Space::L2 => {}
            Space::Cosine => normalize_rows(&mut all, DIM),
            Space::Dot => rescale_rows(&mut rng, &mut all, DIM),
        }
        let qs = all.split_off(ROWS * DIM);
        let truth: Vec<HashSet<u32>> = qs
            .chunks_exact(DIM)
            .map(|q| brute_force(&all, DIM, space, q, K, &|_| false).iter().map(|c| c.row).collect())
            .collect();
        let mean_recall = |g: &Graph| {
            let efs = [K, 16, 24, 32];
            let mut hits = 0;
            for ef in efs {
                for (q, want) in qs.chunks_exact(DIM).zip(&truth) {
                    hits += g
                        .search(&all, DIM, space, q, K, ef, &|_| false)
                        .iter()
                        .filter(|c| want.contains(&c.row))
                        .count();
                }
            }
            hits as f64 / (efs.len() * queries * K) as f64
        };
        let ours = Graph::build(&all, DIM, space, PARAMS);
        let reference = super::reference::build(&all, DIM, space, PARAMS);
        ours.validate().unwrap();
        reference.validate().unwrap();
        let (ours, theirs) = (mean_recall(&ours), mean_recall(&reference));
        assert!(ours >= theirs - 0.01, "{space:?}: native recall {ours}, hnsw_rs {theirs}");
    }
}

#[test]
fn single_thread_native_build_is_deterministic() {
    let mut rng = StdRng::seed_from_u64(11);
    let v = clustered(&mut rng, 5, 600, 8);
    let a = Graph::build_with(&v, 8, Space::L2, PARAMS, native(1, 5));
    assert_eq!(a, Graph::build_with(&v, 8, Space::L2, PARAMS, native(1, 5)));
    // The seed drives the level draw, so another seed gives another graph.
    assert_ne!(a, Graph::build_with(&v, 8, Space::L2, PARAMS, native(1, 6)));
}

#[test]
fn parallel_native_build_is_valid() {
    // 2 workers (fewer only on a 1-core machine); the raw lists, before the repair may
    // append links, must respect the degree bounds.
    let m = PARAMS.m;
    for space in SPACES {
        let f = fixture(space);
        f.graph.validate().unwrap();
        let raw = native::construct(&f.vectors, DIM, space, PARAMS, NativeParams { max_threads: 2, seed: 1 });
        let lists = raw
            .base
            .iter()
            .map(|l| (l.as_slice(), 2 * m))
            .chain(raw.upper.iter().flat_map(|layer| (0..layer.nodes.len()).map(|i| (layer.adj.neighbours(i), m))));
        for (list, max) in lists {
            assert!(list.len() <= max, "{space:?}: degree {} > {max}", list.len());
        }
        let g = Graph::build_with(&f.vectors, DIM, space, PARAMS, native(2, 1));
        g.validate().unwrap_or_else(|e| panic!("{space:?}: {e}"));
        let r = recall_of(f, &g, EF, &|_| false);
        assert!(r >= 0.9, "{space:?}: recall {r}");
    }
}

#[test]
fn identical_vectors_build_a_connected_graph() {
    // Every distance ties: no beam can stop early and no pruning prefers anyone, which
    // must neither loop forever nor strand rows.
    let params = GraphParams { m: 4, ef_construction: 16 };
    for space in SPACES {
        let mut v = [0.25f32, -1.0, 3.0].repeat(300);
        if space == Space::Cosine {
            normalize_rows(&mut v, 3);
        }
        for threads in [1, 2] {
            let g = Graph::build_with(&v, 3, space, params, native(threads, 3));
            g.validate().unwrap_or_else(|e| panic!("{space:?}, {threads} threads: {e}"));
            assert_eq!(g.search(&v, 3, space, &v[..3], 10, 16, &|_| false).len(), 10);
        }
    }
}

#[test]
fn native_handles_zero_one_and_two_rows() {
    let params = GraphParams { m: 4, ef_construction: 8 };
    for threads in [1, 2] {
        assert!(Graph::build_with(&[], 2, Space::L2, params, native(threads, 0)).is_empty());
        let one = Graph::build_with(&[1.0, 2.0], 2, Space::L2, params, native(threads, 0));
        one.validate().unwrap();
        assert_eq!(one.search(&[1.0, 2.0], 2, Space::L2, &[0.0, 0.0], 3, 8, &|_| false).len(), 1);
        let v = [1.0, 2.0, 3.0, 4.0];
        let two = Graph::build_with(&v, 2, Space::L2, params, native(threads, 0));
        two.validate().unwrap();
        assert_eq!(two.search(&v, 2, Space::L2, &[3.0, 4.0], 3, 8, &|_| false)[0].row, 1);
    }
}

fn f64_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn f64_l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Tolerance is relative to the sum of term magnitudes: a dot product that cancels
    /// to ~0 has no meaningful relative error of its own.
    #[test]
    fn kernels_match_reference(
        pairs in (0usize..300).prop_flat_map(|len| (
            proptest::collection::vec(-100.0f32..100.0, len),
            proptest::collection::vec(-100.0f32..100.0, len),
        ))
    ) {
        let (a, b) = pairs;
        let scale_l2 = f64_l2(&a, &b) + 1e-6;
        let scale_dot = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum::<f64>() + 1e-6;
        let simd_l2 = l2_squared(&a, &b) as f64;
        let scalar_l2 = distance::l2_squared_scalar(&a, &b) as f64;
        let simd_dot = dot(&a, &b) as f64;
        let scalar_dot = distance::dot_scalar(&a, &b) as f64;
        prop_assert!((simd_l2 - f64_l2(&a, &b)).abs() <= 1e-4 * scale_l2);
        prop_assert!((scalar_l2 - simd_l2).abs() <= 1e-4 * scale_l2);
        prop_assert!((simd_dot - f64_dot(&a, &b)).abs() <= 1e-4 * scale_dot);
        prop_assert!((scalar_dot - simd_dot).abs() <= 1e-4 * scale_dot);
    }
}

/// A small random graph for codec properties.
fn random_graph(seed: u64, rows: usize, dim: usize, space: Space, m: usize) -> (Vec<f32>, Graph) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = clustered(&mut rng, 3, rows, dim);
    if space == Space::Cosine {
        normalize_rows(&mut v, dim);
    }
    let g = Graph::build(&v, dim, space, GraphParams { m, ef_construction: 16 });
    (v, g)
}

fn any_space() -> impl Strategy<Value = Space> {
    prop_oneof![Just(Space::L2), Just(Space::Cosine), Just(Space::Dot)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn codec_round_trips_and_rejects_damage(
        seed in any::<u64>(),
        rows in 0usize..120,
        dim in 1usize..6,
        space in any_space(),
        m in 2usize..12,
        flip_at in any::<prop::sample::Index>(),
        flip_bits in 1u8..=255,
    ) {
        let (v, g) = random_graph(seed, rows, dim, space, m);
        prop_assert_eq!(g.len(), rows);
        let bytes = g.encode();
        let back = Graph::decode(&bytes).expect("round trip");
        prop_assert_eq!(&back, &g);
        if rows > 0 {
            let q = &v[..dim];
            prop_assert_eq!(back.search(&v, dim, space, q, 3, 8, &|_| false), g.search(&v, dim, space, q, 3, 8, &|_| false));
        }
        for len in 0..bytes.len() {
            prop_assert!(Graph::decode(&bytes[..len]).is_err(), "prefix {} accepted", len);
        }
        let mut flipped = bytes.clone();
        flipped[flip_at.index(bytes.len())] ^= flip_bits;
        prop_assert!(Graph::decode(&flipped).is_err());
    }

    /// Damage that keeps a valid checksum must be caught by validation or, if it still
    /// describes a valid graph, be safe to search.
    #[test]
    fn resealed_damage_never_panics(
        seed in any::<u64>(),
        rows in 1usize..60,
        flip_at in any::<prop::sample::Index>(),
        flip_bits in 1u8..=255,
    ) {
        let (v, g) = random_graph(seed, rows, 2, Space::L2, 4);
        let mut bytes = g.encode();
        let body = bytes.len() - 4;
        bytes[flip_at.index(body)] ^= flip_bits;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(g2) = Graph::decode(&bytes) {
            // Only a graph over the same rows can be searched with these vectors.
            if g2.len() == rows {
                let _ = g2.search(&v, 2, Space::L2, &v[..2], 5, 8, &|_| false);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Graph::decode(&bytes);
        let mut sealed = bytes;
        let crc = crc32fast::hash(&sealed);
        sealed.extend_from_slice(&crc.to_le_bytes());
        let _ = Graph::decode(&sealed);
    }
}
