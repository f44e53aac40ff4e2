//! The ingest node: validates writes, routes each row to its shard by the stable hash of
//! its id, and hands the shard's part to that shard's writer. Also owns collection
//! create/drop, since those are writes to the catalog.
//!
//! Validation of a whole request happens before any shard sees any of it, so a bad row
//! never leaves the rest of its batch half-written.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::try_join_all;
use strata_shared::catalog::{self, NewCollection};
use strata_shared::coord::{self, Head};
use strata_shared::deps::Deps;
use strata_shared::error::{Error, Result};
use strata_shared::types::{CollectionDef, Row, RowId};
use strata_shared::wal::WalOp;
use tokio::sync::{Mutex, watch};

use crate::config::IngestConfig;
use crate::flush::first_duplicate;
use crate::writer::{ShardWriter, ShardWriterStats};

struct CollectionWriters {
    def: Arc<CollectionDef>,
    shards: Vec<ShardWriter>,
}

/// A running ingest role. Cheap to clone.
#[derive(Clone)]
pub struct IngestNode {
    inner: Arc<Inner>,
}

struct Inner {
    deps: Deps,
    config: Arc<IngestConfig>,
    shutdown: watch::Receiver<bool>,
    collections: Mutex<HashMap<String, Arc<CollectionWriters>>>,
}

/// Starts the ingest role: recovers every active collection's shard writers (so unflushed
/// WAL tails resume flushing) and returns a handle.
pub async fn start(config: IngestConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> Result<IngestNode> {
    let node = IngestNode {
        inner: Arc::new(Inner { deps, config: Arc::new(config), shutdown, collections: Mutex::new(HashMap::new()) }),
    };
    for def in catalog::list_active(node.inner.deps.store.as_ref()).await? {
        node.writers(&def.name).await?;
    }
    Ok(node)
}

impl IngestNode {
    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    pub async fn create_collection(&self, new: NewCollection) -> Result<CollectionDef> {
        let deps = &self.inner.deps;
        let def = catalog::create(deps.store.as_ref(), &new, deps.clock.now_ms()).await?;
        self.publish_catalog_head(&def.name).await?;
        self.writers(&def.name).await?;
        Ok(def)
    }

    pub async fn drop_collection(&self, name: &str) -> Result<CollectionDef> {
        let deps = &self.inner.deps;
        let def = catalog::drop_collection(deps.store.as_ref(), name, deps.clock.now_ms()).await?;
        self.publish_catalog_head(name).await?;
        // Dropping the writers closes their channels; their actors stop and release leases.
        self.inner.collections.lock().await.remove(name);
        Ok(def)
    }

    /// Tells readers that `name`'s catalog chain changed, before the change is acknowledged.
    async fn publish_catalog_head(&self, name: &str) -> Result<()> {
        let deps = &self.inner.deps;
        if let Some(entry) = catalog::newest_entry(deps.store.as_ref(), name).await? {
            deps.coord
                .publish_head(&coord::catalog_key(name), Head { wal_seq: entry.version, manifest_version: 0 })
                .await?;
        }
        Ok(())
    }

    /// The writers of an active collection, started on first use.
    async fn writers(&self, name: &str) -> Result<Arc<CollectionWriters>> {
        let mut map = self.inner.collections.lock().await;
        if let Some(w) = map.get(name) {
            if !w.shards.iter().any(ShardWriter::is_stopped) {
                return Ok(w.clone());
            }
            map.remove(name);
        }
        let deps = &self.inner.deps;
        let def = Arc::new(catalog::resolve(deps.store.as_ref(), name).await?);
        let mut shards = Vec::with_capacity(def.shards as usize);
        for shard in 0..def.shards {
            shards.push(
                ShardWriter::start(
                    deps.clone(),
                    def.clone(),
                    shard,
                    self.inner.config.clone(),
                    self.inner.shutdown.clone(),
                )
                .await?,
            );
        }
        let w = Arc::new(CollectionWriters { def, shards });
        map.insert(name.to_owned(), w.clone());
        Ok(w)
    }

    fn check_batch_size(&self, n: usize, what: &str) -> Result<()> {
        let max = self.inner.config.max_batch_rows;
        if n == 0 {
            return Err(Error::invalid(format!("{what} must not be empty")));
        }
        if n > max {
            return Err(Error::invalid(format!("{what} has {n} entries; the limit per request is {max}")));
        }
        Ok(())
    }

    /// Upserts rows; resolves once every row is durable in its shard's WAL.
    pub async fn upsert(&self, name: &str, rows: Vec<Row>) -> Result<usize> {
        self.check_batch_size(rows.len(), "rows")?;
        let w = self.writers(name).await?;
        for row in &rows {
            w.def.validate_row(row)?;
        }
        if let Some(dup) = first_duplicate(rows.iter().map(|r| &r.id)) {
            return Err(Error::invalid(format!("id {dup} appears more than once in the batch")));
        }
        let n = rows.len();
        self.route(&w, rows.into_iter().map(WalOp::Upsert)).await?;
        Ok(n)
    }

    /// Deletes rows by id (ids that do not exist are fine); resolves once durable.
    pub async fn delete(&self, name: &str, ids: Vec<RowId>) -> Result<usize> {
        self.check_batch_size(ids.len(), "ids")?;
        let w = self.writers(name).await?;
        for id in &ids {
            id.validate()?;
        }
        if let Some(dup) = first_duplicate(ids.iter()) {
            return Err(Error::invalid(format!("id {dup} appears more than once in the batch")));
        }
        let n = ids.len();
        self.route(&w, ids.into_iter().map(WalOp::Delete)).await?;
        Ok(n)
    }

    async fn route(&self, w: &CollectionWriters, ops: impl Iterator<Item = WalOp>) -> Result<()> {
        let mut per_shard: Vec<Vec<WalOp>> = vec![Vec::new(); w.shards.len()];
        for op in ops {
            per_shard[op.id().shard(w.def.shards) as usize].push(op);
        }
        let writes = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, ops)| !ops.is_empty())
            .map(|(shard, ops)| w.shards[shard].write(ops));
        try_join_all(writes).await?;
        Ok(())
    }

    /// Resolves once everything acknowledged before the call is in segments.
    pub async fn flush(&self, name: &str) -> Result<()> {
        let w = self.writers(name).await?;
        try_join_all(w.shards.iter().map(ShardWriter::flush)).await?;
        Ok(())
    }

    /// Per-shard writer counters of a collection.
    pub async fn shard_stats(&self, name: &str) -> Result<Vec<ShardWriterStats>> {
        let w = self.writers(name).await?;
        Ok(w.shards.iter().map(ShardWriter::snapshot).collect())
    }
}
