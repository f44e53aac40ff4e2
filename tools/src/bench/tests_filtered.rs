//! Unit tests of the filtered benchmark's pure parts: attributes, bands, filters, ground
//! truth, request bodies and the report (no server needed).

use serde_json::{Value, json};

use super::client::{SearchOptions, VectorEncoding, search_body};
use super::data::{Matrix, Metric};
use super::filter_data::{
    Attr, BANDS, Correlation, RangeFilter, RowAttributes, SortedColumn, U_RANGE, band_of_rank, band_width,
    centred_window, combos, far_window, filtered_ground_truth, filtered_recall,
};
use super::filtered::{FilteredReport, FilteredRun};
use super::phases::{upsert_body, upsert_body_with};
use super::stats::summarize;
use super::synth::{self, Rows, top_k_tasks};

#[test]
fn attributes_are_deterministic_for_a_seed() {
    let (base, _) = synth::generate(3000, 8, 1, 5);
    let a = RowAttributes::generate(&base, Metric::L2, 11);
    let b = RowAttributes::generate(&base, Metric::L2, 11);
    let c = RowAttributes::generate(&base, Metric::L2, 12);
    assert_eq!(a.u, b.u);
    assert_eq!(a.band, b.band);
    assert_ne!(a.u.values, c.u.values, "another seed draws other values");
    assert_ne!(a.band.values, c.band.values, "another seed cuts along another direction");
    assert!(a.u.values.iter().all(|&u| (0..U_RANGE).contains(&i64::from(u))));
    assert!(a.band.values.iter().all(|&b| (0..BANDS).contains(&i64::from(b))));
    // Uniform u: about a tenth of the rows below 100,000.
    let tenth = a.u.values.iter().filter(|&&u| u < 100_000).count();
    assert!((200..400).contains(&tenth), "{tenth} of 3000 rows below u=100000");
}

#[test]
fn bands_are_equal_count_slabs() {
    let (base, _) = synth::generate(5000, 16, 1, 3);
    for metric in [Metric::L2, Metric::Cosine] {
        let a = RowAttributes::generate(&base, metric, 7);
        let mut counts = vec![0usize; BANDS as usize];
        a.band.values.iter().for_each(|&b| counts[b as usize] += 1);
        assert!(counts.iter().all(|&c| c == 5), "5000 rows make 1000 bands of 5: {counts:?}");
        // A row's own bucket is its band: bands follow the projection.
        for row in (0..base.rows).step_by(97) {
            assert_eq!(a.bucket_of(base.row(row)), i64::from(a.band.values[row]), "row {row}");
        }
    }
    // With rows not a multiple of the bands, counts differ by at most one.
    let (small, _) = synth::generate(2500, 4, 1, 3);
    let a = RowAttributes::generate(&small, Metric::L2, 7);
    let mut counts = vec![0usize; BANDS as usize];
    a.band.values.iter().for_each(|&b| counts[b as usize] += 1);
    assert_eq!((*counts.iter().min().unwrap(), *counts.iter().max().unwrap()), (2, 3));
    assert_eq!((band_of_rank(0, 2500), band_of_rank(2499, 2500)), (0, 999));
}

#[test]
fn sorted_column_gives_matching_rows() {
    let c = SortedColumn::new(vec![5, 1, 9, 1, 3]);
    assert_eq!(c.rows(1, 2), &[1, 3]);
    assert_eq!(c.rows(0, 6), &[1, 3, 4, 0]);
    assert_eq!(c.rows(6, 9), &[] as &[u32]);
    assert_eq!(c.rows(9, 5), &[] as &[u32]);
    assert_eq!(c.rows(0, i64::MAX).len(), 5);
}

#[test]
fn windows_are_clamped_and_keep_their_width() {
    assert_eq!(band_width(0.001), 1);
    assert_eq!(band_width(0.01), 10);
    assert_eq!(band_width(0.5), 500);
    assert_eq!(band_width(1.0), 1000);
    assert_eq!(centred_window(500, 10), (495, 505));
    assert_eq!(centred_window(3, 1), (3, 4));
    assert_eq!(centred_window(2, 10), (0, 10));
    assert_eq!(centred_window(998, 10), (990, 1000));
    assert_eq!(centred_window(999, 500), (500, 1000));
    assert_eq!(centred_window(0, 500), (0, 500));
    assert_eq!(far_window(100, 100), (900, 1000));
    assert_eq!(far_window(900, 100), (0, 100));
    assert_eq!(far_window(499, 500), (500, 1000));
    assert_eq!(far_window(500, 500), (0, 500));
    assert_eq!(far_window(0, 1), (999, 1000));
    for bucket in [0, 1, 250, 499, 500, 998, 999] {
        for width in [1, 10, 100, 500] {
            let (lo, hi) = centred_window(bucket, width);
            assert!(lo >= 0 && hi <= BANDS && hi - lo == width && (lo..hi).contains(&bucket));
            let (flo, fhi) = far_window(bucket, width);
            assert!(flo >= 0 && fhi <= BANDS && fhi - flo == width);
            if width < 500 {
                assert!(!(flo..fhi).contains(&bucket), "bucket {bucket} width {width}");
            }
        }
    }
}

#[test]
fn filters_are_strata_json() {
    let lt = RangeFilter { attr: Attr::U, lo: 0, hi: Some(1000) };
    assert_eq!(lt.to_json(), json!({"u": {"$lt": 1000}}));
    let all = RangeFilter { attr: Attr::U, lo: 0, hi: None };
    assert_eq!(all.to_json(), json!({"u": {"$gte": 0}}));
    let band = RangeFilter { attr: Attr::Band, lo: 10, hi: Some(20) };
    assert_eq!(band.to_json(), json!({"band": {"$gte": 10, "$lt": 20}}));
    assert!(band.matches(10) && band.matches(19) && !band.matches(20) && !band.matches(9));
    assert!(all.matches(0) && all.matches(i64::from(i32::MAX)));
    assert_eq!(all.bounds_i32(), (0, i32::MAX as u32));
    assert_eq!(band.bounds_i32(), (10, 20));
}

#[test]
fn combos_cover_every_correlation_and_selectivity() {
    let (base, queries) = synth::generate(10_000, 8, 20, 9);
    let attrs = RowAttributes::generate(&base, Metric::L2, 1);
    let cs = combos(&attrs, &queries);
    assert_eq!(cs.len(), 2 + 3 * 4);
    assert_eq!((cs[0].correlation, cs[0].selectivity), (Correlation::Unfiltered, None));
    assert!(cs[0].filters.iter().all(Option::is_none));
    assert_eq!((cs[1].correlation, cs[1].selectivity), (Correlation::MatchAll, Some(1.0)));
    assert_eq!(attrs.count(cs[1].filters[0].as_ref()), 10_000);
    for c in &cs[2..] {
        let s = c.selectivity.unwrap();
        assert!(s < 1.0);
        assert_eq!(c.filters.len(), 20);
        for (q, f) in c.filters.iter().enumerate() {
            let f = f.unwrap();
            let n = attrs.count(Some(&f)) as f64;
            match c.correlation {
                Correlation::Uncorrelated => {
                    assert_eq!(f, RangeFilter { attr: Attr::U, lo: 0, hi: Some((s * 1e6).round() as i64) });
                    assert!((n - s * 10_000.0).abs() <= 4.0 * (s * 10_000.0).sqrt() + 2.0, "{} matches {n}", c.name());
                }
                Correlation::Correlated | Correlation::AntiCorrelated => {
                    assert_eq!(f.attr, Attr::Band);
                    assert_eq!(n, s * 10_000.0, "bands are equal-count: exact selectivity");
                    let bucket = attrs.bucket_of(queries.row(q));
                    let inside = f.matches(bucket);
                    assert_eq!(inside, c.correlation == Correlation::Correlated, "{} query {q}", c.name());
                }
                _ => panic!("unexpected {:?}", c.correlation),
            }
        }
    }
    // The query's nearest neighbour matches the correlated filter far more often than
    // chance (10 %), and the anti-correlated one almost never.
    let gt = synth::ground_truth(&base, &queries, Metric::L2, 1);
    let kept = |correlation| {
        let c = cs.iter().find(|c| c.correlation == correlation && c.selectivity == Some(0.1)).unwrap();
        (0..20).filter(|&q| c.filters[q].unwrap().matches(i64::from(attrs.band.values[gt.row(q)[0] as usize]))).count()
    };
    let (corr, anti) = (kept(Correlation::Correlated), kept(Correlation::AntiCorrelated));
    assert!(corr >= 10 && anti <= 1, "nearest neighbour matches: correlated {corr} of 20, anti-correlated {anti}");
}

#[test]
fn top_k_over_subsets_on_a_tiny_set() {
    let base = Matrix::new(5, 1, vec![0.0, 1.0, 2.0, 3.0, 4.0]).unwrap();
    let queries = Matrix::new(2, 1, vec![0.1, 3.9]).unwrap();
    let subset = [4u32, 2, 3];
    let task = |t: usize| if t < 2 { (t, Rows::Only(&subset[..])) } else { (t - 2, Rows::All) };
    let (ids, cpu) = top_k_tasks(&base, &queries, Metric::L2, 2, 4, &task);
    assert_eq!(ids, vec![2, 3, 4, 3, 0, 1, 4, 3]);
    assert_eq!(cpu.len(), 4);
    // Fewer matching rows than k: padded.
    let (ids, _) = top_k_tasks(&base, &queries, Metric::L2, 5, 1, &|_| (0, Rows::Only(&subset[..])));
    assert_eq!(ids, vec![2, 3, 4, u32::MAX, u32::MAX]);
    // Ties keep the lower id first, whatever the order rows are listed in.
    let same = Matrix::new(4, 1, vec![1.0, 1.0, 1.0, 1.0]).unwrap();
    let q = Matrix::new(1, 1, vec![1.0]).unwrap();
    let order = [3u32, 1, 2, 0];
    let (ids, _) = top_k_tasks(&same, &q, Metric::L2, 2, 1, &|_| (0, Rows::Only(&order[..])));
    assert_eq!(ids, vec![0, 1]);
}

#[test]
fn filtered_ground_truth_matches_a_naive_scan() {
    let (base, queries) = synth::generate(3000, 6, 8, 21);
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let attrs = RowAttributes::generate(&base, metric, 2);
        let cs = combos(&attrs, &queries);
        let truth = filtered_ground_truth(&base, &queries, metric, 10, &attrs, &cs);
        assert_eq!((truth.ids.len(), truth.scan_cpu_us.len()), (cs.len(), cs.len()));
        let all = synth::ground_truth(&base, &queries, metric, 10);
        assert_eq!(truth.ids[0], all, "unfiltered");
        assert_eq!(truth.ids[1], all, "match-all");
        let key = |q: &[f32], b: &[f32]| -> f32 {
            let d = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
            match metric {
                Metric::L2 => -a_l2(q, b),
                Metric::Dot => d(q, b),
                Metric::Cosine => d(q, b) / (d(q, q).sqrt() * d(b, b).sqrt()),
            }
        };
        for (c, combo) in cs.iter().enumerate() {
            for q in 0..queries.rows {
                let f = combo.filters[q];
                let mut rows: Vec<(f32, u32)> = (0..base.rows)
                    .filter(|&r| f.is_none_or(|f| f.matches(attrs.value(f.attr, r))))
                    .map(|r| (key(queries.row(q), base.row(r)), r as u32))
                    .collect();
                rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let want: Vec<u32> = rows.iter().take(10).map(|r| r.1).collect();
                let got: Vec<u32> = truth.ids[c].row(q).iter().copied().filter(|&i| i != u32::MAX).collect();
                // Scores computed another way may differ in the last bit: compare as sets
                // with at most one swap at the boundary.
                let common = want.iter().filter(|i| got.contains(i)).count();
                assert!(
                    common + 1 >= want.len() && got.len() == want.len(),
                    "{} query {q}: {got:?} vs {want:?}",
                    combo.name()
                );
                for &id in &got {
                    assert!(f.is_none_or(|f| f.matches(attrs.value(f.attr, id as usize))));
                }
            }
        }
    }
}

fn a_l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[test]
fn filtered_recall_counts_only_existing_neighbours() {
    let gt = Matrix::new(2, 3, vec![1, 2, u32::MAX, 4, 5, 6]).unwrap();
    // Query 0 has 2 true neighbours (both found), query 1 has 3 (one found): 3 of 5.
    let results = vec![vec![2, 1, 9], vec![6, 7, 8]];
    assert!((filtered_recall(&results, &gt, 3) - 0.6).abs() < 1e-12);
    let none = Matrix::new(1, 2, vec![u32::MAX, u32::MAX]).unwrap();
    assert_eq!(filtered_recall(&[vec![]], &none, 2), 1.0);
}

#[test]
fn request_bodies_carry_attributes_and_filters_only_when_asked() {
    let base = Matrix::new(3, 2, vec![0.5, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let attrs = RowAttributes::generate(&base, Metric::L2, 4);
    let body: Value =
        serde_json::from_slice(&upsert_body_with(&base, Some(&attrs), 1, 2, VectorEncoding::Json)).unwrap();
    let (u, band) = (attrs.u.values[1], attrs.band.values[1]);
    assert_eq!(body, json!({"rows": [{"id": 1, "vector": [2.0, 3.0], "attributes": {"u": u, "band": band}}]}));
    assert_eq!(
        upsert_body_with(&base, None, 0, 3, VectorEncoding::Json),
        upsert_body(&base, 0, 3, VectorEncoding::Json)
    );

    let plain = SearchOptions {
        top_k: 10,
        ef: Some(64),
        consistency: strata_types::Consistency::Strong,
        include_attributes: false,
        filter: None,
    };
    let v = serde_json::to_value(search_body(&[1.0, 2.0], &plain, VectorEncoding::Json)).unwrap();
    assert_eq!(
        v,
        json!({"vector": [1.0, 2.0], "top_k": 10, "ef": 64, "consistency": "strong", "include_vector": false,
               "include_attributes": false}),
        "the unfiltered bench sends what it always sent"
    );
    let filter = json!({"u": {"$lt": 1000}});
    let filtered = SearchOptions { ef: None, filter: Some(&filter), include_attributes: true, ..plain };
    let v = serde_json::to_value(search_body(&[1.0, 2.0], &filtered, VectorEncoding::Json)).unwrap();
    assert!(v.get("ef").is_none(), "no ef: the collection's default");
    assert_eq!((v["filter"].clone(), v["include_attributes"].clone()), (filter, json!(true)));
}

fn run(correlation: Correlation, selectivity: Option<f64>, ef: Option<usize>, cpu: f64) -> FilteredRun {
    FilteredRun {
        combo: match selectivity {
            Some(s) => format!("{} s={s}", correlation.as_str()),
            None => correlation.as_str().to_owned(),
        },
        correlation,
        selectivity,
        ef,
        effective_ef: ef.unwrap_or(64),
        queries: 4,
        matching_rows_mean: 25.0,
        recall: 0.75,
        qps: 500.0,
        seconds: 0.008,
        client_latency_us: summarize(&[1500, 2500]),
        server_took_us: summarize(&[400, 600]),
        server_cpu_us_per_query: Some(cpu),
        cpu_ratio_to_unfiltered: Some(cpu / 300.0),
        exact_scan_cpu_us_p50: 12.0,
        exact_scan_cpu_us_mean: 13.0,
        short_answers: 0,
        non_matching_results: 1,
        unknown_ids: 0,
        partial_answers: 0,
        hits: vec![(10, 10), (10, 10), (5, 10), (5, 10)],
    }
}

#[test]
fn filtered_report_tables() {
    let report = FilteredReport {
        k: 10,
        default_ef: 64,
        seed: 42,
        repeat: 1,
        prepare_seconds: 1.0,
        idle_cpu_before: Some(0.01),
        idle_cpu_after: None,
        runs: vec![
            run(Correlation::Unfiltered, None, None, 300.0),
            run(Correlation::Uncorrelated, Some(0.001), None, 450.0),
            run(Correlation::Uncorrelated, Some(0.001), Some(32), 420.0),
        ],
        reference_budget_s: 60.0,
        delete: None,
    };
    let reference = json!({"filtered": {"search": [
        {"combo": "uncorrelated s=0.001", "ef": 64, "queries": 2, "capped": true, "recall": 0.9,
         "cpu_us_per_query": 5000.0, "qps": 190.0},
        {"combo": "uncorrelated s=0.001", "ef": 32, "queries": 4, "capped": false, "recall": 0.8,
         "cpu_us_per_query": 3000.0, "qps": 300.0},
    ]}});
    let md = report.markdown(Some(&reference), None);
    assert!(
        md.contains("| uncorrelated | 0.001 | default (64) | 25 | 0.7500 ⚠ 1 non-matching | 450 | 1.50× | 12 | 1.50 / 0.40 | 500 | 0.9000 (2; Strata on them 1.0000) | 5,000 | 190 |"),
        "{md}"
    );
    assert!(md.contains("| uncorrelated | 0.001 | 32 | 25 | 0.7500 ⚠ 1 non-matching | 420 | 1.40× | 12 | 1.50 / 0.40 | 500 | 0.8000 (4) | 3,000 | 300 |"), "{md}");
    assert!(md.contains("| unfiltered | — | default (64) |"), "{md}");
    assert!(
        md.contains("| uncorrelated | 0.001 | 0.7500 | 450 | 1.50× | 13 | met | 32, 0.8000, 3,000 | 0.15× |"),
        "{md}"
    );
    assert!(md.contains("callback"), "the note on hnswlib's callback: {md}");
    let js = serde_json::to_value(&report).unwrap();
    assert_eq!(js["runs"][1]["correlation"], "uncorrelated");
    assert_eq!(js["runs"][1]["ef"], Value::Null);
    assert!(js["runs"][1].get("hits").is_none());
    assert_eq!(report.markdown(None, Some("--no-reference")).matches("hnswlib: not run").count(), 1);
}
