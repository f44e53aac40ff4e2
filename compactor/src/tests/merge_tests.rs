//! Compaction tests: live rows are preserved exactly (property test), deletes committed
//! while a merge runs are carried into its output (interleaved steps, and a real lost
//! manifest race), concurrent compactions abandon, fully deleted inputs vanish.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use proptest::prelude::*;
use strata_deps::Deps;
use strata_storage::paths::ShardPaths;
use strata_storage::segment::{LoadedSegment, prepare_query};
use strata_storage::wal::WalOp;
use strata_types::RowId;

use super::harness::{Harness, Live, apply, del, flush, put, row, test_config};
use super::hook_store::HookStore;
use crate::merge::{self, Outcome};
use crate::{CompactorConfig, plan};

fn puts(ids: std::ops::Range<u64>, version: u32) -> Vec<WalOp> {
    ids.map(|id| put(id, version)).collect()
}

/// Flushes each batch in turn, returning the model of what must be live.
async fn load(h: &Harness, def: &strata_types::CollectionDef, batches: Vec<Vec<WalOp>>) -> BTreeMap<RowId, Live> {
    let mut model = BTreeMap::new();
    for ops in batches {
        apply(&mut model, &ops);
        h.flush(def, 0, ops).await;
    }
    assert_eq!(h.live(def, 0).await, model, "the fixture's flush must keep the model");
    model
}

fn committed(outcome: Outcome) -> (strata_storage::manifest::Manifest, crate::CompactionReport) {
    match outcome {
        Outcome::Committed(m, r) => (m, r),
        Outcome::Abandoned(why) => panic!("compaction abandoned: {why}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_exactly_the_live_rows(
        batches in prop::collection::vec(ops_strategy(25), 1..7),
        fanout in 2usize..4,
        ratio in 0.05f64..0.6,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let h = Harness::memory().await;
            let def = h.collection("prop", 1).await;
            let model = load(&h, &def, batches).await;
            let before = h.latest(&def, 0).await;
            let config = CompactorConfig { tier_fanout: fanout, tombstone_ratio: ratio, ..test_config() };
            let compactor = h.compactor(config.clone()).await;
            let mut rounds = 0;
            while compactor.compact_shard(&def, 0).await.unwrap().is_some() {
                rounds += 1;
                assert!(rounds < 50, "compaction does not converge");
            }
            assert_eq!(h.live(&def, 0).await, model);
            let after = h.latest(&def, 0).await;
            assert_eq!(after.flushed_seq, before.flushed_seq);
            assert_eq!(plan::select(&after.segments, &config), None, "work left after converging");
            for seg in after.segments.iter().filter(|s| s.level > 0) {
                // No flush ran during these merges: outputs hold only live rows.
                assert_eq!(seg.tombstone, None, "output {} has deleted rows", seg.id);
            }
            let stored: u64 = after.segments.iter().map(|s| u64::from(s.live_rows())).sum();
            assert_eq!(stored, model.len() as u64);
            h.stop();
        });
    }
}

fn ops_strategy(max_len: usize) -> impl Strategy<Value = Vec<WalOp>> {
    prop::collection::vec((0u64..30, prop::bool::weighted(0.3), 0u32..1000), 1..max_len)
        .prop_map(|ops| ops.into_iter().map(|(id, delete, v)| if delete { del(id) } else { put(id, v) }).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// The invariant under concurrency: whatever a flush commits between a merge's read
    /// and its commit (deletes, replacements, new rows) is exactly what is live afterwards.
    #[test]
    fn writes_committed_during_a_merge_are_never_lost_or_undone(
        batches in prop::collection::vec(ops_strategy(25), 2..6),
        concurrent in prop::collection::vec(ops_strategy(15), 1..3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let h = Harness::memory().await;
            let def = h.collection("interleave", 1).await;
            let mut model = load(&h, &def, batches).await;
            let shard = ShardPaths::new(def.id.clone(), 0);
            let config = CompactorConfig { tombstone_ratio: 0.01, ..test_config() };
            let base = h.latest(&def, 0).await;
            let Some(plan) = merge::plan(&shard, &base, &config) else { return };
            let merge = merge::build(&h.deps, &def, plan, config.graph_min_rows).await.unwrap();
            for ops in concurrent {
                apply(&mut model, &ops);
                h.flush(&def, 0, ops).await;
            }
            let (manifest, _) = committed(merge::commit(&h.deps, &merge, 1, config.gc_grace_ms).await.unwrap());
            assert_eq!(manifest.flushed_seq, base.flushed_seq + manifest.version - base.version - 1);
            assert_eq!(h.live(&def, 0).await, model);
        });
    }
}

#[tokio::test]
async fn deletes_committed_during_a_merge_are_carried_into_the_output() {
    let h = Harness::memory().await;
    let def = h.collection("race", 1).await;
    let mut model = load(&h, &def, vec![puts(0..10, 0), puts(10..20, 0)]).await;
    let shard = ShardPaths::new(def.id.clone(), 0);
    let config = test_config();

    // The merge reads its inputs as of version 2...
    let base = h.latest(&def, 0).await;
    let plan = merge::plan(&shard, &base, &config).expect("two segments in one tier");
    assert_eq!(plan.inputs.len(), 2);
    let merge = merge::build(&h.deps, &def, plan, config.graph_min_rows).await.unwrap();

    // ...then a flush deletes and replaces rows of both inputs and commits version 3...
    let ops = vec![del(3), del(15), put(7, 1), put(25, 0)];
    apply(&mut model, &ops);
    h.flush(&def, 0, ops).await;

    // ...and the merge commits on top of it, carrying those deletes over.
    let (manifest, report) = committed(merge::commit(&h.deps, &merge, 42, config.gc_grace_ms).await.unwrap());
    assert_eq!((manifest.version, manifest.flushed_seq, manifest.committer_epoch), (4, 3, 42));
    assert_eq!(report.carried_tombstones, 3, "ids 3, 15 and the old row of 7");
    assert_eq!(report.output_rows, 20);
    let output = manifest.segment(report.output.as_deref().unwrap()).unwrap();
    assert_eq!(output.deleted(), 3);
    assert_eq!(output.tombstone.as_ref().unwrap().generation, 4);
    assert_eq!(manifest.segments.len(), 2, "the output and the flush's segment");

    let live = h.live(&def, 0).await;
    assert_eq!(live, model);
    assert!(!live.contains_key(&RowId::Int(3)) && !live.contains_key(&RowId::Int(15)));
    assert_eq!(live[&RowId::Int(7)].0, row(7, 1).vector, "the replacement wins");
}

#[tokio::test]
async fn a_lost_manifest_race_is_rebased_and_keeps_the_winners_deletes() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let hooked = Arc::new(HookStore::new(inner.clone()));
    let h = Harness::with_store(hooked.clone(), None).await;
    let def = h.collection("rebase", 1).await;
    let mut model = load(&h, &def, vec![puts(0..8, 0), puts(8..16, 0)]).await;

    // Right before the compaction creates version 3, a flush creates it first.
    let ops = vec![del(1), del(9), put(12, 5)];
    apply(&mut model, &ops);
    let flush_deps = Deps { store: inner, ..h.deps.clone() };
    let flush_def = def.clone();
    hooked.before_next_manifest_put(move || {
        Box::pin(async move {
            flush(&flush_deps, &flush_def, 0, ops).await;
        })
    });

    let compactor = h.compactor(test_config()).await;
    let report = compactor.compact_shard(&def, 0).await.unwrap().expect("a merge");
    assert!(!hooked.armed(), "the concurrent flush ran");
    assert_eq!(report.manifest_version, 4, "lost version 3 to the flush, rebased onto it");
    assert_eq!(report.carried_tombstones, 3);
    assert_eq!(h.live(&def, 0).await, model);
    let latest = h.latest(&def, 0).await;
    assert_eq!(latest.flushed_seq, 3, "the flush's watermark survives the rebase");
    assert!(latest.committer_epoch > 0, "the compaction lease's epoch is stamped");
}

#[tokio::test]
async fn a_merge_whose_inputs_were_compacted_meanwhile_is_abandoned() {
    let h = Harness::memory().await;
    let def = h.collection("twice", 1).await;
    let model = load(&h, &def, vec![puts(0..5, 0), puts(5..10, 0)]).await;
    let shard = ShardPaths::new(def.id.clone(), 0);
    let config = test_config();
    let base = h.latest(&def, 0).await;
    let first = merge::build(&h.deps, &def, merge::plan(&shard, &base, &config).unwrap(), 16).await.unwrap();
    let second = merge::build(&h.deps, &def, merge::plan(&shard, &base, &config).unwrap(), 16).await.unwrap();

    let (manifest, _) = committed(merge::commit(&h.deps, &first, 1, config.gc_grace_ms).await.unwrap());
    match merge::commit(&h.deps, &second, 2, config.gc_grace_ms).await.unwrap() {
        Outcome::Abandoned(why) => assert!(why.contains("left the shard"), "{why}"),
        Outcome::Committed(..) => panic!("both compactions of the same inputs committed"),
    }
    assert_eq!(h.latest(&def, 0).await, manifest, "the loser commits nothing");
    assert_eq!(h.live(&def, 0).await, model);
    // The loser's files stay behind for garbage collection.
    let loser = second.output.as_ref().unwrap();
    assert!(!h.paths(shard.segment_dir(&loser.id).as_ref()).await.is_empty());
}

#[tokio::test]
async fn fully_deleted_inputs_vanish_without_an_output() {
    let h = Harness::memory().await;
    let def = h.collection("empty", 1).await;
    load(&h, &def, vec![puts(0..5, 0), puts(5..10, 0), (0..10).map(del).collect()]).await;
    let compactor = h.compactor(test_config()).await;
    let report = compactor.compact_shard(&def, 0).await.unwrap().expect("a merge");
    assert_eq!((report.output.as_deref(), report.output_rows, report.input_rows), (None, 0, 10));
    let latest = h.latest(&def, 0).await;
    assert!(latest.segments.is_empty());
    assert_eq!(latest.flushed_seq, 3);
    assert!(h.live(&def, 0).await.is_empty());
    assert_eq!(compactor.compact_shard(&def, 0).await.unwrap(), None);
}

#[tokio::test]
async fn an_output_deleted_entirely_during_the_merge_is_not_committed() {
    let h = Harness::memory().await;
    let def = h.collection("gone", 1).await;
    load(&h, &def, vec![puts(0..5, 0), puts(5..10, 0)]).await;
    let shard = ShardPaths::new(def.id.clone(), 0);
    let config = test_config();
    let base = h.latest(&def, 0).await;
    let merge = merge::build(&h.deps, &def, merge::plan(&shard, &base, &config).unwrap(), 16).await.unwrap();
    h.flush(&def, 0, (0..10).map(del).collect()).await;
    let (manifest, report) = committed(merge::commit(&h.deps, &merge, 1, config.gc_grace_ms).await.unwrap());
    assert_eq!((report.output, report.carried_tombstones), (None, 10));
    assert!(manifest.segments.is_empty());
    assert!(h.live(&def, 0).await.is_empty());
}

#[tokio::test]
async fn a_segment_with_many_deletes_is_rewritten_alone() {
    let h = Harness::memory().await;
    let def = h.collection("rewrite", 1).await;
    let model = load(&h, &def, vec![puts(0..10, 0), (0..5).map(del).collect()]).await;
    let compactor = h.compactor(CompactorConfig { tier_fanout: 4, ..test_config() }).await;
    let report = compactor.compact_shard(&def, 0).await.unwrap().expect("a rewrite");
    assert_eq!(report.reason, "tombstones");
    assert_eq!((report.inputs.len(), report.input_rows, report.output_rows), (1, 10, 5));
    let latest = h.latest(&def, 0).await;
    let out = &latest.segments[0];
    assert_eq!((out.rows, out.tombstone.as_ref(), out.level, out.min_seq, out.max_seq), (5, None, 1, 1, 1));
    assert_eq!(h.live(&def, 0).await, model);
    assert_eq!(compactor.compact_shard(&def, 0).await.unwrap(), None);
}

#[tokio::test]
async fn a_merged_segment_is_well_formed_and_searchable() {
    let h = Harness::memory().await;
    let def = h.collection("search", 1).await;
    let model = load(&h, &def, vec![puts(0..10, 0), puts(10..20, 3)]).await;
    let compactor = h.compactor(test_config()).await;
    let report = compactor.compact_shard(&def, 0).await.unwrap().expect("a merge");
    let latest = h.latest(&def, 0).await;
    let out = latest.segment(report.output.as_deref().unwrap()).unwrap().clone();
    assert_eq!((out.rows, out.min_seq, out.max_seq, out.level), (20, 1, 2, 1));
    assert!(out.has_graph, "20 rows pass graph_min_rows = 16");
    assert!(out.id.starts_with("00000000000000000002-"), "{}", out.id);
    assert!(out.bytes > 0);

    let shard = ShardPaths::new(def.id.clone(), 0);
    let loaded = LoadedSegment::load(h.store(), &h.deps.cache, &shard, &def, &out).await.unwrap();
    let query = prepare_query(def.metric, &row(12, 3).vector);
    let hits = loaded.search(&query, 1, 64, &|_| false);
    assert_eq!(*loaded.ids.ids.id(hits[0].row as usize), RowId::Int(12));
    assert_eq!(h.live(&def, 0).await, model);
}
