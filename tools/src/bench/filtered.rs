//! `strata bench --filtered`: filtered search against the server, the delete-by-filter
//! figure, and their part of the report.
//!
//! For every combination of `filter_data::combos` (the unfiltered baseline, match-all,
//! and uncorrelated / correlated / anti-correlated filters at each selectivity) the
//! queries run once as a warm-up at the collection's default ef, then once measured (or
//! `--repeat` times) at the default ef (not sent) and at every `--ef`, one client at a time,
//! reading the server's process CPU time around each measured pass. Every returned row is
//! checked against the filter with the attributes the bench generated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use strata_types::Consistency;

use super::client::{Api, SearchOptions, answer_of, result_id};
use super::data::{Matrix, write_npy};
use super::filter_data::{
    Attr, Combo, Correlation, FilteredTruth, RangeFilter, RowAttributes, U_RANGE, filtered_recall,
};
use super::reference::Scratch;
use super::stats::{Summary, summarize, thousands};

/// Everything the filtered phases need, prepared before the server is touched.
pub(crate) struct FilteredSetup {
    pub(crate) attrs: Arc<RowAttributes>,
    pub(crate) combos: Vec<Combo>,
    pub(crate) truth: FilteredTruth,
    /// Seconds the tool spent on attributes and ground truth.
    pub(crate) prepare_seconds: f64,
}

/// One (combination, ef) measured against Strata.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FilteredRun {
    pub(crate) combo: String,
    pub(crate) correlation: Correlation,
    /// Share of rows the filter matches (`None`: no filter).
    pub(crate) selectivity: Option<f64>,
    /// The ef sent (`None`: not sent, the collection's default).
    pub(crate) ef: Option<usize>,
    /// The ef the search used (the collection's `hnsw.ef` when not sent).
    pub(crate) effective_ef: usize,
    /// Searches in the measured pass.
    pub(crate) queries: usize,
    /// Mean rows matching a query's filter.
    pub(crate) matching_rows_mean: f64,
    pub(crate) recall: f64,
    pub(crate) qps: f64,
    pub(crate) seconds: f64,
    pub(crate) client_latency_us: Summary,
    pub(crate) server_took_us: Summary,
    /// Server process CPU (user + system) over the measured pass ÷ searches.
    pub(crate) server_cpu_us_per_query: Option<f64>,
    /// `server_cpu_us_per_query` ÷ the unfiltered search's at the same ef.
    pub(crate) cpu_ratio_to_unfiltered: Option<f64>,
    /// CPU of the tool's exact scan of the matching rows, one thread, per query (no HTTP):
    /// median and mean.
    pub(crate) exact_scan_cpu_us_p50: f64,
    pub(crate) exact_scan_cpu_us_mean: f64,
    /// Answers with fewer than `min(k, matching rows)` results.
    pub(crate) short_answers: usize,
    /// Returned rows that do not match the query's filter (wrong results).
    pub(crate) non_matching_results: usize,
    /// Returned ids that are not base rows.
    pub(crate) unknown_ids: usize,
    /// Answers flagged `partial`.
    pub(crate) partial_answers: usize,
    /// Per query of the last pass: (hits, true neighbours), for recall over a prefix.
    #[serde(skip)]
    pub(crate) hits: Vec<(usize, usize)>,
}

impl FilteredRun {
    /// Recall over the first `n` queries (the reference's query cap).
    pub(crate) fn recall_first(&self, n: usize) -> f64 {
        let (h, t) = self.hits.iter().take(n).fold((0, 0), |(h, t), &(a, b)| (h + a, t + b));
        if t == 0 { 1.0 } else { h as f64 / t as f64 }
    }
}

/// The delete-by-filter figure (`--delete-fraction`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DeleteResult {
    pub(crate) fraction: f64,
    pub(crate) filter: Value,
    /// Rows with `u` below the threshold, by the bench's own attributes.
    pub(crate) expected_rows: usize,
    pub(crate) count_before: u64,
    pub(crate) deleted: u64,
    /// Client wall time of `POST /delete` until its answer (the acknowledgement).
    pub(crate) ack_seconds: f64,
    /// Server process CPU during the delete request.
    pub(crate) server_cpu_seconds: Option<f64>,
    pub(crate) count_after: u64,
    pub(crate) count_after_ms: f64,
    pub(crate) total_after: u64,
    pub(crate) expected_total_after: u64,
    /// Unfiltered searches with `include_attributes` after the delete.
    pub(crate) searches: usize,
    pub(crate) results_checked: usize,
    /// Returned rows with `u` below the threshold (deleted rows seen again).
    pub(crate) deleted_rows_returned: usize,
    pub(crate) rows_without_u: usize,
    pub(crate) short_answers: usize,
    /// Searches filtered with the delete's own filter: results returned (should be 0).
    pub(crate) filtered_searches: usize,
    pub(crate) filtered_results: usize,
    /// Every check passed.
    pub(crate) ok: bool,
}

/// The filtered part of the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FilteredReport {
    pub(crate) k: usize,
    /// The collection's `hnsw.ef` (searches without `ef`).
    pub(crate) default_ef: usize,
    pub(crate) seed: u64,
    pub(crate) repeat: usize,
    /// Seconds the tool spent generating attributes and the filtered ground truth.
    pub(crate) prepare_seconds: f64,
    /// Server CPU seconds per second while idle, before the filtered passes (background
    /// work such as compaction would show here) and after them.
    pub(crate) idle_cpu_before: Option<f64>,
    pub(crate) idle_cpu_after: Option<f64>,
    pub(crate) runs: Vec<FilteredRun>,
    /// The reference's time budget per combination, seconds.
    pub(crate) reference_budget_s: f64,
    pub(crate) delete: Option<DeleteResult>,
}

/// Answers of one pass.
struct Pass {
    client_us: Vec<u64>,
    server_us: Vec<u64>,
    seconds: f64,
    /// Per query (last run): returned ids.
    ids: Vec<Vec<u64>>,
    partial: usize,
}

/// Runs every query `repeat` times, one at a time.
async fn pass(
    api: &Api,
    name: &str,
    queries: &Matrix<f32>,
    filters: &[Option<Value>],
    options: SearchOptions<'_>,
    repeat: usize,
) -> Result<Pass> {
    let nq = queries.rows;
    let mut out =
        Pass { client_us: Vec::new(), server_us: Vec::new(), seconds: 0.0, ids: vec![Vec::new(); nq], partial: 0 };
    let started = Instant::now();
    for i in 0..nq * repeat.max(1) {
        let q = i % nq;
        let opts = SearchOptions { filter: filters[q].as_ref(), ..options };
        let t = Instant::now();
        let v = api.search_with(name, queries.row(q), &opts).await.with_context(|| {
            format!("query {q}, filter {}", filters[q].as_ref().map_or("none".to_owned(), Value::to_string))
        })?;
        out.client_us.push(t.elapsed().as_micros() as u64);
        let answer = answer_of(name, &v)?;
        out.server_us.extend(answer.took_us);
        out.partial += usize::from(v.get("partial").and_then(Value::as_bool).unwrap_or(false));
        out.ids[q] = answer.ids;
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Waits (up to `timeout`) until the server's process uses under 5 % of a core, and
/// returns the last rate measured (CPU seconds per second).
pub(crate) async fn settle(api: &Api, timeout: Duration) -> Option<f64> {
    let started = Instant::now();
    loop {
        let a = api.server_cpu_seconds().await?;
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = api.server_cpu_seconds().await?;
        let rate = (b - a).max(0.0) / t.elapsed().as_secs_f64();
        if rate < 0.05 || started.elapsed() >= timeout {
            if rate >= 0.05 {
                eprintln!("  warning: the server still uses {:.0} % of a core while idle", rate * 100.0);
            }
            return Some(rate);
        }
        eprintln!("  waiting for the server to settle: {:.0} % of a core while idle", rate * 100.0);
    }
}

/// What a filtered measurement needs besides the setup.
pub(crate) struct FilteredSpec<'a> {
    pub(crate) collection: &'a str,
    pub(crate) k: usize,
    pub(crate) efs: &'a [usize],
    pub(crate) default_ef: usize,
    pub(crate) consistency: Consistency,
    pub(crate) repeat: usize,
}

/// Measures every combination at the default ef and at every `--ef`.
pub(crate) async fn measure(
    api: &Api,
    spec: &FilteredSpec<'_>,
    setup: &FilteredSetup,
    queries: &Matrix<f32>,
) -> Result<Vec<FilteredRun>> {
    let nq = queries.rows;
    let efs: Vec<Option<usize>> = std::iter::once(None).chain(spec.efs.iter().copied().map(Some)).collect();
    let mut runs: Vec<FilteredRun> = Vec::new();
    for (c, combo) in setup.combos.iter().enumerate() {
        let filters: Vec<Option<Value>> = combo.filters.iter().map(|f| f.map(RangeFilter::to_json)).collect();
        let gt = &setup.truth.ids[c];
        let matching: Vec<usize> = combo.filters.iter().map(|f| setup.attrs.count(f.as_ref())).collect();
        let matching_rows_mean = matching.iter().sum::<usize>() as f64 / nq.max(1) as f64;
        let scan = summarize(&setup.truth.scan_cpu_us[c].iter().map(|&us| us.round() as u64).collect::<Vec<_>>());
        let base_options = SearchOptions {
            top_k: spec.k,
            ef: None,
            consistency: spec.consistency,
            include_attributes: false,
            filter: None,
        };
        pass(api, spec.collection, queries, &filters, base_options, 1).await.context("warm-up pass")?;
        for &ef in &efs {
            let options = SearchOptions { ef, ..base_options };
            let cpu_before = api.server_cpu_seconds().await;
            let p = pass(api, spec.collection, queries, &filters, options, spec.repeat).await?;
            let cpu_after = api.server_cpu_seconds().await;
            let searches = nq * spec.repeat.max(1);
            let server_cpu_us_per_query = match (cpu_before, cpu_after) {
                (Some(a), Some(b)) if searches > 0 => Some((b - a).max(0.0) * 1e6 / searches as f64),
                _ => None,
            };
            let (mut short_answers, mut non_matching, mut unknown) = (0, 0, 0);
            let mut hits = Vec::with_capacity(nq);
            for (q, ids) in p.ids.iter().enumerate() {
                let truth: Vec<u32> = gt.row(q).iter().copied().filter(|&t| t != u32::MAX).collect();
                if ids.len() < spec.k.min(matching[q]) {
                    short_answers += 1;
                }
                for &id in ids {
                    if id >= setup.attrs.rows() as u64 {
                        unknown += 1;
                    } else if let Some(f) = &combo.filters[q]
                        && !f.matches(setup.attrs.value(f.attr, id as usize))
                    {
                        non_matching += 1;
                    }
                }
                let h = ids.iter().take(spec.k).filter(|&&id| truth.iter().any(|&t| u64::from(t) == id)).count();
                hits.push((h, truth.len()));
            }
            let recall = filtered_recall(&p.ids, gt, spec.k);
            let baseline = runs
                .iter()
                .find(|r| r.correlation == Correlation::Unfiltered && r.ef == ef)
                .and_then(|r| r.server_cpu_us_per_query);
            let run = FilteredRun {
                combo: combo.name(),
                correlation: combo.correlation,
                selectivity: combo.selectivity,
                ef,
                effective_ef: ef.unwrap_or(spec.default_ef),
                queries: searches,
                matching_rows_mean,
                recall,
                qps: searches as f64 / p.seconds.max(1e-9),
                seconds: p.seconds,
                client_latency_us: summarize(&p.client_us),
                server_took_us: summarize(&p.server_us),
                server_cpu_us_per_query,
                cpu_ratio_to_unfiltered: match (server_cpu_us_per_query, baseline) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                },
                exact_scan_cpu_us_p50: scan.p50,
                exact_scan_cpu_us_mean: scan.mean,
                short_answers,
                non_matching_results: non_matching,
                unknown_ids: unknown,
                partial_answers: p.partial,
                hits,
            };
            eprintln!(
                "  {:<26} ef {:>7}: recall@{} {:.4}, server CPU {} µs/query ({}), p50 {:.2} ms, {} QPS{}",
                run.combo,
                ef_label(ef, spec.default_ef),
                spec.k,
                run.recall,
                run.server_cpu_us_per_query.map_or("?".to_owned(), |v| format!("{v:.0}")),
                run.cpu_ratio_to_unfiltered.map_or("—".to_owned(), |r| format!("{r:.2}× unfiltered")),
                run.client_latency_us.p50 / 1000.0,
                thousands(run.qps),
                if non_matching + unknown + short_answers > 0 {
                    format!("; {non_matching} non-matching, {unknown} unknown ids, {short_answers} short answers")
                } else {
                    String::new()
                }
            );
            runs.push(run);
        }
    }
    Ok(runs)
}

pub(crate) fn ef_label(ef: Option<usize>, default_ef: usize) -> String {
    match ef {
        Some(e) => e.to_string(),
        None => format!("default ({default_ef})"),
    }
}

/// Deletes the rows with `u < fraction · 1e6` by filter and checks they are gone.
pub(crate) async fn delete_by_filter(
    api: &Api,
    name: &str,
    attrs: &RowAttributes,
    queries: &Matrix<f32>,
    k: usize,
    fraction: f64,
) -> Result<DeleteResult> {
    let threshold = (fraction * U_RANGE as f64).round() as i64;
    let f = RangeFilter { attr: Attr::U, lo: 0, hi: Some(threshold) };
    let filter = f.to_json();
    let expected_rows = attrs.count(Some(&f));
    let collection = format!("/v1/collections/{name}");
    let count = |v: Value| v.get("count").and_then(Value::as_u64).context("count: no 'count' in the answer");
    let count_before = count(api.post_json(&format!("{collection}/count"), &json!({"filter": filter}), true).await?)?;
    let total_before = count(api.post_json(&format!("{collection}/count"), &json!({}), true).await?)?;
    eprintln!(
        "  {filter}: {count_before} rows counted by the server, {expected_rows} expected; {total_before} rows in all"
    );

    let cpu_before = api.server_cpu_seconds().await;
    let t = Instant::now();
    let answer = api.post_json(&format!("{collection}/delete"), &json!({"filter": filter}), false).await?;
    let ack_seconds = t.elapsed().as_secs_f64();
    let cpu_after = api.server_cpu_seconds().await;
    let deleted = answer.get("deleted").and_then(Value::as_u64).context("delete: no 'deleted' in the answer")?;
    eprintln!("  delete acknowledged in {ack_seconds:.3} s: {deleted} rows deleted");

    let t = Instant::now();
    let count_after = count(api.post_json(&format!("{collection}/count"), &json!({"filter": filter}), true).await?)?;
    let count_after_ms = t.elapsed().as_secs_f64() * 1000.0;
    let total_after = count(api.post_json(&format!("{collection}/count"), &json!({}), true).await?)?;

    let searches = 100;
    let (mut checked, mut violating, mut without_u, mut short) = (0, 0, 0, 0);
    for i in 0..searches {
        let q = i % queries.rows;
        let options = SearchOptions {
            top_k: k,
            ef: None,
            consistency: Consistency::Strong,
            include_attributes: true,
            filter: None,
        };
        let v = api.search_with(name, queries.row(q), &options).await?;
        let results = v.get("results").and_then(Value::as_array).context("search: no results")?;
        if results.len() < k {
            short += 1;
        }
        for r in results {
            checked += 1;
            match r.get("attributes").and_then(|a| a.get("u")).and_then(Value::as_i64) {
                Some(u) if u < threshold => {
                    violating += 1;
                    eprintln!("  deleted row returned: query {q}, id {}, {r}", result_id(r));
                }
                Some(_) => {}
                None => without_u += 1,
            }
        }
    }
    let filtered_searches = 20;
    let mut filtered_results = 0;
    for i in 0..filtered_searches {
        let q = i % queries.rows;
        let options = SearchOptions {
            top_k: k,
            ef: None,
            consistency: Consistency::Strong,
            include_attributes: false,
            filter: Some(&filter),
        };
        let v = api.search_with(name, queries.row(q), &options).await?;
        filtered_results += v.get("results").and_then(Value::as_array).map_or(0, Vec::len);
    }
    let expected_total_after = total_before.saturating_sub(expected_rows as u64);
    let ok = deleted == expected_rows as u64
        && count_before == expected_rows as u64
        && count_after == 0
        && total_after == expected_total_after
        && violating == 0
        && without_u == 0
        && short == 0
        && filtered_results == 0;
    if !ok {
        eprintln!("  warning: delete by filter: some checks failed (see the report)");
    }
    Ok(DeleteResult {
        fraction,
        filter,
        expected_rows,
        count_before,
        deleted,
        ack_seconds,
        server_cpu_seconds: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        },
        count_after,
        count_after_ms,
        total_after,
        expected_total_after,
        searches,
        results_checked: checked,
        deleted_rows_returned: violating,
        rows_without_u: without_u,
        short_answers: short,
        filtered_searches,
        filtered_results,
        ok,
    })
}

/// Writes the reference script's inputs for the filtered section into `scratch`: the
/// attribute arrays, per combination the `[lo, hi)` of every query and the ground truth,
/// and the JSON spec naming them. Returns the spec's path.
pub(crate) fn write_reference_inputs(
    scratch: &Scratch,
    setup: &FilteredSetup,
    efs: &[usize],
    k: usize,
    budget_s: f64,
) -> Result<std::path::PathBuf> {
    let dir = scratch.path();
    let n = setup.attrs.rows();
    let column = |values: &[i32]| Matrix { rows: n, cols: 1, data: values.iter().map(|&v| v as u32).collect() };
    let (u_path, band_path) = (dir.join("attr_u.npy"), dir.join("attr_band.npy"));
    write_npy(&u_path, &column(&setup.attrs.u.values))?;
    write_npy(&band_path, &column(&setup.attrs.band.values))?;
    let mut combos = Vec::new();
    for (c, combo) in setup.combos.iter().enumerate() {
        let gt_path = dir.join(format!("filtered_gt_{c}.npy"));
        write_npy(&gt_path, &setup.truth.ids[c])?;
        let (attr, ranges) = match combo.filters.first().copied().flatten() {
            None => (Value::Null, Value::Null),
            Some(first) => {
                let data = combo
                    .filters
                    .iter()
                    .flat_map(|f| {
                        let (lo, hi) = f.as_ref().map_or((0, i32::MAX as u32), RangeFilter::bounds_i32);
                        [lo, hi]
                    })
                    .collect();
                let path = dir.join(format!("filtered_ranges_{c}.npy"));
                write_npy(&path, &Matrix { rows: combo.filters.len(), cols: 2, data })?;
                (json!(first.attr.as_str()), json!(path))
            }
        };
        combos.push(json!({
            "name": combo.name(),
            "correlation": combo.correlation.as_str(),
            "selectivity": combo.selectivity,
            "attr": attr,
            "ranges": ranges,
            "gt": gt_path,
        }));
    }
    let spec = json!({
        "k": k,
        "efs": efs,
        "budget_s": budget_s,
        "min_queries": 10,
        "warmup_queries": 10,
        "attributes": {"u": u_path, "band": band_path},
        "combos": combos,
    });
    let path = dir.join("filtered.json");
    std::fs::write(&path, spec.to_string()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Reads the collection's default search ef from its description.
pub(crate) fn default_ef_of(desc: &Value) -> Result<usize> {
    match desc.get("hnsw").and_then(|h| h.get("ef")).and_then(Value::as_u64) {
        Some(ef) => Ok(ef as usize),
        None => bail!("the collection description has no hnsw.ef: {desc}"),
    }
}
