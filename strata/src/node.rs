//! Composition of a `strata` process: opens the infrastructure (object store, coordination,
//! cache, node-to-node clients, metrics), starts the roles it runs, registers them as cluster
//! members and serves REST (and, in a cluster, gRPC). No behaviour lives here beyond wiring
//! and shutdown; every role is a library with one `start(config, deps, shutdown)`.
//!
//! Two modes share this code: `standalone` (every role, local filesystem, in-process
//! coordination) and a cluster role (`ingest-node`, `query-node`, `compactor`: the
//! configured object store, etcd, gRPC between nodes).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use strata_coord::etcd::Etcd;
use strata_coord::{Coordination, InProcess, Member, Role};
use strata_deps::Deps;
use strata_rpc::RpcClients;
use strata_rpc::server::NodeService;
use strata_storage::cache::SegmentCache;
use strata_storage::instrumented_store::InstrumentedStore;
use strata_storage::store;
use strata_types::metrics::Metrics;
use strata_types::random::Random;
use strata_types::time::{Clock, SystemClock};
use tokio::sync::watch;

use crate::config::Config;

/// How a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every role in one process, local filesystem, in-process coordination.
    Standalone,
    /// One cluster role.
    Cluster(Role),
}

impl Mode {
    pub fn roles(self) -> Vec<Role> {
        match self {
            Mode::Standalone => Role::ALL.to_vec(),
            Mode::Cluster(role) => vec![role],
        }
    }

    fn runs(self, role: Role) -> bool {
        self.roles().contains(&role)
    }
}

/// A running process: its roles, its REST router and how to stop it.
pub struct Node {
    pub mode: Mode,
    pub router: Router,
    pub deps: Deps,
    pub ingest: Option<strata_ingest::IngestNode>,
    pub query: Option<strata_query::QueryNode>,
    pub compactor: Option<strata_compactor::Compactor>,
    /// The gRPC side of this node's roles (served by [`serve`] in cluster mode).
    pub rpc_service: NodeService,
    pub config: Config,
    shutdown: watch::Sender<bool>,
}

impl Node {
    /// Opens the infrastructure and starts the roles of `mode`. Fails with a clear error
    /// when the object store does not honour create-only puts or etcd cannot be reached.
    pub async fn start(mode: Mode, mut config: Config) -> anyhow::Result<Node> {
        let metrics = Arc::new(Metrics::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let rng = Arc::new(Random::from_entropy());
        // Every request to object storage is counted and timed, the startup probe included.
        let store = InstrumentedStore::wrap(open_store(mode, &config).await?, &metrics, clock.clone());
        store::check_create_only(store.as_ref(), rng.next_u64())
            .await
            .map_err(|e| anyhow::anyhow!("object storage check failed: {e}"))?;
        let coord: Arc<dyn Coordination> = match mode {
            Mode::Standalone => Arc::new(InProcess::new()),
            Mode::Cluster(_) => Etcd::connect(config.etcd.clone(), clock.clone())
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to etcd at {:?}: {e}", config.etcd.endpoints))?,
        };
        // A flush must never commit a segment upload that garbage collection may already
        // treat as garbage (decision 0003): keep its commit guard within the GC grace.
        let guard = config.compactor.gc_grace_ms / 2;
        config.ingest.flush_commit_max_age_ms = config.ingest.flush_commit_max_age_ms.min(guard);
        if config.cache.disk_dir.is_none() {
            config.cache.disk_dir = Some(config.data_dir.join("cache"));
        }
        let cache = Arc::new(SegmentCache::open(&config.cache).await?);
        let node_id = node_id(mode, &config);
        let deps = Deps { store, coord, clock, rng, cache, rpc: RpcClients::new(config.rpc.clone()), node_id, metrics };

        // Members first: the roles' first ownership and serving plans must see this node.
        register(mode, &config, &deps).await?;
        let (shutdown, rx) = watch::channel(false);
        let ingest = match mode.runs(Role::Ingest) {
            true => Some(strata_ingest::start(config.ingest.clone(), deps.clone(), rx.clone()).await?),
            false => None,
        };
        let query = match mode.runs(Role::Query) {
            true => Some(strata_query::start(config.query.clone(), deps.clone(), rx.clone()).await?),
            false => None,
        };
        let compactor = match mode.runs(Role::Compactor) {
            true => Some(strata_compactor::start(config.compactor.clone(), deps.clone(), rx.clone()).await?),
            false => None,
        };
        let rpc_service = NodeService {
            reads: query.as_ref().map(strata_query::QueryNode::shard_reads),
            writes: ingest.as_ref().map(strata_ingest::IngestNode::shard_writes),
            counters: Default::default(),
        };
        let router = crate::http::router(mode, &deps, ingest.clone(), query.clone(), rpc_service.counters.clone())
            .layer(DefaultBodyLimit::max(config.max_request_bytes));
        Ok(Node { mode, router, deps, ingest, query, compactor, rpc_service, config, shutdown })
    }

    /// Leaves the cluster (others re-route at once instead of waiting for the session to
    /// expire), stops background work and flushes the cache.
    pub async fn stop(self) {
        if let Err(e) = self.deps.coord.deregister(&self.deps.node_id).await {
            tracing::warn!(error = %e, "could not leave the cluster; the session expiry will");
        }
        let _ = self.shutdown.send(true);
        // End the session so whatever the roles still hold goes at once, not after the TTL.
        if let Err(e) = self.deps.coord.close().await {
            tracing::warn!(error = %e, "could not end the coordination session; it will expire");
        }
        if let Err(e) = self.deps.cache.close().await {
            tracing::warn!(error = %e, "closing the cache failed");
        }
    }
}

/// Registers every role of this process as a cluster member.
async fn register(mode: Mode, config: &Config, deps: &Deps) -> anyhow::Result<()> {
    let host = config.advertised_host();
    for role in mode.roles() {
        let member = Member {
            node_id: deps.node_id.clone(),
            role,
            http_url: format!("http://{host}:{}", config.listen.port()),
            grpc_url: format!("http://{host}:{}", config.grpc_listen.port()),
            started_ms: deps.clock.now_ms(),
        };
        deps.coord.register(member).await?;
    }
    Ok(())
}

async fn open_store(mode: Mode, config: &Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let local = |config: &Config| -> anyhow::Result<Arc<dyn ObjectStore>> {
        let objects = config.data_dir.join("objects");
        std::fs::create_dir_all(&objects)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", objects.display()))?;
        // Garbage collection deletes objects; let the store remove directories it empties.
        Ok(Arc::new(LocalFileSystem::new_with_prefix(&objects)?.with_automatic_cleanup(true)))
    };
    match (mode, &config.storage) {
        (Mode::Standalone, _) | (_, None) => local(config),
        (Mode::Cluster(_), Some(storage)) => {
            store::open(storage).map_err(|e| anyhow::anyhow!("cannot open object storage: {e}"))
        }
    }
}

fn node_id(mode: Mode, config: &Config) -> String {
    if let Some(id) = &config.node_id {
        return id.clone();
    }
    match mode {
        Mode::Standalone => "standalone".to_owned(),
        Mode::Cluster(role) => format!("{}-{}-{}", role.as_str(), crate::config::hostname(), config.listen.port()),
    }
}

/// Serves `node` until SIGINT/SIGTERM, then shuts down gracefully.
pub async fn serve(node: Node) -> anyhow::Result<()> {
    let listen = node.config.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = match node.mode {
        Mode::Standalone => None,
        Mode::Cluster(_) => {
            let mut rx = stop_rx.clone();
            let addr = node.config.grpc_listen;
            let service = node.rpc_service.clone();
            Some(tokio::spawn(async move {
                service
                    .serve(addr, async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await
            }))
        }
    };
    let roles: Vec<&str> = node.mode.roles().iter().map(|r| r.as_str()).collect();
    tracing::info!(%listen, node_id = %node.deps.node_id, ?roles, "strata ready");
    eprintln!("strata {} ({}) listening on http://{listen}", node.deps.node_id, roles.join(", "));
    let mut rest_stop = stop_rx.clone();
    let rest = axum::serve(listener, node.router.clone()).with_graceful_shutdown(async move {
        let _ = rest_stop.wait_for(|stop| *stop).await;
    });
    let rest = tokio::spawn(async move { rest.await });
    // The gRPC server only ends early if it failed (e.g. its port is taken).
    let grpc_failed = async {
        match grpc {
            Some(handle) => match handle.await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => std::future::pending().await,
                Err(e) => e.to_string(),
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        why = grpc_failed => {
            let _ = stop_tx.send(true);
            node.stop().await;
            anyhow::bail!("{why}");
        }
    }
    let _ = stop_tx.send(true);
    let _ = rest.await;
    node.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
