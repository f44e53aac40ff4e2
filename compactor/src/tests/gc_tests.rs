//! Garbage-collection tests. Ages come from the store's `last_modified`: with InMemory
//! that is real time, so "old" is reached by moving the test clock forward; with
//! LocalFileSystem, files are backdated to mix old and young objects in one pass.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use strata_storage::catalog;
use strata_storage::paths::{self, ShardPaths};
use strata_storage::segment as segstore;
use strata_storage::wal::{self, WalEntry, WalOp};
use strata_types::CollectionDef;
use strata_types::time::Clock;

use super::harness::{Harness, apply, del, put, row, test_config};

fn puts(ids: std::ops::Range<u64>) -> Vec<WalOp> {
    ids.map(|id| put(id, 0)).collect()
}

/// Uploads a segment no manifest names, like a flush that crashed before its commit.
async fn upload_orphan(h: &Harness, def: &CollectionDef, shard: &ShardPaths) -> String {
    let id = paths::segment_id(999, rand::random());
    let built = segstore::build(def, &[row(500, 0), row(501, 0)], 16).unwrap();
    segstore::upload(h.store(), &h.deps.cache, shard, &id, &built).await.unwrap();
    id
}

fn names(paths: &[String]) -> Vec<&str> {
    paths.iter().map(|p| p.rsplit('/').next().unwrap()).collect()
}

#[tokio::test]
async fn objects_no_retained_manifest_references_are_deleted_once_old() {
    let h = Harness::memory().await;
    let def = h.collection("gc", 1).await;
    let shard = ShardPaths::new(def.id.clone(), 0);
    let config = test_config();
    let grace = config.gc_grace_ms;
    let compactor = h.compactor(config).await;

    // v1: segment A; v2: segment B plus a tombstone of A; v3: A and B merged into O.
    let mut model = Default::default();
    for ops in [puts(0..6), vec![del(0), del(1), put(6, 0), put(7, 0), put(8, 0), put(9, 0)]] {
        apply(&mut model, &ops);
        h.flush(&def, 0, ops).await;
    }
    let report = compactor.compact_shard(&def, 0).await.unwrap().expect("a merge");
    let output = report.output.clone().unwrap();
    let orphan = upload_orphan(&h, &def, &shard).await;

    // Everything is young: nothing goes.
    assert_eq!(compactor.gc_shard(&def, 0).await.unwrap(), Default::default());

    h.clock.advance(2 * grace);
    let gc = compactor.gc_shard(&def, 0).await.unwrap();
    // A and B (3 files each: ids, rows, attribute index; no graph), the orphan (3), A's
    // tombstone, WAL 1-2, manifests 1-2.
    assert_eq!((gc.objects_deleted, gc.manifests_deleted, gc.wal_entries_deleted), (14, 2, 2));
    assert!(gc.bytes_deleted > 0);
    assert_eq!(names(&h.paths(shard.manifest_dir().as_ref()).await), ["00000000000000000003"]);
    let segments = h.paths(shard.segments_dir().as_ref()).await;
    assert!(segments.iter().all(|p| p.contains(&output)), "only the merged segment is left: {segments:?}");
    assert_eq!(segments.len(), 3);
    assert!(!segments.iter().any(|p| p.contains(&orphan)));
    assert!(h.paths(shard.tombstones_dir().as_ref()).await.is_empty());
    assert!(h.paths(shard.wal_dir().as_ref()).await.is_empty());
    assert_eq!(h.live(&def, 0).await, model);

    // An unflushed WAL entry stays however old it is.
    let entry = WalEntry { seq: 3, writer_epoch: 1, commit_id: 7, created_ms: 0, ops: vec![del(2)] };
    wal::put_entry(h.store(), &shard, &entry).await.unwrap();
    h.clock.advance(2 * grace);
    assert_eq!(compactor.gc_shard(&def, 0).await.unwrap(), Default::default());
    assert_eq!(names(&h.paths(shard.wal_dir().as_ref()).await), ["00000000000000000003"]);
    h.stop();
}

#[tokio::test]
async fn a_version_is_retained_while_its_successor_is_young() {
    let h = Harness::local().await;
    let def = h.collection("retain", 1).await;
    let shard = ShardPaths::new(def.id.clone(), 0);
    let config = test_config();
    let grace = config.gc_grace_ms;
    let compactor = h.compactor(config).await;
    let mut model = Default::default();
    for ops in [puts(0..6), puts(6..12)] {
        apply(&mut model, &ops);
        h.flush(&def, 0, ops).await;
    }
    let inputs: Vec<String> = h.latest(&def, 0).await.segments.into_iter().map(|s| s.id).collect();
    h.backdate_all(2 * grace);

    // v3 is young: readers may still hold v2, so everything v2 names stays.
    let report = compactor.compact_shard(&def, 0).await.unwrap().expect("a merge");
    let orphan = upload_orphan(&h, &def, &shard).await;
    let gc = compactor.gc_shard(&def, 0).await.unwrap();
    assert_eq!((gc.objects_deleted, gc.manifests_deleted, gc.wal_entries_deleted), (3, 1, 2));
    assert_eq!(names(&h.paths(shard.manifest_dir().as_ref()).await), ["00000000000000000002", "00000000000000000003"]);
    let segments = h.paths(shard.segments_dir().as_ref()).await;
    for id in inputs.iter().chain([&orphan, report.output.as_ref().unwrap()]) {
        assert!(segments.iter().any(|p| p.contains(id.as_str())), "{id} must stay: {segments:?}");
    }

    // Once v3 is old too, v2 and its segments go; the young-then orphan is old now as well.
    h.backdate_all(2 * grace);
    let gc = compactor.gc_shard(&def, 0).await.unwrap();
    // v2's two segments (3 files each), manifest 2 and the orphan (3 files).
    assert_eq!((gc.objects_deleted, gc.manifests_deleted), (10, 1));
    let segments = h.paths(shard.segments_dir().as_ref()).await;
    assert!(segments.iter().all(|p| p.contains(report.output.as_ref().unwrap())), "{segments:?}");
    assert_eq!(h.live(&def, 0).await, model);
    h.stop();
}

#[tokio::test]
async fn dropped_collections_are_deleted_after_the_grace() {
    let h = Harness::memory().await;
    let grace = test_config().gc_grace_ms;
    let keep = h.collection("keep", 1).await;
    let gone = h.collection("gone", 2).await;
    h.flush(&keep, 0, puts(0..3)).await;
    h.flush(&gone, 0, puts(0..3)).await;
    h.flush(&gone, 1, puts(3..6)).await;
    catalog::drop_collection(h.store(), "gone", h.clock.now_ms()).await.unwrap();
    // The name comes back as a new incarnation: the old one is now named only by an older
    // catalog entry, and must still be collected.
    let again = h.collection("gone", 1).await;
    h.flush(&again, 0, puts(10..12)).await;
    let compactor = h.compactor(test_config()).await;

    let pass = compactor.run_once().await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.gc.collections_deleted, 0);
    let gone_dir = paths::collection_dir(&gone.id);
    let stored = h.paths(gone_dir.as_ref()).await.len();
    assert!(stored > 5);

    h.clock.advance(2 * grace);
    let pass = compactor.run_once().await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.gc.collections_deleted, 1);
    assert!(pass.gc.objects_deleted >= stored as u64);
    assert!(h.paths(gone_dir.as_ref()).await.is_empty());
    assert_eq!(h.live(&keep, 0).await.len(), 3);
    assert_eq!(h.live(&again, 0).await.len(), 2);
    assert!(h.store().head(&paths::definition(&keep.id)).await.is_ok());

    let pass = compactor.run_once().await.unwrap();
    assert_eq!(pass.gc.collections_deleted, 0, "an emptied incarnation is not collected twice");
    h.stop();
}

#[tokio::test]
async fn orphaned_definitions_are_deleted_after_the_grace() {
    let h = Harness::memory().await;
    let grace = test_config().gc_grace_ms;
    let active = h.collection("active", 1).await;
    // A create that crashed between writing its definition and its catalog entry.
    let orphan = Path::from("collections/crashed-1/definition");
    h.store().put(&orphan, PutPayload::from(Bytes::from_static(b"{}"))).await.unwrap();
    let compactor = h.compactor(test_config()).await;

    let pass = compactor.run_once().await.unwrap();
    assert_eq!(pass.gc.collections_deleted, 0);
    assert!(h.store().head(&orphan).await.is_ok(), "a young definition may be a create in progress");

    h.clock.advance(2 * grace);
    let pass = compactor.run_once().await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.gc.collections_deleted, 1);
    assert!(h.store().head(&orphan).await.is_err());
    assert!(h.store().head(&paths::definition(&active.id)).await.is_ok());
    h.stop();
}
