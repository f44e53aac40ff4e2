//! The cluster implementation of [`Coordination`] over etcd.
//!
//! Role: membership, leases, serving records, drains and shard heads for a multi-process
//! cluster. etcd holds only state that may be lost (ARCHITECTURE.md §1): if etcd is wiped,
//! this client re-forms its session and re-registers what it owns, and roles re-acquire
//! leases; data correctness rests on create-only commits in object storage.
//!
//! Key layout under `/strata/{cluster}/` (ARCHITECTURE.md §5):
//! - `members/{role}/{node}` → [`Member`] JSON, bound to the session's etcd lease;
//! - `leases/writer/{collection_id}/{shard}`, `leases/compact/{collection_id}/{shard}` →
//!   `{"holder": ..}` JSON, bound to the holder's session; the lease epoch is the key's
//!   `create_revision`, which grows whenever the key is created anew;
//! - `leases/serve/{collection_id}/{shard}/{node}` → [`ServingRecord`] JSON, session-bound;
//! - `heads/{key}/wal`, `heads/{key}/manifest` → decimal zero-padded to 20 digits, so a
//!   byte-wise value comparison in a Txn is a numeric one; no lease (heads outlive nodes);
//! - `admin/drain/{node}` → `"1"`, no lease (drains outlive sessions).
//!
//! Flow: [`Etcd::connect`] opens the first session (an etcd lease with TTL) and starts three
//! background tasks: the session keeper ([`session`]: keep-alives, local deadline, new
//! session + re-registration after loss), the view watcher ([`view`]: list + watch of
//! members, leases and drains into a [`ClusterView`]) and the head reader ([`heads`]: reads
//! queued heads in one transaction per batch). Requests ([`ops`]) are single etcd round
//! trips bounded by `request_timeout_ms`. Dropping the [`Etcd`] stops the tasks; its
//! keys then expire with the session TTL ([`Etcd::shutdown`] removes them at once).
//!
//! Invariants:
//! - a lease is valid only in the session that acquired it and only until that session's
//!   local deadline (last successful keep-alive + TTL, monotonic clock); no etcd call is
//!   needed to learn that a paused or partitioned node lost it;
//! - network and etcd failures are [`ErrorKind::Retryable`](strata_types::ErrorKind) errors, never
//!   panics; the background tasks retry with backoff forever and never exit the process;
//! - epochs are etcd revisions: they grow while etcd keeps its data, but restart low after
//!   etcd is wiped; fencing therefore rests on create-only commits, never on epochs alone.

mod heads;
mod ops;
mod session;
#[cfg(test)]
mod tests;
mod view;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{ClusterView, Coordination, Head, Lease, LeaseKind, Member, ServingRecord};
use session::SessionState;
use strata_types::time::{self, Clock};
use strata_types::{Error, Result};

/// How to reach etcd and how long a session lives. Every field has a default, so an empty
/// TOML table is a valid configuration for a local single-node etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd client URLs. Default `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Cluster name; every key lives under `/strata/{cluster}/`, so several clusters can
    /// share one etcd. Must not be empty or contain `/`. Default `"default"`.
    pub cluster: String,
    /// Session TTL in seconds: a node silent (dead, paused, partitioned) for this long loses
    /// its membership, leases and serving records, and the others take its shards over.
    /// Keep-alives go every TTL/3. At least 2 (etcd's minimum is about 1.5 s). Default 2:
    /// failover within 3 s; a node stalled for more than about 1.3 s (two missed
    /// keep-alives) steps down and rejoins (decision 0014).
    pub session_ttl_s: u64,
    /// Bound on establishing the first session in [`Etcd::connect`] and on each TCP
    /// connect. Default 5000.
    pub connect_timeout_ms: u64,
    /// Bound on every single etcd request. Default 5000.
    pub request_timeout_ms: u64,
    /// etcd user (with etcd's auth enabled). Default: none.
    pub user: Option<String>,
    /// Its password; set it from the environment (`STRATA__ETCD__PASSWORD`), not a file
    /// others read. Default: none.
    pub password: Option<String>,
    /// TLS to etcd (`https://` endpoints). Default: off.
    pub tls: EtcdTlsConfig,
}

/// `[etcd.tls]`: the CA that signed etcd's certificate, and optionally this node's client
/// certificate (for etcd's `--client-cert-auth`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdTlsConfig {
    /// CA certificates (PEM) to trust for etcd's certificate. Default: none (TLS off).
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM) to present. Default: none.
    pub cert_file: Option<std::path::PathBuf>,
    /// Its private key (PEM). Default: none.
    pub key_file: Option<std::path::PathBuf>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            cluster: "default".to_owned(),
            session_ttl_s: 2,
            connect_timeout_ms: 5000,
            request_timeout_ms: 5000,
            user: None,
            password: None,
            tls: EtcdTlsConfig::default(),
        }
    }
}

impl EtcdConfig {
    fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::invalid("etcd.endpoints must name at least one endpoint"));
        }
        if self.cluster.is_empty() || self.cluster.contains('/') {
            return Err(Error::invalid(format!(
                "etcd.cluster {:?} must be non-empty and contain no '/'",
                self.cluster
            )));
        }
        if self.session_ttl_s < 2 {
            return Err(Error::invalid("etcd.session_ttl_s must be at least 2"));
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return Err(Error::invalid("etcd timeouts must be positive"));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(Error::invalid("etcd.user and etcd.password go together: set both, or neither"));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(Error::invalid("etcd.tls.cert_file and key_file go together: set both, or neither"));
        }
        if self.tls.cert_file.is_some() && self.tls.ca_file.is_none() {
            return Err(Error::invalid("etcd.tls.cert_file needs etcd.tls.ca_file (the CA of etcd's certificate)"));
        }
        Ok(())
    }

    /// The client options: user and password, and TLS when `tls.ca_file` is set.
    fn connect_options(&self) -> Result<ConnectOptions> {
        let mut options = ConnectOptions::new();
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(ca_file) = &self.tls.ca_file {
            let read = |path: &std::path::Path| {
                std::fs::read(path)
                    .map_err(|e| Error::invalid(format!("etcd.tls: cannot read {}", path.display())).with_source(e))
            };
            let mut tls =
                etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(ca_file)?));
            if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
                tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }
}

/// State shared by the handle and its background tasks.
struct Inner {
    client: Client,
    /// Session deadlines, keep-alive pacing, timeouts and backoff all follow this clock.
    clock: Arc<dyn Clock>,
    /// `/strata/{cluster}/`.
    prefix: String,
    ttl: Duration,
    request_timeout: Duration,
    session: std::sync::Mutex<SessionState>,
    /// Serialises changes to this process's session-bound records with their re-put on a
    /// new session, so a record cleared meanwhile is never resurrected.
    records: tokio::sync::Mutex<session::Records>,
    view: watch::Sender<Arc<ClusterView>>,
    /// Turns true once the view has been listed from etcd at least once.
    listed: watch::Sender<bool>,
}

/// The etcd [`Coordination`]. Create with [`Etcd::connect`]; share the `Arc`.
pub struct Etcd {
    inner: Arc<Inner>,
    /// Queue of head reads, served in batches by [`heads::serve`].
    heads: tokio::sync::mpsc::UnboundedSender<heads::HeadRequest>,
    tasks: Vec<AbortHandle>,
}

impl Etcd {
    /// Connects, opens the first session, starts the session keeper and view watcher, and
    /// waits (up to `connect_timeout_ms`) for the first listing of the view.
    /// Fails (retryable) if no session could be opened within `connect_timeout_ms`; once
    /// connected, losing etcd never fails the handle: it keeps retrying in the background.
    pub async fn connect(config: EtcdConfig, clock: Arc<dyn Clock>) -> Result<Arc<Etcd>> {
        config.validate()?;
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let options = config
            .connect_options()?
            .with_connect_timeout(connect_timeout)
            // HTTP/2 pings detect a dead or frozen etcd under a long-lived watch or
            // keep-alive stream, which would otherwise wait forever.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let client = time::timeout(clock.as_ref(), connect_timeout, Client::connect(&config.endpoints, Some(options)))
            .await
            .map_err(|_| Error::retryable(format!("connecting to etcd {:?} timed out", config.endpoints)))?
            .map_err(|e| etcd_error("connecting to etcd", e))?;
        let ttl = Duration::from_secs(config.session_ttl_s);
        let request_timeout = Duration::from_millis(config.request_timeout_ms);
        let grant = session::grant(&client, clock.as_ref(), ttl, request_timeout);
        let first = time::timeout(clock.as_ref(), connect_timeout, grant)
            .await
            .map_err(|_| Error::retryable(format!("opening an etcd session on {:?} timed out", config.endpoints)))??;
        let inner = Arc::new(Inner {
            client,
            clock: clock.clone(),
            prefix: format!("/strata/{}/", config.cluster),
            ttl,
            request_timeout,
            session: std::sync::Mutex::new(first),
            records: tokio::sync::Mutex::default(),
            view: watch::channel(Arc::new(ClusterView::default())).0,
            listed: watch::channel(false).0,
        });
        let (heads, head_requests) = tokio::sync::mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(session::keep(inner.clone())).abort_handle(),
            tokio::spawn(view::watch(inner.clone())).abort_handle(),
            tokio::spawn(heads::serve(inner.clone(), head_requests)).abort_handle(),
        ];
        // Hand out the handle with a listed view, so a role routing right after startup
        // sees the cluster; if listing is slow the view simply catches up later.
        let mut listed = inner.listed.subscribe();
        let _ = time::timeout(clock.as_ref(), connect_timeout, listed.wait_for(|listed| *listed)).await;
        Ok(Arc::new(Etcd { inner, heads, tasks }))
    }

    /// The etcd lease id of the current session (changes when a new session is opened).
    pub fn session_id(&self) -> i64 {
        self.inner.session().id
    }

    /// Ends the session now: revokes its etcd lease, so this process's members, leases
    /// and serving records disappear at once instead of after the TTL. Call on clean
    /// shutdown; the handle keeps working (a new session is opened) if used afterwards.
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.records.lock().await.clear();
        let id = self.inner.session().id;
        self.inner.revoke(id).await
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Inner {
    /// Whether the current session has not passed its local deadline.
    fn alive(&self) -> bool {
        let now = self.clock.now();
        self.session().alive(now)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Runs one etcd request bounded by the request timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match time::timeout(self.clock.as_ref(), self.request_timeout, request).await {
            Ok(result) => result.map_err(|e| etcd_error(what, e)),
            Err(_) => Err(Error::retryable(format!("{what}: etcd did not answer within {:?}", self.request_timeout))),
        }
    }
}

/// Maps an etcd client error: malformed arguments are `Invalid`, everything else (network,
/// unavailable leader, timeouts, lost leases) is `Retryable`.
fn etcd_error(what: &str, err: etcd_client::Error) -> Error {
    match err {
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            Error::invalid(format!("{what}: invalid etcd request")).with_source(err)
        }
        _ => Error::retryable(format!("{what}: etcd request failed")).with_source(err),
    }
}

impl Coordination for Etcd {
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.shutdown())
    }

    fn try_acquire(&self, kind: LeaseKind, key: &str, holder: &str) -> BoxFuture<'_, Result<Option<Lease>>> {
        let (key, holder) = (key.to_owned(), holder.to_owned());
        Box::pin(async move { self.inner.try_acquire(kind, &key, &holder).await })
    }

    fn release(&self, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        let lease = lease.clone();
        Box::pin(async move { self.inner.release(&lease).await })
    }

    fn lease_valid(&self, lease: &Lease) -> bool {
        let now = self.inner.clock.now();
        self.inner.session().lease_valid(lease, now)
    }

    fn publish_head(&self, shard_key: &str, head: Head) -> BoxFuture<'_, Result<()>> {
        let key = shard_key.to_owned();
        Box::pin(async move { self.inner.publish_head(&key, head).await })
    }

    fn head(&self, shard_key: &str) -> BoxFuture<'_, Result<Option<Head>>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queued = self.heads.send((shard_key.to_owned(), reply));
        Box::pin(async move {
            let gone = || Error::retryable("the etcd head reader stopped");
            queued.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }

    fn register(&self, member: Member) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.inner.register(member))
    }

    fn deregister(&self, node_id: &str) -> BoxFuture<'_, Result<()>> {
        let node = node_id.to_owned();
        Box::pin(async move { self.inner.deregister(&node).await })
    }

    fn set_serving(&self, record: ServingRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.inner.set_serving(record))
    }

    fn clear_serving(&self, collection_id: &str, shard: u32, node_id: &str) -> BoxFuture<'_, Result<()>> {
        let (collection, node) = (collection_id.to_owned(), node_id.to_owned());
        Box::pin(async move { self.inner.clear_serving(&collection, shard, &node).await })
    }

    fn set_drain(&self, node_id: &str, draining: bool) -> BoxFuture<'_, Result<()>> {
        let node = node_id.to_owned();
        Box::pin(async move { self.inner.set_drain(&node, draining).await })
    }

    fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.inner.view.subscribe()
    }
}
