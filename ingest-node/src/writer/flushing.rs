//! The shard writer's flushes: when one starts (backlog rows, bytes or age, or a waiter),
//! running it off the actor, and what its end changes (memtable trimmed, head published,
//! waiters answered). At most one flush runs per shard: `Actor::ids` is taken while it
//! runs, so manifests advance `flushed_seq` in order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_coord::Head;
use strata_storage::manifest::Manifest;
use strata_storage::wal::WalEntry;
use strata_types::time::ClockExt;
use strata_types::{Error, ErrorKind, Result};
use tokio::sync::mpsc;

use super::{Actor, FlushResult, entry_bytes};
use crate::flush;

impl Actor {
    pub(super) fn maybe_start_flush(&mut self, done_tx: &mpsc::Sender<FlushResult>) {
        let Some(oldest) = self.memtable.front() else { return };
        if self.ids.is_none() {
            return; // a flush is running
        }
        let rows = self.stats.backlog_rows.load(Ordering::Relaxed) as usize;
        let bytes = self.stats.backlog_bytes.load(Ordering::Relaxed) as usize;
        let age = self.deps.clock.now_ms().saturating_sub(oldest.created_ms);
        let wanted = !self.flush_waiters.is_empty()
            || rows >= self.config.flush_rows
            || bytes >= self.config.flush_bytes
            || age >= self.config.flush_age_ms;
        if !wanted {
            return;
        }
        let entries: Vec<Arc<WalEntry>> = self.memtable.iter().cloned().collect();
        let mut ids = self.ids.take().expect("checked above");
        let (deps, def, paths, config) = (self.deps.clone(), self.def.clone(), self.paths.clone(), self.config.clone());
        let metrics = self.metrics.clone();
        let (epoch, hint, done_tx) = (self.lease.epoch, self.manifest.version, done_tx.clone());
        let task = tokio::spawn(async move {
            let started = deps.clock.now();
            let ops: usize = entries.iter().map(|e| e.ops.len()).sum();
            let target = flush::FlushTarget {
                deps: &deps,
                def: &def,
                shard: &paths,
                epoch,
                graph_min_rows: config.graph_min_rows,
                commit_max_age_ms: config.flush_commit_max_age_ms,
            };
            let result = flush::flush(target, entries, &mut ids, hint).await;
            if result.is_ok() {
                metrics.flush_seconds.observe(deps.clock.elapsed(started).as_secs_f64());
                metrics.flush_rows.inc_by(ops as u64);
            }
            let _ = done_tx.send((result, ids)).await;
        });
        self.flush_task = Some(task.abort_handle());
    }

    pub(super) async fn flush_finished(&mut self, result: Result<Manifest>) {
        match result {
            Ok(m) => {
                while self.memtable.front().is_some_and(|e| e.seq <= m.flushed_seq) {
                    let e = self.memtable.pop_front().expect("checked");
                    self.stats.backlog_rows.fetch_sub(e.ops.len() as u64, Ordering::Relaxed);
                    self.stats.backlog_bytes.fetch_sub(entry_bytes(&e) as u64, Ordering::Relaxed);
                }
                self.stats.flushed_seq.store(m.flushed_seq, Ordering::Relaxed);
                self.stats.manifest_version.store(m.version, Ordering::Relaxed);
                let head = Head { wal_seq: self.next_seq - 1, manifest_version: m.version };
                self.manifest = m;
                // Published before flush waiters are answered, so a strong read after a
                // flush returns installs the new segments rather than trusting an older head.
                if let Err(e) = self.deps.coord.publish_head(&self.key, head).await {
                    tracing::warn!(shard = %self.paths.root(), error = %e, "could not publish the flushed head");
                }
            }
            Err(e) => {
                tracing::warn!(shard = %self.paths.root(), error = %e, "flush failed; will retry");
                let kind = e.kind();
                for (_, w) in self.flush_waiters.drain(..) {
                    let _ = w.send(Err(Error::new(
                        if kind == ErrorKind::Internal { ErrorKind::Internal } else { ErrorKind::Retryable },
                        format!("flush failed: {e}"),
                    )));
                }
            }
        }
    }

    pub(super) fn answer_flush_waiters(&mut self) {
        let flushed = self.manifest.flushed_seq;
        // A waiter may name the sequence of a group commit that then failed; nothing past
        // the last acknowledged sequence exists, so that is all it can wait for.
        let acknowledged = self.next_seq - 1;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.flush_waiters.drain(..).partition(|(seq, _)| (*seq).min(acknowledged) <= flushed);
        self.flush_waiters = waiting;
        for (_, w) in ready {
            let _ = w.send(Ok(()));
        }
    }
}
