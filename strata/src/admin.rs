//! The cluster admin REST API, served by every node: who is in the cluster, which node
//! writes, serves and compacts each shard, and drain / undrain / remove / rebalance.
//!
//! Everything here reads the coordination view and the catalog; the only writes are drain
//! flags and membership removal. Assignment itself is never set by hand: it follows from
//! rendezvous hashing over the live, non-draining members, so "rebalance" waits for the
//! cluster to converge on that assignment and reports what is still moving.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use strata_api::openapi::{INVALID_QUERY, ServerErrors};
use strata_api::{ApiQuery, ApiResult, ErrorBody};
use strata_coord::{ClusterView, LeaseKind, Role, ServeState, shard_key};
use strata_deps::Deps;
use strata_storage::catalog;
use strata_types::Error;
use strata_types::time::{self, ClockExt};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// A node as the admin API shows it (one entry per node id, whatever its roles).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub id: String,
    pub roles: Vec<Role>,
    pub http_url: String,
    pub grpc_url: String,
    pub started_ms: u64,
    pub draining: bool,
    /// Shards this node serves (query nodes), by state.
    pub serving_shards: usize,
    pub loading_shards: usize,
    /// Shards whose writer / compaction lease this node holds.
    pub writer_leases: usize,
    pub compaction_leases: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodesResponse {
    pub nodes: Vec<NodeStatus>,
}

/// One node, with the shards it holds.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub node: NodeStatus,
    pub shards: Vec<ShardStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServingReplica {
    pub node: String,
    pub state: ServeState,
}

/// Who writes, serves and compacts one shard.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ShardStatus {
    pub collection: String,
    pub collection_id: String,
    pub shard: u32,
    /// Holder of the writer lease, if any.
    pub writer: Option<String>,
    /// The ingest node that should write it.
    pub writer_owner: Option<String>,
    pub compactor: Option<String>,
    pub serving: Vec<ServingReplica>,
    /// The query nodes that should serve it.
    pub serving_owners: Vec<String>,
    /// Every owner serves it and nobody else does.
    pub settled: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ShardsResponse {
    pub shards: Vec<ShardStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RebalanceResponse {
    /// Every shard settled within the wait.
    pub converged: bool,
    pub took_ms: u64,
    /// Shards still moving.
    pub pending: Vec<ShardStatus>,
}

/// The query string of `POST /v1/cluster/rebalance`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RebalanceParams {
    /// How long to wait for the cluster to settle, in ms: 0..=60000 (default 10,000).
    #[serde(default)]
    #[param(minimum = 0, maximum = 60_000, default = 10_000)]
    pub wait_ms: Option<u64>,
}

/// The query string of `DELETE /v1/cluster/nodes/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveParams {
    /// How long to wait for the node's shards and writer leases to move, in ms:
    /// 0..=120000 (default 30,000).
    #[serde(default)]
    #[param(minimum = 0, maximum = 120_000, default = 30_000)]
    pub wait_ms: Option<u64>,
}

/// `wait_ms`, or its default; a 400 above `max`.
fn wait(wait_ms: Option<u64>, default: u64, max: u64) -> Result<Duration, Error> {
    match wait_ms.unwrap_or(default) {
        ms if ms <= max => Ok(Duration::from_millis(ms)),
        ms => Err(Error::invalid(format!("wait_ms must be in 0..={max}, got {ms}"))),
    }
}

/// A node id in a path.
const NODE_ID: &str = "the node's id (as `GET /v1/cluster/nodes` lists it)";
/// The 404 of an operation on one node.
const NO_NODE: &str = "no member of the cluster has this id";

#[derive(OpenApi)]
#[openapi(
    paths(list_nodes, node_detail, list_shards, rebalance, drain, undrain, remove),
    components(schemas(
        NodeStatus,
        NodesResponse,
        NodeDetail,
        ShardStatus,
        ServingReplica,
        ShardsResponse,
        RebalanceResponse,
        Role,
        ServeState,
        ErrorBody
    ))
)]
pub struct AdminApi;

/// The admin API. A `standalone` process is the only node there is: draining or removing
/// it would leave nothing to serve its shards, so those two answer 409 there.
pub fn router(deps: Deps, standalone: bool) -> Router {
    Router::new()
        .route("/v1/cluster/nodes", get(list_nodes))
        .route("/v1/cluster/nodes/{id}", get(node_detail).delete(remove))
        .route("/v1/cluster/nodes/{id}/drain", post(drain).delete(undrain))
        .route("/v1/cluster/shards", get(list_shards))
        .route("/v1/cluster/rebalance", post(rebalance))
        .layer(Extension(Standalone(standalone)))
        .with_state(deps)
}

/// Whether this process is a standalone node (a request extension of the admin routes).
#[derive(Clone, Copy)]
struct Standalone(bool);

/// Refuses to drain or remove a standalone node.
fn refuse_on_standalone(standalone: Standalone) -> Result<(), Error> {
    match standalone {
        Standalone(true) => Err(Error::conflict(
            "standalone runs every role in one process: it is the only node, and draining or removing it \
             would leave no node to serve its shards",
        )),
        Standalone(false) => Ok(()),
    }
}

fn nodes_of(view: &ClusterView) -> Vec<NodeStatus> {
    let mut nodes: BTreeMap<&str, NodeStatus> = BTreeMap::new();
    for m in &view.members {
        let n = nodes.entry(&m.node_id).or_insert_with(|| NodeStatus {
            id: m.node_id.clone(),
            roles: Vec::new(),
            http_url: m.http_url.clone(),
            grpc_url: m.grpc_url.clone(),
            started_ms: m.started_ms,
            draining: view.drains.contains(&m.node_id),
            serving_shards: view
                .serving
                .iter()
                .filter(|r| r.node_id == m.node_id && r.state == ServeState::Serving)
                .count(),
            loading_shards: view
                .serving
                .iter()
                .filter(|r| r.node_id == m.node_id && r.state == ServeState::Loading)
                .count(),
            writer_leases: view.leases.iter().filter(|l| l.holder == m.node_id && l.kind == LeaseKind::Writer).count(),
            compaction_leases: view
                .leases
                .iter()
                .filter(|l| l.holder == m.node_id && l.kind == LeaseKind::Compact)
                .count(),
        });
        n.roles.push(m.role);
    }
    nodes.into_values().collect()
}

async fn shards_of(deps: &Deps, view: &ClusterView) -> Result<Vec<ShardStatus>, Error> {
    let mut out = Vec::new();
    for def in catalog::list_active(deps.store.as_ref()).await? {
        for shard in 0..def.shards {
            let key = shard_key(&def.id, shard);
            let mut serving: Vec<ServingReplica> = view
                .serving_of(&def.id, shard)
                .map(|r| ServingReplica { node: r.node_id.clone(), state: r.state })
                .collect();
            serving.sort_by(|a, b| a.node.cmp(&b.node));
            let owners: Vec<String> =
                view.serving_owners(&key, def.replication).into_iter().map(String::from).collect();
            let mut serving_nodes: Vec<&str> =
                serving.iter().filter(|r| r.state == ServeState::Serving).map(|r| r.node.as_str()).collect();
            let mut owner_nodes: Vec<&str> = owners.iter().map(String::as_str).collect();
            serving_nodes.sort_unstable();
            owner_nodes.sort_unstable();
            out.push(ShardStatus {
                collection: def.name.clone(),
                collection_id: def.id.clone(),
                shard,
                writer: view.lease(LeaseKind::Writer, &key).map(|l| l.holder.clone()),
                writer_owner: view.writer_owner(&key).map(|m| m.node_id.clone()),
                compactor: view.lease(LeaseKind::Compact, &key).map(|l| l.holder.clone()),
                settled: serving_nodes == owner_nodes && serving.len() == owners.len(),
                serving,
                serving_owners: owners,
            });
        }
    }
    Ok(out)
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("node {id:?} is not a member of the cluster"))
}

/// Live nodes, their roles, drain state and how many shards and leases each holds.
#[utoipa::path(get, path = "/v1/cluster/nodes", tag = "cluster",
    responses((status = 200, description = "the live nodes, by id", body = NodesResponse)))]
async fn list_nodes(State(deps): State<Deps>) -> Json<NodesResponse> {
    Json(NodesResponse { nodes: nodes_of(&deps.coord.view().borrow()) })
}

/// One node and the shards it writes, serves or compacts.
#[utoipa::path(get, path = "/v1/cluster/nodes/{id}", tag = "cluster", params(("id" = String, Path, description = NODE_ID)),
    responses((status = 200, description = "the node and its shards", body = NodeDetail),
        (status = 404, description = NO_NODE, body = ErrorBody), ServerErrors))]
async fn node_detail(State(deps): State<Deps>, Path(id): Path<String>) -> ApiResult<Json<NodeDetail>> {
    let view = deps.coord.view().borrow().clone();
    let node = nodes_of(&view).into_iter().find(|n| n.id == id).ok_or_else(|| not_found(&id))?;
    let shards = shards_of(&deps, &view)
        .await?
        .into_iter()
        .filter(|s| {
            s.writer.as_deref() == Some(&id)
                || s.compactor.as_deref() == Some(&id)
                || s.serving.iter().any(|r| r.node == id)
        })
        .collect();
    Ok(Json(NodeDetail { node, shards }))
}

/// Every shard of every active collection: writer, compactor, serving replicas and states.
#[utoipa::path(get, path = "/v1/cluster/shards", tag = "cluster",
    responses((status = 200, description = "every shard of every active collection", body = ShardsResponse), ServerErrors))]
async fn list_shards(State(deps): State<Deps>) -> ApiResult<Json<ShardsResponse>> {
    let view = deps.coord.view().borrow().clone();
    Ok(Json(ShardsResponse { shards: shards_of(&deps, &view).await? }))
}

/// Waits (up to `wait_ms`) until every shard is served exactly by the nodes that should
/// serve it, and reports what is still moving. Assignment follows membership and drains
/// on its own; this is how an operator sees it converge.
#[utoipa::path(post, path = "/v1/cluster/rebalance", tag = "cluster", params(RebalanceParams),
    responses((status = 200, description = "converged, or what is still moving when `wait_ms` ran out", body = RebalanceResponse),
        (status = 400, description = INVALID_QUERY, body = ErrorBody), ServerErrors))]
async fn rebalance(
    State(deps): State<Deps>,
    ApiQuery(params): ApiQuery<RebalanceParams>,
) -> ApiResult<Json<RebalanceResponse>> {
    let wait = wait(params.wait_ms, 10_000, 60_000)?;
    let clock = deps.clock.as_ref();
    let started = clock.now();
    loop {
        let view = deps.coord.view().borrow().clone();
        let pending: Vec<ShardStatus> = shards_of(&deps, &view).await?.into_iter().filter(|s| !s.settled).collect();
        let waited = clock.elapsed(started);
        if pending.is_empty() || waited >= wait {
            let took_ms = waited.as_millis() as u64;
            return Ok(Json(RebalanceResponse { converged: pending.is_empty(), took_ms, pending }));
        }
        clock.sleep(Duration::from_millis(100)).await;
    }
}

/// Drain a node: it keeps answering, but its shards move to other nodes.
#[utoipa::path(post, path = "/v1/cluster/nodes/{id}/drain", tag = "cluster", params(("id" = String, Path, description = NODE_ID)),
    responses((status = 200, description = "the node, draining", body = NodeStatus),
        (status = 404, description = NO_NODE, body = ErrorBody),
        (status = 409, description = "a standalone node cannot be drained: it is the only node", body = ErrorBody),
        ServerErrors))]
async fn drain(
    State(deps): State<Deps>,
    Extension(standalone): Extension<Standalone>,
    Path(id): Path<String>,
) -> ApiResult<Json<NodeStatus>> {
    refuse_on_standalone(standalone)?;
    set_drain(&deps, &id, true).await
}

/// Stop draining a node.
#[utoipa::path(delete, path = "/v1/cluster/nodes/{id}/drain", tag = "cluster", params(("id" = String, Path, description = NODE_ID)),
    responses((status = 200, description = "the node, no longer draining", body = NodeStatus),
        (status = 404, description = NO_NODE, body = ErrorBody), ServerErrors))]
async fn undrain(State(deps): State<Deps>, Path(id): Path<String>) -> ApiResult<Json<NodeStatus>> {
    set_drain(&deps, &id, false).await
}

async fn set_drain(deps: &Deps, id: &str, draining: bool) -> ApiResult<Json<NodeStatus>> {
    if !deps.coord.view().borrow().members.iter().any(|m| m.node_id == id) {
        return Err(not_found(id).into());
    }
    deps.coord.set_drain(id, draining).await?;
    let mut rx = deps.coord.view();
    let clock = deps.clock.as_ref();
    let deadline = clock.now() + Duration::from_secs(5);
    loop {
        if let Some(node) = nodes_of(&rx.borrow_and_update()).into_iter().find(|n| n.id == id && n.draining == draining)
        {
            return Ok(Json(node));
        }
        let left = deadline.saturating_duration_since(clock.now());
        if time::timeout(clock, left, rx.changed()).await.is_err() {
            return Err(Error::retryable("the drain flag was written but is not visible yet").into());
        }
    }
}

/// Remove a node: drain it, wait (up to `wait_ms`) until it serves no shard and holds no
/// writer lease (an ingest node hands its leases over as it drains), then deregister it. It stays drained; the process should then be stopped.
#[utoipa::path(delete, path = "/v1/cluster/nodes/{id}", tag = "cluster", params(("id" = String, Path, description = NODE_ID), RemoveParams),
    responses((status = 200, description = "the node, removed (and still drained)", body = NodeStatus),
        (status = 400, description = INVALID_QUERY, body = ErrorBody), (status = 404, description = NO_NODE, body = ErrorBody),
        (status = 409, description = "a standalone node cannot be removed: it is the only node", body = ErrorBody),
        ServerErrors,
        (status = 503, description = "the node still serves or writes shards when `wait_ms` ran out (it stays drained; \
            retry later), or a transient failure", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait before retrying")))))]
async fn remove(
    State(deps): State<Deps>,
    Extension(standalone): Extension<Standalone>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<RemoveParams>,
) -> ApiResult<Json<NodeStatus>> {
    let wait = wait(params.wait_ms, 30_000, 120_000)?;
    refuse_on_standalone(standalone)?;
    let Json(mut status) = set_drain(&deps, &id, true).await?;
    let clock = deps.clock.as_ref();
    let deadline = clock.now() + wait;
    loop {
        let holds = {
            let view = deps.coord.view().borrow().clone();
            view.serving.iter().any(|r| r.node_id == id)
                || view.leases.iter().any(|l| l.kind == LeaseKind::Writer && l.holder == id)
        };
        if !holds {
            break;
        }
        if clock.now() >= deadline {
            return Err(Error::retryable(format!(
                "node {id:?} still serves or writes shards that no other node has taken over; it stays drained, retry later"
            ))
            .into());
        }
        clock.sleep(Duration::from_millis(100)).await;
    }
    // The drain flag stays: should the process come back (a new session re-registers it),
    // it still gets no shards until someone undrains it.
    deps.coord.deregister(&id).await?;
    // Answer once this node's view (fed by a watch) has seen it too, so a client reading
    // the members from here next does not still find the node (bounded: a view that lags
    // further is reported by the next read, not waited for).
    let seen_by = clock.now() + Duration::from_secs(2);
    while deps.coord.view().borrow().members.iter().any(|m| m.node_id == id) && clock.now() < seen_by {
        clock.sleep(Duration::from_millis(20)).await;
    }
    status.roles.clear();
    Ok(Json(status))
}
