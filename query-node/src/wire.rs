//! The read API as other nodes reach it (gRPC, `strata_rpc::server`): what arrives on the
//! wire is validated like a client's request, then answered by local shard hosting.

use std::sync::Arc;

use futures::future::BoxFuture;
use strata_deps::{Deps, Resolver};
use strata_rpc::{
    Hit, ShardCount, ShardGet, ShardReads, ShardRow, ShardScan, ShardScanRequest, ShardSearch, ShardStats,
};
use strata_types::Result;

use crate::QueryConfig;
use crate::host::ShardHost;
use crate::validate;

/// Validates requests from other nodes, then hands them to [`ShardHost`].
pub(crate) struct WireReads {
    pub deps: Deps,
    pub config: Arc<QueryConfig>,
    pub resolver: Arc<Resolver>,
    pub host: Arc<ShardHost>,
}

impl ShardReads for WireReads {
    fn search_shard(&self, collection_id: &str, shard: u32, req: ShardSearch) -> BoxFuture<'_, Result<Vec<Hit>>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move {
            let def = self.resolver.by_id(&self.deps, &collection_id).await?;
            validate::shard(&def, shard)?;
            validate::search(&self.config, &def, &req.vector, req.top_k as usize, req.ef as usize)?;
            self.host.search(&collection_id, shard, req).await
        })
    }

    fn get_rows(&self, collection_id: &str, shard: u32, req: ShardGet) -> BoxFuture<'_, Result<Vec<ShardRow>>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move {
            validate::get(&self.config, &req.ids)?;
            self.host.get(&collection_id, shard, req).await
        })
    }

    fn describe_shard(&self, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<ShardStats>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.host.describe(&collection_id, shard).await })
    }

    fn scan_shard(&self, collection_id: &str, shard: u32, req: ShardScanRequest) -> BoxFuture<'_, Result<ShardScan>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move {
            validate::scan(req.after.as_ref(), req.limit)?;
            self.host.scan(&collection_id, shard, req).await
        })
    }

    fn count_shard(&self, collection_id: &str, shard: u32, req: ShardCount) -> BoxFuture<'_, Result<u64>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move {
            let def = self.resolver.by_id(&self.deps, &collection_id).await?;
            validate::shard(&def, shard)?;
            self.host.count(&collection_id, shard, req).await
        })
    }
}
