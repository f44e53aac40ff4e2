//! The REST surface of a process: the routes of the roles it runs, the cluster admin API,
//! health, readiness, Prometheus metrics and the OpenAPI document ([`crate::openapi`]). Every process answers
//! the whole API: what a role it does not run serves is forwarded by that role's forwarder
//! (decision 0016).
//!
//! Every request, the fallback included, goes through [`track`], which counts and times it
//! by route template (`MatchedPath`, or `unmatched`), method and status, then through the
//! API key check ([`crate::auth::authorize`]).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{HistogramVec, IntCounterVec};
use serde::{Deserialize, Serialize};
use strata_api::ApiError;
use strata_coord::LeaseMetrics;
use strata_coord::Role;
use strata_deps::Deps;
use strata_rpc::server::RpcCounters;
use strata_storage::cache::CacheMetrics;
use strata_types::metrics::{LATENCY_BUCKETS, Metrics};
use strata_types::time::{Clock, ClockExt};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::node::Mode;

/// This process: identity, memory, node-to-node traffic and cache use.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub node_id: String,
    pub roles: Vec<Role>,
    pub version: String,
    /// Resident memory now and at its peak (Linux; 0 elsewhere).
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// CPU time this process has used since it started (user + system), in seconds:
    /// benchmarks divide its growth over a run by the requests served.
    pub cpu_seconds: f64,
    /// gRPC calls this node served, and their message bytes in and out.
    pub rpc_calls: u64,
    pub rpc_bytes_in: u64,
    pub rpc_bytes_out: u64,
    /// Segment cache hits per tier, misses, and bytes fetched from object storage.
    #[schema(value_type = Object)]
    pub cache: strata_storage::cache::CacheStats,
}

/// The routes of the process itself (the document's are in [`crate::openapi`]).
#[derive(OpenApi)]
#[openapi(paths(healthz, readyz, node_info, metrics, crate::ui::page), components(schemas(NodeInfo)))]
pub(crate) struct NodeApi;

/// The REST API of both data roles, whether this process runs them or forwards them.
pub struct RoleApis {
    pub ingest: strata_ingest::IngestNode,
    pub query: strata_query::QueryNode,
}

pub fn router(mode: Mode, deps: &Deps, api: RoleApis, counters: Arc<RpcCounters>, auth: Auth) -> Router {
    let info_state = (mode, deps.clone(), counters);
    let scrape_state = ScrapeState {
        deps: deps.clone(),
        // Only roles that run here have state worth exporting.
        ingest: mode.runs(Role::Ingest).then(|| api.ingest.clone()),
        query: mode.runs(Role::Query).then(|| api.query.clone()),
        cache: CacheMetrics::register(&deps.metrics),
        leases: LeaseMetrics::register(&deps.metrics),
    };
    let http_metrics = HttpMetrics::register(&deps.metrics, deps.clock.clone());
    let document = crate::openapi::served(api.ingest.config(), api.query.config());
    Router::new()
        .merge(crate::admin::router(deps.clone(), matches!(mode, Mode::Standalone)))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(crate::openapi::openapi).with_state(document))
        .route("/metrics", get(metrics).with_state(scrape_state))
        .route("/v1/node", get(node_info).with_state(info_state))
        .route("/readyz", get(readyz).with_state(api.query.clone()))
        .merge(strata_ingest::http::router(api.ingest))
        .merge(strata_query::http::router(api.query))
        .merge(crate::ui::router())
        .fallback(|uri: Uri| async move {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route {}", uri.path()))
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {} (the Allow header lists what is)", uri.path()),
            )
        })
        // Inside `track`, so refused requests are counted too.
        .layer(axum::middleware::from_fn_with_state(auth, crate::auth::authorize))
        .layer(axum::middleware::from_fn_with_state(http_metrics, track))
}

/// The REST series: requests by route template, method and status, and their latency.
#[derive(Clone)]
struct HttpMetrics {
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    /// Times requests.
    clock: Arc<dyn Clock>,
}

impl HttpMetrics {
    fn register(metrics: &Metrics, clock: Arc<dyn Clock>) -> HttpMetrics {
        HttpMetrics {
            clock,
            requests: metrics.counter_vec(
                "strata_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
                &["route", "method", "status"],
            ),
            request_seconds: metrics.histogram_vec(
                "strata_http_request_seconds",
                "HTTP request latency until the response head, by route template and method.",
                LATENCY_BUCKETS,
                &["route", "method"],
            ),
        }
    }
}

/// Counts and times one request by route template, method and status. Labels stay
/// bounded: the template, never the raw path; unknown methods are `other`.
async fn track(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = metrics.clock.now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let seconds = metrics.clock.elapsed(started).as_secs_f64();
    metrics.requests.with_label_values(&[route.as_str(), method, &status]).inc();
    metrics.request_seconds.with_label_values(&[route.as_str(), method]).observe(seconds);
    response
}

/// What a scrape refreshes: the process's metrics and the components whose state it
/// copies in.
#[derive(Clone)]
struct ScrapeState {
    deps: Deps,
    ingest: Option<strata_ingest::IngestNode>,
    query: Option<strata_query::QueryNode>,
    cache: CacheMetrics,
    leases: LeaseMetrics,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "node",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: a query node is ready once every shard assigned to it is loaded and
/// serving, and stays ready while it loads shards assigned later (see
/// `Serving::is_ready`); a node without the role has none, so it is always ready.
#[utoipa::path(get, path = "/readyz", tag = "node",
    responses((status = 200, description = "`ready`", content_type = "text/plain", body = String),
        (status = 503, description = "`loading shards: N/M serving`", content_type = "text/plain", body = String)))]
async fn readyz(State(query): State<strata_query::QueryNode>) -> (StatusCode, String) {
    if query.is_ready() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        let (serving, assigned) = query.load_progress();
        (StatusCode::SERVICE_UNAVAILABLE, format!("loading shards: {serving}/{assigned} serving"))
    }
}

/// Prometheus metrics of this process, in the text exposition format (see docs/metrics.md).
#[utoipa::path(get, path = "/metrics", tag = "node", responses((status = 200, description = "Prometheus text format (version 0.0.4)",
    content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<ScrapeState>) -> impl IntoResponse {
    let metrics = &state.deps.metrics;
    let _scrape = metrics.scrape_lock().await;
    if let Some(ingest) = &state.ingest {
        ingest.export_metrics().await;
    }
    if let Some(query) = &state.query {
        query.export_metrics();
    }
    state.cache.export(&state.deps.cache.stats());
    state.leases.export(&state.deps.coord.view().borrow(), &state.deps.node_id);
    ([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], metrics.render())
}

/// The OpenAPI document of every endpoint of every role, with the default limits
/// (`strata openapi`; a node serves its own at `/openapi.json`, see [`crate::openapi`]).
pub fn openapi_document() -> serde_json::Value {
    crate::openapi::document(&Default::default(), &Default::default())
}

/// This node's identity, memory, node-to-node traffic and cache statistics.
#[utoipa::path(get, path = "/v1/node", tag = "node", responses((status = 200, description = "this node", body = NodeInfo)))]
async fn node_info(
    axum::extract::State((mode, deps, counters)): axum::extract::State<(Mode, Deps, Arc<RpcCounters>)>,
) -> Json<NodeInfo> {
    let (rss_bytes, peak_rss_bytes) = process_memory();
    let (rpc_calls, rpc_bytes_in, rpc_bytes_out) = counters.snapshot();
    Json(NodeInfo {
        node_id: deps.node_id.clone(),
        roles: mode.roles(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rss_bytes,
        peak_rss_bytes,
        cpu_seconds: process_cpu_seconds(),
        rpc_calls,
        rpc_bytes_in,
        rpc_bytes_out,
        cache: deps.cache.stats(),
    })
}

/// User plus system CPU time of this process, in seconds (`getrusage`).
fn process_cpu_seconds() -> f64 {
    // SAFETY: `getrusage` only writes the struct we pass; a zeroed `rusage` is valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// (VmRSS, VmHWM) from /proc/self/status, in bytes.
fn process_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
