//! Tombstone bitmaps: which rows of a segment are deleted or replaced. A segment is never
//! rewritten for a delete; instead a new generation of its bitmap is written (copy on
//! write) at `tombstones/{segment}-{generation}` and the next manifest points at it.
//!
//! Encoding: magic `STRTMB01`, the roaring bitmap in its portable serialisation, CRC32.

use bytes::{BufMut, Bytes, BytesMut};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use roaring::RoaringBitmap;

use crate::cache::SegmentCache;
use crate::manifest::SegmentMeta;
use crate::paths::ShardPaths;
use strata_types::{Error, Result};

const MAGIC: &[u8; 8] = b"STRTMB01";

pub fn encode(bitmap: &RoaringBitmap) -> Bytes {
    let mut buf = BytesMut::with_capacity(12 + bitmap.serialized_size());
    buf.put_slice(MAGIC);
    let mut writer = buf.writer();
    bitmap.serialize_into(&mut writer).expect("writing to memory cannot fail");
    let mut buf = writer.into_inner();
    let crc = crc32fast::hash(&buf);
    buf.put_u32_le(crc);
    buf.freeze()
}

pub fn decode(bytes: &[u8]) -> Result<RoaringBitmap> {
    let corrupt = |why: &str| Error::corrupt("tombstone bitmap", why);
    if bytes.len() < MAGIC.len() + 4 || &bytes[..8] != MAGIC {
        return Err(corrupt("bad header"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch"));
    }
    RoaringBitmap::deserialize_from(&body[8..]).map_err(|e| Error::corrupt("tombstone bitmap", e))
}

/// Writes a new bitmap generation (create-only: generations are never overwritten).
pub async fn write(
    store: &dyn ObjectStore,
    shard: &ShardPaths,
    segment: &str,
    generation: u64,
    bitmap: &RoaringBitmap,
) -> Result<()> {
    let path = shard.tombstone(segment, generation);
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match store.put_opts(&path, PutPayload::from(encode(bitmap)), opts).await {
        Ok(_) => Ok(()),
        // Same segment and generation means the same committer retried a rebase at the
        // same manifest version; the content is then a function of that version only
        // when written by us. A different writer at the same version loses the manifest
        // race anyway, so the object is never referenced with foreign content.
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = store.get(&path).await.map_err(|e| crate::storage_error(path.as_ref(), e))?;
            let bytes = existing.bytes().await.map_err(|e| crate::storage_error(path.as_ref(), e))?;
            if decode(&bytes)? == *bitmap {
                Ok(())
            } else {
                Err(Error::conflict(format!("tombstone {path} exists with other content")))
            }
        }
        Err(e) => Err(crate::storage_error(path.as_ref(), e)),
    }
}

/// The current tombstone bitmap of a segment (empty if it has none), through the cache:
/// bitmap objects are immutable, so a cached copy is always right.
pub async fn load(
    store: &dyn ObjectStore,
    cache: &SegmentCache,
    shard: &ShardPaths,
    seg: &SegmentMeta,
) -> Result<RoaringBitmap> {
    match &seg.tombstone {
        None => Ok(RoaringBitmap::new()),
        Some(t) => decode(&cache.get(store, &shard.tombstone(&seg.id, t.generation)).await?),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn bitmaps_round_trip_and_corruption_is_detected(rows in proptest::collection::vec(0u32..1_000_000, 0..500), flip in any::<prop::sample::Index>()) {
            let bitmap: RoaringBitmap = rows.into_iter().collect();
            let bytes = encode(&bitmap);
            prop_assert_eq!(decode(&bytes).unwrap(), bitmap);
            let mut bad = bytes.to_vec();
            let i = flip.index(bad.len());
            bad[i] ^= 1;
            prop_assert!(decode(&bad).is_err());
        }
    }
}
