//! The pure parts of the filtered-search benchmark (`strata bench --filtered`): the
//! attributes attached to every base row, the filters asked per query, and the exact
//! filtered ground truth.
//!
//! * `u`: an integer drawn uniformly from `0..1_000_000`, independent of the vector, so a
//!   filter on `u` is **uncorrelated** with where the query is.
//! * `band`: `0..999`, the equal-count percentile bucket of the row's projection onto a
//!   fixed random unit direction (cosine: of the normalised row), so an interval of bands
//!   is a slab of space. A band interval centred on the query's own bucket is **positively
//!   correlated** with the query (its nearest neighbours tend to match); the same width at
//!   the far end of the band range is **anti-correlated** (they tend not to).
//!
//! Everything is drawn from RNG streams seeded by `--seed`, so the same seed and data give
//! the same attributes and filters. The ground truth scans only the rows a filter matches:
//! rows are kept sorted by `u` and by band, so the matching rows of a range filter are one
//! contiguous slice.

use rand::RngExt;
use serde::Serialize;
use serde_json::{Value, json};

use super::data::{Matrix, Metric};
use super::synth::{Rows, chunk_rng, dot_product, gaussian, top_k_tasks};

/// `u` is drawn from `0..U_RANGE`.
pub(crate) const U_RANGE: i64 = 1_000_000;
/// Number of equal-count bands.
pub(crate) const BANDS: i64 = 1000;
/// The selectivities measured (share of rows a filter matches).
pub(crate) const SELECTIVITIES: [f64; 5] = [0.001, 0.01, 0.1, 0.5, 1.0];
/// RNG streams of `synth::chunk_rng` (0–2 are the synthetic data's).
const U_STREAM: u64 = 3;
const DIRECTION_STREAM: u64 = 4;

/// Values of one attribute, with the rows sorted by value (ties by row id).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SortedColumn {
    /// The value of every row, by row id.
    pub(crate) values: Vec<i32>,
    /// Row ids in ascending value order.
    order: Vec<u32>,
    /// `values` in that order.
    sorted: Vec<i32>,
}

impl SortedColumn {
    pub(crate) fn new(values: Vec<i32>) -> Self {
        let mut order: Vec<u32> = (0..values.len() as u32).collect();
        order.sort_by_key(|&r| (values[r as usize], r));
        let sorted = order.iter().map(|&r| values[r as usize]).collect();
        SortedColumn { values, order, sorted }
    }

    /// The rows whose value is in `lo..hi`.
    pub(crate) fn rows(&self, lo: i64, hi: i64) -> &[u32] {
        let start = self.sorted.partition_point(|&v| i64::from(v) < lo);
        let end = self.sorted.partition_point(|&v| i64::from(v) < hi).max(start);
        &self.order[start..end]
    }
}

/// The attributes of every base row.
#[derive(Clone, Debug)]
pub(crate) struct RowAttributes {
    pub(crate) u: SortedColumn,
    pub(crate) band: SortedColumn,
    /// The unit direction bands are cut along.
    direction: Vec<f32>,
    /// Every base row's projection, ascending (the band boundaries).
    sorted_projection: Vec<f32>,
    metric: Metric,
}

/// The projection of `v` onto the unit `direction` (of `v` normalised, for cosine).
fn projection(v: &[f32], direction: &[f32], metric: Metric) -> f32 {
    let p = dot_product(v, direction);
    match metric {
        Metric::Cosine => {
            let norm = dot_product(v, v).sqrt();
            if norm > 0.0 { p / norm } else { 0.0 }
        }
        Metric::Dot | Metric::L2 => p,
    }
}

/// The band of the row of rank `rank` (0 = smallest projection) among `n` rows.
pub(crate) fn band_of_rank(rank: usize, n: usize) -> i64 {
    ((rank as u128 * BANDS as u128) / n.max(1) as u128) as i64
}

impl RowAttributes {
    /// Draws `u` and cuts the bands for `base` (deterministic for a seed).
    pub(crate) fn generate(base: &Matrix<f32>, metric: Metric, seed: u64) -> Self {
        let n = base.rows;
        let mut rng = chunk_rng(seed, U_STREAM, 0);
        let u: Vec<i32> = (0..n).map(|_| rng.random_range(0..U_RANGE as i32)).collect();

        let mut rng = chunk_rng(seed, DIRECTION_STREAM, 0);
        let mut direction: Vec<f32> = (0..base.cols).map(|_| gaussian(&mut rng)).collect();
        let norm = dot_product(&direction, &direction).sqrt();
        direction.iter_mut().for_each(|x| *x /= norm.max(f32::MIN_POSITIVE));

        let projections: Vec<f32> = (0..n).map(|i| projection(base.row(i), &direction, metric)).collect();
        let mut by_projection: Vec<u32> = (0..n as u32).collect();
        by_projection.sort_by(|&a, &b| projections[a as usize].total_cmp(&projections[b as usize]).then(a.cmp(&b)));
        let mut band = vec![0i32; n];
        for (rank, &row) in by_projection.iter().enumerate() {
            band[row as usize] = band_of_rank(rank, n) as i32;
        }
        let sorted_projection = by_projection.iter().map(|&r| projections[r as usize]).collect();
        RowAttributes { u: SortedColumn::new(u), band: SortedColumn::new(band), direction, sorted_projection, metric }
    }

    pub(crate) fn rows(&self) -> usize {
        self.u.values.len()
    }

    /// The band a vector falls in: the bucket of its projection among the base rows'.
    pub(crate) fn bucket_of(&self, v: &[f32]) -> i64 {
        let p = projection(v, &self.direction, self.metric);
        let rank = self.sorted_projection.partition_point(|&x| x < p);
        band_of_rank(rank, self.rows()).min(BANDS - 1)
    }

    /// The value of `attr` for `row`.
    pub(crate) fn value(&self, attr: Attr, row: usize) -> i64 {
        i64::from(match attr {
            Attr::U => self.u.values[row],
            Attr::Band => self.band.values[row],
        })
    }

    /// The rows `filter` matches (all rows for none).
    pub(crate) fn matching(&self, filter: Option<&RangeFilter>) -> Rows<'_> {
        match filter {
            None => Rows::All,
            Some(f) => {
                let column = match f.attr {
                    Attr::U => &self.u,
                    Attr::Band => &self.band,
                };
                Rows::Only(column.rows(f.lo, f.hi.unwrap_or(i64::MAX)))
            }
        }
    }

    /// The number of rows `filter` matches.
    pub(crate) fn count(&self, filter: Option<&RangeFilter>) -> usize {
        match self.matching(filter) {
            Rows::All => self.rows(),
            Rows::Only(rows) => rows.len(),
        }
    }
}

/// The attribute a filter tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Attr {
    U,
    Band,
}

impl Attr {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Attr::U => "u",
            Attr::Band => "band",
        }
    }
}

/// `lo <= attr < hi` (no upper bound when `hi` is `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct RangeFilter {
    pub(crate) attr: Attr,
    pub(crate) lo: i64,
    pub(crate) hi: Option<i64>,
}

impl RangeFilter {
    /// The filter as Strata's JSON: `{"u": {"$lt": t}}` (a lower bound of 0 on `u` is
    /// implied by the data and left out), `{"u": {"$gte": 0}}`, `{"band": {"$gte": lo,
    /// "$lt": hi}}`.
    pub(crate) fn to_json(self) -> Value {
        let mut ops = serde_json::Map::new();
        if self.attr == Attr::Band || self.lo > 0 || self.hi.is_none() {
            ops.insert("$gte".into(), json!(self.lo));
        }
        if let Some(hi) = self.hi {
            ops.insert("$lt".into(), json!(hi));
        }
        json!({ self.attr.as_str(): Value::Object(ops) })
    }

    pub(crate) fn matches(&self, value: i64) -> bool {
        value >= self.lo && self.hi.is_none_or(|hi| value < hi)
    }

    /// `[lo, hi)` for the reference script (`hi` = `i32::MAX` when unbounded).
    pub(crate) fn bounds_i32(&self) -> (u32, u32) {
        let clamp = |v: i64| v.clamp(0, i64::from(i32::MAX)) as u32;
        (clamp(self.lo), clamp(self.hi.unwrap_or(i64::from(i32::MAX))))
    }
}

/// How a filter relates to the query's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Correlation {
    /// No filter: the baseline.
    Unfiltered,
    /// Selectivity 1.0: a filter matching every row (`u >= 0`), through the filtered path.
    MatchAll,
    /// On `u`, independent of position.
    Uncorrelated,
    /// A band interval centred on the query's bucket.
    Correlated,
    /// The same width at the far end of the band range.
    AntiCorrelated,
}

impl Correlation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Correlation::Unfiltered => "unfiltered",
            Correlation::MatchAll => "match-all",
            Correlation::Uncorrelated => "uncorrelated",
            Correlation::Correlated => "correlated",
            Correlation::AntiCorrelated => "anti-correlated",
        }
    }
}

/// Number of bands a selectivity spans (at least one).
pub(crate) fn band_width(selectivity: f64) -> i64 {
    ((selectivity * BANDS as f64).round() as i64).clamp(1, BANDS)
}

/// `width` bands centred on `bucket`, shifted to stay within `0..BANDS` (so the width,
/// and the selectivity, stay exact).
pub(crate) fn centred_window(bucket: i64, width: i64) -> (i64, i64) {
    let width = width.clamp(1, BANDS);
    let lo = (bucket - width / 2).clamp(0, BANDS - width);
    (lo, lo + width)
}

/// `width` bands at the end of the band range farther from `bucket`.
pub(crate) fn far_window(bucket: i64, width: i64) -> (i64, i64) {
    let width = width.clamp(1, BANDS);
    if BANDS - 1 - bucket >= bucket { (BANDS - width, BANDS) } else { (0, width) }
}

/// One measured (correlation, selectivity): the filter of every query.
#[derive(Clone, Debug)]
pub(crate) struct Combo {
    pub(crate) correlation: Correlation,
    /// `None` for the unfiltered baseline.
    pub(crate) selectivity: Option<f64>,
    /// The filter of each query (`None`: no filter).
    pub(crate) filters: Vec<Option<RangeFilter>>,
}

impl Combo {
    /// `"uncorrelated s=0.01"`, `"unfiltered"`.
    pub(crate) fn name(&self) -> String {
        match self.selectivity {
            Some(s) => format!("{} s={s}", self.correlation.as_str()),
            None => self.correlation.as_str().to_owned(),
        }
    }
}

/// The combinations measured, in report order: the unfiltered baseline, match-all
/// (s = 1.0), then uncorrelated, correlated and anti-correlated at each selectivity < 1.
pub(crate) fn combos(attrs: &RowAttributes, queries: &Matrix<f32>) -> Vec<Combo> {
    let nq = queries.rows;
    let buckets: Vec<i64> = (0..nq).map(|q| attrs.bucket_of(queries.row(q))).collect();
    let mut out = vec![
        Combo { correlation: Correlation::Unfiltered, selectivity: None, filters: vec![None; nq] },
        Combo {
            correlation: Correlation::MatchAll,
            selectivity: Some(1.0),
            filters: vec![Some(RangeFilter { attr: Attr::U, lo: 0, hi: None }); nq],
        },
    ];
    let partial = SELECTIVITIES.iter().copied().filter(|&s| s < 1.0);
    for s in partial.clone() {
        let threshold = (s * U_RANGE as f64).round() as i64;
        let f = RangeFilter { attr: Attr::U, lo: 0, hi: Some(threshold) };
        out.push(Combo { correlation: Correlation::Uncorrelated, selectivity: Some(s), filters: vec![Some(f); nq] });
    }
    for (correlation, window) in [
        (Correlation::Correlated, centred_window as fn(i64, i64) -> (i64, i64)),
        (Correlation::AntiCorrelated, far_window),
    ] {
        for s in partial.clone() {
            let width = band_width(s);
            let filters = buckets
                .iter()
                .map(|&b| {
                    let (lo, hi) = window(b, width);
                    Some(RangeFilter { attr: Attr::Band, lo, hi: Some(hi) })
                })
                .collect();
            out.push(Combo { correlation, selectivity: Some(s), filters });
        }
    }
    out
}

/// Exact ground truth of every combination: `k` ids per query (padded with `u32::MAX`
/// when fewer rows match), scanning only the matching rows, and the CPU microseconds of
/// each query's scan on one thread (what an exact scan of the matching rows costs).
pub(crate) struct FilteredTruth {
    pub(crate) ids: Vec<Matrix<u32>>,
    pub(crate) scan_cpu_us: Vec<Vec<f64>>,
}

/// Brute force over the matching rows of every (combination, query).
pub(crate) fn filtered_ground_truth(
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    metric: Metric,
    k: usize,
    attrs: &RowAttributes,
    combos: &[Combo],
) -> FilteredTruth {
    let nq = queries.rows;
    let task = |t: usize| {
        let (c, q) = (t / nq, t % nq);
        (q, attrs.matching(combos[c].filters[q].as_ref()))
    };
    let (ids, cpu) = top_k_tasks(base, queries, metric, k, combos.len() * nq, &task);
    let ids = ids.chunks(nq * k).map(|c| Matrix { rows: nq, cols: k, data: c.to_vec() }).collect();
    let scan_cpu_us = cpu.chunks(nq).map(|c| c.iter().map(|&ns| ns as f64 / 1000.0).collect()).collect();
    FilteredTruth { ids, scan_cpu_us }
}

/// Recall@k against padded ground truth: hits among the first `k` results over the true
/// neighbours that exist (`min(k, matching rows)` per query), summed over the queries.
pub(crate) fn filtered_recall(results: &[Vec<u64>], gt: &Matrix<u32>, k: usize) -> f64 {
    let (mut hits, mut total) = (0usize, 0usize);
    for (i, found) in results.iter().enumerate() {
        let truth: Vec<u32> = gt.row(i).iter().take(k).copied().filter(|&t| t != u32::MAX).collect();
        total += truth.len();
        hits += found.iter().take(k).filter(|&&id| truth.iter().any(|&t| u64::from(t) == id)).count();
    }
    if total == 0 { 1.0 } else { hits as f64 / total as f64 }
}
