//! Role-level tests: the background loop, leases, whole passes over a LocalFileSystem
//! store, and configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_coord::{LeaseKind, shard_key};
use strata_storage::paths::ShardPaths;
use strata_storage::wal::WalOp;
use strata_types::ErrorKind;
use strata_types::RowId;

use super::harness::{Harness, Live, apply, del, put, test_config};
use crate::CompactorConfig;

fn batch(ids: std::ops::Range<u64>, version: u32) -> Vec<WalOp> {
    ids.map(|id| put(id, version)).collect()
}

#[tokio::test]
async fn the_background_loop_compacts_under_its_lease_and_stops_on_shutdown() {
    let h = Harness::memory().await;
    let def = h.collection("bg", 1).await;
    h.flush(&def, 0, batch(0..5, 0)).await;
    h.flush(&def, 0, batch(5..10, 0)).await;
    let _compactor = h.compactor(CompactorConfig { interval_ms: 20, ..test_config() }).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let merged = loop {
        let m = h.latest(&def, 0).await;
        if m.segments.len() == 1 {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "the loop never compacted: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(merged.committer_epoch > 0, "the lease epoch is stamped into the manifest");
    assert_eq!(h.live(&def, 0).await.len(), 10);

    h.stop();
    // Let a pass that might be running finish, then give the loop several intervals.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.flush(&def, 0, batch(10..15, 0)).await;
    h.flush(&def, 0, batch(15..20, 0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.latest(&def, 0).await.segments.len(), 3, "a stopped loop must not compact");
}

#[tokio::test]
async fn shards_leased_by_another_compactor_are_left_alone() {
    let h = Harness::memory().await;
    let def = h.collection("leased", 2).await;
    for shard in 0..2 {
        h.flush(&def, shard, batch(0..5, 0)).await;
        h.flush(&def, shard, batch(5..10, 0)).await;
    }
    let other =
        h.deps.coord.try_acquire(LeaseKind::Compact, &shard_key(&def.id, 1), "other-node").await.unwrap().unwrap();
    let compactor = h.compactor(test_config()).await;

    let pass = compactor.run_once().await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!((pass.shards, pass.shards_skipped, pass.compactions.len()), (1, 1, 1));
    assert_eq!(pass.compactions[0].shard, 0);
    assert_eq!(h.latest(&def, 1).await.segments.len(), 2);
    let err = compactor.compact_shard(&def, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(compactor.gc_shard(&def, 1).await.unwrap_err().kind(), ErrorKind::Conflict);

    h.deps.coord.release(&other).await.unwrap();
    assert!(compactor.compact_shard(&def, 1).await.unwrap().is_some());
    // Our own leases were given back after each piece of work.
    let again = h.deps.coord.try_acquire(LeaseKind::Compact, &shard_key(&def.id, 0), "other-node").await.unwrap();
    assert!(again.is_some());
    h.stop();
}

#[tokio::test]
async fn passes_over_a_local_filesystem_compact_and_collect_to_a_steady_state() {
    let h = Harness::local().await;
    let def = h.collection("local", 1).await;
    let shard = ShardPaths::new(def.id.clone(), 0);
    let config = test_config();
    let grace = config.gc_grace_ms;
    let mut model: BTreeMap<RowId, Live> = BTreeMap::new();
    for i in 0..6u64 {
        let mut ops = batch(i * 4..i * 4 + 6, i as u32);
        ops.push(del(i * 3));
        apply(&mut model, &ops);
        h.flush(&def, 0, ops).await;
    }
    let compactor = h.compactor(config).await;
    let pass = compactor.run_once().await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert!(!pass.compactions.is_empty());
    assert_eq!(h.live(&def, 0).await, model);

    h.backdate_all(2 * grace);
    let pass = compactor.run_once().await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert!(pass.compactions.is_empty(), "converged in the first pass");
    assert!(pass.gc.objects_deleted > 0);
    let latest = h.latest(&def, 0).await;
    assert_eq!(h.paths(shard.manifest_dir().as_ref()).await.len(), 1, "only the newest manifest is left");
    let referenced = latest.segments.len();
    let segment_dirs: std::collections::BTreeSet<String> =
        h.paths(shard.segments_dir().as_ref()).await.iter().map(|p| p.rsplit('/').nth(1).unwrap().to_owned()).collect();
    assert_eq!(segment_dirs.len(), referenced);
    assert!(h.paths(shard.wal_dir().as_ref()).await.is_empty());
    assert_eq!(h.live(&def, 0).await, model);
    h.stop();
}

#[test]
fn config_defaults_parse_and_bad_values_are_refused() {
    let config: CompactorConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, CompactorConfig::default());
    assert_eq!((config.interval_ms, config.tier_fanout, config.gc_grace_ms), (5_000, 4, 600_000));
    config.validate().unwrap();
    let partial: CompactorConfig = serde_json::from_str(r#"{"tier_fanout": 8}"#).unwrap();
    assert_eq!(partial.tier_fanout, 8);
    assert!(serde_json::from_str::<CompactorConfig>(r#"{"tier_fanot": 8}"#).is_err());
    for bad in [
        CompactorConfig { tier_fanout: 1, ..Default::default() },
        CompactorConfig { interval_ms: 0, ..Default::default() },
        CompactorConfig { tier_base_rows: 0, ..Default::default() },
        CompactorConfig { max_merge_rows: u64::from(u32::MAX) + 1, ..Default::default() },
        CompactorConfig { tombstone_ratio: 0.0, ..Default::default() },
        CompactorConfig { tombstone_ratio: f64::NAN, ..Default::default() },
        CompactorConfig { gc_grace_ms: 0, ..Default::default() },
    ] {
        assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::Invalid, "{bad:?}");
    }
}

#[tokio::test]
async fn start_refuses_an_invalid_config() {
    let h = Harness::memory().await;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let bad = CompactorConfig { tier_fanout: 0, ..Default::default() };
    assert_eq!(crate::start(bad, h.deps.clone(), rx).await.err().unwrap().kind(), ErrorKind::Invalid);
}
