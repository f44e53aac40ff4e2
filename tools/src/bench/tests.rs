//! Unit tests of the bench's file readers, statistics, synthetic data, ground truth and
//! report rendering (no server needed).

use std::path::Path;

use serde_json::json;

use super::client::VectorEncoding;
use super::data::{self, Matrix, Metric, parse_npy_header, write_npy};
use super::phases::{SearchResult, upsert_body};
use super::report::{Config, DatasetInfo, Machine, Report};
use super::stats::{percentile, recall_at_k, summarize, thousands};
use super::synth;

fn npy_bytes(descr: &str, fortran: bool, shape: &str, version: u8, data: &[u8]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let prefix = if version == 1 { 10 } else { 12 };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&((total - prefix) as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&((total - prefix) as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_header_parses_numpy_layout() {
    let bytes = npy_bytes("<f4", false, "(3, 2)", 1, &f32_bytes(&[0.0; 6]));
    let h = parse_npy_header(&bytes).unwrap();
    assert_eq!(h.descr, "<f4");
    assert!(!h.fortran_order);
    assert_eq!(h.shape, vec![3, 2]);
    assert_eq!(h.data_offset % 64, 0);
    let v2 = npy_bytes("<i4", true, "(5,)", 2, &[]);
    let h = parse_npy_header(&v2).unwrap();
    assert_eq!((h.descr.as_str(), h.fortran_order, h.shape), ("<i4", true, vec![5]));
    assert!(parse_npy_header(b"NOTNUMPY..").is_err());
}

#[test]
fn npy_readers_and_writer_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let vals = [1.0f32, -2.5, 3.25, 4.0, 5.5, 6.0];
    let p = dir.path().join("v.npy");
    write(&p, &npy_bytes("<f4", false, "(2, 3)", 1, &f32_bytes(&vals)));
    let m = data::read_vectors(&p).unwrap();
    assert_eq!((m.rows, m.cols), (2, 3));
    assert_eq!(m.row(1), &[4.0, 5.5, 6.0]);

    let f8: Vec<u8> = vals.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
    write(&p, &npy_bytes("<f8", false, "(3, 2)", 1, &f8));
    assert_eq!(data::read_npy_f32(&p).unwrap().data, vals.to_vec());

    let ids: Vec<u8> = [7i32, 0, 3, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    write(&p, &npy_bytes("<i4", false, "(2, 2)", 1, &ids));
    assert_eq!(data::read_ids(&p).unwrap().data, vec![7, 0, 3, 9]);
    let ids8: Vec<u8> = [7i64, 0, 3, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    write(&p, &npy_bytes("<i8", false, "(2, 2)", 3, &ids8));
    assert_eq!(data::read_ids(&p).unwrap().data, vec![7, 0, 3, 9]);

    let out = dir.path().join("out.npy");
    let m = Matrix::new(2, 3, vals.to_vec()).unwrap();
    write_npy(&out, &m).unwrap();
    assert_eq!(data::read_npy_f32(&out).unwrap(), m);
    let g = Matrix::new(1, 3, vec![4u32, 1, 2]).unwrap();
    write_npy(&out, &g).unwrap();
    assert_eq!(data::read_npy_ids(&out).unwrap(), g);
}

#[test]
fn npy_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.npy");
    write(&p, &npy_bytes("<f4", true, "(2, 2)", 1, &f32_bytes(&[0.0; 4])));
    assert!(format!("{:#}", data::read_npy_f32(&p).unwrap_err()).contains("Fortran"));
    write(&p, &npy_bytes("<f4", false, "(4,)", 1, &f32_bytes(&[0.0; 4])));
    assert!(format!("{:#}", data::read_npy_f32(&p).unwrap_err()).contains("2-D"));
    write(&p, &npy_bytes("<f4", false, "(2, 3)", 1, &f32_bytes(&[0.0; 4])));
    assert!(format!("{:#}", data::read_npy_f32(&p).unwrap_err()).contains("data bytes"));
    write(&p, &npy_bytes(">f4", false, "(1, 1)", 1, &f32_bytes(&[0.0])));
    assert!(format!("{:#}", data::read_npy_f32(&p).unwrap_err()).contains("unsupported dtype"));
    let missing = dir.path().join("missing.npy");
    assert!(format!("{:#}", data::read_vectors(&missing).unwrap_err()).contains("cannot read"));
}

#[test]
fn texmex_readers() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Vec::new();
    for row in [[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]] {
        f.extend_from_slice(&2i32.to_le_bytes());
        f.extend(f32_bytes(&row));
    }
    let p = dir.path().join("x.fvecs");
    write(&p, &f);
    let m = data::read_vectors(&p).unwrap();
    assert_eq!((m.rows, m.cols, m.row(2)), (3, 2, &[5.0f32, 6.0][..]));

    let mut iv = Vec::new();
    for row in [[2i32, 0, 1], [0, 1, 2]] {
        iv.extend_from_slice(&3i32.to_le_bytes());
        iv.extend(row.iter().flat_map(|x| x.to_le_bytes()));
    }
    let q = dir.path().join("gt.ivecs");
    write(&q, &iv);
    let g = data::read_ids(&q).unwrap();
    assert_eq!((g.rows, g.cols, g.data.clone()), (2, 3, vec![2, 0, 1, 0, 1, 2]));

    f.extend_from_slice(&3i32.to_le_bytes());
    f.extend(f32_bytes(&[0.0, 0.0]));
    write(&p, &f);
    assert!(data::read_fvecs(&p).is_err());
    let bad = dir.path().join("x.bin");
    write(&bad, &[0; 8]);
    assert!(format!("{:#}", data::read_vectors(&bad).unwrap_err()).contains("unknown vector file type"));
}

#[test]
fn raw_directory_with_meta() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<f32> = (0..12).map(|i| i as f32).collect();
    write(&dir.path().join("base.f32"), &f32_bytes(&base));
    write(&dir.path().join("queries.f32"), &f32_bytes(&[1.0, 1.0, 1.0]));
    let gt: Vec<u8> = [3i32, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    write(&dir.path().join("gt.i32"), &gt);
    let meta = json!({
        "name": "tiny",
        "metric": "cosine (unit vectors: inner product)",
        "base": {"file": "base.f32", "dtype": "float32 little-endian", "shape": [4, 3]},
        "queries": {"file": "queries.f32", "dtype": "float32 little-endian", "shape": [1, 3]},
        "gt": {"file": "gt.i32", "dtype": "int32 little-endian", "shape": [1, 2]},
    });
    write(&dir.path().join("meta.json"), meta.to_string().as_bytes());
    let d = data::load_dir(dir.path()).unwrap();
    assert_eq!(d.name, "tiny");
    assert_eq!(d.metric, Some(Metric::Cosine));
    assert_eq!((d.base.rows, d.dim(), d.queries.rows), (4, 3, 1));
    assert_eq!(d.gt.as_ref().unwrap().data, vec![3, 2]);
    d.validate().unwrap();

    write(&dir.path().join("base.f32"), &f32_bytes(&base[..9]));
    let err = format!("{:#}", data::load_dir(dir.path()).unwrap_err());
    assert!(err.contains("expected 4 x 3"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    assert!(format!("{:#}", data::load_dir(empty.path()).unwrap_err()).contains("meta.json"));
}

#[test]
fn metric_names() {
    assert_eq!(Metric::parse_loose("Inner product"), Some(Metric::Dot));
    assert_eq!(Metric::parse_loose("euclidean"), Some(Metric::L2));
    assert_eq!(Metric::parse_loose("hamming"), None);
}

#[test]
fn percentiles_are_nearest_rank() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 50.0), 50);
    assert_eq!(percentile(&v, 99.0), 99);
    assert_eq!(percentile(&v, 99.9), 100);
    assert_eq!(percentile(&v, 0.0), 1);
    assert_eq!(percentile(&[], 50.0), 0);
    assert_eq!(percentile(&[7], 99.9), 7);
    let s = summarize(&[30, 10, 20]);
    assert_eq!((s.count, s.p50, s.max, s.mean), (3, 20.0, 30.0, 20.0));
}

#[test]
fn recall_uses_first_k_of_deeper_ground_truth() {
    let gt = Matrix::new(2, 4, vec![1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    // Query 0: both hits; query 1: one of {5, 6}; id 7 is beyond k and does not count.
    let results = vec![vec![2, 1], vec![5, 7]];
    assert!((recall_at_k(&results, &gt, 2) - 0.75).abs() < 1e-12);
    // Extra results past k are ignored.
    assert!((recall_at_k(&[vec![9, 9, 1]], &gt, 2)).abs() < 1e-12);
    assert_eq!(recall_at_k(&[], &gt, 2), 0.0);
}

#[test]
fn synthetic_data_is_deterministic() {
    let (b1, q1) = synth::generate(5000, 16, 50, 7);
    let (b2, q2) = synth::generate(5000, 16, 50, 7);
    let (b3, _) = synth::generate(5000, 16, 50, 8);
    assert_eq!((b1.rows, b1.cols, q1.rows), (5000, 16, 50));
    assert_eq!(b1, b2);
    assert_eq!(q1, q2);
    assert_ne!(b1, b3);
    assert!(b1.data.iter().all(|x| x.is_finite()));
    // Queries are perturbed base points: their nearest base point is close.
    let gt = synth::ground_truth(&b1, &q1, Metric::L2, 1);
    let d2: f32 = q1.row(0).iter().zip(b1.row(gt.data[0] as usize)).map(|(a, b)| (a - b) * (a - b)).sum();
    assert!(d2 < 16.0 * 0.5 * 0.5, "nearest base point too far: {d2}");
}

#[test]
fn brute_force_ground_truth_per_metric() {
    let base = Matrix::new(4, 2, vec![1.0, 0.0, 0.0, 1.0, 3.0, 3.0, -1.0, 0.0]).unwrap();
    let queries = Matrix::new(1, 2, vec![2.0, 0.1]).unwrap();
    assert_eq!(synth::ground_truth(&base, &queries, Metric::L2, 4).data, vec![0, 1, 3, 2]);
    assert_eq!(synth::ground_truth(&base, &queries, Metric::Dot, 2).data, vec![2, 0]);
    assert_eq!(synth::ground_truth(&base, &queries, Metric::Cosine, 2).data, vec![0, 2]);
    // k larger than the base set is clipped; ties keep the lower id first.
    let same = Matrix::new(3, 1, vec![1.0, 1.0, 1.0]).unwrap();
    let q = Matrix::new(1, 1, vec![1.0]).unwrap();
    let gt = synth::ground_truth(&same, &q, Metric::L2, 5);
    assert_eq!((gt.cols, gt.data), (3, vec![0, 1, 2]));
}

#[test]
fn upsert_body_uses_row_numbers_as_ids() {
    let base = Matrix::new(3, 2, vec![0.5, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&upsert_body(&base, 1, 3, VectorEncoding::Json)).unwrap();
    assert_eq!(body, json!({"rows": [{"id": 1, "vector": [2.0, 3.0]}, {"id": 2, "vector": [4.0, 5.0]}]}));
    // base64 of the little-endian bytes of [2.0, 3.0] and [4.0, 5.0].
    let body: serde_json::Value = serde_json::from_slice(&upsert_body(&base, 1, 3, VectorEncoding::Base64)).unwrap();
    assert_eq!(body, json!({"rows": [{"id": 1, "vector": "AAAAQAAAQEA="}, {"id": 2, "vector": "AACAQAAAoEA="}]}));
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(1234567.4), "1,234,567");
    assert_eq!(thousands(999.0), "999");
    assert_eq!(thousands(0.2), "0");
    assert_eq!(thousands(-1000.0), "-1,000");
}

#[test]
fn markdown_report_compares_with_reference() {
    let run = |threads| SearchResult {
        consistency: "strong".to_owned(),
        ef: 64,
        threads,
        queries: 100,
        recall: 0.95,
        qps: 1000.0,
        seconds: 0.1,
        client_latency_us: summarize(&[900, 1100]),
        server_took_us: summarize(&[400, 600]),
        server_cpu_us_per_query: Some(350.0),
    };
    let report = Report {
        machine: Machine::detect(),
        dataset: DatasetInfo {
            name: "tiny".into(),
            vectors: 1000,
            dim: 8,
            queries: 100,
            metric: "l2",
            ground_truth: "computed",
        },
        config: Config {
            url: "http://x".into(),
            collection: "bench".into(),
            shards: 1,
            m: 16,
            ef_construction: 200,
            ef: vec![64],
            k: 10,
            batch: 100,
            clients: 4,
            query_threads: vec![1, 4],
            consistency: "strong".to_owned(),
            skip_ingest: true,
            vector_encoding: "json",
        },
        ingest: None,
        indexing: None,
        search: vec![run(1), run(4)],
        server: Some(json!({"peak_rss_bytes": 104857600u64})),
        reference: Some(json!({
            "build_vectors_per_sec": 2000.0, "build_seconds": 0.5, "threads": 2, "peak_rss_bytes": 52428800u64,
            "search": [{"ef": 64, "recall": 0.97, "qps": 4000.0, "latency_us": {"p50": 250.0, "p99": 400.0},
                        "batch_qps": 7000.0}]
        })),
        reference_error: None,
        filtered: None,
    };
    let md = report.markdown();
    assert!(md.contains("| 64 | 0.9500 / 0.9700 | 1,000 / 4,000 (0.25×)"), "{md}");
    assert!(md.contains("100 MiB (server process since its start; now —)"), "{md}");
    assert!(md.contains("2,000 vectors/s (2 threads"), "{md}");
    assert!(md.contains("| 0.40 / 0.60 / 0.60 | 350 |"), "server CPU per query in the table: {md}");
    assert!(md.contains("| strong | 64 | 1 | 0.9500 |"), "the consistency of each run: {md}");
    let js = serde_json::to_value(&report).unwrap();
    assert_eq!(js["search"][1]["threads"], 4);
    assert!(js.get("filtered").is_none(), "no filtered section unless --filtered: {js}");
    assert_eq!(js["search"][0]["client_latency_us"]["p50"], 900.0);
}

/// `--consistency` takes the three levels, written as the report writes them, and refuses
/// anything else.
#[test]
fn consistency_levels_parse_from_the_command_line() {
    use strata_types::Consistency;
    for (text, level) in [
        ("strong", Consistency::Strong),
        ("eventual", Consistency::Eventual),
        ("max_staleness_ms=1000", Consistency::MaxStaleness { ms: 1000 }),
    ] {
        assert_eq!(super::parse_consistency(text), Ok(level));
        assert_eq!(super::consistency_name(level), text);
    }
    for bad in ["max_staleness_ms=-1", "max_staleness_ms=", "max_staleness_ms=99999999", "weak"] {
        assert!(super::parse_consistency(bad).is_err(), "{bad}");
    }
}
