//! `kill -9` of a real standalone process under concurrent writes loses no acknowledged
//! write, and a restart recovers every collection and resumes flushing.
//!
//! Four clients write batches of unique ids (and some deletes) while the server is killed
//! with SIGKILL at a random moment, three times; after each restart every acknowledged
//! upsert must be readable with its exact vector and every acknowledged delete must stay
//! deleted.
//!
//! SIGTERM with a large unflushed backlog (a flush of it running) ends the process within
//! 10 s, cleanly, without flushing; writes in flight are acknowledged or refused (503), and
//! after a restart every acknowledged row is there.

// Tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const DIM: usize = 8;

struct Server {
    /// Killed when the test ends, passed or not.
    child: strata_test_support::KillOnDrop,
    url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(data: &std::path::Path, config: &std::path::Path) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_strata-test-node"))
        .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("STRATA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start strata");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child: strata_test_support::KillOnDrop(child), url }
}

fn sigkill(server: &mut Server) {
    // SAFETY: plain kill(2) on a child we own.
    let rc = unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    server.child.wait().unwrap();
}

fn vector_of(id: u64) -> Vec<f32> {
    (0..DIM).map(|d| ((id * 31 + d as u64) % 97) as f32 / 97.0 - 0.5).collect()
}

/// What the clients know of an id.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    /// The last acknowledged op was this upsert.
    Upserted(Vec<f32>),
    /// The last acknowledged op was a delete.
    Deleted,
    /// The upsert was acknowledged, then a delete was sent but the server died before
    /// answering: either outcome is correct.
    DeleteInDoubt(Vec<f32>),
}

type Acked = Arc<Mutex<BTreeMap<u64, Known>>>;

async fn writer(url: String, client_no: u64, round: u64, acked: Acked, stop: Arc<std::sync::atomic::AtomicBool>) {
    let client = reqwest::Client::new();
    let mut batch_no = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let base = round * 10_000_000 + client_no * 1_000_000 + batch_no * 20;
        batch_no += 1;
        let ids: Vec<u64> = (base..base + 20).collect();
        let rows: Vec<Value> = ids.iter().map(|&i| json!({"id": i, "vector": vector_of(i)})).collect();
        let res = client.post(format!("{url}/v1/collections/d/upsert")).json(&json!({ "rows": rows })).send().await;
        match res {
            Ok(r) if r.status().is_success() => {
                let mut a = acked.lock().unwrap();
                for &i in &ids {
                    a.insert(i, Known::Upserted(vector_of(i)));
                }
            }
            Ok(r) if r.status().as_u16() == 429 => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(r) => panic!("unexpected status {}", r.status()),
            Err(_) => return, // the server died mid-request: the write is not acknowledged
        }
        if batch_no.is_multiple_of(3) {
            // Delete a few ids this client wrote earlier.
            let victims: Vec<u64> = (0..3).map(|k| base - 20 * 2 + k * 5).filter(|_| batch_no > 2).collect();
            if victims.is_empty() {
                continue;
            }
            match client.post(format!("{url}/v1/collections/d/delete")).json(&json!({ "ids": victims })).send().await {
                Ok(r) if r.status().is_success() => {
                    let mut a = acked.lock().unwrap();
                    for v in victims {
                        a.insert(v, Known::Deleted);
                    }
                }
                Ok(r) if r.status().as_u16() == 429 => {}
                Ok(r) => panic!("unexpected status {}", r.status()),
                Err(_) => {
                    let mut a = acked.lock().unwrap();
                    for v in victims {
                        if let Some(Known::Upserted(vec)) = a.get(&v).cloned() {
                            a.insert(v, Known::DeleteInDoubt(vec));
                        }
                    }
                    return;
                }
            }
        }
    }
}

async fn verify(url: &str, acked: &BTreeMap<u64, Known>) {
    let client = reqwest::Client::new();
    let all: Vec<(&u64, &Known)> = acked.iter().collect();
    for chunk in all.chunks(1000) {
        let ids: Vec<u64> = chunk.iter().map(|(id, _)| **id).collect();
        let resp: Value = client
            .post(format!("{url}/v1/collections/d/get"))
            .json(&json!({"ids": ids, "include_vector": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found: BTreeMap<u64, Vec<f32>> = resp["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("bad get response {resp}"))
            .iter()
            .map(|r| (r["id"].as_u64().unwrap(), serde_json::from_value(r["vector"].clone()).unwrap()))
            .collect();
        for (id, expected) in chunk {
            match expected {
                Known::Upserted(v) => assert_eq!(found.get(id), Some(v), "acknowledged upsert of {id} lost"),
                Known::Deleted => assert!(!found.contains_key(id), "acknowledged delete of {id} came back"),
                Known::DeleteInDoubt(v) => {
                    assert!(found.get(id).is_none_or(|f| f == v), "in-doubt row {id} has a wrong vector")
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_concurrent_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("strata.toml");
    // Small thresholds so flushes (and their manifest commits) happen while we kill.
    std::fs::write(&config, "[ingest]\nflush_rows = 400\ngraph_min_rows = 200\nflush_age_ms = 300\n[compactor]\ninterval_ms = 500\ntier_base_rows = 200\n").unwrap();

    let mut server = start(&data, &config).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/v1/collections", server.url))
        .json(&json!({"name": "d", "dimension": DIM, "metric": "l2", "shards": 2, "hnsw": {"m": 8, "ef_construction": 64}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    let acked: Acked = Arc::default();
    for round in 0..3u64 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> =
            (0..4).map(|c| tokio::spawn(writer(server.url.clone(), c, round, acked.clone(), stop.clone()))).collect();
        let run_for = Duration::from_millis(1500 + rand::random::<u64>() % 1500);
        tokio::time::sleep(run_for).await;
        sigkill(&mut server);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        server = start(&data, &config).await;
        let snapshot = acked.lock().unwrap().clone();
        assert!(snapshot.len() > 100, "round {round}: too few acknowledged writes ({})", snapshot.len());
        verify(&server.url, &snapshot).await;
    }

    // After restart the recovered WAL tail is flushed and searchable through segments.
    let flushed = client.post(format!("{}/v1/collections/d/flush", server.url)).send().await.unwrap();
    assert!(flushed.status().is_success());
    let described: Value =
        client.get(format!("{}/v1/collections/d", server.url)).send().await.unwrap().json().await.unwrap();
    let live = acked.lock().unwrap().values().filter(|v| matches!(v, Known::Upserted(_))).count() as u64;
    assert!(described["stats"]["rows"].as_u64().unwrap() >= live, "{described}");
    let snapshot = acked.lock().unwrap().clone();
    verify(&server.url, &snapshot).await;
    sigkill(&mut server);
}

/// Upserts batches of 20 unique ids (`base + …`) until the server goes away: 200 is an
/// acknowledgement, 503 (the writer stopping) and 429 are refusals, anything else fails.
async fn writer_until_gone(url: String, base: u64, acked: Acked) {
    let client = reqwest::Client::new();
    for batch in 0u64.. {
        let ids: Vec<u64> = (base + batch * 20..base + batch * 20 + 20).collect();
        let rows: Vec<Value> = ids.iter().map(|&i| json!({"id": i, "vector": vector_of(i)})).collect();
        match client.post(format!("{url}/v1/collections/d/upsert")).json(&json!({ "rows": rows })).send().await {
            Ok(r) if r.status().is_success() => {
                let mut a = acked.lock().unwrap();
                for &i in &ids {
                    a.insert(i, Known::Upserted(vector_of(i)));
                }
            }
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {}
            Ok(r) => panic!("unexpected status {} while stopping: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(_) => return, // the server is gone: the write is not acknowledged
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_large_backlog_exits_within_10_s_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("strata.toml");
    // Each shard flushes 10k rows at a time: a graph build of that many rows (many seconds
    // in a debug build) is running when the signal comes. Age never triggers a flush.
    std::fs::write(&config, "[ingest]\nflush_rows = 10000\nflush_age_ms = 3600000\n").unwrap();
    let mut server = start(&data, &config).await;
    let client = reqwest::Client::new();
    let body = json!({"name": "d", "dimension": DIM, "metric": "l2", "shards": 2});
    let created = client.post(format!("{}/v1/collections", server.url)).json(&body).send().await.unwrap();
    assert_eq!(created.status().as_u16(), 201);

    let acked: Acked = Arc::default();
    const BACKLOG: u64 = 60_000;
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(2_000) {
        let rows: Vec<Value> = chunk.iter().map(|&i| json!({"id": i, "vector": vector_of(i)})).collect();
        let r = client.post(format!("{}/v1/collections/d/upsert", server.url)).json(&json!({ "rows": rows })).send();
        let r = r.await.unwrap();
        assert!(r.status().is_success(), "backlog upsert: {}", r.status());
        acked.lock().unwrap().extend(chunk.iter().map(|&i| (i, Known::Upserted(vector_of(i)))));
    }
    let writers: Vec<_> =
        (1..=4u64).map(|c| tokio::spawn(writer_until_gone(server.url.clone(), c * 1_000_000, acked.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SAFETY: plain kill(2) on a child we own and have not reaped.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(10), "standalone did not exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("standalone exited {:?} after SIGTERM with a backlog of {BACKLOG} rows", signalled.elapsed());
    assert!(status.success(), "standalone exited with {status} after SIGTERM");
    for w in writers {
        w.await.unwrap();
    }

    let server = start(&data, &config).await;
    let snapshot = acked.lock().unwrap().clone();
    assert!(snapshot.len() > BACKLOG as usize, "no write was acknowledged while stopping");
    verify(&server.url, &snapshot).await;
}
