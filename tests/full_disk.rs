//! A full disk, for real: a standalone process whose objects live on a 16 MiB tmpfs is
//! written to until the filesystem is full. The write that meets the full disk is refused
//! with 507 and plain words (no object path, no OS message); once space is freed writes
//! are taken again; every acknowledged row is there, before and after a `kill -9` and
//! restart.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN); without it the test says so and skips.

// Tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

const DIM: usize = 64;
const BATCH: u64 = 100;

/// The tmpfs, unmounted (after the server is gone) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "strata-full-disk"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs { dir: dir.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

struct Server {
    /// Killed when the test ends, passed or not.
    child: strata_test_support::KillOnDrop,
    url: String,
}

async fn start(data: &Path, cache: &Path, log: &Path) -> Server {
    let port = strata_test_support::free_port(false).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_strata-test-node"))
        .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        // The disk cache elsewhere: only objects fill the tmpfs.
        .env("STRATA__CACHE__DISK_DIR", cache)
        .env("STRATA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "server did not come up: {}", std::fs::read_to_string(log).unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child: strata_test_support::KillOnDrop(child), url }
}

fn vector_of(id: u64) -> Vec<f32> {
    (0..DIM).map(|d| ((id * 31 + d as u64) % 97) as f32 / 97.0 - 0.5).collect()
}

async fn upsert(client: &reqwest::Client, url: &str, first: u64) -> (StatusCode, Value) {
    let rows: Vec<Value> = (first..first + BATCH).map(|i| json!({"id": i, "vector": vector_of(i)})).collect();
    let response =
        client.post(format!("{url}/v1/collections/d/upsert")).json(&json!({ "rows": rows })).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every acknowledged id reads back with its vector.
async fn verify(client: &reqwest::Client, url: &str, acked: &[u64]) {
    for chunk in acked.chunks(500) {
        let response = client
            .post(format!("{url}/v1/collections/d/get"))
            .json(&json!({ "ids": chunk, "include_vector": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let rows = body["rows"].as_array().unwrap();
        assert_eq!(rows.len(), chunk.len(), "acknowledged rows are missing");
        for row in rows {
            let id = row["id"].as_u64().unwrap();
            let vector: Vec<f32> = serde_json::from_value(row["vector"].clone()).unwrap();
            assert_eq!(vector, vector_of(id), "row {id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_507_and_loses_no_acknowledged_row() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::mount(&dir.path().join("data"), 16 << 20) else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root); the 507 mapping is unit-tested in strata-api");
        return;
    };
    // Ballast to free later.
    let ballast = tmpfs.dir.join("ballast");
    std::fs::write(&ballast, vec![7u8; 4 << 20]).unwrap();
    let (cache, log) = (dir.path().join("cache"), dir.path().join("strata.log"));
    let mut server = start(&tmpfs.dir, &cache, &log).await;
    let client = reqwest::Client::new();
    let create = json!({"name": "d", "dimension": DIM, "metric": "l2"});
    let response = client.post(format!("{}/v1/collections", server.url)).json(&create).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let mut acked = Vec::new();
    let mut next = 0u64;
    let refusal = loop {
        assert!(next < 20_000 * BATCH, "the disk never filled");
        let (status, body) = upsert(&client, &server.url, next).await;
        match status {
            StatusCode::OK => acked.extend(next..next + BATCH),
            StatusCode::TOO_MANY_REQUESTS => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            StatusCode::INSUFFICIENT_STORAGE => break body,
            other => panic!("unexpected {other}: {body}"),
        }
        next += BATCH;
    };
    assert!(!acked.is_empty(), "the first write already found the disk full");
    assert_eq!(refusal["error"]["code"], "insufficient_storage", "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(message.contains("storage is full") && message.contains("error id"), "{message}");
    for internal in ["/", "No space", "os error", "LocalFileSystem"] {
        assert!(!message.contains(internal), "the 507 says {internal:?}: {message}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("No space left on device"), "the log has the details: {logged}");
    verify(&client, &server.url, &acked).await;

    // Space again: writes are taken again (the refused batch, retried, too).
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = upsert(&client, &server.url, next).await;
        if status == StatusCode::OK {
            acked.extend(next..next + BATCH);
            break;
        }
        assert!(Instant::now() < deadline, "writes not taken after space was freed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    verify(&client, &server.url, &acked).await;

    // SAFETY: plain kill(2) on a child we own.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) }, 0);
    server.child.wait().unwrap();
    let server = start(&tmpfs.dir, &cache, &log).await;
    verify(&client, &server.url, &acked).await;
    drop(server);
    drop(tmpfs);
}
