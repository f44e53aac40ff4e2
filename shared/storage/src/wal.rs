//! Write-ahead log: per shard, a gap-free sequence of create-only objects
//! `wal/{seq:020}`, each one group commit of upserts and deletes.
//!
//! Flow: the shard's writer encodes a batch of operations into a [`WalEntry`], creates the
//! object for the next sequence number with `PutMode::Create` and only then acknowledges
//! the batch. Readers (the flush, query nodes tailing fresh writes, recovery) read entries
//! in sequence order until the first missing one.
//!
//! Invariants:
//! - entry `seq` is written only after `seq - 1` exists, so the log has no gaps and
//!   "read until NotFound" finds its end;
//! - a create of an existing sequence fails; [`put_entry`] then reads the object back and
//!   tells "our own earlier attempt landed" (same `commit_id`) from "another writer owns
//!   this sequence" ([`ErrorKind::Conflict`]: the caller must step down);
//! - every entry carries a CRC32 over all its bytes and the writer epoch that wrote it.
//!
//! Encoding (little-endian): magic `STRWAL01`, `seq u64`, `writer_epoch u64`,
//! `commit_id u64`, `created_ms u64`, `op_count u32`, ops, then `crc32 u32` of everything
//! before it. An op is a tag byte (1 upsert, 2 delete), the id (tag 0 + u64, or tag 1 +
//! u32 length + UTF-8), and for upserts `dim u32`, `dim` f32s and the attributes as a
//! u32-length-prefixed JSON object (length 0 when absent).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::paths::{self, ShardPaths};
use strata_types::{Attributes, Row, RowId};
use strata_types::{Error, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"STRWAL01";
const TAG_UPSERT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// One operation in the log.
#[derive(Clone, Debug, PartialEq)]
pub enum WalOp {
    Upsert(Row),
    Delete(RowId),
}

impl WalOp {
    pub fn id(&self) -> &RowId {
        match self {
            WalOp::Upsert(row) => &row.id,
            WalOp::Delete(id) => id,
        }
    }

    /// Approximate encoded size, used for group-commit byte budgets and backlog bounds.
    pub fn encoded_len(&self) -> usize {
        let id = match self.id() {
            RowId::Int(_) => 9,
            RowId::Str(s) => 5 + s.len(),
        };
        match self {
            WalOp::Upsert(row) => {
                let attrs = row.attributes.as_ref().map_or(0, |a| 32 * a.len().max(1));
                1 + id + 4 + 4 * row.vector.len() + 4 + attrs
            }
            WalOp::Delete(_) => 1 + id,
        }
    }
}

/// One group commit.
#[derive(Clone, Debug, PartialEq)]
pub struct WalEntry {
    pub seq: u64,
    pub writer_epoch: u64,
    /// Random per attempt: tells our own retried create apart from another writer's.
    pub commit_id: u64,
    pub created_ms: u64,
    pub ops: Vec<WalOp>,
}

fn put_id(buf: &mut BytesMut, id: &RowId) {
    match id {
        RowId::Int(v) => {
            buf.put_u8(0);
            buf.put_u64_le(*v);
        }
        RowId::Str(s) => {
            buf.put_u8(1);
            buf.put_u32_le(s.len() as u32);
            buf.put_slice(s.as_bytes());
        }
    }
}

impl WalEntry {
    pub fn encode(&self) -> Bytes {
        let size: usize = 48 + self.ops.iter().map(WalOp::encoded_len).sum::<usize>();
        let mut buf = BytesMut::with_capacity(size);
        buf.put_slice(MAGIC);
        buf.put_u64_le(self.seq);
        buf.put_u64_le(self.writer_epoch);
        buf.put_u64_le(self.commit_id);
        buf.put_u64_le(self.created_ms);
        buf.put_u32_le(self.ops.len() as u32);
        for op in &self.ops {
            match op {
                WalOp::Upsert(row) => {
                    buf.put_u8(TAG_UPSERT);
                    put_id(&mut buf, &row.id);
                    buf.put_u32_le(row.vector.len() as u32);
                    // One resize and a tight copy loop (vectorised) instead of a bounds
                    // check per value: vectors dominate the entry size.
                    let start = buf.len();
                    buf.resize(start + 4 * row.vector.len(), 0);
                    for (dst, v) in buf[start..].chunks_exact_mut(4).zip(&row.vector) {
                        dst.copy_from_slice(&v.to_le_bytes());
                    }
                    match &row.attributes {
                        Some(attrs) => {
                            let json = serde_json::to_vec(attrs).expect("a JSON map always serialises");
                            buf.put_u32_le(json.len() as u32);
                            buf.put_slice(&json);
                        }
                        None => buf.put_u32_le(0),
                    }
                }
                WalOp::Delete(id) => {
                    buf.put_u8(TAG_DELETE);
                    put_id(&mut buf, id);
                }
            }
        }
        let crc = crc32fast::hash(&buf);
        buf.put_u32_le(crc);
        buf.freeze()
    }

    /// Decodes an entry; any truncation, bad checksum or malformed field is an error,
    /// never a panic.
    pub fn decode(bytes: &[u8]) -> Result<WalEntry> {
        let corrupt = |why: &str| Error::corrupt("WAL entry", why);
        if bytes.len() < MAGIC.len() + 36 + 4 {
            return Err(corrupt("too short"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32fast::hash(body) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = Reader { buf: body };
        if r.take(8)? != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let seq = r.u64()?;
        let writer_epoch = r.u64()?;
        let commit_id = r.u64()?;
        let created_ms = r.u64()?;
        let count = r.u32()? as usize;
        let mut ops = Vec::with_capacity(count.min(body.len() / 10));
        for _ in 0..count {
            let tag = r.u8()?;
            let id = r.id()?;
            match tag {
                TAG_UPSERT => {
                    let dim = r.u32()? as usize;
                    let raw = r.take(dim.checked_mul(4).ok_or_else(|| corrupt("dimension overflow"))?)?;
                    let vector = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect();
                    let attrs_len = r.u32()? as usize;
                    let attributes = if attrs_len == 0 {
                        None
                    } else {
                        let json = r.take(attrs_len)?;
                        Some(
                            serde_json::from_slice::<Attributes>(json)
                                .map_err(|e| Error::corrupt("WAL entry attributes", e))?,
                        )
                    };
                    ops.push(WalOp::Upsert(Row { id, vector, attributes }));
                }
                TAG_DELETE => ops.push(WalOp::Delete(id)),
                _ => return Err(corrupt("unknown op tag")),
            }
        }
        if !r.buf.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(WalEntry { seq, writer_epoch, commit_id, created_ms, ops })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::corrupt("WAL entry", "truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn id(&mut self) -> Result<RowId> {
        match self.u8()? {
            0 => Ok(RowId::Int(self.u64()?)),
            1 => {
                let len = self.u32()? as usize;
                let s = std::str::from_utf8(self.take(len)?).map_err(|e| Error::corrupt("WAL entry id", e))?;
                Ok(RowId::Str(s.to_owned()))
            }
            _ => Err(Error::corrupt("WAL entry", "unknown id tag")),
        }
    }
}

/// Creates the object of `entry.seq`. Returns once it exists. If the sequence is already
/// taken, reads it back: our own earlier attempt (same commit id) counts as success,
/// anything else is [`ErrorKind::Conflict`].
pub async fn put_entry(store: &dyn ObjectStore, shard: &ShardPaths, entry: &WalEntry) -> Result<()> {
    let path = shard.wal(entry.seq);
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match store.put_opts(&path, PutPayload::from(entry.encode()), opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = read_entry(store, shard, entry.seq).await?;
            match existing {
                Some(e) if e.commit_id == entry.commit_id => Ok(()),
                Some(e) => Err(Error::conflict(format!(
                    "WAL sequence {} of {} is already written by writer epoch {} (ours is {})",
                    entry.seq,
                    shard.root(),
                    e.writer_epoch,
                    entry.writer_epoch
                ))),
                None => Err(Error::retryable(format!("WAL object {path} vanished while resolving a create conflict"))),
            }
        }
        Err(e) => Err(crate::storage_error(path.as_ref(), e)),
    }
}

/// Reads entry `seq`, or `None` if it does not exist.
pub async fn read_entry(store: &dyn ObjectStore, shard: &ShardPaths, seq: u64) -> Result<Option<WalEntry>> {
    let path = shard.wal(seq);
    let bytes = match store.get(&path).await {
        Ok(res) => res.bytes().await.map_err(|e| crate::storage_error(path.as_ref(), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(crate::storage_error(path.as_ref(), e)),
    };
    let entry = WalEntry::decode(&bytes).map_err(|e| e.context(path.as_ref()))?;
    if entry.seq != seq {
        return Err(Error::corrupt(path.as_ref(), format!("holds sequence {}", entry.seq)));
    }
    Ok(Some(entry))
}

/// Reads entries `from..` in order until the first missing one or `limit` entries, one GET
/// at a time.
pub async fn read_from(store: &dyn ObjectStore, shard: &ShardPaths, from: u64, limit: usize) -> Result<Vec<WalEntry>> {
    read_entries(store, shard, from, limit, 1).await
}

/// Reads entries `from..` in order until the first missing one, with up to `window` GETs
/// in flight: for a new writer's recovery or a query node's first load of a shard, whose
/// tail can be hundreds of entries and whose shard takes no write or serves nothing until
/// it is read (decision 0014). It may GET up to `window - 1` objects past the end that do
/// not exist, so a reader catching up by an entry or two passes a window of 1. The result
/// is [`read_from`]'s: entries are consecutive (`seq` is written only after `seq - 1`
/// exists), so the first missing one ends the tail.
pub async fn read_tail(store: &dyn ObjectStore, shard: &ShardPaths, from: u64, window: usize) -> Result<Vec<WalEntry>> {
    read_entries(store, shard, from, usize::MAX, window).await
}

async fn read_entries(
    store: &dyn ObjectStore,
    shard: &ShardPaths,
    from: u64,
    limit: usize,
    window: usize,
) -> Result<Vec<WalEntry>> {
    let mut reads =
        futures::stream::iter(from..).take(limit).map(|seq| read_entry(store, shard, seq)).buffered(window.max(1));
    let mut out = Vec::new();
    while let Some(entry) = reads.next().await {
        match entry? {
            Some(entry) => out.push(entry),
            None => break,
        }
    }
    Ok(out)
}

/// Lists the sequence numbers present in a shard's WAL, sorted. Used at recovery and by
/// garbage collection; the hot path never lists.
pub async fn list_seqs(store: &dyn ObjectStore, shard: &ShardPaths) -> Result<Vec<u64>> {
    let dir = shard.wal_dir();
    let metas: Vec<_> =
        store.list(Some(&dir)).try_collect().await.map_err(|e| crate::storage_error(dir.as_ref(), e))?;
    let mut seqs: Vec<u64> = metas.iter().filter_map(|m| paths::parse_num(&m.location)).collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Whether an error means another writer owns the log (the caller must step down).
pub fn is_fenced(err: &Error) -> bool {
    err.kind() == ErrorKind::Conflict
}

/// Convenience for tests and tools: a shared store handle.
pub type Store = Arc<dyn ObjectStore>;

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
