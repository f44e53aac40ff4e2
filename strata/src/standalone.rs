//! `strata standalone`: every role in one process over the local filesystem, with
//! in-process coordination. Composes the role libraries; holds no logic of its own beyond
//! wiring, the shared HTTP server and shutdown.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use object_store::local::LocalFileSystem;
use strata_shared::cache::SegmentCache;
use strata_shared::coord::InProcess;
use strata_shared::deps::{Deps, SystemClock};
use tokio::sync::watch;
use utoipa::OpenApi;

use crate::config::StandaloneConfig;

/// A running standalone server.
pub struct Standalone {
    pub router: Router,
    pub deps: Deps,
    pub ingest: strata_ingest::IngestNode,
    pub query: strata_query::QueryNode,
    pub compactor: strata_compactor::Compactor,
    shutdown: watch::Sender<bool>,
}

impl Standalone {
    /// Opens the data directory and starts every role.
    pub async fn start(mut config: StandaloneConfig) -> anyhow::Result<Standalone> {
        let objects = config.data_dir.join("objects");
        std::fs::create_dir_all(&objects)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", objects.display()))?;
        // Garbage collection deletes objects; let the store remove directories it empties.
        let store = Arc::new(LocalFileSystem::new_with_prefix(&objects)?.with_automatic_cleanup(true));
        if config.cache.disk_dir.is_none() {
            config.cache.disk_dir = Some(config.data_dir.join("cache"));
        }
        let cache = Arc::new(SegmentCache::open(&config.cache).await?);
        let deps = Deps {
            store,
            coord: Arc::new(InProcess::new()),
            clock: Arc::new(SystemClock),
            cache,
            node_id: "standalone".to_owned(),
        };
        // Both roles run here, so the flush guard can follow the GC grace it protects
        // against: a commit must never name an upload GC may already treat as garbage.
        let guard = config.compactor.gc_grace_ms / 2;
        config.ingest.flush_commit_max_age_ms = config.ingest.flush_commit_max_age_ms.min(guard);
        let (shutdown, rx) = watch::channel(false);
        let ingest = strata_ingest::start(config.ingest.clone(), deps.clone(), rx.clone()).await?;
        let query = strata_query::start(config.query.clone(), deps.clone(), rx.clone()).await?;
        let compactor = strata_compactor::start(config.compactor.clone(), deps.clone(), rx).await?;
        let router = Router::new()
            .merge(strata_ingest::http::router(ingest.clone()))
            .merge(strata_query::http::router(query.clone()))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ready" }))
            .route("/openapi.json", get(openapi))
            .layer(DefaultBodyLimit::max(config.max_request_bytes));
        Ok(Standalone { router, deps, ingest, query, compactor, shutdown })
    }

    /// Stops background work (writers, flushes, compaction) and flushes the cache.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.deps.cache.close().await {
            tracing::warn!(error = %e, "closing the cache failed");
        }
    }
}

/// The OpenAPI document of every endpoint.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = strata_ingest::http::IngestApi::openapi();
    doc.merge(strata_query::http::QueryApi::openapi());
    doc.info.title = "Strata".to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some("Distributed vector search on object storage.".to_owned());
    doc
}

async fn openapi() -> impl IntoResponse {
    axum::Json(openapi_document())
}

/// Serves until SIGINT/SIGTERM, then shuts down gracefully.
pub async fn serve(config: StandaloneConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let data_dir = config.data_dir.clone();
    let server = Standalone::start(config).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, data_dir = %data_dir.display(), "strata standalone ready");
    eprintln!("strata standalone listening on http://{listen} (data in {})", data_dir.display());
    axum::serve(listener, server.router.clone()).with_graceful_shutdown(shutdown_signal()).await?;
    server.stop().await;
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
