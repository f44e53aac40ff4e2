//! Benchmark data sets: row-major matrices and the readers for the file formats the bench
//! accepts.
//!
//! * a directory holding `meta.json` plus raw little-endian `float32`/`int32` files (the
//!   layout of `/work/shared/datasets/debian-minilm`: `base`, `queries` and `gt` entries,
//!   each with `file`, `dtype` and `shape`, and a `metric` string);
//! * NumPy `.npy` files (version 1–3 headers, C order, `<f4`/`<f8` vectors, integer ids);
//! * TEXMEX `.fvecs` / `.ivecs` files (per row: `int32` dimension, then the values).
//!
//! Ground-truth ids are stored as `u32` base-row indices, best first.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

/// Similarity metric, named as the Strata REST API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Metric {
    /// Cosine similarity (higher is closer).
    Cosine,
    /// Inner product (higher is closer).
    Dot,
    /// Euclidean distance (lower is closer).
    L2,
}

impl Metric {
    /// The name used by the REST API and the reference script.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L2 => "l2",
        }
    }

    /// Reads a metric from free text such as `"cosine (unit vectors: inner product)"`.
    pub(crate) fn parse_loose(text: &str) -> Option<Metric> {
        let t = text.trim().to_ascii_lowercase();
        if t.starts_with("cos") || t.starts_with("angular") {
            Some(Metric::Cosine)
        } else if t.starts_with("dot") || t.starts_with("ip") || t.starts_with("inner") {
            Some(Metric::Dot)
        } else if t.starts_with("l2") || t.starts_with("euclid") {
            Some(Metric::L2)
        } else {
            None
        }
    }
}

/// A dense row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Matrix<T> {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) data: Vec<T>,
}

impl<T: Copy> Matrix<T> {
    /// Wraps `data`, checking it holds exactly `rows * cols` values.
    pub(crate) fn new(rows: usize, cols: usize, data: Vec<T>) -> Result<Self> {
        ensure!(
            data.len() == rows * cols,
            "matrix of {rows} x {cols} needs {} values, found {}",
            rows * cols,
            data.len()
        );
        Ok(Matrix { rows, cols, data })
    }

    /// Row `i`.
    pub(crate) fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The first `n` rows (all of them if there are fewer).
    pub(crate) fn truncate_rows(&mut self, n: usize) {
        if n < self.rows {
            self.rows = n;
            self.data.truncate(n * self.cols);
        }
    }
}

/// Where the vectors of a file-backed data set live, so the reference script can read the
/// very same files instead of a copy.
#[derive(Clone, Debug)]
pub(crate) struct SourceFiles {
    pub(crate) base: PathBuf,
    pub(crate) queries: PathBuf,
}

/// Everything a benchmark run needs.
#[derive(Clone, Debug)]
pub(crate) struct Dataset {
    pub(crate) name: String,
    /// Metric named by the data set, if it names one.
    pub(crate) metric: Option<Metric>,
    pub(crate) base: Matrix<f32>,
    pub(crate) queries: Matrix<f32>,
    /// Exact neighbours per query, best first; `None` until computed.
    pub(crate) gt: Option<Matrix<u32>>,
    pub(crate) files: Option<SourceFiles>,
}

impl Dataset {
    pub(crate) fn dim(&self) -> usize {
        self.base.cols
    }

    /// Checks shapes agree and ground-truth ids are in range.
    pub(crate) fn validate(&self) -> Result<()> {
        ensure!(self.base.rows > 0, "the base set is empty");
        ensure!(self.queries.rows > 0, "the query set is empty");
        ensure!(
            self.base.cols == self.queries.cols,
            "base vectors have dimension {} but queries have dimension {}",
            self.base.cols,
            self.queries.cols
        );
        if let Some(gt) = &self.gt {
            ensure!(
                gt.rows >= self.queries.rows,
                "ground truth has {} rows for {} queries",
                gt.rows,
                self.queries.rows
            );
            if let Some(bad) = gt.data.iter().find(|&&id| id as usize >= self.base.rows) {
                bail!("ground truth names row {bad}, but the base set has only {} rows", self.base.rows);
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn le_i32(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn ids_to_u32(path: &Path, ids: impl IntoIterator<Item = i64>) -> Result<Vec<u32>> {
    ids.into_iter()
        .map(|v| u32::try_from(v).map_err(|_| anyhow::anyhow!("{}: id {v} is not a valid row index", path.display())))
        .collect()
}

/// Reads a raw little-endian `float32` file of `rows x cols` values.
pub(crate) fn read_raw_f32(path: &Path, rows: usize, cols: usize) -> Result<Matrix<f32>> {
    let bytes = read_file(path)?;
    ensure!(
        bytes.len() == rows * cols * 4,
        "{}: expected {rows} x {cols} float32 values ({} bytes), file has {} bytes",
        path.display(),
        rows * cols * 4,
        bytes.len()
    );
    Matrix::new(rows, cols, le_f32(&bytes))
}

/// Reads a raw little-endian `int32` id file of `rows x cols` values.
pub(crate) fn read_raw_ids(path: &Path, rows: usize, cols: usize) -> Result<Matrix<u32>> {
    let bytes = read_file(path)?;
    ensure!(
        bytes.len() == rows * cols * 4,
        "{}: expected {rows} x {cols} int32 values ({} bytes), file has {} bytes",
        path.display(),
        rows * cols * 4,
        bytes.len()
    );
    let ids = ids_to_u32(path, le_i32(&bytes).into_iter().map(i64::from))?;
    Matrix::new(rows, cols, ids)
}

/// A parsed `.npy` header.
#[derive(Debug, PartialEq)]
pub(crate) struct NpyHeader {
    pub(crate) descr: String,
    pub(crate) fortran_order: bool,
    pub(crate) shape: Vec<usize>,
    /// Offset of the first data byte.
    pub(crate) data_offset: usize,
}

/// Parses the magic, version and header dictionary of a `.npy` file.
pub(crate) fn parse_npy_header(bytes: &[u8]) -> Result<NpyHeader> {
    ensure!(bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY", "not a .npy file (bad magic)");
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated .npy header");
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => bail!("unsupported .npy format version {v}"),
    };
    ensure!(bytes.len() >= start + len, "truncated .npy header");
    let text = std::str::from_utf8(&bytes[start..start + len]).context(".npy header is not text")?;
    let descr = dict_value(text, "descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_owned();
    let fortran_order = match dict_value(text, "fortran_order")?.as_str() {
        "True" => true,
        "False" => false,
        other => bail!("bad fortran_order value {other:?} in .npy header"),
    };
    let shape_text = dict_value(text, "shape")?;
    let shape = shape_text
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().with_context(|| format!("bad shape {shape_text:?} in .npy header")))
        .collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader { descr, fortran_order, shape, data_offset: start + len })
}

/// The raw text of one value of the Python dict literal in a `.npy` header.
fn dict_value(text: &str, key: &str) -> Result<String> {
    let pos = text
        .find(&format!("'{key}'"))
        .or_else(|| text.find(&format!("\"{key}\"")))
        .with_context(|| format!("no '{key}' in .npy header {text:?}"))?;
    let rest = text[pos + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':').context("malformed .npy header")?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) }
        .context("malformed .npy header")?;
    Ok(rest[..end].trim().to_owned())
}

/// The data of a 2-D, C-order `.npy` file: (rows, cols, dtype, bytes).
fn npy_2d<'a>(path: &Path, bytes: &'a [u8]) -> Result<(usize, usize, String, &'a [u8])> {
    let h = parse_npy_header(bytes).with_context(|| format!("cannot parse {}", path.display()))?;
    ensure!(
        !h.fortran_order,
        "{}: arrays in Fortran order are not supported; save with np.ascontiguousarray",
        path.display()
    );
    ensure!(h.shape.len() == 2, "{}: expected a 2-D array, found shape {:?}", path.display(), h.shape);
    let (rows, cols) = (h.shape[0], h.shape[1]);
    let width = match h.descr.as_str() {
        "<f4" | "<i4" | "<u4" => 4,
        "<f8" | "<i8" | "<u8" => 8,
        other => {
            bail!("{}: unsupported dtype {other:?} (expected <f4, <f8 or a little-endian integer)", path.display())
        }
    };
    let data = &bytes[h.data_offset..];
    ensure!(
        data.len() == rows * cols * width,
        "{}: shape {rows} x {cols} of {} needs {} data bytes, file has {}",
        path.display(),
        h.descr,
        rows * cols * width,
        data.len()
    );
    Ok((rows, cols, h.descr, data))
}

/// Reads a 2-D `.npy` array of floats (`<f4`, or `<f8` narrowed to `f32`).
pub(crate) fn read_npy_f32(path: &Path) -> Result<Matrix<f32>> {
    let bytes = read_file(path)?;
    let (rows, cols, descr, data) = npy_2d(path, &bytes)?;
    let values = match descr.as_str() {
        "<f4" => le_f32(data),
        "<f8" => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
        other => bail!("{}: vectors must be float32 or float64, found dtype {other:?}", path.display()),
    };
    Matrix::new(rows, cols, values)
}

/// Reads a 2-D `.npy` array of integer ids.
pub(crate) fn read_npy_ids(path: &Path) -> Result<Matrix<u32>> {
    let bytes = read_file(path)?;
    let (rows, cols, descr, data) = npy_2d(path, &bytes)?;
    let values: Vec<i64> = match descr.as_str() {
        "<i4" => le_i32(data).into_iter().map(i64::from).collect(),
        "<u4" => data.chunks_exact(4).map(|c| i64::from(u32::from_le_bytes(c.try_into().expect("4 bytes")))).collect(),
        "<i8" => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        "<u8" => data
            .chunks_exact(8)
            .map(|c| i64::try_from(u64::from_le_bytes(c.try_into().expect("8 bytes"))).unwrap_or(i64::MAX))
            .collect(),
        other => bail!("{}: ground truth must hold integers, found dtype {other:?}", path.display()),
    };
    Matrix::new(rows, cols, ids_to_u32(path, values)?)
}

/// Writes a 2-D `.npy` file (`<f4` or `<i4`), as NumPy would.
pub(crate) fn write_npy<T: NpyScalar>(path: &Path, m: &Matrix<T>) -> Result<()> {
    write_rows(path, m.rows, m.cols, &m.data)
}

/// Writes `data` (row-major, `cols` values a row) as a 2-D float32 `.npy` file, the form
/// `strata import` and `strata bench` read.
pub fn write_f32_npy(path: &Path, cols: usize, data: &[f32]) -> Result<()> {
    ensure!(cols > 0 && data.len().is_multiple_of(cols), "{} values do not make rows of {cols}", data.len());
    write_rows(path, data.len() / cols, cols, data)
}

fn write_rows<T: NpyScalar>(path: &Path, rows: usize, cols: usize, data: &[T]) -> Result<()> {
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}", T::DESCR);
    // Magic (6) + version (2) + length (2) + dict + padding + '\n', a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut out = Vec::with_capacity(total + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&u16::try_from(total - 10).context(".npy header too long")?.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    for v in data {
        out.extend_from_slice(&v.le_bytes());
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// A scalar `write_npy` can store.
pub(crate) trait NpyScalar: Copy {
    const DESCR: &'static str;
    fn le_bytes(self) -> [u8; 4];
}

impl NpyScalar for f32 {
    const DESCR: &'static str = "<f4";
    fn le_bytes(self) -> [u8; 4] {
        self.to_le_bytes()
    }
}

impl NpyScalar for u32 {
    const DESCR: &'static str = "<i4";
    fn le_bytes(self) -> [u8; 4] {
        (self as i32).to_le_bytes()
    }
}

/// Splits a TEXMEX file into (rows, dim, values as raw 4-byte words).
fn texmex(path: &Path) -> Result<(usize, usize, Vec<[u8; 4]>)> {
    let bytes = read_file(path)?;
    ensure!(bytes.len() >= 4, "{}: file is empty", path.display());
    let dim = i32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    ensure!(dim > 0, "{}: bad dimension {dim} in the first row", path.display());
    let dim = dim as usize;
    let row_bytes = 4 * (dim + 1);
    ensure!(
        bytes.len() % row_bytes == 0,
        "{}: size {} is not a whole number of rows of dimension {dim}",
        path.display(),
        bytes.len()
    );
    let rows = bytes.len() / row_bytes;
    let mut words = Vec::with_capacity(rows * dim);
    for (r, row) in bytes.chunks_exact(row_bytes).enumerate() {
        let d = i32::from_le_bytes(row[..4].try_into().expect("4 bytes"));
        ensure!(d as usize == dim, "{}: row {r} has dimension {d}, the first row has {dim}", path.display());
        words.extend(row[4..].chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
    }
    Ok((rows, dim, words))
}

/// Reads a `.fvecs` file.
pub(crate) fn read_fvecs(path: &Path) -> Result<Matrix<f32>> {
    let (rows, dim, words) = texmex(path)?;
    Matrix::new(rows, dim, words.into_iter().map(f32::from_le_bytes).collect())
}

/// Reads an `.ivecs` file of ids.
pub(crate) fn read_ivecs(path: &Path) -> Result<Matrix<u32>> {
    let (rows, dim, words) = texmex(path)?;
    Matrix::new(rows, dim, ids_to_u32(path, words.into_iter().map(|w| i64::from(i32::from_le_bytes(w))))?)
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Reads vectors from a `.npy` or `.fvecs` file.
pub(crate) fn read_vectors(path: &Path) -> Result<Matrix<f32>> {
    match extension(path).as_str() {
        "npy" => read_npy_f32(path),
        "fvecs" => read_fvecs(path),
        other => bail!("{}: unknown vector file type {other:?}; use .npy or .fvecs", path.display()),
    }
}

/// Reads ground-truth ids from a `.npy` or `.ivecs` file.
pub(crate) fn read_ids(path: &Path) -> Result<Matrix<u32>> {
    match extension(path).as_str() {
        "npy" => read_npy_ids(path),
        "ivecs" => read_ivecs(path),
        other => bail!("{}: unknown ground-truth file type {other:?}; use .npy or .ivecs", path.display()),
    }
}

/// Loads `--base`, `--queries` and optional `--gt` files.
pub(crate) fn load_files(base: &Path, queries: &Path, gt: Option<&Path>) -> Result<Dataset> {
    let name = base.file_stem().and_then(|s| s.to_str()).unwrap_or("files").to_owned();
    Ok(Dataset {
        name,
        metric: None,
        base: read_vectors(base)?,
        queries: read_vectors(queries)?,
        gt: gt.map(read_ids).transpose()?,
        files: Some(SourceFiles { base: base.to_owned(), queries: queries.to_owned() }),
    })
}

/// One entry (`base`, `queries`, `gt`) of a data set's `meta.json`.
fn meta_entry(meta: &serde_json::Value, key: &str, meta_path: &Path) -> Result<Option<(String, String, usize, usize)>> {
    let Some(entry) = meta.get(key) else { return Ok(None) };
    let file = entry
        .get("file")
        .and_then(|v| v.as_str())
        .with_context(|| format!("{}: '{key}.file' is missing", meta_path.display()))?;
    let dtype = entry.get("dtype").and_then(|v| v.as_str()).unwrap_or("").to_ascii_lowercase();
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as usize).collect())
        .unwrap_or_default();
    ensure!(shape.len() == 2, "{}: '{key}.shape' must be [rows, cols]", meta_path.display());
    Ok(Some((file.to_owned(), dtype, shape[0], shape[1])))
}

/// Loads a data-set directory described by `meta.json`.
pub(crate) fn load_dir(dir: &Path) -> Result<Dataset> {
    let meta_path = dir.join("meta.json");
    let meta_text = std::fs::read_to_string(&meta_path)
        .with_context(|| format!("cannot read {} (a --dataset directory needs a meta.json)", meta_path.display()))?;
    let meta: serde_json::Value =
        serde_json::from_str(&meta_text).with_context(|| format!("{} is not valid JSON", meta_path.display()))?;
    let (base_file, base_dtype, n, dim) =
        meta_entry(&meta, "base", &meta_path)?.with_context(|| format!("{}: no 'base' entry", meta_path.display()))?;
    let (query_file, query_dtype, nq, qdim) = meta_entry(&meta, "queries", &meta_path)?
        .with_context(|| format!("{}: no 'queries' entry", meta_path.display()))?;
    for (what, dtype) in [("base", &base_dtype), ("queries", &query_dtype)] {
        ensure!(
            dtype.is_empty() || dtype.contains("float32") || dtype.contains("f4"),
            "{}: {what} dtype {dtype:?} is not supported (raw float32 little-endian expected)",
            meta_path.display()
        );
    }
    let base_path = dir.join(&base_file);
    let query_path = dir.join(&query_file);
    let base = read_raw_f32(&base_path, n, dim)?;
    let queries = read_raw_f32(&query_path, nq, qdim)?;
    let gt = match meta_entry(&meta, "gt", &meta_path)? {
        Some((file, dtype, rows, cols)) => {
            ensure!(
                dtype.is_empty() || dtype.contains("int32") || dtype.contains("i4"),
                "{}: gt dtype {dtype:?} is not supported (raw int32 little-endian expected)",
                meta_path.display()
            );
            Some(read_raw_ids(&dir.join(file), rows, cols)?)
        }
        None => None,
    };
    let name = meta
        .get("name")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| dir.file_name().and_then(|s| s.to_str()).map(str::to_owned))
        .unwrap_or_else(|| "dataset".to_owned());
    let metric = meta.get("metric").and_then(|v| v.as_str()).and_then(Metric::parse_loose);
    Ok(Dataset { name, metric, base, queries, gt, files: Some(SourceFiles { base: base_path, queries: query_path }) })
}
