//! Keeps this node's shard writers in line with ownership.
//!
//! Every tick (and whenever the cluster view changes) the node takes the active
//! collections (listed from object storage only when the catalog changed, or every
//! `catalog_poll_ms`, or every tick while etcd is unreachable: `ActiveCollections`) and, for each shard, asks rendezvous hashing over the live, non-draining ingest nodes who
//! should write it. Shards it should write get a writer (taking the writer lease and
//! recovering the unflushed WAL tail, so a dead node's backlog is flushed by its
//! successor); writers of shards it should no longer write, of dropped collections, or
//! that stopped (fenced, lease lost) are dropped, which releases their lease. Taking over a
//! shard whose old writer still holds the lease simply fails until that lease is released
//! or expires; clients see a retryable error meanwhile and nothing is written twice.
//!
//! Writers are started up to [`STARTS_AT_ONCE`] at a time: a node taking over a dead
//! node's shards replays their WAL tails in parallel, so the shards accept writes again
//! after one replay rather than after the sum of them (decision 0014).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_coord::shard_key;
use strata_deps::{ActiveCollections, Deps};
use strata_types::Result;
use strata_types::time::ClockExt;
use tokio::sync::{Mutex, watch};

use crate::routing::WriteRouter;
use crate::writers::WriterRegistry;

/// How often ownership is re-checked without a view change (also the retry interval of a
/// takeover whose lease is still held).
const TICK: Duration = Duration::from_millis(500);

/// How many writers one reconcile starts at once. A start is I/O-bound (an etcd round trip,
/// the newest manifest, the WAL tail); the bound keeps a node that takes over hundreds of
/// shards from holding all their tails in memory and all their reads in flight at once.
const STARTS_AT_ONCE: usize = 8;

/// Reconciles writers with ownership.
pub(crate) struct Ownership {
    pub deps: Deps,
    pub router: Arc<WriteRouter>,
    pub writers: Arc<WriterRegistry>,
    pub catalog: Mutex<ActiveCollections>,
}

impl Ownership {
    /// Reconciles on every tick and view change until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut view = self.deps.coord.view();
        loop {
            tokio::select! {
                () = self.deps.clock.sleep(TICK) => {}
                changed = view.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "could not reconcile shard writers; retrying");
            }
        }
    }

    /// Starts writers for owned shards and drops the others (see the module docs).
    pub async fn reconcile(&self) -> Result<()> {
        let defs = self.catalog.lock().await.get(&self.deps).await?;
        let mut owned = HashSet::new();
        let mut to_start = Vec::new();
        for def in defs {
            for shard in 0..def.shards {
                if self.router.remote_owner(&shard_key(&def.id, shard)).is_some() {
                    continue;
                }
                owned.insert((def.id.clone(), shard));
                to_start.push((def.clone(), shard));
            }
        }
        futures::stream::iter(to_start)
            .for_each_concurrent(STARTS_AT_ONCE, |(def, shard)| async move {
                if let Err(e) = self.writers.start(&def, shard).await {
                    tracing::debug!(collection = %def.name, shard, error = %e, "cannot take the shard's writer yet");
                }
            })
            .await;
        self.writers.keep_only(&owned).await;
        Ok(())
    }
}
