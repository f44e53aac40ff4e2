//! Ingest settings. Plain serde; every field has a documented default.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// How long a shard's writer waits for more requests to join a group commit after the
    /// first one arrives. Default 0: a group commit takes every request that queued while
    /// the previous one was being written (natural batching) and adds no delay. A few
    /// milliseconds can save PUT requests on object stores that bill per request.
    pub group_commit_window_ms: u64,
    /// A group commit closes early once it holds this many encoded bytes. Default 16 MiB.
    pub group_commit_max_bytes: usize,
    /// Most rows (or ids) one upsert/delete request may carry. Default 10,000.
    pub max_batch_rows: usize,
    /// Flush a shard's unflushed WAL tail into a segment once it holds this many rows.
    /// Default 100,000.
    pub flush_rows: usize,
    /// … or this many bytes. Default 256 MiB.
    pub flush_bytes: usize,
    /// … or once its oldest entry is this old. Default 30 s.
    pub flush_age_ms: u64,
    /// Segments with fewer rows get no HNSW graph and are searched exactly. Default 2,000.
    pub graph_min_rows: usize,
    /// Writes to a shard are refused with 429 while its unflushed backlog exceeds this
    /// many rows. Default 1,000,000.
    pub backlog_max_rows: usize,
    /// … or this many bytes. Default 1 GiB.
    pub backlog_max_bytes: usize,
    /// A flush whose segment upload started longer ago than this abandons its manifest
    /// commit and uploads the segment again under a new name, because garbage collection
    /// deletes unreferenced objects older than the compactor's `gc_grace_ms` and the
    /// manifest must never name a deleted object. Default 300,000 (5 minutes): half the
    /// compactor's default `gc_grace_ms` of 10 minutes, leaving the other half for clock
    /// skew and the commit itself. Standalone lowers it to `gc_grace_ms / 2` if above that.
    pub flush_commit_max_age_ms: u64,
    /// While the cluster view reports no catalog change (create/drop publish catalog
    /// versions to coordination, which the view watches), the catalog is still listed from
    /// object storage this often, in milliseconds, in case a change was not published.
    /// While etcd is unreachable it is listed every 500 ms instead. Default 60,000
    /// (decision 0012).
    pub catalog_poll_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            group_commit_window_ms: 0,
            group_commit_max_bytes: 16 << 20,
            max_batch_rows: 10_000,
            flush_rows: 100_000,
            flush_bytes: 256 << 20,
            flush_age_ms: 30_000,
            graph_min_rows: 2_000,
            backlog_max_rows: 1_000_000,
            backlog_max_bytes: 1 << 30,
            flush_commit_max_age_ms: 300_000,
            catalog_poll_ms: strata_deps::DEFAULT_CATALOG_POLL_MS,
        }
    }
}
