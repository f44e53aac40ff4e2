//! Keeps this node's shard writers in line with ownership.
//!
//! Every tick (and whenever the cluster view changes) the node lists the active
//! collections and, for each shard, asks rendezvous hashing over the live ingest nodes who
//! should write it. Shards it should write get a writer (taking the writer lease and
//! recovering the unflushed WAL tail, so a dead node's backlog is flushed by its
//! successor); writers of shards it should no longer write, of dropped collections, or
//! that stopped (fenced, lease lost) are dropped, which releases their lease. Taking over a
//! shard whose old writer still holds the lease simply fails until that lease is released
//! or expires; clients see a retryable error meanwhile and nothing is written twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use strata_coord::shard_key;
use strata_storage::catalog;
use strata_types::Result;
use tokio::sync::watch;

use crate::node::IngestNode;

/// How often ownership is re-checked without a view change (also the retry interval of a
/// takeover whose lease is still held).
const TICK: Duration = Duration::from_millis(500);

pub(crate) async fn run(node: IngestNode, mut shutdown: watch::Receiver<bool>) {
    let mut view = node.inner.deps.coord.view();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            changed = view.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = node.reconcile_writers().await {
            tracing::warn!(error = %e, "could not reconcile shard writers; retrying");
        }
    }
}

impl IngestNode {
    /// Starts writers for owned shards and drops the others (see the module docs).
    pub(crate) async fn reconcile_writers(&self) -> Result<()> {
        let defs = catalog::list_active(self.inner.deps.store.as_ref()).await?;
        let mut owned = HashSet::new();
        for def in defs {
            let def = Arc::new(def);
            for shard in 0..def.shards {
                if self.remote_owner(&shard_key(&def.id, shard)).is_some() {
                    continue;
                }
                owned.insert((def.id.clone(), shard));
                if let Err(e) = self.local_writer(&def, shard).await {
                    tracing::debug!(collection = %def.name, shard, error = %e, "cannot take the shard's writer yet");
                }
            }
        }
        let mut writers = self.inner.writers.lock().await;
        let handoffs = &self.inner.metrics.handoffs;
        writers.retain(|slot, w| {
            let keep = owned.contains(slot) && !w.is_stopped();
            if !keep {
                tracing::info!(collection_id = %slot.0, shard = slot.1, "handing over the shard's writer");
                handoffs.inc();
            }
            keep
        });
        Ok(())
    }
}
