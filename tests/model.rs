//! Randomized model test: random upserts, deletes, flushes and compactions against a
//! standalone server; after every step the server's answers must equal a brute-force
//! reference over a plain map.
//!
//! Segments are searched exactly here (`graph_min_rows` is huge), so search answers must
//! match the reference exactly; graph recall is tested in the index module. Every step
//! that can change physical layout (flush, compaction, garbage collection) is interleaved
//! with writes, so replacements and deletes cross segment boundaries and compaction
//! rebases.

// Tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use strata_api::SearchRequest;
use strata_types::{Row, RowId};

const DIM: usize = 4;

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

async fn run(seed: u64, steps: usize) {
    let t = common::start(|c| {
        c.ingest.graph_min_rows = usize::MAX;
        c.ingest.flush_rows = usize::MAX;
        c.ingest.flush_age_ms = u64::MAX;
        c.compactor.graph_min_rows = usize::MAX;
        c.compactor.interval_ms = 3_600_000;
        c.compactor.tier_base_rows = 4;
        c.compactor.tier_fanout = 2;
        c.compactor.tombstone_ratio = 0.3;
    })
    .await;
    let (ingest, query, compactor) = (&t.server.ingest, &t.server.query, &t.server.compactor);
    t.create("m", DIM, "l2").await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut reference: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let (mut flushes, mut compactions) = (0, 0);
    for step in 0..steps {
        match rng.random_range(0..10u32) {
            0..=4 => {
                let n = rng.random_range(1..8usize);
                let mut ids: Vec<u64> = (0..n).map(|_| rng.random_range(0..80u64)).collect();
                ids.sort_unstable();
                ids.dedup();
                let rows: Vec<Row> = ids
                    .iter()
                    .map(|&id| Row {
                        id: RowId::Int(id),
                        vector: (0..DIM).map(|_| rng.random::<f32>() * 10.0).collect(),
                        attributes: Some(json!({"step": step}).as_object().unwrap().clone()),
                    })
                    .collect();
                for r in &rows {
                    let RowId::Int(id) = r.id else { unreachable!() };
                    reference.insert(id, r.vector.clone());
                }
                ingest.upsert("m", rows).await.unwrap();
            }
            5..=6 => {
                let mut ids: Vec<u64> = (0..rng.random_range(1..5usize)).map(|_| rng.random_range(0..80u64)).collect();
                ids.sort_unstable();
                ids.dedup();
                for id in &ids {
                    reference.remove(id);
                }
                ingest.delete("m", ids.into_iter().map(RowId::Int).collect()).await.unwrap();
            }
            7 => {
                ingest.flush("m").await.unwrap();
                flushes += 1;
            }
            8 => {
                let report = compactor.run_once().await.unwrap();
                assert!(report.errors.is_empty(), "seed {seed} step {step}: {:?}", report.errors);
                compactions += report.compactions.len();
            }
            _ => {}
        }

        // Search must equal brute force over the reference.
        let q: Vec<f32> = (0..DIM).map(|_| rng.random::<f32>() * 10.0).collect();
        let mut expected: Vec<(u64, f32)> = reference.iter().map(|(id, v)| (*id, l2(&q, v))).collect();
        expected.sort_by(|a, b| a.1.total_cmp(&b.1));
        expected.truncate(7);
        let req: SearchRequest = serde_json::from_value(json!({"vector": q, "top_k": 7})).unwrap();
        let got = query.search("m", req).await.unwrap();
        let got_ids: Vec<RowId> = got.results.iter().map(|r| r.id.clone()).collect();
        let want_ids: Vec<RowId> = expected.iter().map(|(id, _)| RowId::Int(*id)).collect();
        assert_eq!(got_ids, want_ids, "seed {seed} step {step}: search differs from the reference");
        for (r, (_, d)) in got.results.iter().zip(&expected) {
            assert!((r.score.unwrap() - d).abs() < 1e-3, "seed {seed} step {step}: score {:?} vs {d}", r.score);
        }

        // Gets must return exactly the live rows with their newest vectors.
        let probe: Vec<RowId> = (0..5).map(|_| RowId::Int(rng.random_range(0..80u64))).collect();
        let mut unique = probe.clone();
        unique.dedup();
        let rows = query.get("m", get_request(&unique, true, false)).await.unwrap();
        let want: Vec<(RowId, Vec<f32>)> = unique
            .iter()
            .filter_map(|id| {
                let RowId::Int(n) = id else { unreachable!() };
                reference.get(n).map(|v| (id.clone(), v.clone()))
            })
            .collect();
        let got: Vec<(RowId, Vec<f32>)> = rows.into_iter().map(|r| (r.id, r.vector.unwrap())).collect();
        assert_eq!(got, want, "seed {seed} step {step}: get differs from the reference");
    }
    assert_eq!(t.rows("m").await, reference.len() as u64, "seed {seed}: row count");
    assert!(
        flushes > 0 && compactions > 0,
        "seed {seed}: the run must exercise flush ({flushes}) and compaction ({compactions})"
    );
    t.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_match_a_brute_force_reference() {
    for seed in 0..6 {
        run(seed, 250).await;
    }
}

/// Searches and gets running while writes, flushes and compactions swap segments under
/// them never fail, never panic, and only return ids that were written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_stay_correct_while_flushes_and_compactions_swap_segments() {
    let t = common::start(|c| {
        c.ingest.graph_min_rows = 50;
        c.ingest.flush_rows = usize::MAX;
        c.ingest.flush_age_ms = u64::MAX;
        c.compactor.graph_min_rows = 50;
        c.compactor.interval_ms = 3_600_000;
        c.compactor.tier_base_rows = 10;
        c.compactor.tier_fanout = 2;
    })
    .await;
    t.create("m", DIM, "l2").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let query = t.server.query.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(100 + r);
                let mut searches = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let q: Vec<f32> = (0..DIM).map(|_| rng.random::<f32>() * 10.0).collect();
                    let req: SearchRequest =
                        serde_json::from_value(json!({"vector": q, "top_k": 10, "include_vector": true})).unwrap();
                    let res = query.search("m", req).await.expect("search during segment swaps");
                    for row in &res.results {
                        let RowId::Int(id) = row.id else { panic!("unexpected id {:?}", row.id) };
                        assert!(id < 400, "id {id} was never written");
                        assert_eq!(row.vector.as_ref().unwrap().len(), DIM);
                    }
                    let ids: Vec<RowId> = (0..5).map(|_| RowId::Int(rng.random_range(0..400u64))).collect();
                    query.get("m", get_request(&ids, true, true)).await.expect("get during segment swaps");
                    searches += 1;
                    tokio::task::yield_now().await;
                }
                searches
            })
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..12u64 {
        // Unique ids per batch (duplicates in one request are refused).
        let mut unique: BTreeMap<u64, Row> = BTreeMap::new();
        for _ in 0..60 {
            let id = rng.random_range(0..400u64);
            let vector = (0..DIM).map(|_| rng.random::<f32>() * 10.0).collect();
            unique.insert(id, Row { id: RowId::Int(id), vector, attributes: None });
        }
        t.server.ingest.upsert("m", unique.into_values().collect()).await.unwrap();
        let victims: std::collections::BTreeSet<u64> = (0..10).map(|_| rng.random_range(0..400u64)).collect();
        let victims: Vec<RowId> = victims.into_iter().map(RowId::Int).collect();
        t.server.ingest.delete("m", victims).await.unwrap();
        t.server.ingest.flush("m").await.unwrap();
        if round.is_multiple_of(3) {
            let report = t.server.compactor.run_once().await.unwrap();
            assert!(report.errors.is_empty(), "{:?}", report.errors);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    t.server.stop().await;
}

fn get_request(ids: &[RowId], include_vector: bool, include_attributes: bool) -> strata_api::GetRequest {
    strata_api::GetRequest {
        ids: ids.to_vec(),
        include_vector,
        include_attributes,
        filter: None,
        consistency: Default::default(),
    }
}
