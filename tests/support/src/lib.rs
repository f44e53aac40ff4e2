//! `strata-test-support`: real etcd and S3 (SeaweedFS) servers for tests, as process guards
//! (and [`HookedStore`], an object store for unit tests that disturbs chosen requests).
//!
//! Role: tests of cluster-mode code run against the real servers, never mocks. Each guard
//! starts its own server on free loopback ports with a private temporary data directory,
//! waits (bounded) until it answers, and kills the server's whole process group on drop,
//! so a failing test never leaks a server.
//!
//! Flow: a test calls [`require`] (or [`require_etcd`] / [`require_s3`]) first. When the
//! binaries are missing the test is skipped (returns early) — unless
//! `STRATA_REQUIRE_SERVERS=1` is set (as `scripts/test.sh` and CI do), in which case it
//! panics, so CI can never pass by silently skipping. Then [`EtcdServer::start`] /
//! [`S3Server::start`].
//!
//! Binaries: etcd from `STRATA_ETCD_BIN` or `etcd` on `PATH`; SeaweedFS from
//! `STRATA_WEED_BIN` or `weed` on `PATH` (`scripts/test.sh` installs both).
//!
//! Invariants: every port is on 127.0.0.1; every server writes only under its own temp dir
//! (also holding its log, whose tail is quoted when it fails to start); no server outlives
//! its guard.

// Server guards wait for real processes in real time.
#![allow(clippy::disallowed_methods)]

mod process;
mod store;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use process::{Child, http_status, wait_until};
pub use process::{KillOnDrop, free_port};
pub use store::{BeforeGet, BeforePut, HookedStore};

/// The environment variable that turns "skip when a server is missing" into a failure.
pub const REQUIRE_SERVERS_ENV: &str = "STRATA_REQUIRE_SERVERS";

/// How long a server may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcd binary to run, if one is configured or on `PATH`.
pub fn etcd_bin() -> Option<PathBuf> {
    process::find_bin("STRATA_ETCD_BIN", "etcd")
}

/// The SeaweedFS (`weed`) binary to run, if one is configured or on `PATH`.
pub fn weed_bin() -> Option<PathBuf> {
    process::find_bin("STRATA_WEED_BIN", "weed")
}

/// Whether both test servers can be started here.
pub fn available() -> bool {
    etcd_bin().is_some() && weed_bin().is_some()
}

fn servers_required() -> bool {
    std::env::var(REQUIRE_SERVERS_ENV).is_ok_and(|v| v == "1")
}

fn require_one(what: &str, found: bool) -> bool {
    decide(what, found, servers_required())
}

/// Run (true), skip (false) or fail (panic) a test needing `what`.
fn decide(what: &str, found: bool, required: bool) -> bool {
    if found {
        return true;
    }
    assert!(
        !required,
        "{what} is not available but {REQUIRE_SERVERS_ENV}=1: install it (scripts/test.sh does) or set its *_BIN variable"
    );
    eprintln!("skipping: {what} is not available (set {REQUIRE_SERVERS_ENV}=1 to make this a failure)");
    false
}

/// True when both servers are available. When one is missing: panics if
/// `STRATA_REQUIRE_SERVERS=1`, else prints a note and returns false (the test should
/// return early).
pub fn require() -> bool {
    require_etcd() && require_s3()
}

/// [`require`] for etcd alone.
pub fn require_etcd() -> bool {
    require_one("etcd (STRATA_ETCD_BIN or `etcd` on PATH)", etcd_bin().is_some())
}

/// [`require`] for SeaweedFS alone.
pub fn require_s3() -> bool {
    require_one("SeaweedFS (STRATA_WEED_BIN or `weed` on PATH)", weed_bin().is_some())
}

/// Runs `attempt` up to three times: a server that dies at startup (usually a port taken
/// by a parallel test between the pick and the bind) gets fresh ports.
fn with_retries<T>(what: &str, mut attempt: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut errors = Vec::new();
    for _ in 0..3 {
        match attempt() {
            Ok(server) => return Ok(server),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(io::Error::other(format!("{what} failed to start 3 times:\n{}", errors.join("\n---\n"))))
}

/// Waits until `ready` holds, failing early if the process exits, or after the timeout.
fn wait_ready(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) -> io::Result<()> {
    let mut exited = false;
    let ok = wait_until(START_TIMEOUT, || {
        exited = child.exited();
        exited || ready()
    });
    if ok && !exited {
        return Ok(());
    }
    let why =
        if exited { "exited during startup".to_owned() } else { format!("was not ready within {START_TIMEOUT:?}") };
    Err(io::Error::other(format!("{what} {why}; log tail:\n{}", child.log_tail())))
}

/// A single-member etcd cluster on loopback.
pub struct EtcdServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health` (and `/metrics`), whatever the client URLs speak.
    metrics_port: u16,
    tls: Option<EtcdTls>,
    child: Option<Child>,
}

/// Certificates for an etcd that serves clients over TLS and requires client certificates.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// etcd's own certificate (PEM, naming `localhost` / `127.0.0.1`) and key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA client certificates must be signed by.
    pub ca_file: PathBuf,
}

impl EtcdServer {
    /// Starts etcd on free ports and waits until it reports healthy.
    pub fn start() -> io::Result<Self> {
        Self::start_with(None)
    }

    /// Starts etcd serving clients over TLS only, requiring a client certificate signed by
    /// `tls.ca_file` (`--client-cert-auth`).
    pub fn start_with_tls(tls: EtcdTls) -> io::Result<Self> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<EtcdTls>) -> io::Result<Self> {
        let bin = etcd_bin().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "etcd binary not found"))?;
        with_retries("etcd", || {
            let dir = tempfile::Builder::new().prefix("strata-etcd-").tempdir()?;
            let (client_port, peer_port, metrics_port) = (free_port(false)?, free_port(false)?, free_port(false)?);
            let tls = tls.clone();
            let mut server = Self { bin: bin.clone(), dir, client_port, peer_port, metrics_port, tls, child: None };
            server.spawn()?;
            Ok(server)
        })
    }

    /// The client endpoint, e.g. `http://127.0.0.1:23790` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) -> io::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let metrics = format!("http://127.0.0.1:{}", self.metrics_port);
        let data = self.data_dir();
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.arg("--name")
            .arg("strata-test")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--listen-metrics-urls", &metrics])
            .arg("--initial-cluster")
            .arg(format!("strata-test={peer}"));
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file").arg(&tls.cert_file).arg("--key-file").arg(&tls.key_file);
            cmd.arg("--trusted-ca-file").arg(&tls.ca_file).arg("--client-cert-auth");
        }
        let child = self.child.insert(Child::spawn(cmd, &self.dir.path().join("etcd.log"))?);
        let port = self.metrics_port;
        wait_ready(child, &format!("etcd on {client}"), || http_status(port, "/health").is_some_and(|s| s == 200))
    }

    /// Stops the server (hard kill: tests simulate crashes) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, as in a
    /// stalled etcd. [`EtcdServer::resume`] thaws it.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            child.signal(libc::SIGSTOP);
        }
    }

    /// Thaws a server frozen by [`EtcdServer::pause`].
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            child.signal(libc::SIGCONT);
        }
    }

    /// Starts a stopped server again on the same ports, keeping its data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Simulates losing etcd entirely: stops it, deletes its data directory and starts an
    /// empty etcd on the same ports (clients keep their endpoints).
    pub fn restart_wiped(&mut self) -> io::Result<()> {
        self.stop();
        match std::fs::remove_dir_all(self.data_dir()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.spawn()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A SeaweedFS `weed mini` server: S3 API on loopback with one pre-created bucket.
pub struct S3Server {
    dir: tempfile::TempDir,
    s3_port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// The bucket created at start.
    pub const BUCKET: &'static str = "strata-test";
    /// Credentials to use; with no IAM configuration SeaweedFS accepts any SigV4 keys.
    pub const ACCESS_KEY_ID: &'static str = "strata-test-key";
    pub const SECRET_ACCESS_KEY: &'static str = "strata-test-secret";

    /// Starts `weed mini` on free ports and waits until the bucket answers.
    pub fn start() -> io::Result<Self> {
        let bin = weed_bin().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "weed binary not found"))?;
        with_retries("weed mini", || Self::start_on_free_ports(&bin))
    }

    fn start_on_free_ports(bin: &std::path::Path) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("strata-weed-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        // weed also listens on each port + 10000 (gRPC), so every port is picked with its
        // +10000 twin free.
        let (master, volume, filer, s3, admin, webdav) = (
            free_port(true)?,
            free_port(true)?,
            free_port(true)?,
            free_port(true)?,
            free_port(true)?,
            free_port(false)?,
        );
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-admin.port={admin}"))
            // Its other services default to fixed ports, which would collide between tests
            // running in parallel: move WebDAV, switch the Iceberg and Lance catalogs off.
            .arg(format!("-webdav.port={webdav}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-bucket={}", Self::BUCKET));
        let child = Child::spawn(cmd, &dir.path().join("weed.log"))?;
        let mut server = Self { dir, s3_port: s3, child: Some(child) };
        let path = format!("/{}", Self::BUCKET);
        if let Some(child) = server.child.as_mut() {
            // On failure `server` drops here, killing the process group.
            wait_ready(child, &format!("weed mini (S3 port {s3})"), || {
                http_status(s3, &path).is_some_and(|s| s == 200)
            })?;
        }
        Ok(server)
    }

    /// The S3 endpoint (scheme, host and port; no bucket), e.g. `http://127.0.0.1:28333`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn bucket(&self) -> &'static str {
        Self::BUCKET
    }

    /// The directory holding the server's data and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills the server (weed mini ignores a single SIGTERM for seconds, so SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_skips_unless_servers_are_required() {
        assert!(decide("x", true, true));
        assert!(decide("x", true, false));
        assert!(!decide("x", false, false));
        let failed = std::panic::catch_unwind(|| decide("x", false, true));
        assert!(failed.is_err(), "a missing server must fail when STRATA_REQUIRE_SERVERS=1");
    }

    /// Tests run in parallel processes, so servers must never share a port or a path.
    #[test]
    fn servers_run_side_by_side() {
        if !require() {
            return;
        }
        let starts: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(|| (EtcdServer::start().map(drop), S3Server::start().map(drop))))
            .collect();
        for start in starts {
            let (etcd, s3) = start.join().expect("no panic");
            etcd.expect("etcd started");
            s3.expect("weed started");
        }
    }

    #[test]
    fn free_ports_leave_the_grpc_twin_free() {
        let port = free_port(true).unwrap();
        assert!(port <= u16::MAX - 10_000);
        std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).expect("twin free");
    }
}
