//! Query settings. Plain serde; every field has a documented default.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// `eventual` reads reuse a shard's state if it was refreshed less than this long ago,
    /// so they see every acknowledged write at most this much (plus one refresh) later.
    /// Default 1,000 ms.
    pub eventual_max_lag_ms: u64,
    /// Largest `top_k` accepted. Default 1,000.
    pub max_top_k: usize,
    /// Largest `ef` accepted. Default 4,096.
    pub max_ef: usize,
    /// Most ids one get request may carry. Default 10,000.
    pub max_get_ids: usize,
    /// Shard searches that run at once, on threads of the blocking pool (graph walks and
    /// exact scans never run on the async runtime); further searches wait their turn.
    /// Default 0: one per CPU core.
    pub search_threads: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self { eventual_max_lag_ms: 1_000, max_top_k: 1_000, max_ef: 4_096, max_get_ids: 10_000, search_threads: 0 }
    }
}
