//! The ingest role as the process sees it: [`start`] wires its parts together, and
//! [`IngestNode`] is the handle the REST routes, the gRPC server and metrics use.
//!
//! - request validation (`validate.rs`): a whole request is checked before any shard sees
//!   any of it;
//! - write routing and forwarding (`routing.rs`): each shard's part goes to the node that
//!   writes the shard, and forwarded parts arrive there;
//! - the writer registry (`writers.rs`): the shard writers running here, each an actor
//!   group-committing its shard's WAL (`writer.rs`) and flushing it (`flush.rs`);
//! - ownership (`ownership.rs`): which writers should run here.
//!
//! The node also owns collection create and drop, since those are writes to the catalog.

use std::sync::Arc;
use std::time::Duration;

use strata_api::{BulkRequest, BulkResponse, UpdateRequest};
use strata_coord::{Head, catalog_key};
use strata_deps::{ActiveCollections, Deps, Resolver};
use strata_rpc::{Mutation, Selector, ShardWrites};
use strata_storage::catalog::{self, NewCollection};
use strata_storage::wal::WalOp;
use strata_types::filter::Filter;
use strata_types::{CollectionDef, Result, Row, RowId};
use tokio::sync::watch;

use crate::config::IngestConfig;
use crate::metrics::IngestMetrics;
use crate::ownership::Ownership;
use crate::routing::WriteRouter;
use crate::validate;
use crate::writers::WriterRegistry;

/// A running ingest role. Cheap to clone.
#[derive(Clone)]
pub struct IngestNode {
    pub(crate) deps: Deps,
    config: Arc<IngestConfig>,
    resolver: Arc<Resolver>,
    pub(crate) router: Arc<WriteRouter>,
    pub(crate) writers: Arc<WriterRegistry>,
}

/// Starts the ingest role: starts the writers of every shard this node owns (so unflushed
/// WAL tails resume flushing) and keeps them in line with ownership until `shutdown`.
pub async fn start(config: IngestConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> Result<IngestNode> {
    let poll = Duration::from_millis(config.catalog_poll_ms);
    let node = IngestNode::assemble(config, deps.clone(), shutdown.clone(), true);
    let catalog = tokio::sync::Mutex::new(ActiveCollections::new(poll));
    let ownership = Ownership { deps, router: node.router.clone(), writers: node.writers.clone(), catalog };
    ownership.reconcile().await?;
    tokio::spawn(ownership.run(shutdown));
    Ok(node)
}

/// The ingest API of a node that does not run the ingest role (decision 0016): it
/// validates writes, collection changes and mutations exactly as an ingest node does and
/// forwards each shard's part to the node that writes the shard, over gRPC. It runs no
/// writers, takes no lease and has no background work.
pub fn forwarder(config: IngestConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> IngestNode {
    IngestNode::assemble(config, deps, shutdown, false)
}

impl IngestNode {
    /// The parts of the role but ownership; `writes_here`: this node runs the role.
    fn assemble(config: IngestConfig, deps: Deps, shutdown: watch::Receiver<bool>, writes_here: bool) -> IngestNode {
        let config = Arc::new(config);
        let resolver = Arc::new(Resolver::default());
        let metrics = Arc::new(IngestMetrics::register(&deps.metrics));
        let writers = Arc::new(WriterRegistry::new(deps.clone(), config.clone(), metrics, shutdown));
        let router =
            Arc::new(WriteRouter::new(deps.clone(), config.clone(), resolver.clone(), writers.clone(), writes_here));
        IngestNode { deps, config, resolver, router, writers }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The current definition of collection `name` (not found if it does not exist).
    pub async fn collection(&self, name: &str) -> Result<Arc<CollectionDef>> {
        self.resolver.resolve(&self.deps, name).await
    }

    pub async fn create_collection(&self, new: NewCollection) -> Result<CollectionDef> {
        let deps = &self.deps;
        let def = catalog::create(deps.store.as_ref(), &new, deps.clock.now_ms(), deps.rng.next_u32()).await?;
        self.publish_catalog_head(&def.name).await?;
        Ok(def)
    }

    pub async fn drop_collection(&self, name: &str) -> Result<CollectionDef> {
        let deps = &self.deps;
        let def = catalog::drop_collection(deps.store.as_ref(), name, deps.clock.now_ms()).await?;
        self.publish_catalog_head(name).await?;
        // Dropping the writers closes their channels; their actors stop and release leases.
        self.writers.drop_collection(&def.id).await;
        Ok(def)
    }

    /// Tells every node that `name`'s catalog chain changed, before the change is acknowledged.
    async fn publish_catalog_head(&self, name: &str) -> Result<()> {
        let deps = &self.deps;
        if let Some(entry) = catalog::newest_entry(deps.store.as_ref(), name).await? {
            deps.coord.publish_head(&catalog_key(name), Head { wal_seq: entry.version, manifest_version: 0 }).await?;
        }
        Ok(())
    }

    /// Upserts rows; resolves once every row is durable in its shard's WAL.
    pub async fn upsert(&self, name: &str, rows: Vec<Row>) -> Result<usize> {
        self.write(name, rows.into_iter().map(WalOp::Upsert).collect(), "rows").await
    }

    /// Deletes rows by id (ids that do not exist are fine); resolves once durable.
    pub async fn delete(&self, name: &str, ids: Vec<RowId>) -> Result<usize> {
        self.write(name, ids.into_iter().map(WalOp::Delete).collect(), "ids").await
    }

    /// Deletes every row matching `filter` at the time of the request; resolves with how
    /// many once durable.
    pub async fn delete_where(&self, name: &str, filter: &serde_json::Value) -> Result<u64> {
        let def = self.resolver.resolve(&self.deps, name).await?;
        let filter = self.resolver.filter(&self.deps, &def, Some(filter)).await?;
        // `{}` matches every row: deleting everything by filter is allowed, but say so.
        let filter = filter.unwrap_or_else(|| Arc::new(Filter::And(Vec::new())));
        self.router.mutate(&def, Mutation::Delete(Selector::Filter(filter))).await
    }

    /// Sets or removes attributes of the rows selected by ids or filter, keeping their
    /// vectors; resolves with how many rows changed once durable.
    pub async fn update(&self, name: &str, req: UpdateRequest) -> Result<u64> {
        let def = self.resolver.resolve(&self.deps, name).await?;
        validate::attribute_patch(&req.attributes)?;
        // The selector first: a bad filter must not type the patch's new attributes.
        let selector = match (req.ids, req.filter) {
            (Some(ids), None) => {
                validate::batch_size(self.config.max_batch_rows, ids.len(), "ids")?;
                ids.iter().try_for_each(RowId::validate)?;
                Selector::Ids(ids)
            }
            (None, Some(filter)) => {
                let filter = self.resolver.filter(&self.deps, &def, Some(&filter)).await?;
                Selector::Filter(filter.unwrap_or_else(|| Arc::new(Filter::And(Vec::new()))))
            }
            _ => return Err(strata_types::Error::invalid("give exactly one of ids and filter")),
        };
        // The patch's types are checked (and new keys typed) like any write's.
        let mut probe = Row { id: RowId::Int(0), vector: Vec::new(), attributes: Some(req.attributes) };
        self.resolver
            .attr_types(&self.deps, &def)
            .admit(&mut [&mut probe])
            .await
            .map_err(|e| strata_types::Error::invalid(e.to_string().replacen("row 0: ", "", 1)))?;
        let patch = probe.attributes.unwrap_or_default();
        self.router.mutate(&def, Mutation::Update { selector, patch }).await
    }

    async fn write(&self, name: &str, mut ops: Vec<WalOp>, what: &str) -> Result<usize> {
        validate::batch_size(self.config.max_batch_rows, ops.len(), what)?;
        let def = self.resolver.resolve(&self.deps, name).await?;
        validate::ops(&def, &ops)?;
        let mut rows: Vec<&mut Row> = ops
            .iter_mut()
            .filter_map(|op| match op {
                WalOp::Upsert(row) => Some(row),
                WalOp::Delete(_) => None,
            })
            .collect();
        self.resolver.attr_types(&self.deps, &def).admit(&mut rows).await?;
        let n = ops.len();
        self.router.write(&def, ops).await?;
        Ok(n)
    }

    /// Resolves once everything acknowledged before the call is in segments.
    pub async fn flush(&self, name: &str) -> Result<()> {
        let def = self.resolver.resolve(&self.deps, name).await?;
        self.router.flush(&def).await
    }

    /// Bulk-loads rows of one shard into a new segment (see `bulk.rs`).
    pub async fn bulk(&self, name: &str, req: BulkRequest) -> Result<BulkResponse> {
        // The collection first: an unknown one is a 404 whatever the body holds.
        let def = self.resolver.resolve(&self.deps, name).await?;
        validate::bulk_size(req.rows.len())?;
        let types = self.resolver.attr_types(&self.deps, &def);
        crate::bulk::import(&self.deps, &self.config, &self.router, &def, &types, req).await
    }

    /// The write API other ingest nodes forward to over gRPC (validating what they send).
    pub fn shard_writes(&self) -> Arc<dyn ShardWrites> {
        self.router.clone()
    }

    /// Waits, after the shutdown signal given to [`start`], until every shard writer here
    /// has stopped: group commits in hand answered, queued requests refused (503), running
    /// flushes abandoned (the WAL holds their rows) and writer leases released. Nothing is
    /// flushed, so this takes about one WAL put, whatever the backlog.
    pub async fn stopped(&self) {
        self.writers.stop_all().await;
    }

    /// Copies the backlog of every shard this node writes into the metrics gauges (called
    /// at scrape time).
    pub async fn export_metrics(&self) {
        self.writers.export_metrics().await;
    }
}
