//! Garbage collection: deletes objects no reader can need any more.
//!
//! Per shard:
//! - **Manifest retention.** A reader takes the newest manifest version and may keep using
//!   it for `gc_grace_ms`. A version therefore stays *retained* while it is the newest, or
//!   while the version that superseded it (its successor) is younger than the grace: a
//!   reader cannot have picked it up after its successor existed. This is stricter than
//!   looking at the version's own age (a version can be old yet have been the newest a
//!   second ago). Versions that are not retained are deleted; the newest never is.
//! - **Segments and tombstones.** Objects under `segments/` and `tombstones/` that no
//!   retained version references and that are older than the grace are deleted. The age
//!   check protects files a flush or compaction uploaded but has not committed yet.
//! - **WAL.** Entries at or below every retained version's `flushed_seq` (so no reader
//!   tailing the log from its manifest needs them) and older than the grace are deleted.
//!
//! Whole collections: incarnations whose catalog chain says `dropped` for longer than the
//! grace lose every object under `collections/{id}/`; directories no catalog entry names
//! (a create that crashed between its definition and its catalog entry) lose the objects
//! older than the grace.
//!
//! Order: the manifests are listed and read *before* the data they reference, so a manifest
//! committed meanwhile can only reference objects that were retained (carried over from the
//! newest version) or are younger than the grace.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use strata_deps::Deps;
use strata_storage::catalog::{CatalogEntry, CatalogState};
use strata_storage::manifest::{self, Manifest};
use strata_storage::paths::{self, ShardPaths};
use strata_types::{Error, Result};

use crate::report::GcReport;

/// What the collection sweep remembers between passes: catalog entries are immutable, so
/// each is read once; a dropped incarnation emptied by this process is not listed again.
#[derive(Default)]
pub(crate) struct CatalogMemo {
    entries: HashMap<String, CatalogEntry>,
    cleaned: HashSet<String>,
}

fn age_ms(now_ms: u64, meta: &ObjectMeta) -> u64 {
    now_ms.saturating_sub(u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0))
}

async fn list(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<ObjectMeta>> {
    store.list(Some(prefix)).try_collect().await.map_err(|e| strata_storage::storage_error(prefix.as_ref(), e))
}

/// Deletes `objects`; returns how many were deleted and their bytes. Objects already gone
/// (another collector) are not counted. On failure, the rest is still attempted and the
/// first error returned.
async fn delete_all(store: &dyn ObjectStore, objects: Vec<ObjectMeta>) -> Result<(u64, u64)> {
    if objects.is_empty() {
        return Ok((0, 0));
    }
    let sizes: HashMap<Path, u64> = objects.iter().map(|m| (m.location.clone(), m.size)).collect();
    let locations = futures::stream::iter(objects.into_iter().map(|m| Ok(m.location))).boxed();
    let mut results = store.delete_stream(locations);
    let (mut count, mut bytes, mut first_error) = (0, 0, None);
    while let Some(result) = results.next().await {
        match result {
            Ok(path) => {
                count += 1;
                bytes += sizes.get(&path).copied().unwrap_or(0);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                first_error.get_or_insert(strata_storage::storage_error("garbage collection delete", e));
            }
        }
    }
    match first_error {
        Some(e) => {
            tracing::warn!(deleted = count, bytes, error = %e, "garbage collection could not delete everything");
            Err(e)
        }
        None => Ok((count, bytes)),
    }
}

/// Collects one shard's garbage.
pub(crate) async fn gc_shard(deps: &Deps, shard: &ShardPaths, grace_ms: u64) -> Result<GcReport> {
    let store = deps.store.as_ref();
    let now = deps.clock.now_ms();

    // 1. Which manifest versions are retained.
    let mut versions: Vec<(u64, ObjectMeta)> = list(store, &shard.manifest_dir())
        .await?
        .into_iter()
        .filter_map(|m| Some((paths::parse_num(&m.location)?, m)))
        .collect();
    versions.sort_unstable_by_key(|(v, _)| *v);
    let listed_newest = versions.last().map_or(0, |(v, _)| *v);
    // A commit may land after the listing: probe forward so it counts as retained too.
    let latest = manifest::load_latest(store, shard, Some(listed_newest)).await?;
    let mut retained: Vec<u64> = Vec::new();
    let mut expired: Vec<ObjectMeta> = Vec::new();
    for (i, (version, meta)) in versions.iter().enumerate() {
        match versions.get(i + 1) {
            Some((_, successor)) if age_ms(now, successor) > grace_ms => expired.push(meta.clone()),
            _ => retained.push(*version),
        }
    }
    retained.extend(listed_newest + 1..=latest.version);

    // 2. Everything the retained versions reference, and the lowest WAL watermark.
    let mut referenced: HashSet<Path> = HashSet::new();
    let mut watermark: Option<u64> = None;
    for version in retained {
        let m: Manifest = if version == latest.version {
            latest.clone()
        } else {
            manifest::read(store, shard, version).await?.ok_or_else(|| {
                Error::retryable(format!("manifest version {version} of {} vanished during GC", shard.root()))
            })?
        };
        referenced.extend(m.referenced_paths(shard));
        watermark = Some(watermark.map_or(m.flushed_seq, |w| w.min(m.flushed_seq)));
    }
    let watermark = watermark.unwrap_or(0);

    // 3. Unreferenced data older than the grace.
    let mut data = Vec::new();
    for dir in [shard.segments_dir(), shard.tombstones_dir()] {
        data.extend(
            list(store, &dir)
                .await?
                .into_iter()
                .filter(|m| age_ms(now, m) > grace_ms && !referenced.contains(&m.location)),
        );
    }
    let wal: Vec<ObjectMeta> = list(store, &shard.wal_dir())
        .await?
        .into_iter()
        .filter(|m| paths::parse_num(&m.location).is_some_and(|seq| seq <= watermark) && age_ms(now, m) > grace_ms)
        .collect();

    // 4. Delete data first, manifests last: a crash in between leaves nothing dangling.
    let mut report = GcReport::default();
    let (n, bytes) = delete_all(store, data).await?;
    report.objects_deleted += n;
    report.bytes_deleted += bytes;
    let (n, bytes) = delete_all(store, wal).await?;
    report.objects_deleted += n;
    report.bytes_deleted += bytes;
    report.wal_entries_deleted = n;
    let (n, bytes) = delete_all(store, expired).await?;
    report.objects_deleted += n;
    report.bytes_deleted += bytes;
    report.manifests_deleted = n;
    if report.objects_deleted > 0 {
        tracing::info!(
            shard = %shard.root(), objects = report.objects_deleted, bytes = report.bytes_deleted,
            manifests = report.manifests_deleted, wal_entries = report.wal_entries_deleted, watermark,
            "garbage collected shard"
        );
    }
    Ok(report)
}

/// Every catalog entry (all versions of every name), read through `memo`.
async fn all_catalog_entries(store: &dyn ObjectStore, memo: &mut CatalogMemo) -> Result<Vec<(String, CatalogEntry)>> {
    let mut out = Vec::new();
    for meta in list(store, &paths::catalog_root()).await? {
        let name = match meta.location.parts().nth(1) {
            Some(name) if paths::parse_num(&meta.location).is_some() => name.as_ref().to_owned(),
            _ => continue,
        };
        let key = meta.location.to_string();
        if let Some(entry) = memo.entries.get(&key) {
            out.push((name, entry.clone()));
            continue;
        }
        let bytes = store
            .get(&meta.location)
            .await
            .map_err(|e| strata_storage::storage_error(&key, e))?
            .bytes()
            .await
            .map_err(|e| strata_storage::storage_error(&key, e))?;
        let entry: CatalogEntry = serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&key, e))?;
        memo.entries.insert(key, entry.clone());
        out.push((name, entry));
    }
    Ok(out)
}

/// Deletes dropped collection incarnations older than the grace, and orphaned collection
/// directories no catalog entry names.
pub(crate) async fn gc_collections(deps: &Deps, grace_ms: u64, memo: &mut CatalogMemo) -> Result<GcReport> {
    let store = deps.store.as_ref();
    let entries = all_catalog_entries(store, memo).await?;
    let now = deps.clock.now_ms();

    // The newest entry of each name decides whether its incarnation is active. Older
    // entries still matter: a dropped-then-recreated name's old incarnation appears only
    // there.
    let mut newest: BTreeMap<&str, &CatalogEntry> = BTreeMap::new();
    for (name, entry) in &entries {
        let slot = newest.entry(name.as_str()).or_insert(entry);
        if entry.version > slot.version {
            *slot = entry;
        }
    }
    let active: HashSet<&str> =
        newest.values().filter(|e| e.state == CatalogState::Active).map(|e| e.collection_id.as_str()).collect();
    let named: HashSet<&str> = entries.iter().map(|(_, e)| e.collection_id.as_str()).collect();
    let mut dropped_at: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, e) in entries.iter().filter(|(_, e)| e.state == CatalogState::Dropped) {
        if !active.contains(e.collection_id.as_str()) {
            let at = dropped_at.entry(e.collection_id.as_str()).or_default();
            *at = (*at).max(e.at_ms);
        }
    }

    let mut report = GcReport::default();
    let mut cleaned = Vec::new();
    for (id, at) in dropped_at {
        if now.saturating_sub(at) <= grace_ms || memo.cleaned.contains(id) {
            continue;
        }
        let objects = list(store, &paths::collection_dir(id)).await?;
        let (n, bytes) = delete_all(store, objects).await?;
        if n > 0 {
            tracing::info!(collection = id, objects = n, bytes, "garbage collected dropped collection");
            report.collections_deleted += 1;
        }
        report.objects_deleted += n;
        report.bytes_deleted += bytes;
        cleaned.push(id.to_owned());
    }

    let root = Path::from("collections");
    let listing =
        store.list_with_delimiter(Some(&root)).await.map_err(|e| strata_storage::storage_error(root.as_ref(), e))?;
    for dir in listing.common_prefixes {
        let Some(id) = dir.filename() else { continue };
        if named.contains(id) {
            continue;
        }
        // Only old objects: a create in progress writes its definition moments before its
        // catalog entry.
        let objects: Vec<ObjectMeta> =
            list(store, &dir).await?.into_iter().filter(|m| age_ms(now, m) > grace_ms).collect();
        let (n, bytes) = delete_all(store, objects).await?;
        if n > 0 {
            tracing::info!(collection = id, objects = n, bytes, "garbage collected orphaned collection objects");
            report.collections_deleted += 1;
        }
        report.objects_deleted += n;
        report.bytes_deleted += bytes;
    }
    memo.cleaned.extend(cleaned);
    Ok(report)
}
