//! The `strata` command line as users meet it, on real processes: a failure is one line
//! (the whole chain only with `--verbose`), Ctrl-C stops an import with status 130 and
//! says how to resume, and the resumed import finishes; completions are printed.
// Tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_strata-test-node");

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN).args(args).envs(env.iter().copied()).env("STRATA_LOG", "warn").output().unwrap()
}

#[test]
fn a_failure_is_one_line_unless_verbose() {
    let args = ["import", "/nonexistent/rows.npy", "--collection", "c", "--url", "http://127.0.0.1:9"];
    let out = run(&args, &[("RUST_BACKTRACE", "1")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, even with RUST_BACKTRACE=1: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains("rows.npy"), "{stderr}");

    let verbose = run(&["--verbose", args[0], args[1], args[2], args[3], args[4], args[5]], &[("RUST_BACKTRACE", "1")]);
    assert_eq!(verbose.status.code(), Some(1));
    let stderr = String::from_utf8(verbose.stderr).unwrap();
    assert!(stderr.lines().count() > 3 && stderr.contains("backtrace"), "--verbose shows where: {stderr}");
}

#[test]
fn completions_are_printed_for_a_shell() {
    let out = run(&["completions", "bash"], &[]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F") && script.contains("import"), "{script}");
}

/// A 2-D float32 `.npy` file of `rows` × `dim`.
fn write_npy(path: &Path, rows: usize, dim: usize) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for i in 0..rows * dim {
        bytes.extend_from_slice(&((i % 97) as f32 / 97.0 + 0.01).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn ctrl_c_stops_an_import_that_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("data");
    let _server = strata_test_support::KillOnDrop(
        Command::new(BIN)
            .args(["standalone", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data.to_str().unwrap()])
            .env("STRATA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (rows, dim) = (20_000, 16);
    let file = dir.path().join("rows.npy");
    write_npy(&file, rows, dim);
    let checkpoint = dir.path().join("rows.npy.strata-import.json");
    let import = |quiet: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["import", file.to_str().unwrap(), "--collection", "c", "--create", "--url", &url])
            .args(["--batch", "50", "--concurrency", "1"])
            .env("STRATA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if quiet {
            cmd.arg("--quiet");
        }
        cmd.spawn().unwrap()
    };

    let child = import(true);
    while !checkpoint.exists() {
        assert!(Instant::now() < deadline, "no checkpoint was written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let interrupt = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupt.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("resume"), "{stderr}");
    assert!(stderr.contains(checkpoint.to_str().unwrap()), "names the checkpoint: {stderr}");

    let resumed = import(false).wait_with_output().unwrap();
    let stderr = String::from_utf8(resumed.stderr).unwrap();
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("resum"), "the second run resumes: {stderr}");
    let count = Command::new("curl")
        .args([
            "-s",
            "-XPOST",
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
            &format!("{url}/v1/collections/c/count"),
        ])
        .output()
        .unwrap();
    let count: serde_json::Value = serde_json::from_slice(&count.stdout).unwrap();
    assert_eq!(count["count"], rows, "{count}");
}
