//! Compactor settings. Plain serde; every field has a documented default, and
//! [`CompactorConfig::validate`] refuses values that would make the compactor spin or
//! produce segments its formats cannot address.

use serde::{Deserialize, Serialize};
use strata_types::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// How often each shard is examined, in milliseconds. Default 5,000.
    pub interval_ms: u64,
    /// Merge once this many segments sit in one size tier. Default 4, at least 2.
    pub tier_fanout: usize,
    /// Tier 0 holds segments with fewer live rows than this; tier `t ≥ 1` holds those with
    /// live rows in `[base·fanout^(t-1), base·fanout^t)`. Default 10,000.
    pub tier_base_rows: u32,
    /// A merge never produces a segment above this many rows. Default 2,000,000; at most
    /// `u32::MAX` (rows of a segment are addressed by `u32`).
    pub max_merge_rows: u64,
    /// A segment whose deleted/rows ratio reaches this is rewritten without its deleted
    /// rows. Default 0.2; in `(0, 1]`.
    pub tombstone_ratio: f64,
    /// Merged segments with fewer rows get no HNSW graph and are searched exactly; same
    /// meaning as ingest's. Default 2,000.
    pub graph_min_rows: usize,
    /// Objects unreferenced for longer than this are deleted, in milliseconds. Default
    /// 600,000 (10 minutes). Must exceed how long any reader keeps using a manifest version
    /// after a newer one exists, and how long any writer takes from uploading a segment to
    /// committing the manifest that names it.
    pub gc_grace_ms: u64,
    /// The background loop visits a shard only when its published head (coordination)
    /// moved since the last visit, or when it could not read it, or when the last visit is
    /// this old, in milliseconds; the same bound applies to the sweep of dropped
    /// collections. An idle shard therefore costs a few object-store requests per this
    /// interval instead of per `interval_ms`, and objects a visit left for later (not yet
    /// past `gc_grace_ms`) are deleted up to this much later. Default 300,000 (5 minutes;
    /// decision 0012).
    pub idle_visit_ms: u64,
    /// While the cluster view reports no catalog change, the catalog is still listed from
    /// object storage this often, in milliseconds (every `interval_ms` while etcd is
    /// unreachable). Default 60,000 (decision 0012).
    pub catalog_poll_ms: u64,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            tier_fanout: 4,
            tier_base_rows: 10_000,
            max_merge_rows: 2_000_000,
            tombstone_ratio: 0.2,
            graph_min_rows: 2_000,
            gc_grace_ms: 600_000,
            idle_visit_ms: 300_000,
            catalog_poll_ms: strata_deps::DEFAULT_CATALOG_POLL_MS,
        }
    }
}

impl CompactorConfig {
    pub fn validate(&self) -> Result<()> {
        if self.interval_ms == 0 {
            return Err(Error::invalid("compactor.interval_ms must be positive"));
        }
        // A fanout of 1 would "merge" a single segment into itself forever.
        if self.tier_fanout < 2 {
            return Err(Error::invalid(format!("compactor.tier_fanout must be at least 2, got {}", self.tier_fanout)));
        }
        if self.tier_base_rows == 0 {
            return Err(Error::invalid("compactor.tier_base_rows must be positive"));
        }
        if self.max_merge_rows == 0 || self.max_merge_rows > u64::from(u32::MAX) {
            return Err(Error::invalid(format!(
                "compactor.max_merge_rows must be in 1..={}, got {}",
                u32::MAX,
                self.max_merge_rows
            )));
        }
        // Zero (or NaN) would rewrite every segment on every pass.
        if !(self.tombstone_ratio > 0.0 && self.tombstone_ratio <= 1.0) {
            return Err(Error::invalid(format!(
                "compactor.tombstone_ratio must be in (0, 1], got {}",
                self.tombstone_ratio
            )));
        }
        if self.gc_grace_ms == 0 {
            return Err(Error::invalid("compactor.gc_grace_ms must be positive"));
        }
        Ok(())
    }
}
