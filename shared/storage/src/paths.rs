//! The one module that formats and parses object paths. Nothing else in Strata builds a
//! path string, so the layout below is the whole truth about where objects live:
//!
//! ```text
//! catalog/{name}/{version:020}                       create-only chain: name → collection id, or dropped
//! collections/{id}/definition                        dimension, metric, shards, index parameters
//! collections/{id}/{shard}/wal/{seq:020}             one group commit: upserts + deletes
//! collections/{id}/{shard}/manifest/{ver:020}        shard state, create-only chain
//! collections/{id}/{shard}/segments/{seg}/{file}     immutable segment files
//! collections/{id}/{shard}/tombstones/{seg}-{n}      roaring bitmap, copy-on-write
//! ```
//!
//! Numbers are zero-padded to 20 digits so lexical order is numeric order. The `{root}`
//! prefix of the architecture is the object store's own prefix (a bucket prefix or a
//! directory), applied when the store is built.

use object_store::path::Path;

/// Width of zero-padded sequence and version numbers.
const NUM_WIDTH: usize = 20;

fn num(n: u64) -> String {
    format!("{n:0NUM_WIDTH$}")
}

/// Parses the last path segment as a zero-padded number.
pub fn parse_num(path: &Path) -> Option<u64> {
    let last = path.filename()?;
    if last.len() != NUM_WIDTH {
        return None;
    }
    last.parse().ok()
}

/// Prefix of every catalog entry.
pub fn catalog_root() -> Path {
    Path::from("catalog")
}

/// Prefix of one collection name's catalog chain.
pub fn catalog_dir(name: &str) -> Path {
    Path::from(format!("catalog/{name}"))
}

/// Version `version` of the catalog chain of `name`.
pub fn catalog_entry(name: &str, version: u64) -> Path {
    Path::from(format!("catalog/{name}/{}", num(version)))
}

/// Prefix of every object of one collection incarnation.
pub fn collection_dir(collection_id: &str) -> Path {
    Path::from(format!("collections/{collection_id}"))
}

/// The definition of a collection incarnation.
pub fn definition(collection_id: &str) -> Path {
    Path::from(format!("collections/{collection_id}/definition"))
}

/// Prefix of the attribute types of a collection incarnation (`attr_types`).
pub fn attribute_types_dir(collection_id: &str) -> Path {
    Path::from(format!("collections/{collection_id}/attributes"))
}

/// The type record of one attribute. Keys are hex-encoded: they may hold any character,
/// and object stores treat `/` and some others specially.
pub fn attribute_type(collection_id: &str, key: &str) -> Path {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    Path::from(format!("collections/{collection_id}/attributes/{hex}"))
}

/// Identifies one shard of one collection incarnation; formats that shard's paths.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardPaths {
    pub collection_id: String,
    pub shard: u32,
}

impl ShardPaths {
    pub fn new(collection_id: impl Into<String>, shard: u32) -> Self {
        Self { collection_id: collection_id.into(), shard }
    }

    pub fn root(&self) -> Path {
        Path::from(format!("collections/{}/{}", self.collection_id, self.shard))
    }
    pub fn wal_dir(&self) -> Path {
        Path::from(format!("collections/{}/{}/wal", self.collection_id, self.shard))
    }
    pub fn wal(&self, seq: u64) -> Path {
        Path::from(format!("collections/{}/{}/wal/{}", self.collection_id, self.shard, num(seq)))
    }
    pub fn manifest_dir(&self) -> Path {
        Path::from(format!("collections/{}/{}/manifest", self.collection_id, self.shard))
    }
    pub fn manifest(&self, version: u64) -> Path {
        Path::from(format!("collections/{}/{}/manifest/{}", self.collection_id, self.shard, num(version)))
    }
    pub fn segments_dir(&self) -> Path {
        Path::from(format!("collections/{}/{}/segments", self.collection_id, self.shard))
    }
    pub fn segment_dir(&self, segment: &str) -> Path {
        Path::from(format!("collections/{}/{}/segments/{segment}", self.collection_id, self.shard))
    }
    pub fn segment_file(&self, segment: &str, file: &str) -> Path {
        Path::from(format!("collections/{}/{}/segments/{segment}/{file}", self.collection_id, self.shard))
    }
    pub fn tombstones_dir(&self) -> Path {
        Path::from(format!("collections/{}/{}/tombstones", self.collection_id, self.shard))
    }
    /// Generation `generation` of the tombstone bitmap of `segment`.
    pub fn tombstone(&self, segment: &str, generation: u64) -> Path {
        Path::from(format!("collections/{}/{}/tombstones/{segment}-{generation}", self.collection_id, self.shard))
    }
}

/// The files of one segment, under `segments/{segment}/`: row ids, vectors with
/// attributes, and the HNSW graph (absent for small segments, which are searched exactly).
pub const IDS_FILE: &str = "ids.arrow";
pub const ROWS_FILE: &str = "rows.arrow";
pub const GRAPH_FILE: &str = "graph.hnsw";
/// The attribute index (`segment::AttrIndex`); absent in segments written before it existed.
pub const ATTRS_FILE: &str = "attrs.idx";
/// Every file a segment may have.
pub const SEGMENT_FILES: [&str; 4] = [IDS_FILE, ROWS_FILE, GRAPH_FILE, ATTRS_FILE];

/// Segment ids sort by creation: `{max_seq:020}-{nonce:016x}` where `max_seq` is the newest
/// WAL sequence whose rows it holds. The nonce keeps two writers (or a flush and a
/// compaction) from ever naming different segments alike.
pub fn segment_id(max_seq: u64, nonce: u64) -> String {
    format!("{}-{nonce:016x}", num(max_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_sort() {
        let s = ShardPaths::new("c1", 3);
        let a = s.wal(9);
        let b = s.wal(10);
        assert_eq!(a.as_ref(), "collections/c1/3/wal/00000000000000000009");
        assert!(a.as_ref() < b.as_ref());
        assert_eq!(parse_num(&b), Some(10));
        assert_eq!(parse_num(&s.manifest(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_num(&Path::from("collections/c1/3/wal/junk")), None);
        assert_eq!(catalog_entry("docs", 2).as_ref(), "catalog/docs/00000000000000000002");
        assert_eq!(s.tombstone("seg", 4).as_ref(), "collections/c1/3/tombstones/seg-4");
    }
}
