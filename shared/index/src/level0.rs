//! Layer 0 of a [`Graph`](super::Graph) laid out for search: one fixed-width slot per
//! row.
//!
//! Why: layer 0 does nearly every expansion of a search, and each expansion starts by
//! finding a row's neighbour list. In CSR form that is two dependent loads at random
//! places (the row's offsets, then its list); with fixed-width slots the list's
//! address is `row × width`, so one load (and one prefetch) suffices, as in hnswlib's
//! layout.
//!
//! Layout: `slots[row × width]` is the row's degree `d`. If `d < width` the neighbours
//! follow in the same slot. A rare row with more neighbours than a slot holds
//! (connectivity repair can add several links to one row, e.g. among duplicate
//! vectors) keeps them in `overflow`, and `slots[row × width + 1]` says where they
//! start. The slot width is chosen from the degree distribution so that at most about
//! one row in a thousand overflows.
//!
//! Invariants: `slots.len() == rows × width`, `width ≥ 2`; every overflow range lies
//! inside `overflow`. Both hold by construction ([`Level0::from_lists`] is the only
//! constructor), so `neighbours` never indexes out of range for `row < rows`.

/// Layer-0 adjacency in fixed-width slots (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Level0 {
    width: usize,
    slots: Vec<u32>,
    overflow: Vec<u32>,
    edges: usize,
}

impl Level0 {
    /// Lays out `lists` (row `i`'s neighbours at position `i`).
    pub(super) fn from_lists<'a, I>(lists: I) -> Self
    where
        I: IntoIterator<Item = &'a [u32]>,
        I::IntoIter: Clone,
    {
        let lists = lists.into_iter();
        let width = 1 + slot_capacity(lists.clone().map(<[u32]>::len));
        let rows = lists.clone().count();
        let mut slots = vec![0u32; rows * width];
        let mut overflow = Vec::new();
        let mut edges = 0;
        for (slot, list) in slots.chunks_exact_mut(width).zip(lists) {
            edges += list.len();
            slot[0] = u32::try_from(list.len()).expect("a row has fewer than 2^32 neighbours");
            if list.len() < width {
                slot[1..=list.len()].copy_from_slice(list);
            } else {
                slot[1] = u32::try_from(overflow.len()).expect("fewer than 2^32 overflow links");
                overflow.extend_from_slice(list);
            }
        }
        Self { width, slots, overflow, edges }
    }

    /// Number of rows.
    pub(super) fn rows(&self) -> usize {
        self.slots.len() / self.width
    }

    /// Links a slot holds inline: the degree bound of all but about one row in a
    /// thousand (`2m` for a graph built with `m`).
    pub(super) fn slot_capacity(&self) -> usize {
        self.width - 1
    }

    /// Total number of links.
    pub(super) fn edges(&self) -> usize {
        self.edges
    }

    /// Neighbours of `row`.
    #[inline(always)]
    pub(super) fn neighbours(&self, row: usize) -> &[u32] {
        let slot = &self.slots[row * self.width..][..self.width];
        let degree = slot[0] as usize;
        if degree < self.width { &slot[1..=degree] } else { &self.overflow[slot[1] as usize..][..degree] }
    }

    /// The memory holding `row`'s slot: what to prefetch before `neighbours(row)`.
    #[inline(always)]
    pub(super) fn slot(&self, row: usize) -> &[u32] {
        self.slots.get(row * self.width..(row + 1) * self.width).unwrap_or(&[])
    }

    /// Every row's neighbours, in row order.
    pub(super) fn lists(&self) -> impl Iterator<Item = &[u32]> + Clone {
        (0..self.rows()).map(|row| self.neighbours(row))
    }

    pub(super) fn memory_bytes(&self) -> usize {
        (self.slots.capacity() + self.overflow.capacity()) * size_of::<u32>()
    }

    /// Asks for huge pages under the slots (see `huge_pages.rs`).
    pub(super) fn advise_huge_pages(&self) {
        super::huge_pages::advise(&self.slots);
    }
}

/// The slot capacity for these degrees: the smallest that holds all but about one row
/// in a thousand (at least 1, so an empty graph still has a valid width).
fn slot_capacity(degrees: impl Iterator<Item = usize>) -> usize {
    let mut histogram: Vec<usize> = Vec::new();
    let mut rows = 0;
    for d in degrees {
        if histogram.len() <= d {
            histogram.resize(d + 1, 0);
        }
        histogram[d] += 1;
        rows += 1;
    }
    let allowed_overflow = rows / 1000;
    let mut above = 0;
    for d in (0..histogram.len()).rev() {
        if above + histogram[d] > allowed_overflow {
            return d.max(1);
        }
        above += histogram[d];
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn slots_return_every_list(lists in prop::collection::vec(prop::collection::vec(any::<u32>(), 0..40), 0..300)) {
            let level = Level0::from_lists(lists.iter().map(Vec::as_slice));
            prop_assert_eq!(level.rows(), lists.len());
            prop_assert_eq!(level.edges(), lists.iter().map(Vec::len).sum::<usize>());
            for (row, list) in lists.iter().enumerate() {
                prop_assert_eq!(level.neighbours(row), list.as_slice());
                prop_assert!(level.slot(row).len() >= 2);
            }
            prop_assert!(level.lists().eq(lists.iter().map(Vec::as_slice)));
        }
    }

    #[test]
    fn a_rare_long_list_overflows_instead_of_widening_every_slot() {
        let mut lists = vec![vec![1u32, 2, 3]; 5000];
        lists[7] = (0..500).collect();
        let level = Level0::from_lists(lists.iter().map(Vec::as_slice));
        assert_eq!(level.width, 4, "slots sized for the common degree");
        assert_eq!(level.neighbours(7), lists[7].as_slice());
        assert_eq!(level.neighbours(8), &[1, 2, 3]);
    }

    #[test]
    fn slot_capacity_ignores_the_top_tenth_of_a_percent() {
        assert_eq!(slot_capacity(std::iter::empty()), 1);
        assert_eq!(slot_capacity([0, 0].into_iter()), 1);
        assert_eq!(slot_capacity([32; 999].into_iter().chain([90])), 32);
        assert_eq!(slot_capacity([32; 999].into_iter().chain([90, 90])), 90);
    }
}
