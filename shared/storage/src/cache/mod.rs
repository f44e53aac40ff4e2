//! Two-tier read-through cache of immutable objects (segment files), on foyer's
//! `HybridCache`: memory first, then a local disk tier, then the object store.
//!
//! Flow of [`SegmentCache::get`]: look the object up in the cache; on a miss, take a
//! per-path single-flight gate (so a cold start with many concurrent queries fetches each
//! segment file once), look again, then fetch the whole object from the store and
//! [`insert`](SegmentCache::insert) it.
//!
//! Layout: every object is cached as a small header entry `{path}#len` (magic, chunk size,
//! total length) plus chunk entries `{path}#0`, `{path}#1`, … of at most the chunk size.
//! Chunking is required, not an optimisation: foyer silently never writes an entry larger
//! than its 16 MiB block to disk, and a value larger than the memory tier is evicted at
//! once. The header records the chunk size it was written with, so changing `chunk_bytes`
//! between restarts keeps old disk entries readable. The suffixes cannot collide: the text
//! after the last `#` is `len` or a decimal number, and the rest is the path.
//!
//! Invariants:
//! - keys are object paths and objects are immutable, so nothing is ever invalidated;
//! - the cache never returns wrong or partial data: a chunk that is missing (foyer's disk
//!   writes are best-effort) or has the wrong length is re-read from the store with a
//!   ranged get and re-cached; a header that does not parse is a miss;
//! - the cache's own disk failing never fails a read: a foyer error counts as a miss.
//!
//! Disk writes: entries go into the memory tier at once, marked memory-only
//! (`Location::InMem`), and one background writer task re-inserts them with the normal
//! write-on-insertion policy, waiting for foyer's flusher every [`PACE_BYTES`]. foyer
//! drops entries that do not fit its flush buffer, so without pacing a large segment
//! inserted in one burst would mostly never reach disk. Entries are re-inserted with the
//! plain `insert` (not `get_or_fetch`, whose values did not survive a restart under
//! write-on-insertion in our measurements). [`SegmentCache::close`] drains the writer and
//! closes foyer, after which everything inserted before is on disk and found again by a
//! new cache opened on the same directory (`RecoverMode::Quiet`).
//!
//! Hit accounting: foyer 0.22 tags every entry it returns with its `Source` (`Memory`,
//! `Disk`, or `Outer` for a value it fetched itself), which is exactly the memory/disk
//! split. A `get` counts as a memory hit if every entry came from memory, a disk hit if
//! any came from disk and none from the store, and a miss if any byte came from the store.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder, HybridCachePolicy,
    HybridCacheProperties, Location, LruConfig, RecoverMode, Source,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use strata_types::{Error, Result};

/// foyer's block size, which bounds the largest entry it writes to disk.
const BLOCK_BYTES: usize = 16 << 20;
/// foyer's flush buffer; entries that do not fit are dropped, hence the pacing.
const FLUSH_BUFFER_BYTES: usize = 16 << 20;
/// The writer waits for foyer's flusher after this many bytes, half the flush buffer, so
/// everything it enqueues between waits fits.
const PACE_BYTES: usize = FLUSH_BUFFER_BYTES / 2;
/// Largest chunk: must fit a block and the pacing window with room for entry headers.
const MAX_CHUNK_BYTES: usize = 8 << 20;
/// Bytes waiting for the disk writer beyond which new entries stay memory-only, so a disk
/// slower than the ingest of new objects cannot grow the queue without bound.
const MAX_PENDING_DISK_BYTES: usize = 256 << 20;
/// Most chunks one object may have (4 TiB at the default chunk size); bounds the work a
/// header can ask for, and larger objects are served but not cached.
const MAX_CHUNKS: usize = 1 << 20;
const HEADER_MAGIC: &[u8; 4] = b"SGC1";
const HEADER_LEN: usize = 16;

/// Configuration of the segment cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory tier bytes, default 256 MiB.
    pub memory_bytes: usize,
    /// Disk tier bytes, default 2 GiB; at least two foyer blocks (32 MiB).
    pub disk_bytes: usize,
    /// Directory of the disk tier; `None` = memory only (unit tests). One process per
    /// directory: foyer does not lock it.
    pub disk_dir: Option<PathBuf>,
    /// Chunk size for large objects, default 4 MiB, at most 8 MiB (must stay well below
    /// foyer's 16 MiB block size).
    pub chunk_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { memory_bytes: 256 << 20, disk_bytes: 2 << 30, disk_dir: None, chunk_bytes: 4 << 20 }
    }
}

impl CacheConfig {
    fn validate(&self) -> Result<()> {
        if self.memory_bytes == 0 {
            return Err(Error::invalid("cache.memory_bytes must be positive"));
        }
        if !(1..=MAX_CHUNK_BYTES).contains(&self.chunk_bytes) {
            return Err(Error::invalid(format!(
                "cache.chunk_bytes must be in 1..={MAX_CHUNK_BYTES}, got {}",
                self.chunk_bytes
            )));
        }
        if self.disk_dir.is_some() && self.disk_bytes < 2 * BLOCK_BYTES {
            return Err(Error::invalid(format!(
                "cache.disk_bytes must be at least {} with a disk_dir, got {}",
                2 * BLOCK_BYTES,
                self.disk_bytes
            )));
        }
        Ok(())
    }
}

mod metrics;
pub use metrics::CacheMetrics;

/// Counters since the cache was opened. One `get` is one memory hit, disk hit or miss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    /// Bytes read from the object store (whole objects and ranged chunk re-reads).
    pub bytes_fetched: u64,
    /// Bytes returned by `get`.
    pub bytes_served: u64,
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    bytes_fetched: AtomicU64,
    bytes_served: AtomicU64,
}

/// Where the bytes of one `get` came from; ordered so the max over parts is the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    Memory,
    Disk,
    Store,
}

impl From<Source> for Tier {
    fn from(source: Source) -> Self {
        match source {
            Source::Memory => Tier::Memory,
            Source::Disk => Tier::Disk,
            // This cache never uses `get_or_fetch`; a `get` yields Outer when it was
            // waiting on the key (a disk lookup in flight) and another caller's `insert`
            // answered it: the bytes came from memory, not from a fetch of this caller's.
            // (Counting that as a miss made misses exceed the fetches.)
            Source::Outer => Tier::Memory,
        }
    }
}

enum WriterMsg {
    Write(Vec<(String, Bytes)>),
    /// Acknowledged once everything sent before is on disk.
    Drain(oneshot::Sender<()>),
}

struct DiskWriter {
    tx: mpsc::UnboundedSender<WriterMsg>,
    pending: Arc<AtomicUsize>,
}

struct Inner {
    cache: HybridCache<String, Bytes>,
    chunk_bytes: usize,
    /// `None` in memory-only mode.
    disk: Option<DiskWriter>,
    closed: AtomicBool,
    /// Single-flight gates of whole-object fetches, by path.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: Counters,
}

/// The two-tier cache of immutable objects. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct SegmentCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCache")
            .field("chunk_bytes", &self.inner.chunk_bytes)
            .field("disk", &self.inner.disk.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

fn header_key(path: &str) -> String {
    format!("{path}#len")
}

fn chunk_key(path: &str, index: usize) -> String {
    format!("{path}#{index}")
}

/// The header entry: magic, chunk size (u32), total length (u64), little-endian.
fn encode_header(chunk_bytes: usize, total: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN);
    buf.put_slice(HEADER_MAGIC);
    buf.put_u32_le(chunk_bytes as u32);
    buf.put_u64_le(total as u64);
    buf.freeze()
}

/// `(chunk_bytes, total_len)`, or `None` if the entry is not a header this code wrote.
fn decode_header(mut buf: &[u8]) -> Option<(usize, usize)> {
    if buf.len() != HEADER_LEN || &buf[..4] != HEADER_MAGIC {
        return None;
    }
    buf.advance(4);
    let chunk = usize::try_from(buf.get_u32_le()).ok().filter(|c| *c > 0)?;
    let total = usize::try_from(buf.get_u64_le()).ok()?;
    (total.div_ceil(chunk) <= MAX_CHUNKS).then_some((chunk, total))
}

/// Byte range of chunk `index` of an object of `total` bytes cut into `chunk` pieces.
fn chunk_range(index: usize, chunk: usize, total: usize) -> Range<usize> {
    index * chunk..((index + 1) * chunk).min(total)
}

impl SegmentCache {
    /// Opens the cache; with a `disk_dir`, recovers what a previous process left there.
    pub async fn open(config: &CacheConfig) -> Result<SegmentCache> {
        config.validate()?;
        let foyer_err = |e: foyer::Error| Error::internal("opening the segment cache").with_source(e);
        // Enough memory shards for concurrency, but each must hold several chunks: an
        // entry larger than its shard is evicted at once.
        let shards = (config.memory_bytes / (4 * config.chunk_bytes)).clamp(1, 16);
        let builder = HybridCacheBuilder::new()
            .with_name("segment-cache")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .memory(config.memory_bytes)
            .with_shards(shards)
            .with_eviction_config(LruConfig::default())
            .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
            .storage();
        let (cache, disk) = match &config.disk_dir {
            None => (builder.build().await.map_err(foyer_err)?, None),
            Some(dir) => {
                // FsDeviceBuilder unwraps its own create_dir_all; create it here so a bad
                // directory is an error rather than a panic.
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::internal(format!("creating cache directory {}", dir.display())).with_source(e)
                })?;
                let device = FsDeviceBuilder::new(dir).with_capacity(config.disk_bytes).build().map_err(foyer_err)?;
                let engine = BlockEngineConfig::new(device)
                    .with_block_size(BLOCK_BYTES)
                    .with_buffer_pool_size(FLUSH_BUFFER_BYTES)
                    .with_submit_queue_size_threshold(2 * FLUSH_BUFFER_BYTES);
                let cache = builder
                    .with_engine_config(engine)
                    .with_recover_mode(RecoverMode::Quiet)
                    .build()
                    .await
                    .map_err(foyer_err)?;
                let (tx, rx) = mpsc::unbounded_channel();
                let pending = Arc::new(AtomicUsize::new(0));
                tokio::spawn(run_disk_writer(cache.clone(), rx, pending.clone()));
                (cache, Some(DiskWriter { tx, pending }))
            }
        };
        Ok(SegmentCache {
            inner: Arc::new(Inner {
                cache,
                chunk_bytes: config.chunk_bytes,
                disk,
                closed: AtomicBool::new(false),
                inflight: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        })
    }

    /// Reads an immutable object through memory, then disk, then `store`. Keys are object
    /// paths; objects are immutable so nothing is ever invalidated.
    pub async fn get(&self, store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
        let (bytes, tier) = match self.lookup(store, path).await? {
            Some(found) => found,
            None => self.fetch_single_flight(store, path).await?,
        };
        let counters = &self.inner.counters;
        let counter = match tier {
            Tier::Memory => &counters.memory_hits,
            Tier::Disk => &counters.disk_hits,
            Tier::Store => &counters.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        counters.bytes_served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Puts freshly written bytes into the cache (the writer just uploaded them), so a
    /// reader in the same process does not re-fetch.
    pub fn insert(&self, path: &Path, bytes: Bytes) {
        let path = path.as_ref();
        let chunk = self.inner.chunk_bytes;
        if bytes.len().div_ceil(chunk) > MAX_CHUNKS {
            tracing::debug!(path, len = bytes.len(), "object has too many chunks to cache");
            return;
        }
        let mut entries: Vec<(String, Bytes)> = (0..bytes.len().div_ceil(chunk))
            .map(|i| (chunk_key(path, i), bytes.slice(chunk_range(i, chunk, bytes.len()))))
            .collect();
        // Header last: a reader that sees it finds the chunks already in memory, and on
        // disk the header never precedes its chunks.
        entries.push((header_key(path), encode_header(chunk, bytes.len())));
        self.put_entries(entries);
    }

    /// Counters since the cache was opened.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            bytes_fetched: c.bytes_fetched.load(Ordering::Relaxed),
            bytes_served: c.bytes_served.load(Ordering::Relaxed),
        }
    }

    /// Writes everything inserted so far to disk and closes the disk tier. Reads still
    /// work afterwards (memory, then store); new entries stay in memory.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(disk) = &self.inner.disk {
            let (done, drained) = oneshot::channel();
            if disk.tx.send(WriterMsg::Drain(done)).is_ok() {
                // An error means the writer is gone, which leaves nothing to wait for.
                let _ = drained.await;
            }
        }
        self.inner.cache.close().await.map_err(|e| Error::internal("closing the segment cache").with_source(e))
    }

    /// Inserts entries into memory now and queues them for the paced disk writer.
    fn put_entries(&self, entries: Vec<(String, Bytes)>) {
        let memory_only = HybridCacheProperties::default().with_location(Location::InMem);
        for (key, value) in &entries {
            self.inner.cache.insert_with_properties(key.clone(), value.clone(), memory_only.clone());
        }
        let Some(disk) = &self.inner.disk else { return };
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let size: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        if disk.pending.fetch_add(size, Ordering::Relaxed) + size > MAX_PENDING_DISK_BYTES {
            disk.pending.fetch_sub(size, Ordering::Relaxed);
            tracing::debug!(size, "segment cache disk writer is behind; keeping entries in memory only");
            return;
        }
        if disk.tx.send(WriterMsg::Write(entries)).is_err() {
            disk.pending.fetch_sub(size, Ordering::Relaxed);
        }
    }

    /// One cache entry, or `None` if absent or the disk tier failed.
    async fn entry(&self, key: &str) -> Option<(Bytes, Tier)> {
        match self.inner.cache.get(key).await {
            Ok(found) => found.map(|e| (e.value().clone(), Tier::from(e.source()))),
            Err(e) => {
                tracing::warn!(key, error = %e, "segment cache disk read failed; treating as a miss");
                None
            }
        }
    }

    /// The cached object, completing missing chunks from the store; `None` if the header
    /// is not cached.
    async fn lookup(&self, store: &dyn ObjectStore, path: &Path) -> Result<Option<(Bytes, Tier)>> {
        let name = path.as_ref();
        let Some((header, header_tier)) = self.entry(&header_key(name)).await else {
            return Ok(None);
        };
        let Some((chunk, total)) = decode_header(&header) else {
            tracing::warn!(path = name, "segment cache header is unreadable; refetching");
            return Ok(None);
        };
        let count = total.div_ceil(chunk);
        let found = futures::future::join_all((0..count).map(|i| self.entry_of_len(name, i, chunk, total))).await;
        let mut tier = header_tier;
        let mut parts: Vec<Option<Bytes>> = Vec::with_capacity(count);
        for part in found {
            if let Some((_, t)) = &part {
                tier = tier.max(*t);
            }
            parts.push(part.map(|(bytes, _)| bytes));
        }
        if parts.iter().any(Option::is_none) {
            self.refill(store, path, chunk, total, &mut parts).await?;
            tier = Tier::Store;
        }
        let bytes = match parts.len() {
            0 => Bytes::new(),
            1 => parts.pop().flatten().unwrap_or_default(),
            _ => {
                let mut joined = BytesMut::with_capacity(total);
                for part in parts.iter().flatten() {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        };
        if bytes.len() != total {
            // refill checked every length, so this would be a bug; never serve it.
            return Err(Error::internal(format!("segment cache assembled a wrong length for {name}")));
        }
        Ok(Some((bytes, tier)))
    }

    /// Chunk `index`, or `None` if absent or not the length the header implies.
    async fn entry_of_len(&self, path: &str, index: usize, chunk: usize, total: usize) -> Option<(Bytes, Tier)> {
        let want = chunk_range(index, chunk, total).len();
        self.entry(&chunk_key(path, index)).await.filter(|(bytes, _)| bytes.len() == want)
    }

    /// Fetches the missing chunks with ranged gets (contiguous runs coalesced) and
    /// re-caches them.
    async fn refill(
        &self,
        store: &dyn ObjectStore,
        path: &Path,
        chunk: usize,
        total: usize,
        parts: &mut [Option<Bytes>],
    ) -> Result<()> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            match runs.last_mut() {
                _ if part.is_some() => {}
                Some(run) if run.end == i => run.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        let byte_ranges: Vec<Range<u64>> = runs
            .iter()
            .map(|run| {
                let start = chunk_range(run.start, chunk, total).start;
                start as u64..chunk_range(run.end - 1, chunk, total).end as u64
            })
            .collect();
        let fetched = store.get_ranges(path, &byte_ranges).await.map_err(|e| crate::storage_error(path.as_ref(), e))?;
        let mut refilled = Vec::new();
        for ((run, range), data) in runs.iter().zip(&byte_ranges).zip(fetched) {
            let expected = (range.end - range.start) as usize;
            self.inner.counters.bytes_fetched.fetch_add(data.len() as u64, Ordering::Relaxed);
            if data.len() != expected {
                return Err(Error::corrupt(
                    format!("object {path}"),
                    format!("ranged read returned {} bytes, expected {expected}", data.len()),
                ));
            }
            for i in run.clone() {
                let r = chunk_range(i, chunk, total);
                let offset = r.start - range.start as usize;
                let piece = data.slice(offset..offset + r.len());
                refilled.push((chunk_key(path.as_ref(), i), piece.clone()));
                parts[i] = Some(piece);
            }
        }
        self.put_entries(refilled);
        Ok(())
    }

    /// Fetches the whole object once however many callers miss on it at the same time.
    async fn fetch_single_flight(&self, store: &dyn ObjectStore, path: &Path) -> Result<(Bytes, Tier)> {
        let flight = Flight::join(&self.inner.inflight, path.as_ref());
        let _turn = flight.gate.lock().await;
        // The flight we waited for has probably cached the object.
        if let Some(found) = self.lookup(store, path).await? {
            return Ok(found);
        }
        let bytes = store
            .get(path)
            .await
            .map_err(|e| crate::storage_error(path.as_ref(), e))?
            .bytes()
            .await
            .map_err(|e| crate::storage_error(path.as_ref(), e))?;
        self.inner.counters.bytes_fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.insert(path, bytes.clone());
        Ok((bytes, Tier::Store))
    }
}

/// A caller's share of a path's single-flight gate; the last one out removes the gate.
struct Flight<'a> {
    map: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: String,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Flight<'a> {
    fn join(map: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>, key: &str) -> Self {
        let gate = map.lock().unwrap_or_else(PoisonError::into_inner).entry(key.to_owned()).or_default().clone();
        Self { map, key: key.to_owned(), gate }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // Clones are only made under the map lock, so 2 (the map's and ours) means no
        // other caller holds or awaits this gate.
        if Arc::strong_count(&self.gate) == 2 {
            map.remove(&self.key);
        }
    }
}

/// Re-inserts queued entries with write-on-insertion, waiting for foyer's flusher every
/// [`PACE_BYTES`] so none is dropped for lack of flush buffer. Ends when the cache is
/// dropped (the sender goes with it).
async fn run_disk_writer(
    cache: HybridCache<String, Bytes>,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    pending: Arc<AtomicUsize>,
) {
    let mut since_wait = 0usize;
    while let Some(msg) = rx.recv().await {
        match msg {
            WriterMsg::Write(entries) => {
                for (key, value) in entries {
                    let size = key.len() + value.len();
                    if since_wait > 0 && since_wait + size > PACE_BYTES {
                        cache.storage().wait().await;
                        since_wait = 0;
                    }
                    cache.insert(key, value);
                    since_wait += size;
                    pending.fetch_sub(size, Ordering::Relaxed);
                }
            }
            WriterMsg::Drain(done) => {
                cache.storage().wait().await;
                since_wait = 0;
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
