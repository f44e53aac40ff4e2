//! The hnswlib reference run: prepares a Python with `hnswlib` and `numpy` (a managed venv
//! unless `--reference PYTHON` is given), hands it the same vectors, ground truth and HNSW
//! parameters, and parses the one JSON object `scripts/hnswlib_reference.py` prints.
//!
//! The script and its requirements are compiled into the binary so `strata bench` works
//! from any directory; `--reference-script` runs an on-disk copy instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::data::{Dataset, Matrix, Metric, write_npy};

/// The reference script, embedded at build time.
const SCRIPT: &str = include_str!("../../../scripts/hnswlib_reference.py");
/// Its pinned requirements.
const REQUIREMENTS: &str = include_str!("../../../scripts/requirements-bench.txt");

/// A scratch directory removed on drop.
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub(crate) fn new() -> Result<Scratch> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("strata-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What the reference run needs besides the data.
#[derive(Clone, Debug)]
pub(crate) struct ReferenceSpec {
    /// Python to run; `None` selects (and if needed creates) the managed venv.
    pub(crate) python: Option<PathBuf>,
    pub(crate) script: Option<PathBuf>,
    pub(crate) metric: Metric,
    pub(crate) m: u32,
    pub(crate) ef_construction: u32,
    pub(crate) efs: Vec<usize>,
    pub(crate) k: usize,
    pub(crate) threads: usize,
}

impl ReferenceSpec {
    /// The reference run the command line asks for, with `metric` resolved.
    pub(crate) fn from_args(args: &super::Options, metric: Metric) -> Self {
        Self {
            python: args.reference.clone(),
            script: args.reference_script.clone(),
            metric,
            m: args.m,
            ef_construction: args.ef_construction,
            efs: args.ef.clone(),
            k: args.k,
            threads: args.reference_threads,
        }
    }
}

/// `${STRATA_BENCH_VENV:-$HOME/.cache/strata/bench-venv}`.
fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STRATA_BENCH_VENV").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/strata/bench-venv")
}

fn can_import(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import hnswlib, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("  reference: {what}: {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status}): {cmd:?}");
    }
    Ok(())
}

/// A Python that can import hnswlib and numpy.
fn prepare_python(explicit: Option<&Path>, scratch: &Scratch) -> Result<PathBuf> {
    if let Some(python) = explicit {
        if !can_import(python) {
            bail!(
                "{} cannot import hnswlib and numpy; install them with `{} -m pip install -r \
                 scripts/requirements-bench.txt`, or omit --reference to use the managed venv",
                python.display(),
                python.display()
            );
        }
        return Ok(python.to_owned());
    }
    let venv = venv_dir();
    let python = venv.join("bin/python");
    if !python.exists() {
        run_step(
            "creating the benchmark venv",
            Command::new("python3").arg("-m").arg("venv").arg(&venv).stdout(Stdio::inherit()),
        )
        .context("the hnswlib reference needs python3 with the venv module (apt-get install python3-venv)")?;
    }
    if !can_import(&python) {
        let req = scratch.path().join("requirements-bench.txt");
        std::fs::write(&req, REQUIREMENTS).with_context(|| format!("cannot write {}", req.display()))?;
        eprintln!("  reference: hnswlib/numpy missing from {}; installing (hnswlib compiles with g++)", venv.display());
        run_step(
            "installing requirements",
            Command::new(&python).args(["-m", "pip", "install", "--quiet", "-r"]).arg(&req).stdout(Stdio::inherit()),
        )?;
        if !can_import(&python) {
            bail!("{} still cannot import hnswlib and numpy after pip install", python.display());
        }
    }
    Ok(python)
}

/// Runs the reference and returns its JSON report.
/// `filtered`: the spec of the filtered section (`filtered::write_reference_inputs`).
pub(crate) fn run(
    spec: &ReferenceSpec,
    data: &Dataset,
    gt: &Matrix<u32>,
    scratch: &Scratch,
    filtered: Option<&Path>,
) -> Result<Value> {
    let python = prepare_python(spec.python.as_deref(), scratch)?;
    let script = match &spec.script {
        Some(p) => p.clone(),
        None => {
            let p = scratch.path().join("hnswlib_reference.py");
            std::fs::write(&p, SCRIPT).with_context(|| format!("cannot write {}", p.display()))?;
            p
        }
    };
    let (base, queries) = match &data.files {
        Some(files) => (files.base.clone(), files.queries.clone()),
        None => {
            let (b, q) = (scratch.path().join("base.npy"), scratch.path().join("queries.npy"));
            write_npy(&b, &data.base)?;
            write_npy(&q, &data.queries)?;
            (b, q)
        }
    };
    let gt_path = scratch.path().join("gt.npy");
    write_npy(&gt_path, gt)?;
    let efs = spec.efs.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--base")
        .arg(&base)
        .arg("--queries")
        .arg(&queries)
        .arg("--gt")
        .arg(&gt_path)
        .args(["--dim", &data.dim().to_string()])
        .args(["--max-queries", &data.queries.rows.to_string()])
        .args(["--metric", spec.metric.as_str()])
        .args(["--m", &spec.m.to_string()])
        .args(["--ef-construction", &spec.ef_construction.to_string()])
        .args(["--ef", &efs])
        .args(["--k", &spec.k.to_string()])
        .args(["--threads", &spec.threads.to_string()]);
    if let Some(f) = filtered {
        cmd.arg("--filtered").arg(f);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("  reference: {cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the hnswlib reference script failed ({}); its output: {}", out.status, stdout.trim());
    }
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("the reference script printed no JSON: {:?}", stdout.trim()))
}
