//! Composition of a `strata` process: opens the infrastructure (object store, coordination,
//! cache, node-to-node clients, metrics), starts the roles it runs, registers them as cluster
//! members and serves REST (and, in a cluster, gRPC). No behaviour lives here beyond wiring
//! and shutdown; every role is a library with one `start(config, deps, shutdown)`.
//!
//! Two modes share this code: `standalone` (every role, local filesystem, in-process
//! coordination) and a cluster role (`ingest-node`, `query-node`, `compactor`: the
//! configured object store, etcd, gRPC between nodes).
//!
//! Stopping (SIGTERM, SIGINT) takes seconds whatever the backlog, well inside the 30 s
//! grace of compose and Kubernetes: the node stops taking requests, leaves the cluster,
//! lets its shard writers answer the group commit in hand and release their leases, gives
//! in-flight requests a moment, ends its coordination session (whatever it still holds goes
//! at once, not after the TTL) and exits. It never flushes on the way out: every
//! acknowledged write is already in the WAL, and the shard's next writer replays it. Each
//! step is bounded ([`STOP_STEPS`]), so an unreachable etcd or a stuck request cannot hold
//! the process; what a step leaves behind expires with the session TTL.

use std::sync::Arc;
use std::time::Duration;

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
use strata_types::time::{self, Clock, SystemClock};
use tokio::sync::watch;

use crate::auth::{self, Auth};
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

    pub(crate) fn runs(self, role: Role) -> bool {
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
        auth::check_exposure(config.listen, &config.auth, config.insecure).map_err(|e| anyhow::anyhow!(e))?;
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
        // Every node answers the whole REST API (decision 0016): the API of a role this
        // process does not run is served by that role's forwarder.
        let api = crate::http::RoleApis {
            ingest: ingest
                .clone()
                .unwrap_or_else(|| strata_ingest::forwarder(config.ingest.clone(), deps.clone(), rx.clone())),
            query: query.clone().unwrap_or_else(|| strata_query::forwarder(config.query.clone(), deps.clone())),
        };
        let auth = Auth::new(&config.auth, config.source.clone()).map_err(|e| anyhow::anyhow!("API keys: {e}"))?;
        if auth.watchable() {
            tokio::spawn(auth.clone().watch(deps.clock.clone(), rx.clone()));
        }
        let hosts = crate::edge::AllowedHosts::new(&config.http, config.listen);
        let mut router = crate::http::router(mode, &deps, api, rpc_service.counters.clone(), auth)
            .layer(DefaultBodyLimit::max(config.max_request_bytes))
            .layer(axum::Extension(strata_api::BodyLimit(config.max_request_bytes)))
            .layer(axum::middleware::from_fn_with_state(hosts, crate::edge::check_host))
            .layer(axum::middleware::from_fn(crate::edge::check_uri_length));
        // Outermost: a browser's preflight is answered before anything else looks at it.
        if let Some(cors) = crate::edge::cors(&config.http).map_err(|e| anyhow::anyhow!("http.cors_origins: {e}"))? {
            router = router.layer(cors);
        }
        Ok(Node { mode, router, deps, ingest, query, compactor, rpc_service, config, shutdown })
    }

    /// Stops the node: [`Node::leave`], then [`Node::close`].
    pub async fn stop(self) {
        self.leave().await;
        self.close().await;
    }

    /// Leaves the cluster (others re-route at once instead of waiting for the session to
    /// expire), signals every role to stop and waits (bounded) until the shard writers
    /// have answered their last group commit and released their writer leases, so the
    /// shards' next writers take them at once. Requests still in flight afterwards are
    /// answered or refused (503); nothing is flushed.
    pub async fn leave(&self) {
        let clock = self.deps.clock.as_ref();
        match time::timeout(clock, STOP_STEPS.deregister, self.deps.coord.deregister(&self.deps.node_id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not leave the cluster; the session expiry will"),
            Err(_) => tracing::warn!("leaving the cluster timed out; the session expiry will end the membership"),
        }
        let _ = self.shutdown.send(true);
        if let Some(ingest) = &self.ingest
            && time::timeout(clock, STOP_STEPS.writers, ingest.stopped()).await.is_err()
        {
            tracing::warn!("shard writers did not all stop in time; their leases go with the session");
        }
    }

    /// Ends the coordination session, so whatever the roles still hold (serving records,
    /// compaction leases, a writer lease a timed-out release left) goes at once, not after
    /// the TTL; then writes the cache's index to disk.
    pub async fn close(self) {
        let clock = self.deps.clock.as_ref();
        match time::timeout(clock, STOP_STEPS.session, self.deps.coord.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not end the coordination session; it will expire"),
            Err(_) => tracing::warn!("ending the coordination session timed out; it will expire"),
        }
        match time::timeout(clock, STOP_STEPS.cache, self.deps.cache.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "closing the cache failed"),
            Err(_) => tracing::warn!("closing the cache timed out"),
        }
    }
}

/// Bounds of the steps of a stop. They add up to 8 s, and the runtime then gets
/// [`RUNTIME_STOP`]: a node exits within 10 s of SIGTERM even with etcd unreachable.
pub(crate) struct StopSteps {
    /// Removing the membership records.
    deregister: Duration,
    /// Shard writers answering their last group commit and releasing their leases: one
    /// WAL put and one etcd request each, in parallel.
    writers: Duration,
    /// Requests in flight when the signal came finishing (REST; gRPC is not waited for).
    drain: Duration,
    /// Revoking the coordination session.
    session: Duration,
    /// Writing the cache's index.
    cache: Duration,
}

pub(crate) const STOP_STEPS: StopSteps = StopSteps {
    deregister: Duration::from_millis(1_500),
    writers: Duration::from_millis(3_000),
    drain: Duration::from_millis(1_500),
    session: Duration::from_millis(1_000),
    cache: Duration::from_millis(1_000),
};

/// How long the runtime waits for its tasks once `main`'s future returned. Work still
/// running then — a segment build or a merge off the runtime, whose result nobody needs
/// any more — is abandoned rather than waited for: a flush of a large backlog takes
/// minutes, and its rows are durable in the WAL anyway.
pub(crate) const RUNTIME_STOP: Duration = Duration::from_millis(500);

/// Registers every role of this process as a cluster member.
async fn register(mode: Mode, config: &Config, deps: &Deps) -> anyhow::Result<()> {
    let host = config.advertised_host();
    let grpc_scheme = if config.rpc.tls.files()?.is_some() { "https" } else { "http" };
    let http_scheme = if config.tls.files().map_err(|e| anyhow::anyhow!(e))?.is_some() { "https" } else { "http" };
    for role in mode.roles() {
        let member = Member {
            node_id: deps.node_id.clone(),
            role,
            http_url: format!("{http_scheme}://{host}:{}", config.listen.port()),
            grpc_url: format!("{grpc_scheme}://{host}:{}", config.grpc_listen.port()),
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
            let stopped = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            let addr = node.config.grpc_listen;
            let service = node.rpc_service.clone();
            Some(match node.config.rpc.tls.files()? {
                None => tokio::spawn(async move { service.serve(addr, stopped).await }),
                Some(files) => {
                    let incoming = mutual_tls_incoming(&node, files, stop_rx.clone()).await?;
                    tokio::spawn(async move { service.serve_incoming(incoming, stopped).await })
                }
            })
        }
    };
    let roles: Vec<&str> = node.mode.roles().iter().map(|r| r.as_str()).collect();
    let tls = match node.config.tls.files().map_err(|e| anyhow::anyhow!(e))? {
        Some((cert, key)) => {
            let certificates = crate::tls::Certificates::load(cert, key).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
            tokio::spawn(certificates.clone().watch(node.deps.clock.clone(), stop_rx.clone()));
            Some(certificates.server_config().map_err(|e| anyhow::anyhow!("TLS: {e}"))?)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%listen, node_id = %node.deps.node_id, ?roles, scheme, "strata ready");
    eprintln!("strata {} ({}) listening on {scheme}://{listen}", node.deps.node_id, roles.join(", "));
    let mut rest_stop = stop_rx.clone();
    let stopped = async move {
        let _ = rest_stop.wait_for(|stop| *stop).await;
    };
    let rest = match tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config, node.deps.clock.clone())?;
            let rest = axum::serve(listener, node.router.clone()).with_graceful_shutdown(stopped);
            tokio::spawn(async move { rest.await })
        }
        None => {
            let rest = axum::serve(listener, node.router.clone()).with_graceful_shutdown(stopped);
            tokio::spawn(async move { rest.await })
        }
    };
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
    let failed = tokio::select! {
        _ = shutdown_signal() => None,
        why = grpc_failed => Some(why),
    };
    // No new connections or requests from here; those in flight go on.
    let _ = stop_tx.send(true);
    node.leave().await;
    // In-flight writes have been answered by their writers or are refused now; give the
    // responses a moment to go out.
    if time::timeout(node.deps.clock.as_ref(), STOP_STEPS.drain, rest).await.is_err() {
        tracing::warn!("requests still in flight at shutdown were cut off");
    }
    node.close().await;
    tracing::info!("stopped");
    match failed {
        None => Ok(()),
        Some(why) => anyhow::bail!("{why}"),
    }
}

/// Node-to-node connections over mutual TLS (`[rpc.tls]`), their certificate reloaded when
/// its files change.
async fn mutual_tls_incoming(
    node: &Node,
    files: strata_rpc::RpcTlsFiles<'_>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<
    impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> + use<>,
> {
    let certificates =
        crate::tls::Certificates::load(files.cert_file, files.key_file).map_err(|e| anyhow::anyhow!("rpc.tls: {e}"))?;
    let config = certificates.mutual_server_config(files.ca_file).map_err(|e| anyhow::anyhow!("rpc.tls: {e}"))?;
    tokio::spawn(certificates.watch(node.deps.clock.clone(), stop));
    let addr = node.config.grpc_listen;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for gRPC on {addr}: {e}"))?;
    let ready = crate::tls::handshakes(tcp, config, node.deps.clock.clone());
    Ok(futures::stream::unfold(ready, |mut ready| async move {
        ready.recv().await.map(|(stream, _peer)| (Ok(stream), ready))
    }))
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
