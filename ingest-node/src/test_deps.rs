//! The infrastructure the role's unit tests run on: a given store, coordination and clock,
//! a 1 MiB memory-only cache and no peers.

use std::sync::Arc;

use object_store::ObjectStore;
use strata_coord::Coordination;
use strata_deps::Deps;
use strata_storage::cache::{CacheConfig, SegmentCache};
use strata_types::random::Random;
use strata_types::time::Clock;

pub(crate) async fn deps(
    store: Arc<dyn ObjectStore>,
    coord: Arc<dyn Coordination>,
    clock: Arc<dyn Clock>,
    node_id: &str,
    seed: u64,
) -> Deps {
    let cache =
        SegmentCache::open(&CacheConfig { memory_bytes: 1 << 20, disk_dir: None, ..Default::default() }).await.unwrap();
    Deps {
        store,
        coord,
        clock,
        rng: Arc::new(Random::seeded(seed)),
        cache: Arc::new(cache),
        rpc: strata_rpc::RpcClients::new(Default::default()),
        node_id: node_id.into(),
        metrics: Default::default(),
    }
}
