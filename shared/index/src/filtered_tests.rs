//! Filtered search: both graph walks against exact filtered brute force, for filters
//! uncorrelated with position (random rows) and correlated with it (whole clusters,
//! queried from other clusters: the hard case, where the query's own region matches
//! nothing), at 1 %, 10 % and 50 % selectivity; the exact row scan; edge cases; and an
//! ignored timing harness that measures the three plans at scale for the query planner
//! (`cargo test -p strata-index --release -- --ignored --nocapture filtered_plans_at_scale`).

use std::collections::HashSet;
use std::sync::OnceLock;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::search::DISTANCES;
use super::*;

const DIM: usize = 32;
const CLUSTERS: usize = 20;
const ROWS: usize = 10_000;
const QUERIES: usize = 100;
const K: usize = 10;
const EF: usize = 64;
const PARAMS: GraphParams = GraphParams { m: 16, ef_construction: 64 };

/// `rows` vectors around `clusters` random centres in [-1, 1)^dim, each with its
/// cluster; every coordinate adds uniform noise of total `width`.
fn clustered(rng: &mut StdRng, clusters: usize, rows: usize, dim: usize, width: f32) -> (Vec<f32>, Vec<usize>) {
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let mut out = Vec::with_capacity(rows * dim);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let c = rng.random_range(0..clusters);
        out.extend(centres[c * dim..(c + 1) * dim].iter().map(|x| x + (rng.random::<f32>() - 0.5) * width));
        labels.push(c);
    }
    (out, labels)
}

struct Fixture {
    vectors: Vec<f32>,
    labels: Vec<usize>,
    /// Queries from the same clusters, and the cluster of each.
    queries: Vec<f32>,
    query_labels: Vec<usize>,
    /// About 5 % of rows, uncorrelated with everything else.
    deleted: Vec<bool>,
    graph: Graph,
}

fn fixture() -> &'static Fixture {
    static CELL: OnceLock<Fixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(41);
        let (mut vectors, mut labels) = clustered(&mut rng, CLUSTERS, ROWS + 20 * QUERIES, DIM, 0.3);
        let queries = vectors.split_off(ROWS * DIM);
        let query_labels = labels.split_off(ROWS);
        let deleted = (0..ROWS).map(|_| rng.random::<f32>() < 0.05).collect();
        let graph = Graph::build(&vectors, DIM, Space::L2, PARAMS);
        Fixture { vectors, labels, queries, query_labels, deleted, graph }
    })
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Each row passes with probability `selectivity`.
    Uncorrelated,
    /// Rows of the first `selectivity × CLUSTERS` clusters pass (of the last of them a
    /// random part, when that is not a whole number); queries come from the clusters
    /// where nothing passes.
    Correlated,
}

/// Which rows pass, and the queries to ask (row-major).
fn filter(f: &Fixture, kind: Kind, selectivity: f64) -> (Vec<bool>, Vec<f32>) {
    match kind {
        Kind::Uncorrelated => {
            let mut rng = StdRng::seed_from_u64((selectivity * 1e6) as u64);
            let passes = (0..ROWS).map(|_| rng.random::<f64>() < selectivity).collect();
            (passes, f.queries[..QUERIES * DIM].to_vec())
        }
        Kind::Correlated => {
            let clusters = selectivity * CLUSTERS as f64;
            let (whole, part) = (clusters.floor() as usize, clusters.fract());
            let mut rng = StdRng::seed_from_u64(3);
            let passes = f.labels.iter().map(|&c| c < whole || (c == whole && rng.random::<f64>() < part)).collect();
            let queries: Vec<f32> = f
                .queries
                .chunks_exact(DIM)
                .zip(&f.query_labels)
                .filter(|&(_, &c)| c >= clusters.ceil() as usize)
                .take(QUERIES)
                .flat_map(|(q, _)| q.iter().copied())
                .collect();
            assert_eq!(queries.len(), QUERIES * DIM, "enough queries outside the matching clusters");
            (passes, queries)
        }
    }
}

/// What one walk achieved over a query set.
#[derive(Debug)]
struct Outcome {
    recall: f64,
    distances_per_query: f64,
}

/// Runs `walk` on every query, checks each result's shape against exact filtered brute
/// force and returns recall@K and distances per query.
fn run(f: &Fixture, passes: &[bool], queries: &[f32], walk: FilteredWalk) -> Outcome {
    let is_deleted = |row: u32| f.deleted[row as usize];
    let pass = |row: u32| passes[row as usize];
    let excluded = |row: u32| is_deleted(row) || !pass(row);
    let live_passing = (0..ROWS as u32).filter(|&r| !excluded(r)).count();
    let (mut hits, mut total, mut distances) = (0, 0, 0);
    for q in queries.chunks_exact(DIM) {
        DISTANCES.with(|d| d.set(0));
        let got = f.graph.search_filtered(&f.vectors, DIM, Space::L2, q, K, EF, &is_deleted, &pass, walk);
        distances += DISTANCES.with(|d| d.get());
        let want = brute_force(&f.vectors, DIM, Space::L2, q, K, &excluded);
        assert_eq!(got.len(), K.min(live_passing), "{walk:?} must fill k");
        assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance), "results sorted ascending");
        for c in &got {
            assert!(pass(c.row), "{walk:?} returned row {} that fails the filter", c.row);
            assert!(!is_deleted(c.row), "{walk:?} returned deleted row {}", c.row);
            assert_eq!(c.distance, Space::L2.distance(q, &f.vectors[c.row as usize * DIM..][..DIM]));
        }
        let want: HashSet<u32> = want.iter().map(|c| c.row).collect();
        hits += got.iter().filter(|c| want.contains(&c.row)).count();
        total += want.len();
    }
    let queries = queries.len() / DIM;
    Outcome { recall: hits as f64 / total as f64, distances_per_query: distances as f64 / queries as f64 }
}

#[test]
fn walks_return_only_passing_live_rows_and_two_hop_keeps_recall() {
    let f = fixture();
    for kind in [Kind::Uncorrelated, Kind::Correlated] {
        for selectivity in [0.01, 0.1, 0.5] {
            let (passes, queries) = filter(f, kind, selectivity);
            let plain = run(f, &passes, &queries, FilteredWalk::Plain);
            let two_hop = run(f, &passes, &queries, FilteredWalk::TwoHop);
            println!("{kind:?} {selectivity}: plain {plain:?}, two-hop {two_hop:?}");
            if selectivity >= 0.1 {
                assert!(two_hop.recall >= 0.9, "{kind:?} {selectivity}: two-hop recall {}", two_hop.recall);
            }
        }
    }
}

#[test]
fn two_hop_scores_fewer_rows_than_plain_at_ten_percent() {
    let f = fixture();
    for kind in [Kind::Uncorrelated, Kind::Correlated] {
        let (passes, queries) = filter(f, kind, 0.1);
        let plain = run(f, &passes, &queries, FilteredWalk::Plain);
        let two_hop = run(f, &passes, &queries, FilteredWalk::TwoHop);
        assert!(
            two_hop.distances_per_query < plain.distances_per_query,
            "{kind:?}: two-hop {two_hop:?}, plain {plain:?}"
        );
    }
}

#[test]
fn plain_is_the_tombstone_walk_with_failing_rows_as_deleted() {
    let f = fixture();
    let (passes, queries) = filter(f, Kind::Uncorrelated, 0.3);
    let is_deleted = |row: u32| f.deleted[row as usize];
    let pass = |row: u32| passes[row as usize];
    for q in queries.chunks_exact(DIM).take(20) {
        let plain =
            f.graph.search_filtered(&f.vectors, DIM, Space::L2, q, K, 32, &is_deleted, &pass, FilteredWalk::Plain);
        let search = f.graph.search(&f.vectors, DIM, Space::L2, q, K, 32, &|r| is_deleted(r) || !pass(r));
        assert_eq!(plain, search);
    }
}

#[test]
fn brute_force_rows_equals_brute_force_with_a_combined_predicate() {
    let f = fixture();
    let mut rng = StdRng::seed_from_u64(5);
    for space in [Space::L2, Space::Cosine, Space::Dot] {
        for (selectivity, k) in [(0.002, 10), (0.05, 1), (0.05, 10), (0.5, 25), (1.0, 10)] {
            let passes: Vec<bool> = (0..ROWS).map(|_| rng.random::<f64>() < selectivity).collect();
            let rows: Vec<u32> = (0..ROWS as u32).filter(|&r| passes[r as usize]).collect();
            let is_deleted = |row: u32| f.deleted[row as usize];
            for q in f.queries.chunks_exact(DIM).take(5) {
                let got = brute_force_rows(&f.vectors, DIM, space, q, k, &mut rows.iter().copied(), &is_deleted);
                let want = brute_force(&f.vectors, DIM, space, q, k, &|r| is_deleted(r) || !passes[r as usize]);
                assert_eq!(got, want, "{space:?}, selectivity {selectivity}, k {k}");
            }
        }
    }
}

#[test]
fn k_beyond_the_passing_rows_returns_all_of_them() {
    let f = fixture();
    // Seven rows pass, one of them deleted: every walk and the scan return the other six.
    let chosen = [3u32, 400, 401, 1777, 2500, 3100, 3999];
    let deleted_one = 1777;
    let pass = |row: u32| chosen.contains(&row);
    let is_deleted = |row: u32| row == deleted_one || f.deleted[row as usize];
    let mut want: Vec<u32> = chosen.iter().copied().filter(|&r| !is_deleted(r)).collect();
    want.sort_unstable();
    assert!(want.len() >= 5, "fixture deletes too many of the chosen rows");
    let q = &f.queries[..DIM];
    for walk in [FilteredWalk::Plain, FilteredWalk::TwoHop] {
        let got = f.graph.search_filtered(&f.vectors, DIM, Space::L2, q, 20, 8, &is_deleted, &pass, walk);
        let mut rows: Vec<u32> = got.iter().map(|c| c.row).collect();
        assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
        rows.sort_unstable();
        assert_eq!(rows, want, "{walk:?}");
    }
    let scanned = brute_force_rows(&f.vectors, DIM, Space::L2, q, 20, &mut chosen.iter().copied(), &is_deleted);
    let mut rows: Vec<u32> = scanned.iter().map(|c| c.row).collect();
    rows.sort_unstable();
    assert_eq!(rows, want);
}

#[test]
fn a_bounded_walk_is_the_walk_within_its_budget_and_gives_up_past_it() {
    let f = fixture();
    let (passes, queries) = filter(f, Kind::Uncorrelated, 0.3);
    let is_deleted = |row: u32| f.deleted[row as usize];
    let pass = |row: u32| passes[row as usize];
    for walk in [FilteredWalk::Plain, FilteredWalk::TwoHop] {
        for q in queries.chunks_exact(DIM).take(20) {
            DISTANCES.with(|d| d.set(0));
            let full = f.graph.search_filtered(&f.vectors, DIM, Space::L2, q, K, EF, &is_deleted, &pass, walk);
            let scored = DISTANCES.with(|d| d.get()) as usize;
            let within = |max: usize| {
                f.graph.search_filtered_within(&f.vectors, DIM, Space::L2, q, K, EF, &is_deleted, &pass, walk, max)
            };
            // Every distance but the entry point's and the upper layers' is a layer-0 score,
            // so a budget of all of them is never exceeded...
            assert_eq!(within(scored).as_ref(), Some(&full), "{walk:?}");
            assert_eq!(within(usize::MAX), Some(full), "{walk:?}");
            // ...and a walk that must score more than a handful of rows gives up.
            assert_eq!(within(4), None, "{walk:?}");
        }
    }
}

#[test]
fn degenerate_filtered_searches_do_not_panic() {
    let walks = [FilteredWalk::Plain, FilteredWalk::TwoHop];
    let none = |_: u32| false;
    let all = |_: u32| true;
    let empty = Graph::build(&[], 4, Space::L2, PARAMS);
    for walk in walks {
        assert!(empty.search_filtered(&[], 4, Space::L2, &[0.0; 4], 5, 16, &none, &all, walk).is_empty());
    }
    assert!(brute_force_rows(&[], 4, Space::L2, &[0.0; 4], 5, &mut std::iter::empty(), &none).is_empty());

    let f = fixture();
    let q = &f.queries[..DIM];
    for walk in walks {
        // Nothing passes: a full walk that returns nothing.
        assert!(f.graph.search_filtered(&f.vectors, DIM, Space::L2, q, K, EF, &none, &none, walk).is_empty());
        // Everything passes and nothing is deleted: the unfiltered search's recall.
        let got = f.graph.search_filtered(&f.vectors, DIM, Space::L2, q, K, EF, &none, &all, walk);
        assert_eq!(got.len(), K);
        assert_eq!(got[0], brute_force(&f.vectors, DIM, Space::L2, q, 1, &none)[0]);
        // k = 0 asks for nothing.
        assert!(f.graph.search_filtered(&f.vectors, DIM, Space::L2, q, 0, EF, &none, &all, walk).is_empty());
    }
    let scan = brute_force_rows(&f.vectors, DIM, Space::L2, q, K, &mut (0..ROWS as u32), &all);
    assert!(scan.is_empty(), "every row deleted");
    // A query of the wrong length is a caller bug: it debug-asserts (as `Graph::search`
    // does) and otherwise returns nothing.
    if !cfg!(debug_assertions) {
        let short = &q[..DIM - 1];
        for walk in walks {
            assert!(f.graph.search_filtered(&f.vectors, DIM, Space::L2, short, K, EF, &none, &all, walk).is_empty());
        }
        assert!(brute_force_rows(&f.vectors, DIM, Space::L2, short, K, &mut (0..10), &none).is_empty());
    }
}

/// Rows of the harness.
const SCALE_ROWS: usize = 200_000;
const SCALE_DIM: usize = 128;
const SCALE_QUERIES: usize = 200;

/// The rows set in a bitset, ascending.
fn ones(bits: &[u64]) -> impl Iterator<Item = u32> + '_ {
    bits.iter().enumerate().flat_map(|(i, &word)| {
        let mut w = word;
        std::iter::from_fn(move || {
            (w != 0).then(|| {
                let bit = w.trailing_zeros();
                w &= w - 1;
                (i * 64) as u32 + bit
            })
        })
    })
}

/// Mean recall@K, µs per query and distances per query of `search` over `queries`
/// against `truth`: one pass that counts, then one that is timed.
#[allow(clippy::disallowed_methods)]
fn measure(queries: &[f32], truth: &[HashSet<u32>], search: &dyn Fn(&[f32]) -> Vec<Candidate>) -> (f64, f64, f64) {
    let (mut hits, mut distances) = (0, 0);
    for (q, want) in queries.chunks_exact(SCALE_DIM).zip(truth) {
        DISTANCES.with(|d| d.set(0));
        hits += search(q).iter().filter(|c| want.contains(&c.row)).count();
        distances += DISTANCES.with(|d| d.get());
    }
    let started = std::time::Instant::now();
    for q in queries.chunks_exact(SCALE_DIM) {
        std::hint::black_box(search(q));
    }
    let n = truth.len() as f64;
    let micros = started.elapsed().as_secs_f64() * 1e6 / n;
    (hits as f64 / (n * K as f64), micros, distances as f64 / n)
}

/// The numbers a query planner's thresholds come from: at 200k clustered 128-d rows
/// (1000 clusters, noise as wide as the centres' spread), for each selectivity of an
/// uncorrelated random filter (a bitset), recall@10, mean µs and distances per query of
/// the plain walk, the two-hop walk and the exact scan of the passing rows. Single
/// thread, release build (the distance counter adds one thread-local increment per
/// distance to every plan alike). Takes two to four minutes on 2 cores, half of it the
/// build.
#[test]
#[ignore]
#[allow(clippy::disallowed_methods)]
fn filtered_plans_at_scale() {
    let mut rng = StdRng::seed_from_u64(2024);
    let (mut vectors, _) = clustered(&mut rng, SCALE_ROWS / 200, SCALE_ROWS + SCALE_QUERIES, SCALE_DIM, 2.0);
    let queries = vectors.split_off(SCALE_ROWS * SCALE_DIM);
    let started = std::time::Instant::now();
    let graph = Graph::build(&vectors, SCALE_DIM, Space::L2, GraphParams::default());
    println!(
        "build of {SCALE_ROWS} x {SCALE_DIM} (m 16, ef_construction 200): {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let none = |_: u32| false;
    println!(
        "| selectivity | passing rows | ef | plain recall | plain µs | plain dist | two-hop recall | two-hop µs | two-hop dist | scan recall | scan µs | scan dist |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for selectivity in [0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0] {
        let mut bits = vec![0u64; SCALE_ROWS.div_ceil(64)];
        for row in 0..SCALE_ROWS {
            if rng.random::<f64>() < selectivity {
                bits[row / 64] |= 1 << (row % 64);
            }
        }
        let passes = |row: u32| bits[row as usize / 64] >> (row % 64) & 1 != 0;
        let passing = ones(&bits).count();
        let truth: Vec<HashSet<u32>> = queries
            .chunks_exact(SCALE_DIM)
            .map(|q| brute_force(&vectors, SCALE_DIM, Space::L2, q, K, &|r| !passes(r)).iter().map(|c| c.row).collect())
            .collect();
        let scan = measure(&queries, &truth, &|q| {
            brute_force_rows(&vectors, SCALE_DIM, Space::L2, q, K, &mut ones(&bits), &none)
        });
        for ef in [64, 128] {
            let walk = |walk| {
                measure(&queries, &truth, &|q| {
                    graph.search_filtered(&vectors, SCALE_DIM, Space::L2, q, K, ef, &none, &passes, walk)
                })
            };
            let plain = walk(FilteredWalk::Plain);
            let two_hop = walk(FilteredWalk::TwoHop);
            let mut line = format!("| {}% | {passing} | {ef} |", selectivity * 100.0);
            for (recall, micros, distances) in [plain, two_hop, scan] {
                line += &format!(" {recall:.3} | {micros:.0} | {distances:.0} |");
            }
            println!("{line}");
        }
    }
}

/// The numbers behind the storage planner's bounded plain walk: at 200k clustered 128-d
/// rows, filters matching a slab at the far end of a random direction (queries from the
/// other half of it) or random rows, recall@10, µs and distances per query of the exact
/// scan, the plain walk, the two-hop walk at ef 64…512, and the plain walk bounded at
/// `budget · ef / s` scored rows with the scan as its fallback (what the planner runs).
/// `cargo test -p strata-index --release -- --ignored --nocapture anti_correlated_filters_at_scale`
#[test]
#[ignore]
#[allow(clippy::disallowed_methods)]
fn anti_correlated_filters_at_scale() {
    let mut rng = StdRng::seed_from_u64(2024);
    let (mut vectors, _) = clustered(&mut rng, SCALE_ROWS / 200, SCALE_ROWS + 4 * SCALE_QUERIES, SCALE_DIM, 2.0);
    let candidates = vectors.split_off(SCALE_ROWS * SCALE_DIM);
    let graph = Graph::build(&vectors, SCALE_DIM, Space::L2, GraphParams::default());
    let direction: Vec<f32> = (0..SCALE_DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    let project = |v: &[f32]| v.iter().zip(&direction).map(|(a, b)| a * b).sum::<f32>();
    let projections: Vec<f32> = vectors.chunks_exact(SCALE_DIM).map(project).collect();
    let mut sorted = projections.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[SCALE_ROWS / 2];
    let queries: Vec<f32> = candidates
        .chunks_exact(SCALE_DIM)
        .filter(|q| project(q) < median)
        .take(SCALE_QUERIES)
        .flat_map(|q| q.iter().copied())
        .collect();
    let none = |_: u32| false;
    println!("| filter | s | plan | recall | µs | distances |");
    println!("|---|---|---|---|---|---|");
    for (anti, selectivity) in [(true, 0.05), (true, 0.1), (true, 0.2), (true, 0.5), (false, 0.1), (false, 0.5)] {
        let kind = if anti { "anti-correlated" } else { "uncorrelated" };
        let threshold = sorted[((1.0 - selectivity) * SCALE_ROWS as f64) as usize];
        let mut bits = vec![0u64; SCALE_ROWS.div_ceil(64)];
        for (row, &p) in projections.iter().enumerate() {
            if if anti { p >= threshold } else { rng.random::<f64>() < selectivity } {
                bits[row / 64] |= 1 << (row % 64);
            }
        }
        let passes = |row: u32| bits[row as usize / 64] >> (row % 64) & 1 != 0;
        let truth: Vec<HashSet<u32>> = queries
            .chunks_exact(SCALE_DIM)
            .map(|q| brute_force(&vectors, SCALE_DIM, Space::L2, q, K, &|r| !passes(r)).iter().map(|c| c.row).collect())
            .collect();
        let scan = |q: &[f32]| brute_force_rows(&vectors, SCALE_DIM, Space::L2, q, K, &mut ones(&bits), &none);
        let line = |plan: String, (recall, micros, distances): (f64, f64, f64)| {
            println!("| {kind} | {selectivity} | {plan} | {recall:.3} | {micros:.0} | {distances:.0} |")
        };
        line("scan".into(), measure(&queries, &truth, &scan));
        for ef in [64, 128, 256, 512] {
            for walk in [FilteredWalk::Plain, FilteredWalk::TwoHop] {
                let r = measure(&queries, &truth, &|q| {
                    graph.search_filtered(&vectors, SCALE_DIM, Space::L2, q, K, ef, &none, &passes, walk)
                });
                line(format!("{walk:?} ef {ef}"), r);
            }
        }
        for budget in [16.0, 24.0, 32.0] {
            let max_scored = (budget * 64.0 / selectivity) as usize;
            let r = measure(&queries, &truth, &|q| {
                let walk = FilteredWalk::Plain;
                graph
                    .search_filtered_within(&vectors, SCALE_DIM, Space::L2, q, K, 64, &none, &passes, walk, max_scored)
                    .unwrap_or_else(|| scan(q))
            });
            line(format!("plain bounded at {budget} · ef / s, then scan"), r);
        }
    }
}
