//! Query settings. Plain serde; every field has a documented default.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// `eventual` reads serve a shard's in-memory state if it was confirmed current less
    /// than this long ago, so they see every acknowledged write at most this much (plus one
    /// refresh) later. A background refresher re-confirms every shard read in the last
    /// minute every half of this (at least 10 ms apart), so eventual reads of shards in use
    /// make no request to etcd or object storage (decision 0015). Default 1,000 ms.
    pub eventual_max_lag_ms: u64,
    /// Largest `top_k` accepted. Default 1,000.
    pub max_top_k: usize,
    /// Largest `ef` accepted. Default 4,096.
    pub max_ef: usize,
    /// Most ids one get request may carry. Default 10,000.
    pub max_get_ids: usize,
    /// A shard search expected to do at most this much work — distances computed times
    /// the vector dimension — runs on the request's own async worker; a larger one (an
    /// exact scan of a large unflushed tail, a very wide `ef`) runs on the search pool, so
    /// it cannot stall the runtime. Handing a search to another thread costs about 0.1 ms
    /// of CPU on a small VM (measured), more than a typical graph search, hence the split.
    /// Default 8,000,000 (about 1 ms of work: 20,000 distances at 384-d; a graph search at
    /// ef 128 over two segments of 384-d vectors is about 4,000,000). 0 sends every search
    /// to the pool.
    pub inline_search_max_work: u64,
    /// Searches that run on the search pool at once (threads of the blocking pool);
    /// further ones wait their turn. Default 0: one per CPU core.
    pub search_threads: usize,
    /// While the cluster view reports no catalog change (create/drop publish catalog
    /// versions to coordination, which the view watches), the serving loop still lists the
    /// catalog from object storage this often, in milliseconds, in case a change was not
    /// published. While etcd is unreachable it lists every 500 ms instead. Default 60,000
    /// (decision 0012).
    pub catalog_poll_ms: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            eventual_max_lag_ms: 1_000,
            max_top_k: 1_000,
            max_ef: 4_096,
            max_get_ids: 10_000,
            inline_search_max_work: 8_000_000,
            search_threads: 0,
            catalog_poll_ms: strata_deps::DEFAULT_CATALOG_POLL_MS,
        }
    }
}
