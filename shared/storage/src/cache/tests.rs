//! Tests of the segment cache against the real foyer disk tier (in a tempdir) and
//! object_store's in-memory and local-filesystem stores.

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::*;
use strata_types::ErrorKind;

const MIB: usize = 1 << 20;

/// Deterministic, non-repeating bytes, so a misplaced chunk cannot compare equal.
fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn memory_config(chunk_bytes: usize) -> CacheConfig {
    CacheConfig { memory_bytes: 64 * MIB, disk_bytes: 0, disk_dir: None, chunk_bytes }
}

fn disk_config(dir: &std::path::Path, chunk_bytes: usize) -> CacheConfig {
    CacheConfig { memory_bytes: 32 * MIB, disk_bytes: 128 * MIB, disk_dir: Some(dir.to_owned()), chunk_bytes }
}

async fn put(store: &dyn ObjectStore, path: &Path, bytes: &Bytes) {
    store.put(path, PutPayload::from(bytes.clone())).await.unwrap();
}

#[tokio::test]
async fn read_through_fetches_once_then_hits_memory() {
    let store = InMemory::new();
    let path = Path::from("segments/s1/rows.arrow");
    let bytes = data(3000, 1);
    put(&store, &path, &bytes).await;
    let cache = SegmentCache::open(&memory_config(1024)).await.unwrap();

    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes);
    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes);
    store.delete(&path).await.unwrap();
    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes, "served without the store");
    let stats = cache.stats();
    assert_eq!(stats, CacheStats { memory_hits: 2, disk_hits: 0, misses: 1, bytes_fetched: 3000, bytes_served: 9000 });
}

#[tokio::test]
async fn insert_serves_without_fetching_and_empty_objects_work() {
    let store = InMemory::new();
    let cache = SegmentCache::open(&memory_config(4096)).await.unwrap();
    let (full, empty) = (Path::from("a/full"), Path::from("a/empty"));
    cache.insert(&full, data(10_000, 2));
    cache.insert(&empty, Bytes::new());
    assert_eq!(cache.get(&store, &full).await.unwrap(), data(10_000, 2));
    assert_eq!(cache.get(&store, &empty).await.unwrap(), Bytes::new());
    assert_eq!(cache.stats().memory_hits, 2);
    assert_eq!(cache.stats().bytes_fetched, 0);
}

#[tokio::test]
async fn a_missing_object_is_not_found() {
    let store = InMemory::new();
    let cache = SegmentCache::open(&memory_config(4096)).await.unwrap();
    let err = cache.get(&store, &Path::from("nope")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(cache.stats().bytes_served, 0);
}

#[tokio::test]
async fn a_missing_or_damaged_chunk_is_refetched_by_range() {
    let store = InMemory::new();
    let path = Path::from("seg/rows.arrow");
    let bytes = data(10 * 1000 + 17, 3);
    put(&store, &path, &bytes).await;
    let cache = SegmentCache::open(&memory_config(1000)).await.unwrap();
    cache.insert(&path, bytes.clone());

    // Drop chunks 3 and 4 (one coalesced range) and truncate chunk 7.
    cache.inner.cache.remove(&chunk_key(path.as_ref(), 3));
    cache.inner.cache.remove(&chunk_key(path.as_ref(), 4));
    cache.inner.cache.insert(chunk_key(path.as_ref(), 7), bytes.slice(7000..7500));

    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.bytes_fetched), (1, 3000), "only the three chunks: {stats:?}");

    // The refetched chunks were re-cached.
    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes);
    assert_eq!(cache.stats().memory_hits, 1);

    // With the object gone too, a missing chunk is an error, never partial data.
    cache.inner.cache.remove(&chunk_key(path.as_ref(), 10));
    store.delete(&path).await.unwrap();
    let err = cache.get(&store, &path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn an_unreadable_header_is_a_miss() {
    let store = InMemory::new();
    let path = Path::from("p");
    put(&store, &path, &data(100, 4)).await;
    let cache = SegmentCache::open(&memory_config(64)).await.unwrap();
    cache.inner.cache.insert(header_key("p"), Bytes::from_static(b"garbage"));
    assert_eq!(cache.get(&store, &path).await.unwrap(), data(100, 4));
    assert_eq!(cache.stats().misses, 1);
    assert_eq!(cache.get(&store, &path).await.unwrap(), data(100, 4));
    assert_eq!(cache.stats().memory_hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fetch_once() {
    let store = Arc::new(InMemory::new());
    let path = Path::from("hot");
    put(store.as_ref(), &path, &data(5 * MIB, 5)).await;
    let cache = SegmentCache::open(&memory_config(MIB)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, store, path) = (cache.clone(), store.clone(), path.clone());
            tokio::spawn(async move { cache.get(store.as_ref(), &path).await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), data(5 * MIB, 5));
    }
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.bytes_fetched), (1, 5 * MIB as u64), "{stats:?}");
    assert_eq!(stats.memory_hits, 7);
    assert!(cache.inner.inflight.lock().unwrap().is_empty(), "gates are cleaned up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_chunk_object_round_trips_through_the_disk_tier() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(store_dir.path()).unwrap();
    let path = Path::from("segments/big/rows.arrow");
    let bytes = data(10 * MIB, 6);
    put(&store, &path, &bytes).await;

    let cache = SegmentCache::open(&disk_config(dir.path(), MIB)).await.unwrap();
    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes);
    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.memory_hits, stats.bytes_fetched), (1, 1, 10 * MIB as u64));
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_restart_without_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemory::new();
    let (fetched, inserted) = (Path::from("s/fetched"), Path::from("s/inserted"));
    let (fetched_bytes, inserted_bytes) = (data(10 * MIB + 5, 7), data(3 * MIB, 8));
    put(&store, &fetched, &fetched_bytes).await;
    {
        let cache = SegmentCache::open(&disk_config(dir.path(), MIB)).await.unwrap();
        assert_eq!(cache.get(&store, &fetched).await.unwrap(), fetched_bytes);
        cache.insert(&inserted, inserted_bytes.clone());
        cache.close().await.unwrap();
    }
    store.delete(&fetched).await.unwrap();

    // A different chunk size after the restart: the header's own chunk size wins.
    let cache = SegmentCache::open(&disk_config(dir.path(), 2 * MIB)).await.unwrap();
    assert_eq!(cache.get(&store, &fetched).await.unwrap(), fetched_bytes);
    assert_eq!(cache.get(&store, &inserted).await.unwrap(), inserted_bytes);
    let stats = cache.stats();
    assert_eq!((stats.disk_hits, stats.misses, stats.bytes_fetched), (2, 0, 0), "{stats:?}");
    // Loaded from disk into memory, so the next read is a memory hit.
    assert_eq!(cache.get(&store, &inserted).await.unwrap(), inserted_bytes);
    assert_eq!(cache.stats().memory_hits, 1);
    cache.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_lost_from_disk_falls_back_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemory::new();
    let path = Path::from("s/partial");
    let bytes = data(6 * MIB, 9);
    put(&store, &path, &bytes).await;
    {
        let cache = SegmentCache::open(&disk_config(dir.path(), MIB)).await.unwrap();
        cache.insert(&path, bytes.clone());
        cache.close().await.unwrap();
    }
    let cache = SegmentCache::open(&disk_config(dir.path(), MIB)).await.unwrap();
    // Removes the chunk from memory and disk, as a dropped best-effort write would.
    cache.inner.cache.remove(&chunk_key(path.as_ref(), 2));
    assert_eq!(cache.get(&store, &path).await.unwrap(), bytes);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.bytes_fetched), (1, MIB as u64), "{stats:?}");
    cache.close().await.unwrap();
}

/// foyer drops entries that do not fit its flush buffer; the paced writer must not. An
/// unpaced insert of this object lost chunks (and its header) in our runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_flush_buffer_reaches_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemory::new();
    let (big, small) = (Path::from("burst/big"), Path::from("burst/small"));
    let config = CacheConfig { disk_bytes: 256 * MIB, ..disk_config(dir.path(), 4 * MIB) };
    {
        let cache = SegmentCache::open(&config).await.unwrap();
        cache.insert(&big, data(96 * MIB, 10));
        cache.insert(&small, data(MIB, 11));
        cache.close().await.unwrap();
    }
    let cache = SegmentCache::open(&config).await.unwrap();
    assert_eq!(cache.get(&store, &big).await.unwrap(), data(96 * MIB, 10));
    assert_eq!(cache.get(&store, &small).await.unwrap(), data(MIB, 11));
    assert_eq!(cache.stats().disk_hits, 2, "{:?}", cache.stats());
    cache.close().await.unwrap();
}

#[tokio::test]
async fn config_defaults_and_validation() {
    let config: CacheConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, CacheConfig::default());
    assert_eq!((config.memory_bytes, config.disk_bytes, config.chunk_bytes), (256 * MIB, 2048 * MIB, 4 * MIB));
    assert!(serde_json::from_str::<CacheConfig>(r#"{"memroy_bytes": 1}"#).is_err());

    for bad in [
        CacheConfig { chunk_bytes: 0, ..memory_config(1) },
        CacheConfig { chunk_bytes: 16 * MIB, ..memory_config(1) },
        CacheConfig { memory_bytes: 0, ..memory_config(1) },
        CacheConfig { disk_bytes: MIB, ..disk_config(std::path::Path::new("/tmp/unused"), MIB) },
    ] {
        assert_eq!(SegmentCache::open(&bad).await.unwrap_err().kind(), ErrorKind::Invalid, "{bad:?}");
    }
}

#[test]
fn header_round_trips_and_rejects_garbage() {
    assert_eq!(decode_header(&encode_header(4 * MIB, 123_456_789)), Some((4 * MIB, 123_456_789)));
    assert_eq!(decode_header(b"SGC1"), None);
    assert_eq!(decode_header(&[0; HEADER_LEN]), None);
    let mut zero_chunk = encode_header(1, 5).to_vec();
    zero_chunk[4..8].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(decode_header(&zero_chunk), None);
    assert_eq!(decode_header(&encode_header(1, MAX_CHUNKS + 1)), None, "bounded work per header");
}

#[test]
fn get_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cache: Option<SegmentCache> = None;
    if let Some(cache) = &cache {
        let store = InMemory::new();
        assert_send(&cache.get(&store, &Path::from("x")));
    }
}
