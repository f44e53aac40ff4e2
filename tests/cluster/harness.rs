//! A real multi-process Strata cluster for tests: its own etcd and SeaweedFS (through
//! `strata-test-support`), and `strata ingest-node | query-node | compactor` processes, each
//! with its own ports, data directory and log file.
//!
//! Nodes can be killed (SIGKILL), paused (SIGSTOP / SIGCONT), stopped (SIGTERM), restarted
//! on the same ports and data directory, and added. Every wait is bounded and panics saying
//! what did not happen. When a test panics, the tail of every node's log is printed; no
//! process outlives the [`Cluster`] (and a node dies with the test thread that spawned it).

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_test_support::{EtcdServer, S3Server, free_port};

use crate::client::Api;

/// Session TTL of every node (the default, `etcd.session_ttl_s`): a dead or paused node
/// loses its leases after this.
pub fn ttl_s() -> u64 {
    strata::config::Config::default().etcd.session_ttl_s
}
/// How long a node may take from spawn to answering `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Query,
    Compactor,
}

impl Role {
    fn command(self) -> &'static str {
        match self {
            Role::Ingest => "ingest-node",
            Role::Query => "query-node",
            Role::Compactor => "compactor",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Compactor => "compactor",
        }
    }
}

/// One `strata` process (or the slot of one that was killed or stopped).
pub struct Node {
    pub id: String,
    pub role: Role,
    pub url: String,
    port: u16,
    grpc_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// The node-to-node gRPC port.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> i32 {
        let child = self.child.as_ref().unwrap_or_else(|| panic!("node {} is not running", self.id));
        i32::try_from(child.id()).expect("pid fits i32")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on a child process we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed: {}", self.id, std::io::Error::last_os_error());
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines of the node's log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Cluster {
    /// The etcd key prefix (`STRATA__ETCD__CLUSTER`).
    pub name: String,
    pub etcd: EtcdServer,
    pub s3: S3Server,
    pub api: Api,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts etcd and SeaweedFS. `None` (after a printed note) when the servers are not
    /// installed and `STRATA_REQUIRE_SERVERS` is not set; a panic when it is.
    /// `env` adds `STRATA__…` settings for every node.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Option<Cluster> {
        if !strata_test_support::require() {
            return None;
        }
        let etcd = EtcdServer::start().unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        let s3 = S3Server::start().unwrap_or_else(|e| panic!("cannot start SeaweedFS: {e}"));
        let dir = tempfile::Builder::new().prefix(&format!("strata-cluster-{name}-")).tempdir().unwrap();
        let mut all: Vec<(String, String)> = vec![
            ("STRATA__ETCD__CLUSTER".into(), name.into()),
            ("STRATA__STORAGE__KIND".into(), "s3".into()),
            ("STRATA__STORAGE__BUCKET".into(), s3.bucket().into()),
            ("STRATA__STORAGE__ENDPOINT".into(), s3.endpoint()),
            ("STRATA__STORAGE__ALLOW_HTTP".into(), "true".into()),
            ("STRATA__STORAGE__ACCESS_KEY_ID".into(), S3Server::ACCESS_KEY_ID.into()),
            ("STRATA__STORAGE__SECRET_ACCESS_KEY".into(), S3Server::SECRET_ACCESS_KEY.into()),
            // Small caches: several clusters share a 2-core test machine.
            ("STRATA__CACHE__MEMORY_BYTES".into(), (32u64 << 20).to_string()),
            ("STRATA__CACHE__DISK_BYTES".into(), (64u64 << 20).to_string()),
            // A dead replica is skipped quickly; a hung one does not hold a request long.
            ("STRATA__RPC__CONNECT_TIMEOUT_MS".into(), "500".into()),
            ("STRATA__RPC__REQUEST_TIMEOUT_MS".into(), "5000".into()),
        ];
        for (k, v) in env {
            all.retain(|(key, _)| key != k);
            all.push(((*k).to_owned(), (*v).to_owned()));
        }
        Some(Cluster { name: name.to_owned(), etcd, s3, api: Api::new(), dir, env: all, nodes: Vec::new() })
    }

    /// Starts `ingest` ingest nodes, `query` query nodes and `compactors` compactors and
    /// waits until each answers `/healthz` and the cluster lists them all.
    pub async fn start_nodes(&mut self, ingest: usize, query: usize, compactors: usize) {
        let mut ids = Vec::new();
        for (role, n) in [(Role::Ingest, ingest), (Role::Query, query), (Role::Compactor, compactors)] {
            for _ in 0..n {
                ids.push(self.spawn_new(role));
            }
        }
        for id in &ids {
            self.wait_healthy(id).await;
        }
        self.wait_members(Duration::from_secs(20)).await;
    }

    /// Adds one node of `role` and waits until it answers `/healthz`; returns its id.
    pub async fn add(&mut self, role: Role) -> String {
        let id = self.spawn_new(role);
        self.wait_healthy(&id).await;
        id
    }

    fn spawn_new(&mut self, role: Role) -> String {
        let n = self.nodes.iter().filter(|n| n.role == role).count() + 1;
        let id = format!("{}-{n}", role.short());
        // A port that is free now may be one another node of this cluster was given but
        // has not bound yet (or is stopped and will bind again): never hand out one twice.
        let mut taken: Vec<u16> = self.nodes.iter().flat_map(|n| [n.port, n.grpc_port]).collect();
        let mut fresh_port = || loop {
            let p = free_port(false).unwrap();
            if !taken.contains(&p) {
                taken.push(p);
                break p;
            }
        };
        let (port, grpc_port) = (fresh_port(), fresh_port());
        let data_dir = self.dir.path().join(&id);
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = self.dir.path().join(format!("{id}.log"));
        let url = format!("http://127.0.0.1:{port}");
        self.nodes.push(Node { id: id.clone(), role, url, port, grpc_port, data_dir, log, child: None });
        self.spawn(&id);
        id
    }

    fn spawn(&mut self, id: &str) {
        let etcd = self.etcd.endpoint();
        let env = self.env.clone();
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata-test-node"));
        cmd.arg(node.role.command())
            .args(["--listen", &format!("127.0.0.1:{}", node.port)])
            .args(["--grpc-listen", &format!("127.0.0.1:{}", node.grpc_port)])
            .args(["--node-id", id, "--etcd", &etcd])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .envs(env)
            .env("STRATA_LOG", "info,hnsw_rs=warn,foyer=warn")
            .env("NO_COLOR", "1")
            // Errors, not backtraces, at the end of a log (panics still print theirs).
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // SAFETY: prctl is async-signal-safe; it makes the node die with the test thread
        // that spawned it, so a test killed by a timeout leaks no process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        node.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start strata {id}: {e}")));
    }

    async fn wait_healthy(&mut self, id: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let url = self.node(id).url.clone();
            if let Ok((200, _)) = self.api.call("GET", &format!("{url}/healthz"), None).await {
                return;
            }
            let node = self.node_mut(id);
            if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("node {id} exited during start ({status}); log tail:\n{}", node.log_tail(40));
            }
            assert!(Instant::now() < deadline, "node {id} did not answer /healthz within {START_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn node(&self, id: &str) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn url(&self, id: &str) -> String {
        self.node(id).url.clone()
    }

    /// Ids of the running nodes of `role`.
    pub fn ids(&self, role: Role) -> Vec<String> {
        self.nodes.iter().filter(|n| n.role == role && n.is_running()).map(|n| n.id.clone()).collect()
    }

    /// URLs of the running nodes of `role`.
    pub fn urls(&self, role: Role) -> Vec<String> {
        self.nodes.iter().filter(|n| n.role == role && n.is_running()).map(|n| n.url.clone()).collect()
    }

    /// SIGKILL: the process dies at once, with no chance to leave the cluster.
    pub fn kill(&mut self, id: &str) {
        let node = self.node_mut(id);
        node.signal(libc::SIGKILL);
        node.reap();
    }

    /// SIGSTOP: the process freezes, sockets open, its etcd session expiring.
    pub fn pause(&self, id: &str) {
        self.node(id).signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, id: &str) {
        self.node(id).signal(libc::SIGCONT);
    }

    /// SIGTERM and wait (bounded) for a graceful exit.
    #[allow(dead_code)] // harness API for tests of graceful shutdown
    pub async fn stop(&mut self, id: &str) {
        self.stop_within(id, Duration::from_secs(15)).await;
    }

    /// SIGTERM, then wait until the process exits, at most `bound` (else panic); the time
    /// it took. The exit must be a clean one (status 0).
    pub async fn stop_within(&mut self, id: &str, bound: Duration) -> Duration {
        let node = self.node_mut(id);
        node.signal(libc::SIGTERM);
        let signalled = Instant::now();
        let status = loop {
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                break status;
            }
            assert!(
                signalled.elapsed() < bound,
                "node {id} did not exit within {bound:?} of SIGTERM; log tail:\n{}",
                node.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = signalled.elapsed();
        node.child = None;
        assert!(status.success(), "node {id} exited with {status} after SIGTERM; log tail:\n{}", node.log_tail(20));
        took
    }

    /// Starts a stopped or killed node again: same id, ports and data directory.
    pub async fn restart(&mut self, id: &str) {
        self.spawn(id);
        self.wait_healthy(id).await;
    }

    /// Waits until `/v1/cluster/nodes` on every running node lists exactly the running nodes.
    pub async fn wait_members(&self, timeout: Duration) {
        let want: BTreeSet<String> = self.nodes.iter().filter(|n| n.is_running()).map(|n| n.id.clone()).collect();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let url = format!("{}/v1/cluster/nodes", node.url);
            let deadline = Instant::now() + timeout;
            loop {
                let seen = match self.api.call("GET", &url, None).await {
                    Ok((200, body)) => body,
                    other => json!(format!("{other:?}")),
                };
                let got: BTreeSet<String> = seen["nodes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n["id"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if got == want {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} did not list members {want:?} within {timeout:?}; last seen: {seen}",
                    node.id
                );
                tick().await;
            }
        }
    }

    /// `/v1/cluster/shards` as seen by node `via`.
    pub async fn shards(&self, via: &str) -> Vec<Value> {
        let body = self.api.get_ok(&format!("{}/v1/cluster/shards", self.url(via))).await;
        body["shards"].as_array().cloned().unwrap_or_else(|| panic!("no shards in {body}"))
    }

    /// Waits until every shard, as node `via` sees it, has a writer on a running ingest
    /// node that is its owner, is served by exactly its `replication` owners (all running,
    /// all `serving`), and is settled; and until every running query node is ready.
    /// Returns the shards.
    pub async fn wait_settled(&self, via: &str, expected_shards: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let running: BTreeSet<String> = self.nodes.iter().filter(|n| n.is_running()).map(|n| n.id.clone()).collect();
        let url = format!("{}/v1/cluster/shards", self.url(via));
        let shards = loop {
            let last = match self.api.call("GET", &url, None).await {
                Ok((200, body)) => body,
                other => json!(format!("{other:?}")),
            };
            let shards = last["shards"].as_array().cloned().unwrap_or_default();
            if shards.len() == expected_shards && shards.iter().all(|s| shard_settled(s, &running)) {
                break shards;
            }
            assert!(
                Instant::now() < deadline,
                "shards did not settle on running nodes {running:?} within {timeout:?}; last seen via {via}: {last}"
            );
            tick().await;
        };
        let deadline = deadline.max(Instant::now() + Duration::from_secs(5));
        for q in self.ids(Role::Query) {
            let url = format!("{}/readyz", self.url(&q));
            loop {
                match self.api.call("GET", &url, None).await {
                    Ok((200, _)) => break,
                    other => assert!(
                        Instant::now() < deadline,
                        "query node {q} did not become ready (/readyz 200) within {timeout:?}: {other:?}"
                    ),
                }
                tick().await;
            }
        }
        shards
    }

    /// Creates a collection (l2) through the first running ingest node.
    pub async fn create_collection(&self, name: &str, dim: usize, shards: u32, replication: u32) -> Value {
        let ingest = &self.urls(Role::Ingest)[0];
        let body =
            json!({"name": name, "dimension": dim, "metric": "l2", "shards": shards, "replication": replication});
        let (status, resp) = self.api.call("POST", &format!("{ingest}/v1/collections"), Some(&body)).await.unwrap();
        assert_eq!(status, 201, "create collection {name}: {resp}");
        resp
    }
}

/// Every shard is written by its running owner and served exactly by its running owners.
pub fn shard_settled(s: &Value, running: &BTreeSet<String>) -> bool {
    let alive = |v: &Value| v.as_str().is_some_and(|n| running.contains(n));
    let serving = s["serving"].as_array().map(Vec::as_slice).unwrap_or_default();
    let owners = s["serving_owners"].as_array().map(Vec::as_slice).unwrap_or_default();
    s["settled"] == true
        && alive(&s["writer"])
        && s["writer"] == s["writer_owner"]
        && !owners.is_empty()
        && owners.iter().all(alive)
        && serving.iter().all(|r| r["state"] == "serving" && alive(&r["node"]))
}

/// One polling step of a bounded wait.
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("----- log tail of {} ({:?}) -----\n{}", node.id, node.role, node.log_tail(40));
            }
        }
        for node in &mut self.nodes {
            node.reap();
        }
    }
}
