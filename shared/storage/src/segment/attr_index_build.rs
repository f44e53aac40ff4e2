//! Building a segment's attribute index (`attr_index`): each column's (value, row) pairs
//! sorted and grouped into the CSR layout of [`FieldIndex`].

use std::cmp::Ordering;

use arrow_array::Array;
use roaring::RoaringBitmap;

use super::attr_index::{FieldIndex, Values};
use super::format::{AttrColumn, AttrValues, list_items};

/// Sorts (value, row) pairs and groups them into the CSR layout.
fn group<T: Clone>(mut pairs: Vec<(T, u32)>, cmp: impl Fn(&T, &T) -> Ordering) -> (Vec<T>, Vec<u32>, Vec<u32>) {
    pairs.sort_by(|a, b| cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
    let mut values: Vec<T> = Vec::new();
    let mut offsets = vec![0u32];
    let mut rows = Vec::with_capacity(pairs.len());
    for (value, row) in pairs {
        if values.last().is_none_or(|last| cmp(last, &value) != Ordering::Equal) {
            if !values.is_empty() {
                offsets.push(rows.len() as u32);
            }
            values.push(value);
        }
        rows.push(row);
    }
    if !values.is_empty() {
        offsets.push(rows.len() as u32);
    }
    (values, offsets, rows)
}

/// Indexes one attribute column: its distinct values in order with the rows holding each.
pub(super) fn build_field(rows: usize, column: &AttrColumn) -> FieldIndex {
    fn valid_rows(rows: usize, present: impl Fn(usize) -> bool) -> impl Iterator<Item = u32> {
        (0..rows).filter(move |r| present(*r)).map(|r| r as u32)
    }
    let valid = |present: &dyn Fn(usize) -> bool| valid_rows(rows, present).collect::<Vec<u32>>().into_iter();
    let (values, offsets, grouped, present): (Values, Vec<u32>, Vec<u32>, RoaringBitmap) = match &column.values {
        AttrValues::Bool(a) => {
            let pairs: Vec<(bool, u32)> = valid(&|r| a.is_valid(r)).map(|r| (a.value(r as usize), r)).collect();
            let present = pairs.iter().map(|p| p.1).collect();
            let (v, o, r) = group(pairs, bool::cmp);
            (Values::Bool(v), o, r, present)
        }
        AttrValues::Int(a) => {
            let pairs: Vec<(i64, u32)> = valid(&|r| a.is_valid(r)).map(|r| (a.value(r as usize), r)).collect();
            let present = pairs.iter().map(|p| p.1).collect();
            let (v, o, r) = group(pairs, i64::cmp);
            (Values::Int(v), o, r, present)
        }
        AttrValues::Float(a) => {
            // + 0.0 folds -0.0 into 0.0: equal values must share a group.
            let pairs: Vec<(f64, u32)> = valid(&|r| a.is_valid(r)).map(|r| (a.value(r as usize) + 0.0, r)).collect();
            let present = pairs.iter().map(|p| p.1).collect();
            let (v, o, r) = group(pairs, f64::total_cmp);
            (Values::Float(v), o, r, present)
        }
        AttrValues::Str(a) => {
            let pairs: Vec<(&str, u32)> = valid(&|r| a.is_valid(r)).map(|r| (a.value(r as usize), r)).collect();
            let present = pairs.iter().map(|p| p.1).collect();
            let (v, o, r) = group(pairs, |a: &&str, b: &&str| a.cmp(b));
            (Values::Str(v.into_iter().map(str::to_owned).collect()), o, r, present)
        }
        AttrValues::StrList(a) => {
            let mut pairs: Vec<(&str, u32)> = Vec::new();
            for r in valid(&|r| a.is_valid(r)) {
                let mut items: Vec<&str> = list_items(a, r as usize).collect();
                items.sort_unstable();
                items.dedup();
                pairs.extend(items.into_iter().map(|s| (s, r)));
            }
            let present = valid(&|r| a.is_valid(r)).collect();
            let (v, o, r) = group(pairs, |a: &&str, b: &&str| a.cmp(b));
            (Values::StrList(v.into_iter().map(str::to_owned).collect()), o, r, present)
        }
        AttrValues::Json(a) => (Values::Unindexed, vec![0], Vec::new(), valid(&|r| a.is_valid(r)).collect()),
    };
    FieldIndex { key: column.key.clone(), values, offsets, rows: grouped, present }
}
