//! Per-segment id lookup: which row of an immutable segment holds a given id.
//!
//! A delete names an id; to turn it into a tombstone the writer needs the segment and row
//! that hold it. Keeping every id of every segment as `RowId`s would cost tens of bytes per
//! row, so the lookup keeps only `(RowId::stable_hash, row)` sorted by hash, in two parallel
//! vectors (12 bytes per row, no padding). Hashes can collide, so `find` confirms a
//! candidate row against the segment's decoded ids, which the caller already holds (or
//! fetches through the cache) when it needs certainty.

use crate::types::RowId;

/// Sorted `(stable_hash, row)` pairs of one segment's ids.
#[derive(Clone, Debug, Default)]
pub struct IdLookup {
    /// Ascending; equal hashes are ordered by row.
    hashes: Vec<u64>,
    /// `rows[i]` is the row whose id hashes to `hashes[i]`.
    rows: Vec<u32>,
}

impl IdLookup {
    /// Builds the lookup of a segment whose row `i` holds `ids[i]`. Segments have at most
    /// `u32::MAX` rows (rows are addressed by `u32`); this panics beyond that.
    pub fn new(ids: &[RowId]) -> Self {
        let mut pairs: Vec<(u64, u32)> = ids
            .iter()
            .enumerate()
            .map(|(row, id)| {
                let row = u32::try_from(row).expect("a segment holds at most u32::MAX rows");
                (id.stable_hash(), row)
            })
            .collect();
        pairs.sort_unstable();
        let (hashes, rows) = pairs.into_iter().unzip();
        Self { hashes, rows }
    }

    /// The row holding `id`, where `ids` is the same slice the lookup was built from.
    /// Every candidate with a matching hash is checked for equality, so a hash collision
    /// never returns the wrong row.
    pub fn find(&self, id: &RowId, ids: &[RowId]) -> Option<u32> {
        let hash = id.stable_hash();
        let start = self.hashes.partition_point(|h| *h < hash);
        self.hashes[start..]
            .iter()
            .zip(&self.rows[start..])
            .take_while(|(h, _)| **h == hash)
            .map(|(_, row)| *row)
            .find(|row| ids.get(*row as usize) == Some(id))
    }

    /// Number of ids in the lookup.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Heap plus inline size, for cache accounting.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.hashes.capacity() * std::mem::size_of::<u64>()
            + self.rows.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_are_told_apart_by_the_ids() {
        let ids = vec![RowId::Int(1), RowId::Str("a".into()), RowId::Int(2)];
        // Force every id into one hash bucket to exercise the collision path.
        let hash = RowId::Int(2).stable_hash();
        let lookup = IdLookup { hashes: vec![hash; 3], rows: vec![0, 1, 2] };
        assert_eq!(lookup.find(&RowId::Int(2), &ids), Some(2));
        assert_eq!(lookup.find(&RowId::Int(3), &ids), None);
        // A candidate row beyond the given ids is a miss, not a panic.
        assert_eq!(lookup.find(&RowId::Int(2), &ids[..1]), None);
    }

    #[test]
    fn uses_twelve_bytes_per_row() {
        let ids: Vec<RowId> = (0..1000).map(RowId::Int).collect();
        let lookup = IdLookup::new(&ids);
        let per_row = (lookup.memory_bytes() - std::mem::size_of::<IdLookup>()) / ids.len();
        assert_eq!(per_row, 12);
        assert_eq!(lookup.len(), 1000);
        assert!(IdLookup::new(&[]).is_empty());
    }
}
