//! The writer of one shard: an actor task that owns the shard's WAL tail.
//!
//! Flow: requests arrive on a channel; the first one opens a group commit that collects
//! every request arriving within `group_commit_window_ms` (or until the byte budget is
//! reached); the group becomes one WAL entry created with `PutMode::Create`; only then are
//! all its requests acknowledged. Acknowledged entries stay in memory (the memtable) until
//! a background flush has put them into a segment and committed a manifest.
//!
//! Invariants:
//! - sequence numbers are consecutive, and `seq` is written only after `seq - 1` exists;
//! - nothing is acknowledged before its WAL object exists;
//! - finding our sequence taken by someone else (another writer epoch) means we lost the
//!   shard: the actor fails its pending requests and stops, never writing again;
//! - at most one flush runs per shard, so manifests advance `flushed_seq` in order;
//! - a writer that stops (shutdown, lost lease, handover) finishes the group commit in
//!   hand, refuses what is still queued (503, never acknowledged), abandons its running
//!   flush and releases its lease. A stop never flushes: the WAL already holds every
//!   acknowledged write, and the shard's next writer replays it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use strata_coord::{Head, Lease, LeaseKind, shard_key};
use strata_deps::Deps;
use strata_rpc::{Mutation, Selector};
use strata_storage::manifest::{self, Manifest};
use strata_storage::paths::ShardPaths;
use strata_storage::wal::{self, WalEntry, WalOp};
use strata_types::CollectionDef;
use strata_types::time::{ClockExt, Ticker};
use strata_types::{Error, Result};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::config::IngestConfig;
use crate::flush::IdCache;
use crate::metrics::IngestMetrics;
use crate::mutate;

mod flushing;

/// WAL entries a starting writer reads at once: its shard accepts no write until the tail
/// is read, and reading it one GET after another took 0.4–0.7 s a shard (issue 11, item 4).
const TAIL_READS: usize = 16;

/// Live counters of a shard writer, readable without talking to the actor.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub backlog_rows: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub head_seq: AtomicU64,
    pub flushed_seq: AtomicU64,
    pub manifest_version: AtomicU64,
    pub stopped: AtomicBool,
}

/// A snapshot of [`ShardStats`] for the API.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ShardWriterStats {
    pub shard: u32,
    /// Acknowledged operations not yet in a segment.
    pub backlog_rows: u64,
    pub backlog_bytes: u64,
    /// Newest acknowledged WAL sequence.
    pub head_seq: u64,
    /// Every WAL entry up to here is in segments.
    pub flushed_seq: u64,
    pub manifest_version: u64,
}

enum Command {
    Write {
        ops: Vec<WalOp>,
        bytes: usize,
        reply: oneshot::Sender<Result<u64>>,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
    /// Select rows and append the change in one step (`mutate.rs`); replies with the
    /// number of rows changed.
    Mutate {
        mutation: Mutation,
        reply: oneshot::Sender<Result<u64>>,
    },
}

/// The handle through which requests reach a shard's writer.
pub(crate) struct ShardWriter {
    pub shard: u32,
    tx: mpsc::Sender<Command>,
    pub stats: Arc<ShardStats>,
    config: Arc<IngestConfig>,
    collection: String,
    /// The actor; it ends once it has stopped and released the lease.
    actor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl ShardWriter {
    /// Takes the shard's writer lease, recovers its unflushed WAL tail and starts the actor.
    pub async fn start(
        deps: Deps,
        metrics: Arc<IngestMetrics>,
        def: Arc<CollectionDef>,
        shard: u32,
        config: Arc<IngestConfig>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<ShardWriter> {
        let paths = ShardPaths::new(def.id.clone(), shard);
        let key = shard_key(&def.id, shard);
        let lease =
            deps.coord.try_acquire(LeaseKind::Writer, &key, &deps.node_id).await?.ok_or_else(|| {
                Error::retryable(format!("shard {shard} of {:?} is held by another writer", def.name))
            })?;
        // A writer that cannot start must not keep the lease: the shard's rendezvous owner
        // would forward its writes here while this node forwards them back, until the
        // lease expired or every node restarted.
        let recovered = async {
            let manifest = manifest::load_latest(deps.store.as_ref(), &paths, None).await?;
            let tail = wal::read_tail(deps.store.as_ref(), &paths, manifest.flushed_seq + 1, TAIL_READS).await?;
            let next_seq = tail.last().map_or(manifest.flushed_seq + 1, |e| e.seq + 1);
            let head = Head { wal_seq: next_seq - 1, manifest_version: manifest.version };
            deps.coord.publish_head(&key, head).await?;
            Ok::<_, Error>((manifest, tail, next_seq))
        };
        let (manifest, tail, next_seq) = match recovered.await {
            Ok(recovered) => recovered,
            Err(e) => {
                if let Err(release) = deps.coord.release(&lease).await {
                    tracing::warn!(shard = %paths.root(), error = %release, "cannot release the lease of a writer that failed to start");
                }
                return Err(e);
            }
        };
        let stats = Arc::new(ShardStats::default());
        stats.flushed_seq.store(manifest.flushed_seq, Ordering::Relaxed);
        stats.manifest_version.store(manifest.version, Ordering::Relaxed);
        stats.head_seq.store(next_seq - 1, Ordering::Relaxed);
        let mut memtable = VecDeque::new();
        for entry in tail {
            stats.backlog_rows.fetch_add(entry.ops.len() as u64, Ordering::Relaxed);
            stats.backlog_bytes.fetch_add(entry_bytes(&entry) as u64, Ordering::Relaxed);
            memtable.push_back(Arc::new(entry));
        }
        if !memtable.is_empty() {
            tracing::info!(shard = %paths.root(), entries = memtable.len(), "recovered unflushed WAL tail");
        }
        let (tx, rx) = mpsc::channel(1024);
        let actor = Actor {
            deps,
            metrics,
            def: def.clone(),
            paths,
            key,
            config: config.clone(),
            lease,
            next_seq,
            memtable,
            manifest,
            stats: stats.clone(),
            ids: Some(IdCache::default()),
            flush_waiters: Vec::new(),
            unsure_attempt: None,
            unpublished: None,
            deferred: None,
            flush_task: None,
        };
        let actor = std::sync::Mutex::new(Some(tokio::spawn(actor.run(rx, shutdown))));
        Ok(ShardWriter { shard, tx, stats, config, collection: def.name.clone(), actor })
    }

    /// Resolves once the actor has ended: its last group commit answered, its lease
    /// released. Only the first caller waits; the actor ends on shutdown or when every
    /// handle to it is dropped.
    pub async fn stopped(&self) {
        let actor = self.actor.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(actor) = actor {
            let _ = actor.await;
        }
    }

    /// Appends `ops` to the WAL; resolves with the entry's sequence once it is durable.
    pub async fn write(&self, ops: Vec<WalOp>) -> Result<u64> {
        let rows = self.stats.backlog_rows.load(Ordering::Relaxed);
        let bytes = self.stats.backlog_bytes.load(Ordering::Relaxed);
        if rows as usize >= self.config.backlog_max_rows || bytes as usize >= self.config.backlog_max_bytes {
            return Err(Error::overloaded(format!(
                "shard {} of collection {:?} has {rows} unflushed rows ({bytes} bytes), over the backlog bound \
                 ({} rows / {} bytes); retry once the flush has caught up",
                self.shard, self.collection, self.config.backlog_max_rows, self.config.backlog_max_bytes
            )));
        }
        let bytes = ops.iter().map(WalOp::encoded_len).sum();
        let (reply, rx) = oneshot::channel();
        self.send(Command::Write { ops, bytes, reply }).await?;
        rx.await.map_err(|_| stopped_error())?
    }

    /// Deletes or updates the rows a mutation selects; resolves with how many once the
    /// change is durable.
    pub async fn mutate(&self, mutation: Mutation) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Mutate { mutation, reply }).await?;
        rx.await.map_err(|_| stopped_error())?
    }

    /// Resolves once everything acknowledged before the call is in segments.
    pub async fn flush(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Flush { reply }).await?;
        rx.await.map_err(|_| stopped_error())?
    }

    async fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).await.map_err(|_| stopped_error())
    }

    /// The name of the collection this writer writes.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    pub fn is_stopped(&self) -> bool {
        self.stats.stopped.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> ShardWriterStats {
        let s = &self.stats;
        ShardWriterStats {
            shard: self.shard,
            backlog_rows: s.backlog_rows.load(Ordering::Relaxed),
            backlog_bytes: s.backlog_bytes.load(Ordering::Relaxed),
            head_seq: s.head_seq.load(Ordering::Relaxed),
            flushed_seq: s.flushed_seq.load(Ordering::Relaxed),
            manifest_version: s.manifest_version.load(Ordering::Relaxed),
        }
    }
}

/// Resolves once `shutdown` is (or already was) true, or its sender is gone.
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn stopped_error() -> Error {
    Error::retryable("the shard writer stopped (shutdown or lost lease); retry")
}

fn entry_bytes(entry: &WalEntry) -> usize {
    entry.ops.iter().map(WalOp::encoded_len).sum()
}

struct Actor {
    deps: Deps,
    metrics: Arc<IngestMetrics>,
    def: Arc<CollectionDef>,
    paths: ShardPaths,
    key: String,
    config: Arc<IngestConfig>,
    lease: Lease,
    next_seq: u64,
    memtable: VecDeque<Arc<WalEntry>>,
    manifest: Manifest,
    stats: Arc<ShardStats>,
    /// Lent to the running flush, if any.
    ids: Option<IdCache>,
    /// Flush requests waiting for `flushed_seq` to reach their sequence.
    flush_waiters: Vec<(u64, oneshot::Sender<Result<()>>)>,
    /// An attempt whose outcome is unknown (the put errored, but may have landed).
    unsure_attempt: Option<(u64, u64)>,
    /// A head whose publishing failed (etcd unreachable): published before anything more.
    unpublished: Option<Head>,
    /// A mutation that arrived while a group commit was being gathered: it runs right
    /// after that group.
    deferred: Option<Command>,
    /// The running flush, abandoned when the writer stops.
    flush_task: Option<AbortHandle>,
}

type FlushResult = (Result<Manifest>, IdCache);

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut shutdown: watch::Receiver<bool>) {
        let (done_tx, mut done_rx) = mpsc::channel::<FlushResult>(1);
        let mut tick = Ticker::new(self.deps.clock.clone(), Duration::from_millis(200));
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Write { ops, bytes, reply }) => {
                        let group = self.collect_group(&mut rx, ops, bytes, reply).await;
                        if !self.commit(group).await {
                            break;
                        }
                        if let Some(Command::Mutate { mutation, reply }) = self.deferred.take()
                            && !self.mutate(mutation, reply).await
                        {
                            break;
                        }
                    }
                    Some(Command::Flush { reply }) => self.flush_waiters.push((self.next_seq - 1, reply)),
                    Some(Command::Mutate { mutation, reply }) => {
                        if !self.mutate(mutation, reply).await {
                            break;
                        }
                    }
                    None => break,
                },
                Some((result, ids)) = done_rx.recv() => {
                    self.ids = Some(ids);
                    self.flush_finished(result).await;
                }
                _ = tick.tick() => {
                    if !self.deps.coord.lease_valid(&self.lease) {
                        tracing::warn!(shard = %self.paths.root(), "writer lease lost; stepping down");
                        break;
                    }
                }
                // `wait_for` also sees a shutdown that happened before this writer started.
                () = stop_requested(&mut shutdown) => break,
            }
            self.answer_flush_waiters();
            self.maybe_start_flush(&done_tx);
        }
        self.stats.stopped.store(true, Ordering::Relaxed);
        // A stop does not wait for the flush: its rows are durable in the WAL, which the
        // next writer replays; what it uploaded without a manifest is garbage collection's.
        // (A segment build already running off the runtime finishes unobserved.)
        if let Some(flush) = self.flush_task.take() {
            flush.abort();
        }
        // Queued requests are refused (their reply senders drop: "writer stopped", 503)
        // before the lease goes, so none of them can be written after the successor starts.
        drop(rx);
        if let Err(e) = self.deps.coord.release(&self.lease).await {
            tracing::warn!(shard = %self.paths.root(), error = %e, "could not release the writer lease; it expires with the session");
        }
        tracing::debug!(shard = %self.paths.root(), "shard writer stopped");
    }

    /// Gathers a group commit: every request already queued (those that arrived while the
    /// previous commit was in flight: natural batching, no added delay), then, if a window
    /// is configured, whatever arrives within it, until the byte budget is reached.
    async fn collect_group(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        ops: Vec<WalOp>,
        bytes: usize,
        reply: oneshot::Sender<Result<u64>>,
    ) -> (Vec<WalOp>, Vec<oneshot::Sender<Result<u64>>>) {
        let mut all_ops = ops;
        let mut replies = vec![reply];
        let mut total = bytes;
        let clock = self.deps.clock.clone();
        let deadline = clock.now() + Duration::from_millis(self.config.group_commit_window_ms);
        while total < self.config.group_commit_max_bytes {
            let next = match rx.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(_) if clock.now() >= deadline => None,
                Err(_) => tokio::select! {
                    cmd = rx.recv() => cmd,
                    () = clock.sleep_until(deadline) => None,
                },
            };
            match next {
                Some(Command::Write { ops, bytes, reply }) => {
                    all_ops.extend(ops);
                    replies.push(reply);
                    total += bytes;
                }
                Some(Command::Flush { reply }) => self.flush_waiters.push((self.next_seq, reply)),
                Some(cmd @ Command::Mutate { .. }) => {
                    // Runs after this group: it must see the group's writes.
                    self.deferred = Some(cmd);
                    break;
                }
                None => break,
            }
        }
        (all_ops, replies)
    }

    /// Selects the rows of a mutation and appends its operations, with no other write in
    /// between (see `mutate.rs`). Returns false if this writer must stop (fenced).
    async fn mutate(&mut self, mutation: Mutation, reply: oneshot::Sender<Result<u64>>) -> bool {
        let state = mutate::ShardState {
            deps: &self.deps,
            def: &self.def,
            paths: &self.paths,
            manifest: &self.manifest,
            memtable: &self.memtable,
        };
        let ops: Result<Vec<WalOp>> = match &mutation {
            Mutation::Delete(Selector::Ids(ids)) => Ok(ids.iter().cloned().map(WalOp::Delete).collect()),
            Mutation::Delete(Selector::Filter(filter)) => {
                state.matching_ids(filter).await.map(|ids| ids.into_iter().map(WalOp::Delete).collect())
            }
            Mutation::Update { selector, patch } => {
                state.selected_rows(selector, self.config.max_batch_rows).await.map(|rows| {
                    rows.into_iter()
                        .map(|mut row| {
                            mutate::apply_patch(&mut row, patch);
                            WalOp::Upsert(row)
                        })
                        .collect()
                })
            }
        };
        let ops: Vec<WalOp> = match ops {
            Ok(ops) if ops.is_empty() => {
                let _ = reply.send(Ok(0));
                return true;
            }
            Ok(ops) => ops,
            Err(e) => {
                let _ = reply.send(Err(e));
                return true;
            }
        };
        let rows = ops.len() as u64;
        let (tx, mut rx) = oneshot::channel();
        let keep_going = self.commit((ops, vec![tx])).await;
        let _ = reply.send(match rx.try_recv() {
            Ok(result) => result.map(|_| rows),
            Err(_) => Err(stopped_error()),
        });
        keep_going
    }

    /// Writes one group commit. Returns false if this writer must stop (fenced).
    async fn commit(&mut self, (ops, replies): (Vec<WalOp>, Vec<oneshot::Sender<Result<u64>>>)) -> bool {
        // A node paused or cut off past its session TTL may have been replaced: it must not
        // append again (create-only puts would fence it anyway; this keeps it from trying).
        if !self.deps.coord.lease_valid(&self.lease) {
            tracing::warn!(shard = %self.paths.root(), "writer lease lost; stepping down");
            for r in replies {
                let _ = r.send(Err(Error::retryable("this node lost the shard's writer lease; retry")));
            }
            return false;
        }
        if let Err(e) = self.resolve_unsure_attempt().await {
            let fenced = wal::is_fenced(&e);
            for r in replies {
                let _ = r.send(Err(Error::retryable(e.to_string())));
            }
            return !fenced;
        }
        // While heads cannot be published, nothing can be acknowledged (decision 0011):
        // refuse before writing, rather than fill the WAL with entries the clients retry.
        if let Some(head) = self.unpublished {
            if let Err(e) = self.deps.coord.publish_head(&self.key, head).await {
                for r in replies {
                    let _ = r.send(Err(keep_privacy(
                        &e,
                        Error::retryable(format!("cannot publish the shard's head ({e}); retry")),
                    )));
                }
                return true;
            }
            self.unpublished = None;
        }
        let entry = WalEntry {
            seq: self.next_seq,
            writer_epoch: self.lease.epoch,
            commit_id: self.deps.rng.next_u64(),
            created_ms: self.deps.clock.now_ms(),
            ops,
        };
        let started = self.deps.clock.now();
        match wal::put_entry(self.deps.store.as_ref(), &self.paths, &entry).await {
            Ok(()) => {
                self.metrics.observe_wal_commit(entry.ops.len(), entry_bytes(&entry), self.deps.clock.elapsed(started));
                self.accept(entry);
                let seq = self.next_seq - 1;
                // Strong reads trust the published head (decision 0004): a write whose head
                // could not be published must not be acknowledged. It is durable, so the
                // client's retry (upserts and deletes are idempotent) is harmless.
                let head = Head { wal_seq: seq, manifest_version: self.manifest.version };
                let published = self.deps.coord.publish_head(&self.key, head).await;
                self.unpublished = published.is_err().then_some(head);
                for r in replies {
                    let _ = r.send(match &published {
                        Ok(()) => Ok(seq),
                        Err(e) => Err(keep_privacy(
                            e,
                            Error::retryable(format!("write stored but not yet visible ({e}); retry")),
                        )),
                    });
                }
                true
            }
            Err(e) => {
                let fenced = wal::is_fenced(&e);
                if fenced {
                    tracing::error!(shard = %self.paths.root(), error = %e, "WAL sequence taken by another writer; stepping down");
                } else {
                    self.unsure_attempt = Some((entry.seq, entry.commit_id));
                    tracing::warn!(shard = %self.paths.root(), error = %e, "WAL append failed");
                }
                for r in replies {
                    let _ = r.send(Err(not_acknowledged(&e)));
                }
                !fenced
            }
        }
    }

    /// After a failed put whose outcome is unknown: if it landed after all, adopt it (its
    /// rows become durable even though the client saw an error; upserts are idempotent).
    async fn resolve_unsure_attempt(&mut self) -> Result<()> {
        let Some((seq, commit_id)) = self.unsure_attempt else { return Ok(()) };
        match wal::read_entry(self.deps.store.as_ref(), &self.paths, seq).await? {
            None => {}
            Some(entry) if entry.commit_id == commit_id => self.accept(entry),
            Some(entry) => {
                return Err(Error::conflict(format!(
                    "WAL sequence {seq} was written by writer epoch {}",
                    entry.writer_epoch
                )));
            }
        }
        self.unsure_attempt = None;
        Ok(())
    }

    fn accept(&mut self, entry: WalEntry) {
        self.next_seq = entry.seq + 1;
        self.stats.head_seq.store(entry.seq, Ordering::Relaxed);
        self.stats.backlog_rows.fetch_add(entry.ops.len() as u64, Ordering::Relaxed);
        self.stats.backlog_bytes.fetch_add(entry_bytes(&entry) as u64, Ordering::Relaxed);
        self.memtable.push_back(Arc::new(entry));
    }
}

/// The error of a write whose WAL append failed: retryable, unless the storage is full
/// (then the client must wait for space, not retry at once).
fn not_acknowledged(cause: &Error) -> Error {
    let message = format!("write not acknowledged: {cause}");
    let error = match cause.kind() {
        strata_types::ErrorKind::StorageFull => Error::storage_full(message),
        _ => Error::retryable(message),
    };
    keep_privacy(cause, error)
}

/// `error`, private if its `cause` was: it repeats the cause's words.
fn keep_privacy(cause: &Error, error: Error) -> Error {
    if cause.is_private() { error.private() } else { error }
}
