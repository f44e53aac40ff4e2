//! A loaded segment's filtered search follows its plan: the bounded walk is the plain walk
//! while within its budget and the exact scan of the matching rows past it.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::json;
use strata_index::FilteredWalk;
use strata_types::filter::{AttrType, Filter};
use strata_types::{CollectionDef, HnswParams, Metric, Row, RowId};

use super::store::{FilterPlan, LoadedSegment, build, upload};
use crate::cache::{CacheConfig, SegmentCache};
use crate::manifest::SegmentMeta;
use crate::paths::{ShardPaths, segment_id};

const DIM: usize = 8;
const ROWS: u64 = 3_000;

/// A deterministic pseudo-random coordinate in [-1, 1) (no rng needed for a fixture).
fn coordinate(row: u64, i: usize) -> f32 {
    let x = (row * 31 + i as u64 * 17 + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    (x % 2_000) as f32 / 1_000.0 - 1.0
}

async fn segment() -> Arc<LoadedSegment> {
    let def = CollectionDef {
        id: "c-1".into(),
        name: "c".into(),
        dimension: DIM as u32,
        metric: Metric::L2,
        shards: 1,
        replication: 1,
        hnsw: HnswParams::default(),
        created_at_ms: 0,
        attributes: [("side".to_owned(), AttrType::Int)].into(),
    };
    // `side` is 1 on a slab at the far end of the first coordinate: a filter on it is
    // anti-correlated with queries from the other end.
    let rows: Vec<Row> = (0..ROWS)
        .map(|row| {
            let vector: Vec<f32> = (0..DIM).map(|i| coordinate(row, i)).collect();
            let side = i64::from(vector[0] > 0.6);
            Row { id: RowId::Int(row), vector, attributes: json!({ "side": side }).as_object().cloned() }
        })
        .collect();
    let built = build(&def, &rows, 100).unwrap();
    let store = InMemory::new();
    let cache = SegmentCache::open(&CacheConfig { memory_bytes: 64 << 20, disk_dir: None, ..Default::default() })
        .await
        .unwrap();
    let shard = ShardPaths::new(def.id.clone(), 0);
    let id = segment_id(1, 1);
    upload(&store, &cache, &shard, &id, &built).await.unwrap();
    let meta = SegmentMeta {
        id,
        rows: ROWS as u32,
        bytes: built.bytes(),
        min_seq: 1,
        max_seq: 1,
        has_graph: built.graph.is_some(),
        has_attr_index: true,
        tombstone: None,
        level: 0,
    };
    let store: &dyn ObjectStore = &store;
    LoadedSegment::load(store, &cache, &shard, &def, &meta).await.unwrap()
}

#[tokio::test]
async fn a_bounded_walk_walks_within_its_budget_and_scans_past_it() {
    let segment = segment().await;
    assert!(segment.graph.is_some());
    let filter = Filter::parse(&json!({"side": 1})).unwrap();
    let none = |_: u32| false;
    let mut differs = 0;
    for q in 0..20 {
        let mut query: Vec<f32> = (0..DIM).map(|i| coordinate(ROWS + q, i)).collect();
        query[0] = -0.9;
        let run = |plan| segment.search_filtered(&query, 10, 16, &none, &filter, plan);
        let exact = run(FilterPlan::Exact);
        let walk = run(FilterPlan::Walk(FilteredWalk::Plain));
        assert_eq!(exact.len(), 10);
        // A budget no walk can keep: the exact scan's answer.
        assert_eq!(run(FilterPlan::BoundedWalk { max_scored: 1 }), exact, "query {q}");
        // A budget no walk exceeds: the plain walk's.
        assert_eq!(run(FilterPlan::BoundedWalk { max_scored: u32::MAX }), walk, "query {q}");
        differs += usize::from(walk != exact);
    }
    // The two answers above are told apart only if the narrow walk misses sometimes.
    assert!(differs > 0, "the plain walk at ef 16 matched the exact scan on every query");
}
