//! The markdown of `strata bench --filtered`: every measured cell beside hnswlib's, and
//! per filtered combination at the default ef the figures the targets are about.

use std::fmt::Write as _;

use serde_json::Value;

use super::filtered::{FilteredReport, ef_label};
use super::stats::thousands;

/// The reference's entry for a combination and ef.
fn reference_entry<'a>(reference: Option<&'a Value>, combo: &str, ef: usize) -> Option<&'a Value> {
    reference?.get("filtered")?.get("search")?.as_array()?.iter().find(|e| {
        e.get("combo").and_then(Value::as_str) == Some(combo) && e.get("ef").and_then(Value::as_u64) == Some(ef as u64)
    })
}

fn f2(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".to_owned(), |v| format!("{v:.digits$}"))
}

impl FilteredReport {
    /// The markdown tables.
    pub(crate) fn markdown(&self, reference: Option<&Value>, reference_error: Option<&str>) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "### Filtered search (1 client; attributes seed {}; collection default ef {}; {} pass{} per cell)\n",
            self.seed,
            self.default_ef,
            self.repeat,
            if self.repeat == 1 { "" } else { "es" }
        );
        let _ = writeln!(
            o,
            "| correlation | s | ef | matching rows | Strata recall@{k} | server CPU µs/query | CPU ÷ unfiltered | \
             exact scan µs | p50 ms client / server | QPS | hnswlib recall@{k} (queries) | hnswlib CPU µs/query | \
             hnswlib QPS |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            k = self.k
        );
        for r in &self.runs {
            let h = reference_entry(reference, &r.combo, r.effective_ef);
            let hv = |key: &str| h.and_then(|h| h.get(key)).and_then(Value::as_f64);
            let h_queries = h.and_then(|h| h.get("queries")).and_then(Value::as_u64);
            let capped = h.and_then(|h| h.get("capped")).and_then(Value::as_bool).unwrap_or(false);
            let h_recall = match (hv("recall"), h_queries) {
                (Some(rc), Some(nq)) if capped => {
                    format!("{rc:.4} ({nq}; Strata on them {:.4})", r.recall_first(nq as usize))
                }
                (Some(rc), Some(nq)) => format!("{rc:.4} ({nq})"),
                _ => "—".to_owned(),
            };
            let mut flags = String::new();
            if r.non_matching_results > 0 {
                let _ = write!(flags, " ⚠ {} non-matching", r.non_matching_results);
            }
            if r.short_answers > 0 {
                let _ = write!(flags, " ⚠ {} short", r.short_answers);
            }
            if r.unknown_ids > 0 {
                let _ = write!(flags, " ⚠ {} unknown ids", r.unknown_ids);
            }
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.4}{flags} | {} | {} | {} | {:.2} / {:.2} | {} | {} | {} | {} |",
                r.correlation.as_str(),
                r.selectivity.map_or("—".to_owned(), |s| s.to_string()),
                ef_label(r.ef, self.default_ef),
                thousands(r.matching_rows_mean),
                r.recall,
                f2(r.server_cpu_us_per_query, 0),
                r.cpu_ratio_to_unfiltered.map_or("—".to_owned(), |v| format!("{v:.2}×")),
                if r.selectivity.is_some() { format!("{:.0}", r.exact_scan_cpu_us_p50) } else { "—".to_owned() },
                r.client_latency_us.p50 / 1000.0,
                r.server_took_us.p50 / 1000.0,
                thousands(r.qps),
                h_recall,
                hv("cpu_us_per_query").map_or("—".to_owned(), thousands),
                hv("qps").map_or("—".to_owned(), thousands),
            );
        }
        self.targets_table(&mut o, reference);
        let _ = writeln!(
            o,
            "\nStrata: server process CPU (user + system, includes HTTP and JSON) over the measured \
             pass ÷ searches, one client; p50 client-side over HTTP / the server's `took_us`. \"exact \
             scan µs\": the median CPU time of the tool's own brute-force scan of the matching rows \
             (one thread, no HTTP). Idle server CPU before / after the filtered passes: {} / {} of a core.",
            self.idle_cpu_before.map_or("?".to_owned(), |v| format!("{:.1} %", v * 100.0)),
            self.idle_cpu_after.map_or("?".to_owned(), |v| format!("{:.1} %", v * 100.0)),
        );
        match (reference, reference_error) {
            (Some(r), _) if r.get("filtered").is_some() => {
                let _ = writeln!(
                    o,
                    "hnswlib: `knn_query(q, k, filter=allowed.__getitem__)` on one thread, `allowed` a \
                     Python list of booleans built per query outside the timing; process CPU per query \
                     (`time.process_time`). The callback crosses from C++ into Python once per candidate \
                     close enough to enter the results (the reference's JSON counts the calls). Each combination stops after {:.0} s of timed \
                     searches (at least 10 queries); capped cells give the number of queries and Strata's \
                     recall on the same queries.",
                    self.reference_budget_s
                );
            }
            (_, Some(e)) => {
                let _ = writeln!(o, "hnswlib: not run ({e}).");
            }
            _ => {
                let _ = writeln!(o, "hnswlib: no filtered figures in the reference's output.");
            }
        }
        if let Some(d) = &self.delete {
            let _ = writeln!(
                o,
                "\n| Delete by filter `{}` | value |\n|---|---|\n\
                 | acknowledged in | {:.3} s (server CPU {}) |\n\
                 | rows deleted / expected / counted before | {} / {} / {} |\n\
                 | `count` with the filter afterwards | {} ({:.1} ms) |\n\
                 | rows left / expected | {} / {} |\n\
                 | {} unfiltered searches with attributes: results checked, deleted rows returned, rows without `u`, short answers | {}, {}, {}, {} |\n\
                 | {} searches with the delete's filter: results | {} |\n\
                 | all checks | {} |",
                d.filter,
                d.ack_seconds,
                d.server_cpu_seconds.map_or("?".to_owned(), |s| format!("{s:.2} s")),
                d.deleted,
                d.expected_rows,
                d.count_before,
                d.count_after,
                d.count_after_ms,
                d.total_after,
                d.expected_total_after,
                d.searches,
                d.results_checked,
                d.deleted_rows_returned,
                d.rows_without_u,
                d.short_answers,
                d.filtered_searches,
                d.filtered_results,
                if d.ok { "passed" } else { "FAILED" }
            );
        }
        o
    }
}

impl FilteredReport {
    /// Per filtered combination at the default ef: the figures the targets are about.
    fn targets_table(&self, o: &mut String, reference: Option<&Value>) {
        let _ = writeln!(
            o,
            "\nAt the default ef ({}): CPU target = ≤ 1.5× the unfiltered search or ≤ the exact scan of the \
             matching rows; hnswlib = its cheapest ef reaching at least Strata's recall.\n\n\
             | correlation | s | Strata recall | server CPU µs/query | ÷ unfiltered | exact scan µs | CPU target | \
             hnswlib at ≥ that recall: ef, recall, CPU µs/query | Strata CPU ÷ hnswlib CPU |\n\
             |---|---|---|---|---|---|---|---|---|",
            self.default_ef
        );
        let entries: Vec<&Value> = reference
            .and_then(|r| r.get("filtered")?.get("search")?.as_array())
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        for r in self.runs.iter().filter(|r| r.ef.is_none() && r.selectivity.is_some()) {
            let cpu_ok = match (r.server_cpu_us_per_query, r.cpu_ratio_to_unfiltered) {
                (Some(cpu), Some(ratio)) => {
                    if ratio <= 1.5 || cpu <= r.exact_scan_cpu_us_mean {
                        "met"
                    } else {
                        "missed"
                    }
                }
                _ => "?",
            };
            let num = |e: &Value, key: &str| e.get(key).and_then(Value::as_f64);
            let mine: Vec<&&Value> =
                entries.iter().filter(|e| e.get("combo").and_then(Value::as_str) == Some(r.combo.as_str())).collect();
            let best = mine.iter().filter(|e| num(e, "recall").is_some_and(|rc| rc >= r.recall)).min_by(|a, b| {
                num(a, "cpu_us_per_query")
                    .unwrap_or(f64::MAX)
                    .total_cmp(&num(b, "cpu_us_per_query").unwrap_or(f64::MAX))
            });
            let (h_cell, ratio_cell) = match best {
                Some(e) => {
                    let cpu = num(e, "cpu_us_per_query");
                    (
                        format!(
                            "{}, {}, {}",
                            e.get("ef").and_then(Value::as_u64).unwrap_or(0),
                            f2(num(e, "recall"), 4),
                            cpu.map_or("—".to_owned(), thousands)
                        ),
                        match (r.server_cpu_us_per_query, cpu) {
                            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                            _ => "—".to_owned(),
                        },
                    )
                }
                None if mine.is_empty() => ("—".to_owned(), "—".to_owned()),
                None => {
                    let top = mine.iter().filter_map(|e| num(e, "recall")).fold(0.0, f64::max);
                    (format!("none (its best recall {top:.4})"), "—".to_owned())
                }
            };
            let _ = writeln!(
                o,
                "| {} | {} | {:.4} | {} | {} | {:.0} | {cpu_ok} | {h_cell} | {ratio_cell} |",
                r.correlation.as_str(),
                r.selectivity.map_or("—".to_owned(), |s| s.to_string()),
                r.recall,
                f2(r.server_cpu_us_per_query, 0),
                r.cpu_ratio_to_unfiltered.map_or("—".to_owned(), |v| format!("{v:.2}×")),
                r.exact_scan_cpu_us_mean,
            );
        }
    }
}
