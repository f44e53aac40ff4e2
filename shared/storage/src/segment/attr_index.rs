//! The attribute index of a segment (`attrs.idx`): for every attribute, its distinct
//! values in order with the rows holding each, so a filter's matching rows can be counted
//! in O(log n) and listed without reading every row.
//!
//! Layout per attribute (CSR): `values` sorted ascending and distinct; the rows holding
//! `values[i]` are `rows[offsets[i]..offsets[i + 1]]`, ascending; `present` is every row
//! that has the attribute. A string list puts a row under each of its distinct items.
//! Mixed-type columns (data written before attribute types were enforced) are not indexed
//! beyond `present`; conditions on them are answered by testing rows.
//!
//! Uses:
//! - [`AttrIndex::estimate`]: how many rows a filter matches, for the search planner.
//!   Exact for one condition on an indexed attribute; combinations assume independence.
//! - [`AttrIndex::matching`]: exactly the matching rows, for exact scans of selective
//!   filters, counts and deletes by filter. Conjunctions start from their most selective
//!   part and test the other parts row by row, so a selective filter never lists the rows
//!   of a broad one.
//!
//! Every condition goes through `Cond::test_scalar`/`test_list` (directly, or to check a
//! binary search's answer), so the index agrees with the reference evaluator; the property
//! tests compare them on random data.

use std::cmp::Ordering;
use std::ops::Range;

use roaring::RoaringBitmap;
use strata_types::filter::{Cond, Filter, Scalar, ValueRef};

use super::attr_index_build::build_field;
use super::format::AttrColumn;
use super::row_filter::RowFilter;

/// Rows tested one by one instead of listing a part of a conjunction when the rows
/// already chosen are fewer than this fraction of what the part would list.
const TEST_ROWS_BELOW_FRACTION: f64 = 0.25;

/// Rows of several value groups are listed through a bitset of the segment's rows when
/// at least one row in this many is listed (reading the bitset back costs `n / 64`
/// words; sorting costs `log m` per row).
const DENSE_LISTING_ROWS_PER_MATCH: usize = 256;

/// The attribute index of one segment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttrIndex {
    pub(crate) rows: u32,
    /// Sorted by key.
    pub(crate) fields: Vec<FieldIndex>,
}

/// One part of a conjunction being listed (`AttrIndex::matching`).
struct ConjunctionPart<'f> {
    /// Rows it is expected to match (exact when `groups` is set).
    estimate: f64,
    /// The value groups of an indexed scalar attribute that every filter of this part selects.
    groups: Option<(&'f FieldIndex, Vec<Range<usize>>)>,
    /// The conjunction's filters this part stands for.
    filters: Vec<&'f Filter>,
}

impl ConjunctionPart<'_> {
    fn rows(&self, index: &AttrIndex, columns: &[AttrColumn]) -> RoaringBitmap {
        match &self.groups {
            Some((field, groups)) => field.rows_of(groups),
            None => index.matching(self.filters[0], columns),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldIndex {
    pub(crate) key: String,
    pub(crate) values: Values,
    /// `values.len() + 1` offsets into `rows`.
    pub(crate) offsets: Vec<u32>,
    pub(crate) rows: Vec<u32>,
    pub(crate) present: RoaringBitmap,
}

/// Distinct values of one attribute, ascending.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Values {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    /// Finite, with -0.0 folded into 0.0 (they are equal).
    Float(Vec<f64>),
    Str(Vec<String>),
    /// Items of string lists.
    StrList(Vec<String>),
    /// A mixed-type column: only `present` is kept.
    Unindexed,
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Str(v) | Values::StrList(v) => v.len(),
            Values::Unindexed => 0,
        }
    }

    fn get(&self, i: usize) -> ValueRef<'_> {
        match self {
            Values::Bool(v) => ValueRef::Bool(v[i]),
            Values::Int(v) => ValueRef::Int(v[i]),
            Values::Float(v) => ValueRef::Float(v[i]),
            Values::Str(v) | Values::StrList(v) => ValueRef::Str(&v[i]),
            Values::Unindexed => unreachable!("an unindexed field has no values"),
        }
    }
}

/// Orders a stored value against an operand: numbers numerically (two ints exactly),
/// strings by bytes, bools false < true; `None` across kinds.
fn cmp_operand(value: ValueRef<'_>, operand: &Scalar) -> Option<Ordering> {
    match (value, operand) {
        (ValueRef::Int(v), Scalar::Int(x)) => Some(v.cmp(x)),
        (ValueRef::Int(v), Scalar::Float(x)) => (v as f64).partial_cmp(x),
        (ValueRef::Float(v), Scalar::Int(x)) => v.partial_cmp(&(*x as f64)),
        (ValueRef::Float(v), Scalar::Float(x)) => v.partial_cmp(x),
        (ValueRef::Str(v), Scalar::Str(x)) => Some(v.cmp(x.as_str())),
        (ValueRef::Bool(v), Scalar::Bool(x)) => Some(v.cmp(x)),
        _ => None,
    }
}

impl AttrIndex {
    /// Indexes a segment's attribute columns (as typed by the segment format).
    pub(crate) fn build(rows: usize, columns: &[AttrColumn]) -> AttrIndex {
        let fields = columns.iter().map(|c| build_field(rows, c)).collect();
        AttrIndex { rows: rows as u32, fields }
    }

    pub fn rows(&self) -> u32 {
        self.rows
    }

    fn field(&self, key: &str) -> Option<&FieldIndex> {
        self.fields.binary_search_by(|f| f.key.as_str().cmp(key)).ok().map(|i| &self.fields[i])
    }

    /// The expected number of rows matching `filter`.
    pub fn estimate(&self, filter: &Filter) -> f64 {
        let n = f64::from(self.rows);
        if n == 0.0 {
            return 0.0;
        }
        match filter {
            Filter::And(parts) => {
                // Conditions on one attribute (a range: `$gte` and `$lt`) are counted
                // together, exactly; different attributes are assumed independent.
                let mut by_key: Vec<(&str, Vec<&Cond>)> = Vec::new();
                let mut others = Vec::new();
                for part in parts {
                    match part {
                        Filter::Field { key, cond } if self.field(key).is_some() => {
                            match by_key.iter_mut().find(|(k, _)| *k == key.as_str()) {
                                Some((_, conds)) => conds.push(cond),
                                None => by_key.push((key.as_str(), vec![cond])),
                            }
                        }
                        _ => others.push(part),
                    }
                }
                let fields = by_key.iter().map(|(key, conds)| {
                    let field = self.field(key).expect("checked above");
                    field.estimate_all(self.rows, conds)
                });
                let counts = fields.chain(others.iter().map(|p| self.estimate(p)));
                counts.fold(n, |acc, c| acc * c / n)
            }
            Filter::Or(parts) => n * (1.0 - parts.iter().fold(1.0, |acc, p| acc * (1.0 - self.estimate(p) / n))),
            Filter::Not(inner) => n - self.estimate(inner),
            Filter::Field { key, cond } => match self.field(key) {
                None => {
                    if cond.test_missing() {
                        n
                    } else {
                        0.0
                    }
                }
                Some(field) => field.estimate(self.rows, cond),
            },
        }
    }

    /// Exactly the rows matching `filter`; `columns` are the segment's (for conditions
    /// the index cannot answer alone).
    pub fn matching(&self, filter: &Filter, columns: &[AttrColumn]) -> RoaringBitmap {
        match filter {
            Filter::And(parts) => {
                let mut parts = self.conjunction_parts(parts);
                parts.sort_by(|a, b| a.estimate.total_cmp(&b.estimate));
                let mut parts = parts.into_iter();
                let Some(first) = parts.next() else { return self.all() };
                let mut chosen = first.rows(self, columns);
                // Rows can be tested only with the columns (a caller may pass none).
                let can_test = columns.len() == self.fields.len();
                for part in parts {
                    if chosen.is_empty() {
                        break;
                    }
                    if can_test && (chosen.len() as f64) < part.estimate * TEST_ROWS_BELOW_FRACTION {
                        let tests: Vec<RowFilter> =
                            part.filters.iter().map(|f| RowFilter::compile(f, columns)).collect();
                        chosen.retain(|row| tests.iter().all(|t| t.matches(row as usize)));
                    } else {
                        chosen &= part.rows(self, columns);
                    }
                }
                chosen
            }
            Filter::Or(parts) => parts.iter().fold(RoaringBitmap::new(), |mut acc, p| {
                acc |= self.matching(p, columns);
                acc
            }),
            Filter::Not(inner) => self.all() - self.matching(inner, columns),
            Filter::Field { key, cond } => match self.field(key) {
                None if cond.test_missing() => self.all(),
                None => RoaringBitmap::new(),
                Some(field) => field.matching(self.rows, cond, filter, columns),
            },
        }
    }

    /// Whether [`AttrIndex::matching`] needs the segment's columns for `filter` (some
    /// condition names an attribute the index can answer only by testing rows); without
    /// them it may pass an empty slice.
    pub fn needs_columns(&self, filter: &Filter) -> bool {
        match filter {
            Filter::And(parts) | Filter::Or(parts) => parts.iter().any(|p| self.needs_columns(p)),
            Filter::Not(inner) => self.needs_columns(inner),
            Filter::Field { key, cond } => self.field(key).is_some_and(|f| {
                !matches!(cond, Cond::Exists(_)) && f.list_exclusion(cond).is_none() && f.groups(cond).is_none()
            }),
        }
    }

    /// The parts of a conjunction, with the conditions on one indexed attribute merged
    /// into one part listed as the intersection of their value groups: `lo <= x < hi`
    /// lists only the rows in range, never the rows of either half.
    fn conjunction_parts<'f>(&'f self, parts: &'f [Filter]) -> Vec<ConjunctionPart<'f>> {
        let mut out: Vec<ConjunctionPart<'f>> = Vec::with_capacity(parts.len());
        for part in parts {
            let grouped = match part {
                Filter::Field { key, cond } => self
                    .field(key)
                    .filter(|f| !matches!(f.values, Values::StrList(_)))
                    .and_then(|f| Some((f, f.groups(cond)?))),
                _ => None,
            };
            let Some((field, groups)) = grouped else {
                out.push(ConjunctionPart { estimate: self.estimate(part), groups: None, filters: vec![part] });
                continue;
            };
            let same_field = out.iter_mut().find(|p| p.groups.as_ref().is_some_and(|(f, _)| std::ptr::eq(*f, field)));
            match same_field {
                Some(p) => {
                    let (_, common) = p.groups.as_mut().expect("found by its groups");
                    *common = intersect(common, &groups);
                    p.estimate = field.group_rows(common) as f64;
                    p.filters.push(part);
                }
                None => out.push(ConjunctionPart {
                    estimate: field.group_rows(&groups) as f64,
                    groups: Some((field, groups)),
                    filters: vec![part],
                }),
            }
        }
        out
    }

    fn all(&self) -> RoaringBitmap {
        let mut all = RoaringBitmap::new();
        all.insert_range(0..self.rows);
        all
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.fields.iter().map(FieldIndex::memory_bytes).sum::<usize>()
    }
}

impl FieldIndex {
    /// The value groups a condition selects, when groups can answer it: `None` asks the
    /// caller to test rows instead.
    fn groups(&self, cond: &Cond) -> Option<Vec<Range<usize>>> {
        let list = matches!(self.values, Values::StrList(_));
        match (&self.values, cond) {
            (Values::Unindexed, _) | (_, Cond::Exists(_)) => None,
            (_, Cond::Eq(x)) => Some(vec![self.equal(x)?]),
            (Values::StrList(_), Cond::Contains(x)) => Some(vec![self.equal(&Scalar::Str(x.clone()))?]),
            (_, Cond::In(xs)) => {
                let mut groups: Vec<Range<usize>> = xs.iter().map(|x| self.equal(x)).collect::<Option<_>>()?;
                // Repeated operands must not count their rows twice.
                groups.sort_by_key(|g| (g.start, g.end));
                groups.dedup();
                Some(groups)
            }
            (_, Cond::Gt(_) | Cond::Gte(_)) if !list => {
                // False for a prefix of the ordered values, true for the rest.
                let start = self.partition(|v| !cond.test_scalar(v));
                self.checked(start..self.values.len(), cond)
            }
            (_, Cond::Lt(_) | Cond::Lte(_)) if !list => {
                let end = self.partition(|v| cond.test_scalar(v));
                self.checked(0..end, cond)
            }
            // Everything else ($ne, $nin, …): test each distinct value once.
            (_, _) if !list => Some(self.scan_values(cond)),
            _ => None,
        }
    }

    /// The group equal to `x` (an empty range when none is), checked against the
    /// reference semantics; `None` when the check fails (then rows are tested instead).
    fn equal(&self, x: &Scalar) -> Option<Range<usize>> {
        let start = self.partition(|v| cmp_operand(v, x) == Some(Ordering::Less));
        let end = self.partition(|v| matches!(cmp_operand(v, x), Some(Ordering::Less | Ordering::Equal)));
        let range = start..end.max(start);
        let cond = Cond::Eq(x.clone());
        let agrees = range.is_empty()
            || match &self.values {
                Values::StrList(_) => cond.test_list(&mut std::iter::once(self.str_at(range.start))),
                _ => cond.test_scalar(self.values.get(range.start)),
            };
        agrees.then_some(range)
    }

    fn str_at(&self, i: usize) -> &str {
        match &self.values {
            Values::Str(v) | Values::StrList(v) => &v[i],
            _ => unreachable!("string values only"),
        }
    }

    /// The first value index for which `pred` is false (`pred` true on a prefix).
    fn partition(&self, pred: impl Fn(ValueRef<'_>) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.values.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.values.get(mid)) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// `range` if the condition holds at both of its ends (monotone conditions hold on
    /// the whole range then); otherwise `None`.
    fn checked(&self, range: Range<usize>, cond: &Cond) -> Option<Vec<Range<usize>>> {
        let ok = range.is_empty()
            || (cond.test_scalar(self.values.get(range.start)) && cond.test_scalar(self.values.get(range.end - 1)));
        ok.then(|| vec![range])
    }

    fn scan_values(&self, cond: &Cond) -> Vec<Range<usize>> {
        let mut groups: Vec<Range<usize>> = Vec::new();
        for i in 0..self.values.len() {
            if cond.test_scalar(self.values.get(i)) {
                match groups.last_mut() {
                    Some(last) if last.end == i => last.end = i + 1,
                    _ => groups.push(i..i + 1),
                }
            }
        }
        groups
    }

    fn group_rows(&self, groups: &[Range<usize>]) -> u64 {
        groups.iter().map(|g| u64::from(self.offsets[g.end] - self.offsets[g.start])).sum()
    }

    /// For `$ne`/`$nin` on a string list: the groups whose rows are excluded from the
    /// rows present (`None` when every row present is excluded: a non-string operand).
    fn list_exclusion(&self, cond: &Cond) -> Option<Option<Vec<Range<usize>>>> {
        if !matches!(self.values, Values::StrList(_)) {
            return None;
        }
        let operands: Vec<&Scalar> = match cond {
            Cond::Ne(x) => vec![x],
            Cond::Nin(xs) => xs.iter().collect(),
            _ => return None,
        };
        if !operands.iter().all(|x| matches!(x, Scalar::Str(_))) {
            return Some(None);
        }
        operands.into_iter().map(|x| self.equal(x)).collect::<Option<Vec<_>>>().map(Some)
    }

    /// The rows for which every condition holds: exact when each one selects value
    /// groups (their intersection is counted), else assuming independence.
    fn estimate_all(&self, rows: u32, conds: &[&Cond]) -> f64 {
        if let [cond] = conds {
            return self.estimate(rows, cond);
        }
        let groups: Option<Vec<Vec<Range<usize>>>> = conds
            .iter()
            .map(|c| if matches!(self.values, Values::StrList(_)) { None } else { self.groups(c) })
            .collect();
        match groups {
            Some(groups) => {
                let common = groups.into_iter().reduce(|a, b| intersect(&a, &b)).unwrap_or_default();
                self.group_rows(&common) as f64
            }
            None => {
                let n = f64::from(rows.max(1));
                conds.iter().fold(n, |acc, c| acc * self.estimate(rows, c) / n)
            }
        }
    }

    fn estimate(&self, rows: u32, cond: &Cond) -> f64 {
        let present = self.present.len() as f64;
        if let Some(excluded) = self.list_exclusion(cond) {
            return excluded.map_or(0.0, |groups| (present - self.group_rows(&groups) as f64).max(0.0));
        }
        // `$ne` / `$nin` on a scalar: the rows present minus the equal ones, without
        // testing every distinct value (a unique attribute has as many as rows).
        let comparable = |x: &Scalar| self.values.len() > 0 && cmp_operand(self.values.get(0), x).is_some();
        let unequal = |xs: &[&Scalar]| -> Option<f64> {
            if matches!(self.values, Values::StrList(_) | Values::Unindexed) {
                return None;
            }
            if !xs.iter().all(|x| comparable(x)) {
                return Some(0.0);
            }
            let mut equal: Vec<Range<usize>> = xs.iter().map(|x| self.equal(x)).collect::<Option<_>>()?;
            equal.sort_by_key(|g| (g.start, g.end));
            equal.dedup();
            Some(present - self.group_rows(&equal) as f64)
        };
        match cond {
            Cond::Exists(true) => present,
            Cond::Exists(false) => f64::from(rows) - present,
            Cond::Ne(x) if let Some(n) = unequal(&[x]) => n,
            Cond::Nin(xs) if let Some(n) = unequal(&xs.iter().collect::<Vec<_>>()) => n,
            _ => match self.groups(cond) {
                // A string list row may sit in several groups: cap at the rows present.
                Some(groups) => (self.group_rows(&groups) as f64).min(present),
                None => match cond {
                    Cond::Ne(_) | Cond::Nin(_) => present,
                    _ => present / 2.0,
                },
            },
        }
    }

    fn matching(&self, rows: u32, cond: &Cond, filter: &Filter, columns: &[AttrColumn]) -> RoaringBitmap {
        match cond {
            Cond::Exists(true) => return self.present.clone(),
            Cond::Exists(false) => {
                let mut all = RoaringBitmap::new();
                all.insert_range(0..rows);
                return all - &self.present;
            }
            _ => {}
        }
        if let Some(excluded) = self.list_exclusion(cond) {
            let Some(groups) = excluded else { return RoaringBitmap::new() };
            return &self.present - &self.rows_of(&groups);
        }
        match self.groups(cond) {
            Some(groups) => self.rows_of(&groups),
            None => {
                // Only rows that have the attribute can match (missing rows were handled
                // by `test_missing`, which no remaining condition accepts).
                let test = RowFilter::compile(filter, columns);
                let mut out = self.present.clone();
                out.retain(|row| test.matches(row as usize));
                if cond.test_missing() {
                    let mut all = RoaringBitmap::new();
                    all.insert_range(0..rows);
                    out |= all - &self.present;
                }
                out
            }
        }
    }

    /// The rows of the given value groups.
    fn rows_of(&self, groups: &[Range<usize>]) -> RoaringBitmap {
        let slice = |g: &Range<usize>| &self.rows[self.offsets[g.start] as usize..self.offsets[g.end] as usize];
        if let [g] = groups
            && g.len() == 1
        {
            // One group's rows are ascending.
            return RoaringBitmap::from_sorted_iter(slice(g).iter().copied()).unwrap_or_default();
        }
        // Rows of several groups interleave and must be put in order first: inserting out
        // of order into a roaring array container moves the elements after each insert.
        let total: usize = groups.iter().map(|g| slice(g).len()).sum();
        let n = self.present.max().map_or(0, |max| max as usize + 1);
        if total >= n / DENSE_LISTING_ROWS_PER_MATCH {
            // Many rows: mark them in a bitset of the segment and read it back in order,
            // O(n / 64 + total), instead of sorting (a 100k-row sort took ~5 ms).
            let mut bits = vec![0u64; n.div_ceil(64)];
            for g in groups {
                for &row in slice(g) {
                    bits[row as usize / 64] |= 1 << (row % 64);
                }
            }
            return RoaringBitmap::from_sorted_iter(set_bits(&bits)).unwrap_or_default();
        }
        let mut rows: Vec<u32> = groups.iter().flat_map(|g| slice(g).iter().copied()).collect();
        rows.sort_unstable();
        rows.dedup();
        RoaringBitmap::from_sorted_iter(rows).unwrap_or_default()
    }

    fn memory_bytes(&self) -> usize {
        let values = match &self.values {
            Values::Bool(v) => v.len(),
            Values::Int(v) => v.len() * 8,
            Values::Float(v) => v.len() * 8,
            Values::Str(v) | Values::StrList(v) => v.iter().map(|s| s.len() + 24).sum(),
            Values::Unindexed => 0,
        };
        std::mem::size_of::<Self>()
            + self.key.len()
            + values
            + (self.offsets.len() + self.rows.len()) * 4
            + self.present.serialized_size()
    }
}

/// The set bits of a bitset, ascending.
fn set_bits(bits: &[u64]) -> impl Iterator<Item = u32> + '_ {
    bits.iter().enumerate().flat_map(|(w, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                w as u32 * 64 + bit
            })
        })
    })
}

/// The intersection of two sets of value-group ranges, each sorted and disjoint.
fn intersect(a: &[Range<usize>], b: &[Range<usize>]) -> Vec<Range<usize>> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (start, end) = (a[i].start.max(b[j].start), a[i].end.min(b[j].end));
        if start < end {
            out.push(start..end);
        }
        if a[i].end < b[j].end { i += 1 } else { j += 1 }
    }
    out
}
