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
    /// The serving loop; `None` on a node that only forwards reads.
    serving: Option<Arc<Serving>>,
    wire: Arc<WireReads>,
    metrics: Arc<QueryMetrics>,
}

/// Starts the query role: plans which shards this node serves, then loads them and keeps
/// serving in line with the cluster in the background (see `serving.rs`).
pub async fn start(config: QueryConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> Result<QueryNode> {
    let poll = std::time::Duration::from_millis(config.catalog_poll_ms);
    let mut node = QueryNode::assemble(config, deps.clone(), true);
    let serving = Arc::new(Serving::new(deps, node.host.clone(), node.metrics.clone(), poll));
    // Plan before returning so readiness is accurate at once; loading goes on behind.
    let first = serving.plan().await?;
    tokio::spawn(node.host.clone().refresh_in_use(shutdown.clone()));
    tokio::spawn(serving.clone().run(first, shutdown));
    node.serving = Some(serving);
    Ok(node)
}

/// The read API of a node that does not run the query role (decision 0016): it validates
/// reads exactly as a query node does and sends each shard's part to a query node serving
/// the shard, over gRPC, merging the answers. It holds no shard, never loads one (no
/// replica answering is a retryable error, or a `partial` answer) and has no background work.
pub fn forwarder(config: QueryConfig, deps: Deps) -> QueryNode {
    QueryNode::assemble(config, deps, false)
}

impl QueryNode {
    /// The parts of the role but the serving loop; `reads_here`: this node runs the role.
    fn assemble(config: QueryConfig, deps: Deps, reads_here: bool) -> QueryNode {
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
        let router = Arc::new(Router::new(deps.clone(), config.clone(), resolver.clone(), host.clone(), reads_here));
        let wire = Arc::new(WireReads { deps, config, resolver, host: host.clone() });
        QueryNode { router, host, serving: None, wire, metrics }
    }

    /// The settings this node checks reads against (`max_top_k`, `max_ef`, …).
    pub fn config(&self) -> &QueryConfig {
        &self.wire.config
    }

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

    /// Whether every shard assigned to this node is loaded and serving (a forwarder has
    /// none: it is always ready).
    pub fn is_ready(&self) -> bool {
        self.serving.as_ref().is_none_or(|s| s.is_ready())
    }

    /// (serving, assigned) shard counts: load progress.
    pub fn load_progress(&self) -> (usize, usize) {
        self.serving.as_ref().map_or((0, 0), |s| s.load_progress())
    }

    /// The read API other nodes call over gRPC (validating what they send).
    pub fn shard_reads(&self) -> Arc<dyn ShardReads> {
        self.wire.clone()
    }

    /// Copies rows and segments of every shard held here, and the load progress, into the
    /// metrics gauges (called at scrape time).
    pub fn export_metrics(&self) {
        let (serving, assigned) = self.load_progress();
        self.metrics.export_shards(self.host.held(), serving, assigned);
    }
}
