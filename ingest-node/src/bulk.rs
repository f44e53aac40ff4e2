//! Bulk import: rows of one shard written straight into a new segment, bypassing the WAL,
//! and committed through the manifest like a flush (`POST /v1/collections/{name}/bulk`).
//!
//! Semantics. A bulk commit is ordered at its manifest commit: its rows are newer than
//! every row already in segments at that moment (older copies of the same ids are
//! tombstoned, with rebase on a lost race exactly as a flush does) and older than every
//! WAL write not yet flushed at that moment — the unflushed tail masks a bulk row of the
//! same id, and the flush that later moves that write into a segment tombstones the bulk
//! copy. `flushed_seq` is left unchanged. The bulk segment's `min_seq`/`max_seq` are the
//! base manifest's `flushed_seq`, so compaction orders it with the segments of its time.
//!
//! Only the shard's writer node accepts a bulk request: any other node answers 409 naming
//! the owner's REST address (clients route by `/v1/cluster/shards` `writer_owner`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use futures::future::BoxFuture;
use strata_api::openapi::{JsonBodyErrors, NOT_FOUND, ServerErrors};
use strata_api::{ApiJson, ApiResult, BulkRequest, BulkResponse, ErrorBody};
use strata_coord::{Head, shard_key};
use strata_deps::Deps;
use strata_storage::attr_types::AttrTypes;
use strata_storage::manifest::{self, Manifest, Rebase, RetryPolicy, SegmentMeta, Step};
use strata_storage::paths::{self, ShardPaths};
use strata_storage::segment::{self as segstore, SegmentIds};
use strata_types::time::ClockExt;
use strata_types::{CollectionDef, Error, Result, RowId};

use crate::IngestNode;
use crate::config::IngestConfig;
use crate::flush::{self, IdCache};
use crate::routing::WriteRouter;
use crate::validate;

/// Bulk-load rows of one shard into a new segment (bypasses the WAL). Served only by the
/// shard's writer: other nodes answer 409 naming it.
#[utoipa::path(post, path = "/v1/collections/{name}/bulk", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = BulkRequest,
    responses((status = 200, description = "the rows are in a new segment, committed", body = BulkResponse),
        JsonBodyErrors, (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = "this node does not write the shard; the message names the owner", body = ErrorBody),
        ServerErrors))]
pub(crate) async fn bulk_import(
    State(node): State<IngestNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<BulkRequest>,
) -> ApiResult<Json<BulkResponse>> {
    Ok(Json(node.bulk(&name, req).await?))
}

/// Validates, builds one segment (off the runtime) and commits it; see the module docs.
/// The request's size and collection are already checked.
pub(crate) async fn import(
    deps: &Deps,
    config: &IngestConfig,
    router: &WriteRouter,
    def: &Arc<CollectionDef>,
    types: &AttrTypes,
    req: BulkRequest,
) -> Result<BulkResponse> {
    let (shard, n) = (req.shard, req.rows.len());
    validate::shard(def, shard)?;
    if let Some(owner) = router.remote_owner(&shard_key(&def.id, shard)) {
        return Err(Error::conflict(format!(
            "shard {shard} of {:?} is written by node {} at {}; send its bulk rows there",
            def.name, owner.node_id, owner.http_url
        )));
    }
    let mut rows = validate::bulk_rows(def, shard, req.rows)?;
    types.admit(&mut rows.iter_mut().collect::<Vec<_>>()).await?;
    // Being the writer means holding its lease: start (or reuse) the local writer.
    router.local_writer(def, shard).await?;
    let paths = ShardPaths::new(def.id.clone(), shard);
    let base = manifest::load_latest(deps.store.as_ref(), &paths, None).await?;
    let started = deps.clock.now();
    let (def_build, graph_min_rows) = (def.clone(), config.graph_min_rows);
    let (built, rows) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((segstore::build(&def_build, &rows, graph_min_rows)?, rows))
    })
    .await
    .map_err(|e| Error::internal(format!("segment build panicked: {e}")))??;
    let seg_ids: Vec<RowId> = rows.into_iter().map(|r| r.id).collect();
    let segment_id = paths::segment_id(base.flushed_seq, deps.rng.next_u64());
    let mut ids = IdCache::default();
    let meta = flush::store_segment(
        deps,
        &paths,
        &segment_id,
        &built,
        Arc::new(SegmentIds::new(seg_ids.clone())),
        (base.flushed_seq, base.flushed_seq),
        &mut ids,
    )
    .await?;
    let seconds = deps.clock.elapsed(started).as_secs_f64();
    tracing::info!(shard = %paths.root(), segment = %segment_id, rows = n, seconds, "built bulk segment");
    let committed = commit(deps, &paths, meta, &seg_ids, &mut ids, &base).await?;
    deps.coord
        .publish_head(&shard_key(&def.id, shard), Head { wal_seq: 0, manifest_version: committed.version })
        .await?;
    Ok(BulkResponse { shard, imported: n, segment: segment_id, manifest_version: committed.version })
}

/// Commits the bulk segment onto the newest manifest, keeping its `flushed_seq`; rebases
/// (recomputing tombstones) when another committer wins a version first.
async fn commit(
    deps: &Deps,
    paths: &ShardPaths,
    meta: SegmentMeta,
    touched: &[RowId],
    ids: &mut IdCache,
    base: &Manifest,
) -> Result<Manifest> {
    let mut change = BulkCommit { deps, paths, meta, touched, ids };
    let policy = RetryPolicy::default();
    let store = deps.store.as_ref();
    let rebased =
        manifest::commit_with_rebase(store, deps.clock.as_ref(), paths, Some(base.version), policy, &mut change)
            .await?;
    Ok(rebased.manifest)
}

/// A bulk import's change to the manifest: its segment, and tombstones for older copies of
/// its ids; `flushed_seq` stays.
struct BulkCommit<'a> {
    deps: &'a Deps,
    paths: &'a ShardPaths,
    meta: SegmentMeta,
    touched: &'a [RowId],
    ids: &'a mut IdCache,
}

impl Rebase for BulkCommit<'_> {
    type Output = ();

    fn step<'a>(&'a mut self, latest: &'a Manifest) -> BoxFuture<'a, Result<Step<()>>> {
        Box::pin(async move {
            let segment = Some(self.meta.clone());
            let (deps, paths) = (self.deps, self.paths);
            let next =
                flush::next_manifest(deps, paths, latest, segment, self.touched, latest.flushed_seq, 0, self.ids)
                    .await?;
            Ok(Step::Commit(next, ()))
        })
    }
}
