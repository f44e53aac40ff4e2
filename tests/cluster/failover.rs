//! Failover at default settings (issue 11, item 4; decision 0014). After a SIGKILL, the
//! shards of a query node (replication 1) are served again, and the shards an ingest node
//! wrote accept writes again, within [`BOUND`]: the requirement is 3 s, the margin is for
//! this shared, loaded 2-core machine. That no query fails across a query-node kill with
//! replication 2 is `query_node_kill_with_two_replicas_fails_no_query` (`cluster.rs`).
//!
//! `measure_failover` (ignored; run by hand) repeats each kill, and a SIGSTOP of a writer,
//! and prints the medians recorded in `docs/benchmarks.md` ("Failover").

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use strata_types::RowId;

use crate::client::{Api, DIM, rows};
use crate::harness::{Cluster, Role, ttl_s};
use crate::{SETTLE, assert_all_readable, assert_exact_matches, serving_counts, write, write_segments_and_tail};

/// Kill → served again / writes accepted again, asserted.
const BOUND: Duration = Duration::from_secs(6);
/// How long the figures may take before the measurement gives up.
const GIVE_UP: Duration = Duration::from_secs(30);
const SHARDS: u32 = 4;

/// Starts 2 ingest and 2 query nodes with collection `c` (4 shards, replication 1) holding
/// ids 1..=400: 300 in segments, 100 in the WAL tail.
async fn cluster(name: &str, env: &[(&str, &str)]) -> Option<Cluster> {
    let mut c = Cluster::start(name, env)?;
    c.start_nodes(2, 2, 0).await;
    c.create_collection("c", DIM, SHARDS, 1).await;
    c.wait_settled("query-1", SHARDS as usize, SETTLE).await;
    let ids: Vec<u64> = (1..=400).collect();
    write_segments_and_tail(&c, "c", &ids, 300).await;
    c.wait_settled("query-1", SHARDS as usize, SETTLE).await;
    Some(c)
}

/// The node of `role` that holds the most shards (serving records for query nodes, writer
/// leases for ingest nodes), and another running node of that role.
async fn victim_and_survivor(c: &Cluster, role: Role) -> (String, String, usize) {
    let shards = c.wait_settled(&admin(c), SHARDS as usize, SETTLE).await;
    let counts = match role {
        Role::Query => serving_counts(&shards),
        _ => {
            let mut counts = std::collections::BTreeMap::new();
            for s in &shards {
                *counts.entry(s["writer"].as_str().unwrap().to_owned()).or_default() += 1;
            }
            counts
        }
    };
    let (victim, held) = counts.iter().max_by_key(|(_, n)| **n).map(|(n, k)| (n.clone(), *k)).unwrap();
    let survivor = c.ids(role).into_iter().find(|n| *n != victim).unwrap();
    (victim, survivor, held)
}

/// Polls `/v1/cluster/shards` on `survivor` every 50 ms until every shard is `serving` on
/// it; the time since `since`. Panics after `bound`.
async fn served_again(c: &Cluster, survivor: &str, since: Instant, bound: Duration) -> Duration {
    let url = format!("{}/v1/cluster/shards", c.url(survivor));
    let mut last = Value::Null;
    loop {
        if let Ok((200, body)) = c.api.call("GET", &url, None).await {
            let shards = body["shards"].as_array().cloned().unwrap_or_default();
            let served = |s: &Value| {
                s["serving"].as_array().unwrap().iter().any(|r| r["state"] == "serving" && r["node"] == survivor)
            };
            if shards.len() == SHARDS as usize && shards.iter().all(served) {
                return since.elapsed();
            }
            last = body;
        }
        assert!(since.elapsed() < bound, "shards were not all served by {survivor} within {bound:?}: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/v1/cluster/nodes` on `via` every 20 ms until `gone` is no longer a member; the
/// time since `since` (detection: the end of the victim's etcd session).
async fn member_gone(api: Api, via: String, gone: String, since: Instant) -> Duration {
    let url = format!("{via}/v1/cluster/nodes");
    loop {
        if let Ok((200, body)) = api.call("GET", &url, None).await {
            let nodes = body["nodes"].as_array().cloned().unwrap_or_default();
            if !nodes.iter().any(|n| n["id"] == gone.as_str()) {
                return since.elapsed();
            }
        }
        assert!(since.elapsed() < GIVE_UP, "{gone} still a member after {GIVE_UP:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running query node to ask about the cluster (an earlier fault may have killed query-1).
fn admin(c: &Cluster) -> String {
    c.ids(Role::Query).into_iter().next().expect("a running query node")
}

/// Shards whose writer lease `node` holds.
async fn written_by(c: &Cluster, node: &str) -> Vec<u32> {
    let shards = c.shards(&admin(c)).await;
    shards.iter().filter(|s| s["writer"] == node).map(|s| s["shard"].as_u64().unwrap() as u32).collect()
}

/// An id not used before (after `*next`) whose row lands in `shard`.
fn id_in(shard: u32, next: &mut u64) -> u64 {
    loop {
        *next += 1;
        if RowId::Int(*next).shard(SHARDS) == shard {
            return *next;
        }
    }
}

/// Writes one new row to each of `shards` through ingest node `url`: a new attempt every
/// 50 ms, without waiting for the earlier ones (a write forwarded to a paused node hangs
/// until the client's 3 s bound), until one is acknowledged; the time since `since` when
/// the last shard acknowledged, and the ids. Panics after `bound`.
async fn written_again(
    api: &Api,
    url: &str,
    shards: &[u32],
    next_id: &mut u64,
    since: Instant,
    bound: Duration,
) -> (Duration, Vec<u64>) {
    let ids: Vec<u64> = shards.iter().map(|&s| id_in(s, next_id)).collect();
    let upsert = format!("{url}/v1/collections/c/upsert");
    let per_shard = ids.iter().map(|&id| {
        let (upsert, body) = (upsert.clone(), rows(&[id]));
        async move {
            let attempt = || async {
                match api.call_within("POST", &upsert, Some(&body), Duration::from_secs(3)).await {
                    Ok((200, _)) => Some(since.elapsed()),
                    Ok((503 | 429, _)) | Err(_) => None,
                    Ok((status, resp)) => panic!("write of {id} through {upsert}: unexpected {status}: {resp}"),
                }
            };
            let mut attempts = FuturesUnordered::new();
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = every.tick() => attempts.push(attempt()),
                    Some(outcome) = attempts.next() => if let Some(took) = outcome { return took },
                }
                assert!(since.elapsed() < bound, "write of {id} through {upsert} not accepted within {bound:?}");
            }
        }
    });
    let took = join_all(per_shard).await.into_iter().max().unwrap_or_default();
    (took, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_nodes_shards_are_served_and_written_again_within_the_bound() {
    let Some(mut c) = cluster("t-failover", &[]).await else { return };
    let mut ids: Vec<u64> = (1..=400).collect();

    let (victim, survivor, held) = victim_and_survivor(&c, Role::Query).await;
    c.kill(&victim);
    let killed = Instant::now();
    let took = served_again(&c, &survivor, killed, BOUND).await;
    println!(
        "query node {victim} (serving {held} of {SHARDS} shards) SIGKILLed: all served by {survivor} after {took:?} (TTL {} s)",
        ttl_s()
    );
    assert_exact_matches(&c, &c.url(&survivor), "c", (1..=400).step_by(13)).await;

    let (victim, survivor, _) = victim_and_survivor(&c, Role::Ingest).await;
    let shards = written_by(&c, &victim).await;
    c.kill(&victim);
    let killed = Instant::now();
    let mut next_id = 1_000_000;
    let (took, written) = written_again(&c.api, &c.url(&survivor), &shards, &mut next_id, killed, BOUND).await;
    println!(
        "ingest node {victim} (writing shards {shards:?}) SIGKILLed: every one took a write through {survivor} after {took:?}"
    );
    ids.extend(written);
    assert_all_readable(&c, "c", &ids).await;
}

/// Median, min and max, for printing.
fn summary(label: &str, runs: &[Duration]) -> String {
    let mut sorted = runs.to_vec();
    sorted.sort();
    let s = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2
    };
    let all: Vec<String> = runs.iter().map(|d| s(*d)).collect();
    format!(
        "{label}: median {} s, min {} s, max {} s over {} runs ({})",
        s(median),
        s(sorted[0]),
        s(sorted[sorted.len() - 1]),
        runs.len(),
        all.join(", ")
    )
}

/// Default settings throughout: the harness's faster RPC timeouts are put back too.
fn default_rpc_env() -> [(&'static str, String); 2] {
    let rpc = strata::config::Config::default().rpc;
    [
        ("STRATA__RPC__CONNECT_TIMEOUT_MS", rpc.connect_timeout_ms.to_string()),
        ("STRATA__RPC__REQUEST_TIMEOUT_MS", rpc.request_timeout_ms.to_string()),
    ]
}

/// By hand: `STRATA_FAILOVER_RUNS` (default 5) kills of each kind, and SIGSTOPs of a
/// writer, at default settings; prints median, min and max for docs/benchmarks.md. Before
/// each ingest-node fault the shards get 40 more unflushed WAL entries, so the new writer
/// has a tail to replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement, run by hand: several minutes"]
async fn measure_failover() {
    let runs: usize = std::env::var("STRATA_FAILOVER_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let env = default_rpc_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let Some(mut c) = cluster("t-failover-measure", &env).await else { return };
    let mut next_id = 1_000_000;
    let (mut query, mut query_detected) = (Vec::new(), Vec::new());
    let (mut ingest, mut paused, mut detected) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let (victim, survivor, held) = victim_and_survivor(&c, Role::Query).await;
        c.kill(&victim);
        let killed = Instant::now();
        let gone = tokio::spawn(member_gone(c.api.clone(), c.url(&survivor), victim.clone(), killed));
        let took = served_again(&c, &survivor, killed, GIVE_UP).await;
        let gone = gone.await.unwrap();
        let loads = c.node(&survivor).log_lines("serving the shard");
        let loads: Vec<&str> = loads[loads.len().saturating_sub(held)..]
            .iter()
            .filter_map(|l| l.split("took_ms=").nth(1)?.split_whitespace().next())
            .collect();
        println!(
            "run {run}: query node {victim} (serving {held}) killed: gone from the view after {gone:?}, served by \
             {survivor} after {took:?} (shard loads took {loads:?} ms)"
        );
        query.push(took);
        query_detected.push(gone);
        c.restart(&victim).await;
        c.wait_members(SETTLE).await;

        for (kind, times) in [("killed", &mut ingest), ("paused", &mut paused)] {
            // 40 batches of one row per shard: 40 WAL entries in every shard's tail.
            let tail: Vec<u64> = (0..40 * SHARDS).map(|i| id_in(i % SHARDS, &mut next_id)).collect();
            write(&c, "c", &tail, SHARDS as usize).await;
            let (victim, survivor, _) = victim_and_survivor(&c, Role::Ingest).await;
            let shards = written_by(&c, &victim).await;
            if kind == "killed" {
                c.kill(&victim);
            } else {
                c.pause(&victim);
            }
            let faulted = Instant::now();
            let url = c.url(&survivor);
            let gone = tokio::spawn(member_gone(c.api.clone(), url.clone(), victim.clone(), faulted));
            let (took, _) = written_again(&c.api, &url, &shards, &mut next_id, faulted, GIVE_UP).await;
            let gone = gone.await.unwrap();
            println!(
                "run {run}: ingest node {victim} {kind} (shards {shards:?}): gone from the view after {gone:?}, \
                 written through {survivor} after {took:?}"
            );
            times.push(took);
            if kind == "killed" {
                detected.push(gone);
            }
            if kind == "killed" {
                c.restart(&victim).await;
            } else {
                c.resume(&victim);
            }
            c.wait_members(SETTLE).await;
        }
    }
    println!(
        "failover at default settings (session TTL {} s), 2 ingest + 2 query nodes, {SHARDS} shards, R=1:",
        ttl_s()
    );
    println!("  {}", summary("query node SIGKILL -> every shard serving on the survivor", &query));
    println!("  {}", summary("query node SIGKILL -> gone from the survivor's view (session expired)", &query_detected));
    println!("  {}", summary("ingest node SIGKILL -> its shards accept writes through the survivor", &ingest));
    println!("  {}", summary("ingest node SIGSTOP -> its shards accept writes through the survivor", &paused));
    println!("  {}", summary("ingest node SIGKILL -> gone from the survivor's view (session expired)", &detected));
    // False failovers: a node's session ended while nothing was done to it. Every paused
    // node loses its session once, on waking; killed nodes start afresh.
    for id in ["ingest-1", "ingest-2", "query-1", "query-2"] {
        let lost = c.node(id).log_lines("etcd session").iter().filter(|l| l.contains("opening a new one")).count();
        println!("  {id}: {lost} etcd sessions lost (each SIGSTOP of it accounts for one)");
    }
}
