//! Batch semantics across shards: each shard's part of a write commits atomically and on
//! its own, so a write that fails on one shard after another shard's part committed says
//! which part committed (shards and ids), with the failing part's kind.

use std::sync::Arc;

use object_store::memory::InMemory;
use strata_coord::InProcess;
use strata_storage::paths::ShardPaths;
use strata_storage::wal::{self, WalEntry, WalOp};
use strata_types::time::SystemClock;
use strata_types::{Committed, ErrorKind, Row, RowId};
use tokio::sync::watch;

use crate::IngestConfig;
use crate::test_deps;

fn row(id: u64) -> Row {
    Row { id: RowId::Int(id), vector: vec![id as f32, 1.0], attributes: None }
}

/// The first `n` ids of `shard` of 2.
fn ids_of_shard(shard: u32, n: usize) -> Vec<u64> {
    (0u64..).filter(|&i| RowId::Int(i).shard(2) == shard).take(n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_on_one_shard_says_which_shards_and_ids_committed() {
    let store: Arc<InMemory> = Arc::new(InMemory::new());
    let deps = test_deps::deps(store.clone(), Arc::new(InProcess::new()), Arc::new(SystemClock), "ingest-a", 3).await;
    let (_shutdown, rx) = watch::channel(false);
    let node = crate::start(IngestConfig::default(), deps, rx).await.unwrap();
    let new = strata_storage::catalog::NewCollection { shards: 2, ..crate::routing_tests::new_collection() };
    let def = node.create_collection(new).await.unwrap();
    let (zero, one) = (ids_of_shard(0, 6), ids_of_shard(1, 6));
    // Sequence 1 of both shards.
    node.upsert("c", vec![row(zero[0]), row(one[0])]).await.unwrap();

    // Another writer took sequence 2 of shard 0: this node's next append there is fenced
    // (503), while shard 1's part of the same batch commits as sequence 2.
    let shard0 = ShardPaths::new(def.id.clone(), 0);
    let theirs = WalEntry { seq: 2, writer_epoch: 999, commit_id: 1, created_ms: 0, ops: Vec::new() };
    wal::put_entry(store.as_ref(), &shard0, &theirs).await.unwrap();
    let fenced_writer = node.writers.running(&def.id, 0).await.expect("shard 0's writer runs");
    let batch: Vec<Row> = zero[1..].iter().chain(&one[1..]).map(|&i| row(i)).collect();
    let err = node.upsert("c", batch).await.expect_err("shard 0 is fenced");

    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    let want = Committed { shards: vec![1], ids: one[1..].iter().map(|&i| RowId::Int(i)).collect() };
    assert_eq!(err.committed(), Some(&want), "{err}");
    assert!(err.to_string().contains("shard(s) 1 were committed"), "{err}");
    // What the error says is what the WAL holds.
    let shard1 = ShardPaths::new(def.id.clone(), 1);
    let entry = wal::read_entry(store.as_ref(), &shard1, 2).await.unwrap().expect("shard 1's part committed");
    let ids: Vec<RowId> = entry.ops.iter().map(|op| op.id().clone()).collect();
    assert_eq!(ids, want.ids);
    assert!(entry.ops.iter().all(|op| matches!(op, WalOp::Upsert(_))));
    let fenced = wal::read_entry(store.as_ref(), &shard0, 2).await.unwrap().unwrap();
    assert_eq!(fenced.writer_epoch, 999, "shard 0's part did not commit");

    // Retrying the whole batch is safe: shard 0's next writer (started on demand once the
    // fenced one has stepped down; until then a retry gets the same retryable error) takes
    // it, and shard 1's rows are written again unchanged.
    fenced_writer.stopped().await;
    let batch: Vec<Row> = zero[1..].iter().chain(&one[1..]).map(|&i| row(i)).collect();
    assert_eq!(node.upsert("c", batch).await.unwrap(), 10);
}
