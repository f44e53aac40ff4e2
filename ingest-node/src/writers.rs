//! The writer registry: the shard writers running on this node, by (collection id,
//! shard). A writer holds its shard's writer lease for as long as it runs; the registry
//! starts writers (taking the lease, recovering the unflushed WAL tail) and drops them
//! (which releases the lease) — it decides nothing about *which* shards this node should
//! write: that is ownership's (`ownership.rs`) and routing's (`routing.rs`).
//!
//! Starts of different shards run in parallel (a node taking over a dead node's shards
//! replays their WAL tails at once, decision 0014); starts of one shard are serialised by
//! that shard's start lock, so a node never runs two writers of one shard: they would hold
//! the same lease and epoch, and the first to be fenced would release it under the other.
//!
//! Once the node shuts down the registry starts no writer (a write routed here then gets a
//! retryable error instead of taking a lease back), and [`WriterRegistry::stop_all`] waits
//! for the starts in progress and for the running writers to step down.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use strata_deps::Deps;
use strata_types::{CollectionDef, Error, Result};
use tokio::sync::watch;

use crate::config::IngestConfig;
use crate::metrics::IngestMetrics;
use crate::writer::ShardWriter;

/// (collection id, shard).
pub(crate) type Slot = (String, u32);

/// Serialises the starts of one shard.
type StartLock = Arc<tokio::sync::Mutex<()>>;

/// The shard writers running on this node.
pub(crate) struct WriterRegistry {
    deps: Deps,
    config: Arc<IngestConfig>,
    metrics: Arc<IngestMetrics>,
    shutdown: watch::Receiver<bool>,
    /// Held only for map operations, never across an await.
    writers: Mutex<HashMap<Slot, Arc<ShardWriter>>>,
    starts: Mutex<HashMap<Slot, StartLock>>,
}

impl WriterRegistry {
    pub fn new(
        deps: Deps,
        config: Arc<IngestConfig>,
        metrics: Arc<IngestMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> WriterRegistry {
        WriterRegistry { deps, config, metrics, shutdown, writers: Mutex::default(), starts: Mutex::default() }
    }

    fn writers(&self) -> MutexGuard<'_, HashMap<Slot, Arc<ShardWriter>>> {
        self.writers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn starts(&self) -> MutexGuard<'_, HashMap<Slot, StartLock>> {
        self.starts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running writer of a shard, if this node has one.
    pub async fn running(&self, collection_id: &str, shard: u32) -> Option<Arc<ShardWriter>> {
        let writers = self.writers();
        writers.get(&(collection_id.to_owned(), shard)).filter(|w| !w.is_stopped()).cloned()
    }

    /// The shard's writer, started (lease taken, WAL tail recovered) if none runs.
    pub async fn start(&self, def: &Arc<CollectionDef>, shard: u32) -> Result<Arc<ShardWriter>> {
        if let Some(w) = self.running(&def.id, shard).await {
            return Ok(w);
        }
        let slot = (def.id.clone(), shard);
        let lock = self.starts().entry(slot.clone()).or_default().clone();
        let _starting = lock.lock().await;
        // Another start of this shard may have finished while we waited.
        if let Some(w) = self.running(&def.id, shard).await {
            return Ok(w);
        }
        // Checked after the start lock is in `starts` and held: `stop_all` (called once
        // shutdown is set) waits for that lock, so no writer it does not see can start.
        if *self.shutdown.borrow() {
            return Err(Error::retryable("this node is shutting down; retry (another node takes over its shards)"));
        }
        let writer = Arc::new(
            ShardWriter::start(
                self.deps.clone(),
                self.metrics.clone(),
                def.clone(),
                shard,
                self.config.clone(),
                self.shutdown.clone(),
            )
            .await?,
        );
        self.writers().insert(slot, writer.clone());
        Ok(writer)
    }

    /// Keeps the running writers of `owned` shards and drops every other one (each dropped
    /// writer's actor stops and releases its lease), counting them as handoffs.
    pub async fn keep_only(&self, owned: &HashSet<Slot>) {
        self.writers().retain(|slot, w| {
            let keep = owned.contains(slot) && !w.is_stopped();
            if !keep {
                tracing::info!(collection_id = %slot.0, shard = slot.1, "handing over the shard's writer");
                self.metrics.handoffs.inc();
            }
            keep
        });
        // Start locks of shards nobody is starting (a start holds a clone of its lock).
        self.starts().retain(|slot, lock| owned.contains(slot) || Arc::strong_count(lock) > 1);
    }

    /// After shutdown was signalled: waits for the starts in progress, then until every
    /// writer has answered its last group commit and released its lease, so the shard's
    /// next writer can start at once.
    pub async fn stop_all(&self) {
        let starts: Vec<StartLock> = self.starts().values().cloned().collect();
        for lock in starts {
            drop(lock.lock().await);
        }
        let writers: Vec<Arc<ShardWriter>> = self.writers().drain().map(|(_, w)| w).collect();
        futures::future::join_all(writers.iter().map(|w| w.stopped())).await;
    }

    /// Drops every writer of a collection incarnation (it was dropped).
    pub async fn drop_collection(&self, collection_id: &str) {
        self.writers().retain(|(id, _), _| id != collection_id);
        self.starts().retain(|(id, _), lock| id != collection_id || Arc::strong_count(lock) > 1);
    }

    /// Copies every writer's backlog into the metrics gauges.
    pub async fn export_metrics(&self) {
        let writers: Vec<Arc<ShardWriter>> = self.writers().values().cloned().collect();
        let shards = writers.iter().map(|w| {
            let s = w.snapshot();
            (w.collection().to_owned(), s.shard, s.backlog_rows, s.backlog_bytes)
        });
        self.metrics.export_backlog(shards);
    }

    /// How many writers run here (for tests).
    #[cfg(test)]
    pub async fn len(&self) -> usize {
        self.writers().len()
    }
}
