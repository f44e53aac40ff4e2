//! Shard manifests: a create-only chain `manifest/{version:020}` whose newest version is
//! the shard's state: live segments, the tombstone bitmap of each, and `flushed_seq` (every
//! WAL entry at or below it is contained in segments).
//!
//! Commit protocol: read the newest version `v`, build `v + 1`, create it with
//! `PutMode::Create`. If another committer won `v + 1` the create fails with
//! [`ErrorKind::Conflict`](strata_types::ErrorKind::Conflict); the committer re-reads and
//! *rebases* its change onto the winner. [`commit_with_rebase`] is that loop, the one every
//! committer (flush, bulk import, compaction) runs. This works on every store
//! (LocalFileSystem supports create but not compare-and-swap updates) and never depends on
//! lease timing.
//!
//! Finding the newest version cheaply: starting from a known version (a hint), probe
//! `v + 1, v + 2, v + 4, …` with HEAD requests and binary-search the boundary, so steady
//! state costs one HEAD. Without a hint, list the directory once.

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use strata_types::{Error, Result};

use crate::paths::{self, ShardPaths};

mod rebase;
#[cfg(test)]
mod rebase_tests;

pub use rebase::{Rebase, Rebased, RetryPolicy, Step, commit_with_rebase};

/// One live segment of a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// `{max_seq:020}-{nonce:016x}`; see [`paths::segment_id`].
    pub id: String,
    pub rows: u32,
    /// Total bytes of the segment's files.
    pub bytes: u64,
    /// Lowest and highest WAL sequence whose rows it holds.
    pub min_seq: u64,
    pub max_seq: u64,
    /// Whether `graph.hnsw` exists (small segments are searched exactly instead).
    pub has_graph: bool,
    /// Whether `attrs.idx` exists (segments written before attribute indexes lack it; they
    /// are indexed when loaded).
    #[serde(default)]
    pub has_attr_index: bool,
    /// Current tombstone bitmap of this segment, if any row is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone: Option<TombstoneRef>,
    /// How many merges produced this segment (0 for flushes); informational.
    #[serde(default)]
    pub level: u32,
}

impl SegmentMeta {
    pub fn deleted(&self) -> u32 {
        self.tombstone.as_ref().map_or(0, |t| t.deleted)
    }
    pub fn live_rows(&self) -> u32 {
        self.rows.saturating_sub(self.deleted())
    }
}

/// A tombstone bitmap object: `tombstones/{segment}-{generation}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneRef {
    pub generation: u64,
    /// Number of deleted rows (the bitmap's cardinality).
    pub deleted: u32,
}

/// One version of a shard's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    pub flushed_seq: u64,
    pub segments: Vec<SegmentMeta>,
    /// Epoch of the writer or compactor that committed this version.
    #[serde(default)]
    pub committer_epoch: u64,
    #[serde(default)]
    pub created_ms: u64,
}

impl Manifest {
    pub fn segment(&self, id: &str) -> Option<&SegmentMeta> {
        self.segments.iter().find(|s| s.id == id)
    }
    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.live_rows())).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Every object this version references (besides WAL entries above `flushed_seq`).
    pub fn referenced_paths(&self, shard: &ShardPaths) -> Vec<object_store::path::Path> {
        let mut out = vec![shard.manifest(self.version)];
        for s in &self.segments {
            for file in paths::SEGMENT_FILES {
                out.push(shard.segment_file(&s.id, file));
            }
            if let Some(t) = &s.tombstone {
                out.push(shard.tombstone(&s.id, t.generation));
            }
        }
        out
    }
}

/// Creates version `manifest.version`. [`ErrorKind::Conflict`](strata_types::ErrorKind::Conflict)
/// when another committer created it first.
pub async fn commit(store: &dyn ObjectStore, shard: &ShardPaths, manifest: &Manifest) -> Result<()> {
    let path = shard.manifest(manifest.version);
    let json = serde_json::to_vec(manifest).expect("manifests always serialise");
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    store
        .put_opts(&path, PutPayload::from(json), opts)
        .await
        .map(|_| ())
        .map_err(|e| crate::storage_error(path.as_ref(), e))
}

/// Reads version `version`, `None` if it does not exist.
pub async fn read(store: &dyn ObjectStore, shard: &ShardPaths, version: u64) -> Result<Option<Manifest>> {
    let path = shard.manifest(version);
    let bytes = match store.get(&path).await {
        Ok(r) => r.bytes().await.map_err(|e| crate::storage_error(path.as_ref(), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(crate::storage_error(path.as_ref(), e)),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path.as_ref(), e))?;
    if m.version != version {
        return Err(Error::corrupt(path.as_ref(), format!("holds version {}", m.version)));
    }
    Ok(Some(m))
}

async fn exists(store: &dyn ObjectStore, shard: &ShardPaths, version: u64) -> Result<bool> {
    let path = shard.manifest(version);
    match store.head(&path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(crate::storage_error(path.as_ref(), e)),
    }
}

/// The newest version number at or after `hint` (a version known to exist, or 0 for "no
/// manifest yet"). Costs one HEAD when nothing changed.
pub async fn latest_version_from(store: &dyn ObjectStore, shard: &ShardPaths, hint: u64) -> Result<u64> {
    // Exponential probe for an upper bound that does not exist…
    let mut low = hint; // exists (or 0 = virtual empty version)
    let mut step = 1u64;
    let high = loop {
        let probe = low + step;
        if exists(store, shard, probe).await? {
            low = probe;
            step = step.saturating_mul(2);
        } else {
            break probe;
        }
    };
    // …then binary-search the boundary between `low` (exists) and `high` (absent).
    let (mut low, mut high) = (low, high);
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if exists(store, shard, mid).await? {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// The newest version, for a reader that holds version `known` (0: none yet) and may have
/// been told by a published head that version `promised` exists. Probes forward from
/// `known` (one HEAD when nothing changed). Garbage collection deletes old versions, so
/// the chain need not continue right after `known` (a reader idle past the grace period)
/// nor start at 1 (a reader that starts late): when the probe comes up short of
/// `promised` — or, with no promise, finds nothing after a version that is gone (or
/// after none) — the directory is listed.
pub async fn newest_version(
    store: &dyn ObjectStore,
    shard: &ShardPaths,
    known: u64,
    promised: Option<u64>,
) -> Result<u64> {
    let found = latest_version_from(store, shard, known).await?;
    let short = match promised {
        Some(promised) => found < promised,
        None => found == known && (known == 0 || !exists(store, shard, known).await?),
    };
    if !short {
        return Ok(found);
    }
    let listed = latest_version_by_listing(store, shard).await?;
    latest_version_from(store, shard, listed.max(found)).await
}

/// The newest version number by listing the directory; 0 if there is no manifest.
pub async fn latest_version_by_listing(store: &dyn ObjectStore, shard: &ShardPaths) -> Result<u64> {
    let dir = shard.manifest_dir();
    let metas: Vec<_> =
        store.list(Some(&dir)).try_collect().await.map_err(|e| crate::storage_error(dir.as_ref(), e))?;
    Ok(metas.iter().filter_map(|m| paths::parse_num(&m.location)).max().unwrap_or(0))
}

/// Reads the newest manifest (an empty version 0 if the shard has none). With a hint (a
/// version that existed) the cost is one HEAD plus one GET when something changed. A hint
/// that garbage collection has since deleted (with its successors) falls back to listing
/// the directory, as does a hint of 0: the chain need not start at version 1 once
/// garbage collection has deleted its first versions.
pub async fn load_latest(store: &dyn ObjectStore, shard: &ShardPaths, hint: Option<u64>) -> Result<Manifest> {
    if let Some(h) = hint.filter(|&h| h > 0) {
        let version = latest_version_from(store, shard, h).await?;
        if version == 0 {
            return Ok(Manifest::default());
        }
        if let Some(m) = read(store, shard, version).await? {
            return Ok(m);
        }
    }
    // No hint, or the hinted chain was garbage-collected: list, then probe forward from
    // the listed maximum because a commit may land between the listing and now.
    let listed = latest_version_by_listing(store, shard).await?;
    let version = latest_version_from(store, shard, listed).await?;
    if version == 0 {
        return Ok(Manifest::default());
    }
    read(store, shard, version)
        .await?
        .ok_or_else(|| Error::retryable(format!("manifest version {version} of {} disappeared", shard.root())))
}

/// [`load_latest`] from `hint`, falling back to listing the directory when reading from
/// the hint fails (a hint far behind, into a stretch garbage collection thinned out).
pub async fn load_latest_or_list(store: &dyn ObjectStore, shard: &ShardPaths, hint: Option<u64>) -> Result<Manifest> {
    if let Some(h) = hint {
        match load_latest(store, shard, Some(h)).await {
            Ok(m) => return Ok(m),
            Err(e) => tracing::debug!(shard = %shard.root(), hint = h, error = %e, "manifest hint is stale; listing"),
        }
    }
    load_latest(store, shard, None).await
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use strata_types::ErrorKind;

    #[tokio::test]
    async fn chain_commits_are_create_only_and_latest_is_found_from_any_hint() {
        let store = InMemory::new();
        let shard = ShardPaths::new("c", 0);
        assert_eq!(load_latest(&store, &shard, None).await.unwrap(), Manifest::default());
        for v in 1..=37 {
            let m = Manifest { version: v, flushed_seq: v * 10, ..Default::default() };
            commit(&store, &shard, &m).await.unwrap();
        }
        let dup = Manifest { version: 37, ..Default::default() };
        assert_eq!(commit(&store, &shard, &dup).await.unwrap_err().kind(), ErrorKind::Conflict);
        for hint in [None, Some(0), Some(1), Some(20), Some(36), Some(37)] {
            let m = load_latest(&store, &shard, hint).await.unwrap();
            assert_eq!((m.version, m.flushed_seq), (37, 370), "hint {hint:?}");
        }
    }

    /// Readers that start after garbage collection deleted the first versions, or that
    /// were idle while it deleted the versions after theirs, still find the newest.
    #[tokio::test]
    async fn the_newest_version_is_found_across_collected_versions() {
        let store = InMemory::new();
        let shard = ShardPaths::new("c", 0);
        assert_eq!(newest_version(&store, &shard, 0, None).await.unwrap(), 0, "no manifest at all");
        for v in 1..=6 {
            commit(&store, &shard, &Manifest { version: v, ..Default::default() }).await.unwrap();
        }
        // Garbage collection deletes a prefix of the chain: every version whose successor
        // has existed for longer than its grace period.
        for v in 1..=4 {
            store.delete(&shard.manifest(v)).await.unwrap();
        }
        // A fresh reader: the chain starts at 5 now.
        assert_eq!(newest_version(&store, &shard, 0, None).await.unwrap(), 6);
        assert_eq!(newest_version(&store, &shard, 0, Some(6)).await.unwrap(), 6);
        assert_eq!(load_latest(&store, &shard, Some(0)).await.unwrap().version, 6);
        // A reader left at 3 (gone, like its successor): listed, with or without a head.
        assert_eq!(newest_version(&store, &shard, 3, None).await.unwrap(), 6);
        assert_eq!(newest_version(&store, &shard, 3, Some(6)).await.unwrap(), 6);
        // Nothing changed: the probe's answer.
        assert_eq!(newest_version(&store, &shard, 6, None).await.unwrap(), 6);
        assert_eq!(newest_version(&store, &shard, 6, Some(6)).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn a_hint_deleted_by_garbage_collection_falls_back_to_listing() {
        let store = InMemory::new();
        let shard = ShardPaths::new("c", 0);
        for v in 1..=9 {
            commit(&store, &shard, &Manifest { version: v, ..Default::default() }).await.unwrap();
        }
        for v in 1..=7 {
            store.delete(&shard.manifest(v)).await.unwrap();
        }
        assert_eq!(load_latest(&store, &shard, Some(2)).await.unwrap().version, 9);
    }
}
