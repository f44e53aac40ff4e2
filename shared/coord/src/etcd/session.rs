//! The session: one etcd lease with a TTL, kept alive in the background, and everything
//! this process binds to it.
//!
//! Flow: [`keep`] runs forever. It sends a keep-alive every TTL/3 and, on each answer,
//! moves the local deadline to *send time + TTL* (the earliest moment etcd may expire the
//! lease). When etcd reports the lease gone (TTL 0: revoked, expired, or etcd lost its
//! data) or the local deadline passes without an answer, it opens a new session: the old
//! one is marked dead locally first, revoked (best effort, so what it held frees at once),
//! a new lease is granted (retrying with backoff while etcd is unreachable), and this
//! process's registered members and serving records are put again under the new lease.
//! Leases are not re-acquired: the roles notice [`SessionState::lease_valid`] turn false
//! and acquire again.
//!
//! Invariants: the deadline is measured on the monotonic clock, so a process resumed after
//! SIGSTOP sees it passed without asking etcd; a session whose deadline passed is never
//! revived, even if etcd still answers for its lease.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions, Txn, TxnOp};

use super::{Inner, etcd_error};
use crate::{Lease, LeaseKind, Member, Role, ServingRecord};
use strata_types::time::{self, Clock, ClockExt};
use strata_types::{Error, Result};

/// The current session as this process sees it.
pub(super) struct SessionState {
    /// The etcd lease id; also the [`Lease::session`] of leases acquired under it.
    pub(super) id: i64,
    /// When etcd may have expired the lease at the earliest.
    deadline: Instant,
    /// Leases given back in this session, `(kind, key, epoch)`: invalid at once, even
    /// before (or if never) the release reaches etcd.
    released: HashSet<(LeaseKind, String, u64)>,
}

impl SessionState {
    fn new(id: i64, deadline: Instant) -> Self {
        Self { id, deadline, released: HashSet::new() }
    }

    /// Whether the session has not passed its local deadline at `now`.
    pub(super) fn alive(&self, now: Instant) -> bool {
        now < self.deadline
    }

    /// The session id as stored in [`Lease::session`].
    pub(super) fn lease_session(&self) -> u64 {
        self.id.unsigned_abs()
    }

    pub(super) fn lease_valid(&self, lease: &Lease, now: Instant) -> bool {
        lease.session == self.lease_session()
            && self.alive(now)
            && !self.released.contains(&(lease.kind, lease.key.clone(), lease.epoch))
    }

    pub(super) fn mark_released(&mut self, lease: &Lease) {
        self.released.insert((lease.kind, lease.key.clone(), lease.epoch));
    }

    /// A lease we still hold in etcd was handed back to us by `try_acquire`.
    pub(super) fn unmark_released(&mut self, lease: &Lease) {
        self.released.remove(&(lease.kind, lease.key.clone(), lease.epoch));
    }
}

/// This process's session-bound records, put again under every new session.
#[derive(Default)]
pub(super) struct Records {
    pub(super) members: BTreeMap<(Role, String), Member>,
    pub(super) serving: BTreeMap<(String, u32, String), ServingRecord>,
}

impl Records {
    pub(super) fn clear(&mut self) {
        self.members.clear();
        self.serving.clear();
    }
}

/// Grants a new etcd lease of `ttl`.
pub(super) async fn grant(
    client: &Client,
    clock: &dyn Clock,
    ttl: Duration,
    timeout: Duration,
) -> Result<SessionState> {
    let sent = clock.now();
    let ttl_s = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let granted = time::timeout(clock, timeout, client.clone().lease_grant(ttl_s, None))
        .await
        .map_err(|_| Error::retryable(format!("granting an etcd lease: no answer within {timeout:?}")))?
        .map_err(|e| etcd_error("granting an etcd lease", e))?;
    let ttl = Duration::from_secs(granted.ttl().max(0).unsigned_abs());
    Ok(SessionState::new(granted.id(), sent + ttl))
}

/// Doubling delays between retries, capped.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self { next: Duration::from_millis(100).min(max), max }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// Why a keep-alive stream ended.
enum Ended {
    /// The session is over; open a new one.
    Lost(String),
    /// The stream failed but the session may still be alive; try again.
    Broken(Error),
}

/// The session keeper: runs until the handle is dropped (the task is aborted).
pub(super) async fn keep(inner: Arc<Inner>) {
    // Retry a broken stream several times within one TTL before the deadline passes.
    let mut backoff = Backoff::new(inner.ttl / 6);
    loop {
        let id = inner.session().id;
        match keep_alive(&inner, id).await {
            Ended::Lost(why) => {
                tracing::warn!(session = id, "etcd session lost ({why}); opening a new one");
                renew(&inner).await;
                backoff = Backoff::new(inner.ttl / 6);
            }
            Ended::Broken(err) if !inner.alive() => {
                tracing::warn!(session = id, error = %err, "etcd session passed its deadline; opening a new one");
                renew(&inner).await;
                backoff = Backoff::new(inner.ttl / 6);
            }
            Ended::Broken(err) => {
                tracing::debug!(session = id, error = %err, "etcd keep-alive failed; retrying");
                inner.clock.sleep(backoff.next()).await;
            }
        }
    }
}

/// Keeps session `id` alive until it ends or the stream breaks.
async fn keep_alive(inner: &Inner, id: i64) -> Ended {
    let mut client = inner.client.clone();
    let (mut keeper, mut stream) = match inner.bounded("opening an etcd keep-alive", client.lease_keep_alive(id)).await
    {
        Ok(pair) => pair,
        Err(err) => return Ended::Broken(err),
    };
    let interval = inner.ttl / 3;
    loop {
        let sent = inner.clock.now();
        if let Err(err) = keeper.keep_alive().await {
            return Ended::Broken(etcd_error("sending an etcd keep-alive", err));
        }
        match time::timeout(inner.clock.as_ref(), interval, stream.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                let now = inner.clock.now();
                let mut session = inner.session();
                if session.id != id {
                    return Ended::Lost("replaced".to_owned());
                }
                // A session past its deadline stays dead even if etcd still knows the
                // lease: callers were already told their leases are gone.
                if !session.alive(now) {
                    return Ended::Lost("local deadline passed".to_owned());
                }
                session.deadline = sent + Duration::from_secs(answer.ttl().unsigned_abs());
            }
            Ok(Ok(Some(_))) => return Ended::Lost("etcd no longer knows the lease".to_owned()),
            Ok(Ok(None)) => return Ended::Broken(Error::retryable("etcd closed the keep-alive stream")),
            Ok(Err(err)) => return Ended::Broken(etcd_error("etcd keep-alive", err)),
            Err(_) => return Ended::Broken(Error::retryable("etcd keep-alive unanswered")),
        }
        if !inner.alive() {
            return Ended::Lost("local deadline passed".to_owned());
        }
        inner.clock.sleep_until(sent + interval).await;
    }
}

/// Replaces the current session with a new one and re-puts this process's records.
async fn renew(inner: &Inner) {
    let old = {
        let mut session = inner.session();
        // Dead locally before anything else, so lease_valid turns false at once.
        session.deadline = inner.clock.now();
        session.id
    };
    let mut backoff = Backoff::new(Duration::from_secs(5));
    let new = loop {
        match grant(&inner.client, inner.clock.as_ref(), inner.ttl, inner.request_timeout).await {
            Ok(session) => break session,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open an etcd session; retrying");
                inner.clock.sleep(backoff.next()).await;
            }
        }
    };
    let id = new.id;
    *inner.session() = new;
    tracing::info!(session = id, "opened a new etcd session");
    let mut backoff = Backoff::new(inner.ttl / 6);
    loop {
        let records = inner.records.lock().await;
        match inner.put_records(&records, id).await {
            Ok(()) => break,
            Err(err) if inner.alive() => {
                drop(records);
                tracing::warn!(session = id, error = %err, "re-registering under the new session failed; retrying");
                inner.clock.sleep(backoff.next()).await;
            }
            // The keeper notices the dead session and opens yet another one.
            Err(_) => return,
        }
    }
    // Best effort, now that etcd answers again and the records are bound to the new
    // session: frees what the old session still held (its leases in particular) at once
    // rather than after its TTL. Usually it is already gone.
    if let Err(err) = inner.revoke(old).await {
        tracing::debug!(session = old, error = %err, "revoking the old etcd session failed");
    }
}

impl Inner {
    /// Revokes etcd lease `id`, deleting every key bound to it.
    pub(super) async fn revoke(&self, id: i64) -> Result<()> {
        let mut client = self.client.clone();
        self.bounded("revoking an etcd lease", client.lease_revoke(id)).await.map(drop)
    }

    /// Puts every record in `records` under session `id`, in as few Txns as etcd allows.
    pub(super) async fn put_records(&self, records: &Records, id: i64) -> Result<()> {
        let mut ops = Vec::new();
        for member in records.members.values() {
            ops.push(self.member_put(member, id)?);
        }
        for record in records.serving.values() {
            ops.push(self.serving_put(record, id)?);
        }
        // etcd refuses Txns of more than 128 operations by default.
        for chunk in ops.chunks(100) {
            let mut client = self.client.clone();
            self.bounded("re-registering records", client.txn(Txn::new().and_then(chunk.to_vec()))).await?;
        }
        Ok(())
    }

    pub(super) fn member_put(&self, member: &Member, id: i64) -> Result<TxnOp> {
        let key = self.key(&format!("members/{}/{}", member.role.as_str(), member.node_id));
        Ok(TxnOp::put(key, to_json(member)?, Some(PutOptions::new().with_lease(id))))
    }

    pub(super) fn serving_put(&self, record: &ServingRecord, id: i64) -> Result<TxnOp> {
        let key = self.serving_key(&record.collection_id, record.shard, &record.node_id);
        Ok(TxnOp::put(key, to_json(record)?, Some(PutOptions::new().with_lease(id))))
    }

    pub(super) fn serving_key(&self, collection_id: &str, shard: u32, node_id: &str) -> String {
        self.key(&format!("leases/serve/{collection_id}/{shard}/{node_id}"))
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::internal("encoding a coordination record").with_source(e))
}
