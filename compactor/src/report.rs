//! What a compaction, a garbage collection and a whole pass did, returned to callers (tests,
//! the admin endpoint) and serialisable as JSON.

use serde::Serialize;

/// One committed compaction of one shard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompactionReport {
    pub collection_id: String,
    pub shard: u32,
    /// Why the inputs were chosen: `tier {t}` or `tombstones`.
    pub reason: String,
    /// Segments replaced.
    pub inputs: Vec<String>,
    /// The merged segment, `None` when every input row was deleted.
    pub output: Option<String>,
    /// Rows stored in the inputs, deleted ones included.
    pub input_rows: u64,
    /// Rows in the output segment.
    pub output_rows: u32,
    /// Rows deleted while the merge ran, carried over as the output's tombstones.
    pub carried_tombstones: u32,
    /// The manifest version this compaction committed.
    pub manifest_version: u64,
    pub seconds: f64,
}

/// Objects removed by garbage collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Every object deleted, all kinds included.
    pub objects_deleted: u64,
    pub bytes_deleted: u64,
    /// Of which manifest versions.
    pub manifests_deleted: u64,
    /// Of which WAL entries.
    pub wal_entries_deleted: u64,
    /// Dropped or orphaned collection incarnations whose objects were deleted.
    pub collections_deleted: u64,
}

impl GcReport {
    pub fn add(&mut self, other: &GcReport) {
        self.objects_deleted += other.objects_deleted;
        self.bytes_deleted += other.bytes_deleted;
        self.manifests_deleted += other.manifests_deleted;
        self.wal_entries_deleted += other.wal_entries_deleted;
        self.collections_deleted += other.collections_deleted;
    }
}

/// One pass over every active collection's shards.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PassReport {
    /// Shards worked on.
    pub shards: u32,
    /// Shards skipped because another compactor holds their lease.
    pub shards_skipped: u32,
    pub compactions: Vec<CompactionReport>,
    pub gc: GcReport,
    /// One message per shard (or collection sweep) that failed; the pass goes on.
    pub errors: Vec<String>,
    pub seconds: f64,
}
