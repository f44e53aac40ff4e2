//! The query role as the process sees it: [`start`] wires the three parts of the role
//! together, and [`QueryNode`] is the handle the REST routes, the gRPC server, readiness
//! and metrics use.
//!
//! - routing (`router.rs`): REST reads fanned out to a replica of every shard, merged;
//! - shard hosting (`host.rs`): the shards this node holds and their reads;
//! - the serving loop (`serving.rs`): which shards this node should hold, with
//!   make-before-break handoffs.
//!
//! Each part owns its state; they share only the collection resolver (a cache) and talk
//! through each other's methods.

use std::sync::Arc;

use strata_api::{
    CollectionDescription, CollectionInfo, CountRequest, CountResponse, GetRequest, QueryRequest, QueryResponse,
    ResultRow, ScanRequest, SearchRequest, SearchResponse,
};
use strata_deps::{Deps, Resolver};
use strata_rpc::{ShardReads, ShardScan};
use strata_types::Result;
use tokio::sync::watch;

use crate::config::QueryConfig;
use crate::host::ShardHost;
use crate::metrics::QueryMetrics;
use crate::router::Router;
use crate::serving::Serving;
use crate::wire::WireReads;

/// A running query role. Cheap to clone.
#[derive(Clone)]
pub struct QueryNode {
    router: Arc<Router>,
    host: Arc<ShardHost>,
    serving: Arc<Serving>,
    wire: Arc<WireReads>,
    metrics: Arc<QueryMetrics>,
}

/// Starts the query role: plans which shards this node serves, then loads them and keeps
/// serving in line with the cluster in the background (see `serving.rs`).
pub async fn start(config: QueryConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> Result<QueryNode> {
    let config = Arc::new(config);
    let resolver = Arc::new(Resolver::default());
    let metrics = Arc::new(QueryMetrics::register(&deps.metrics));
    let host = Arc::new(ShardHost::new(
        deps.clone(),
        config.clone(),
        resolver.clone(),
        metrics.filter_plans.clone(),
        metrics.head_fallbacks.clone(),
    ));
    let router = Arc::new(Router::new(deps.clone(), config.clone(), resolver.clone(), host.clone()));
    let poll = std::time::Duration::from_millis(config.catalog_poll_ms);
    let serving = Arc::new(Serving::new(deps.clone(), host.clone(), metrics.clone(), poll));
    let wire = Arc::new(WireReads { deps, config, resolver, host: host.clone() });
    // Plan before returning so readiness is accurate at once; loading goes on behind.
    let first = serving.plan().await?;
    tokio::spawn(host.clone().refresh_in_use(shutdown.clone()));
    tokio::spawn(serving.clone().run(first, shutdown));
    Ok(QueryNode { router, host, serving, wire, metrics })
}

impl QueryNode {
    /// Nearest-neighbour search over every shard of collection `name`.
    pub async fn search(&self, name: &str, req: SearchRequest) -> Result<SearchResponse> {
        self.router.search(name, req).await
    }

    /// Rows by id, in request order; ids that do not exist (or do not match the
    /// request's filter) are left out.
    pub async fn get(&self, name: &str, req: GetRequest) -> Result<Vec<ResultRow>> {
        self.router.get(name, req).await
    }

    /// One page of a shard's live rows (matching the request's filter) in id order.
    pub async fn scan(&self, name: &str, req: ScanRequest) -> Result<ShardScan> {
        self.router.scan(name, req).await
    }

    /// One page of the rows matching a filter, across every shard.
    pub async fn query(&self, name: &str, req: QueryRequest) -> Result<QueryResponse> {
        self.router.query(name, req).await
    }

    /// How many rows match a filter.
    pub async fn count(&self, name: &str, req: CountRequest) -> Result<CountResponse> {
        self.router.count(name, req).await
    }

    pub async fn list(&self) -> Result<Vec<CollectionInfo>> {
        self.router.list().await
    }

    pub async fn describe(&self, name: &str) -> Result<CollectionDescription> {
        self.router.describe(name).await
    }

    /// Whether every shard assigned to this node is loaded and serving.
    pub fn is_ready(&self) -> bool {
        self.serving.is_ready()
    }

    /// (serving, assigned) shard counts: load progress.
    pub fn load_progress(&self) -> (usize, usize) {
        self.serving.load_progress()
    }

    /// The read API other nodes call over gRPC (validating what they send).
    pub fn shard_reads(&self) -> Arc<dyn ShardReads> {
        self.wire.clone()
    }

    /// Copies rows and segments of every shard held here, and the load progress, into the
    /// metrics gauges (called at scrape time).
    pub fn export_metrics(&self) {
        let (serving, assigned) = self.serving.load_progress();
        self.metrics.export_shards(self.host.held(), serving, assigned);
    }
}
