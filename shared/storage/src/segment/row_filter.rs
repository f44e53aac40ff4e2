//! A filter compiled against one segment's attribute columns: tests a row in a few
//! nanoseconds without building its JSON attributes, for the graph walk (which asks about
//! each row it reaches) and for narrowing small candidate sets.
//!
//! Semantics are [`strata_types::filter`]'s: every test goes through
//! [`Cond::test_scalar`], [`Cond::test_list`] and [`Cond::test_missing`], so this evaluator
//! cannot drift from the reference one (the property tests compare them anyway).

use arrow_array::Array;
use strata_types::filter::{Cond, Filter, ValueRef};

use super::format::{AttrColumn, AttrValues, list_items, parse_json_text};

/// A [`Filter`] bound to a segment's columns.
pub(crate) enum RowFilter<'a> {
    And(Vec<RowFilter<'a>>),
    Or(Vec<RowFilter<'a>>),
    Not(Box<RowFilter<'a>>),
    /// `column` is `None` when no row of the segment has the attribute.
    Field {
        column: Option<&'a AttrValues>,
        cond: &'a Cond,
    },
}

impl<'a> RowFilter<'a> {
    /// Binds `filter` to `columns` (sorted by key, as segments keep them).
    pub fn compile(filter: &'a Filter, columns: &'a [AttrColumn]) -> Self {
        match filter {
            Filter::And(parts) => RowFilter::And(parts.iter().map(|p| Self::compile(p, columns)).collect()),
            Filter::Or(parts) => RowFilter::Or(parts.iter().map(|p| Self::compile(p, columns)).collect()),
            Filter::Not(inner) => RowFilter::Not(Box::new(Self::compile(inner, columns))),
            Filter::Field { key, cond } => {
                let column =
                    columns.binary_search_by(|c| c.key.as_str().cmp(key.as_str())).ok().map(|i| &columns[i].values);
                RowFilter::Field { column, cond }
            }
        }
    }

    pub fn matches(&self, row: usize) -> bool {
        match self {
            RowFilter::And(parts) => parts.iter().all(|p| p.matches(row)),
            RowFilter::Or(parts) => parts.iter().any(|p| p.matches(row)),
            RowFilter::Not(inner) => !inner.matches(row),
            RowFilter::Field { column: None, cond } => cond.test_missing(),
            RowFilter::Field { column: Some(values), cond } => test_cell(values, row, cond),
        }
    }
}

/// The condition on cell `row` of a column.
fn test_cell(values: &AttrValues, row: usize, cond: &Cond) -> bool {
    let present = match values {
        AttrValues::Bool(a) => a.is_valid(row),
        AttrValues::Int(a) => a.is_valid(row),
        AttrValues::Float(a) => a.is_valid(row),
        AttrValues::Str(a) | AttrValues::Json(a) => a.is_valid(row),
        AttrValues::StrList(a) => a.is_valid(row),
    };
    if !present {
        return cond.test_missing();
    }
    match values {
        AttrValues::Bool(a) => cond.test_scalar(ValueRef::Bool(a.value(row))),
        AttrValues::Int(a) => cond.test_scalar(ValueRef::Int(a.value(row))),
        AttrValues::Float(a) => cond.test_scalar(ValueRef::Float(a.value(row))),
        AttrValues::Str(a) => cond.test_scalar(ValueRef::Str(a.value(row))),
        AttrValues::StrList(a) => cond.test_list(&mut list_items(a, row)),
        // Cells of mixed-type columns (data from before attribute types were enforced).
        AttrValues::Json(a) => match parse_json_text(a.value(row)) {
            Some(value) => cond.test_json(&value),
            None => cond.test_missing(),
        },
    }
}
