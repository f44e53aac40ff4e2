//! Per-segment id lookup: which row of an immutable segment holds a given id.
//!
//! A delete names an id; to turn it into a tombstone the writer needs the segment and row
//! that hold it. Keeping every id of every segment as `RowId`s would cost tens of bytes per
//! row, so the lookup keeps only `(RowId::stable_hash, row)` sorted by hash, in two parallel
//! vectors (12 bytes per row, no padding). Hashes can collide, so `find` confirms a
//! candidate row against the segment's decoded ids, which the caller already holds (or
//! fetches through the cache) when it needs certainty.
//!
//! The decoded ids themselves live in an [`IdColumn`]: plain `u64`s when every id of the
//! segment is an integer (8 bytes a row), `RowId`s (32 bytes a row) only when some are
//! strings.

use std::borrow::Cow;

use strata_types::RowId;

/// A segment's ids by row, stored compactly when they are all integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdColumn {
    /// Every id is `RowId::Int`.
    Ints(Vec<u64>),
    /// At least one id is a string.
    Mixed(Vec<RowId>),
}

impl Default for IdColumn {
    fn default() -> Self {
        IdColumn::Ints(Vec::new())
    }
}

impl From<Vec<RowId>> for IdColumn {
    fn from(ids: Vec<RowId>) -> Self {
        if ids.iter().all(|id| matches!(id, RowId::Int(_))) {
            // A fresh vector: collecting in place would keep the 32-byte slots' allocation.
            let mut ints = Vec::with_capacity(ids.len());
            ints.extend(ids.iter().filter_map(|id| if let RowId::Int(v) = id { Some(*v) } else { None }));
            IdColumn::Ints(ints)
        } else {
            IdColumn::Mixed(ids)
        }
    }
}

impl IdColumn {
    pub fn len(&self) -> usize {
        match self {
            IdColumn::Ints(v) => v.len(),
            IdColumn::Mixed(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of `row`. Panics if `row >= len()`, like indexing.
    #[inline]
    pub fn id(&self, row: usize) -> Cow<'_, RowId> {
        match self {
            IdColumn::Ints(v) => Cow::Owned(RowId::Int(v[row])),
            IdColumn::Mixed(v) => Cow::Borrowed(&v[row]),
        }
    }

    /// Whether `row` holds `id` (false for a row out of range).
    #[inline]
    pub fn holds(&self, row: usize, id: &RowId) -> bool {
        match (self, id) {
            (IdColumn::Ints(v), RowId::Int(x)) => v.get(row) == Some(x),
            (IdColumn::Ints(_), RowId::Str(_)) => false,
            (IdColumn::Mixed(v), _) => v.get(row) == Some(id),
        }
    }

    /// Every id, in row order.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, RowId>> {
        (0..self.len()).map(|row| self.id(row))
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        match self {
            IdColumn::Ints(v) => v.capacity() * size_of::<u64>(),
            IdColumn::Mixed(v) => v.capacity() * size_of::<RowId>(),
        }
    }
}

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

    /// The row holding `id`, where `ids` holds the ids the lookup was built from.
    /// Every candidate with a matching hash is checked for equality, so a hash collision
    /// never returns the wrong row.
    pub fn find(&self, id: &RowId, ids: &IdColumn) -> Option<u32> {
        let hash = id.stable_hash();
        let start = self.hashes.partition_point(|h| *h < hash);
        self.hashes[start..]
            .iter()
            .zip(&self.rows[start..])
            .take_while(|(h, _)| **h == hash)
            .map(|(_, row)| *row)
            .find(|row| ids.holds(*row as usize, id))
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
        let column = IdColumn::from(ids.clone());
        assert_eq!(lookup.find(&RowId::Int(2), &column), Some(2));
        assert_eq!(lookup.find(&RowId::Int(3), &column), None);
        // A candidate row beyond the given ids is a miss, not a panic.
        assert_eq!(lookup.find(&RowId::Int(2), &IdColumn::from(ids[..1].to_vec())), None);
        let ints = IdColumn::from(vec![RowId::Int(1), RowId::Int(2), RowId::Int(3)]);
        assert_eq!(lookup.find(&RowId::Int(2), &ints), Some(1), "row 1 of the integer column holds 2");
        assert_eq!(lookup.find(&RowId::Str("a".into()), &ints), None);
    }

    #[test]
    fn integer_ids_take_eight_bytes_a_row_and_read_back_the_same() {
        let ints: Vec<RowId> = (0..100).map(RowId::Int).collect();
        let column = IdColumn::from(ints.clone());
        assert!(matches!(column, IdColumn::Ints(_)));
        assert_eq!(column.memory_bytes(), 800);
        assert!(column.iter().map(Cow::into_owned).eq(ints.iter().cloned()));
        let mixed = vec![RowId::Int(7), RowId::Str("7".into())];
        let column = IdColumn::from(mixed.clone());
        assert!(matches!(column, IdColumn::Mixed(_)));
        assert!(column.holds(1, &RowId::Str("7".into())) && !column.holds(1, &RowId::Int(7)));
        assert!(column.iter().map(Cow::into_owned).eq(mixed));
        assert!(IdColumn::default().is_empty());
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
