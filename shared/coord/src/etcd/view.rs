//! The watched [`ClusterView`]: members, leases, serving records, drains and catalog versions.
//!
//! Flow: list `members/`, `leases/` and `admin/drain/` in one Txn (one consistent revision),
//! publish the view, then watch the three prefixes on one stream from that revision + 1,
//! applying events to a local copy and publishing each change. Any failure — network,
//! stream end, a compacted start revision, a cancelled watch, etcd restarted or wiped —
//! ends the watch and starts over with a fresh list (after a short backoff), so the view
//! always converges to etcd's current contents. `heads/` is deliberately not watched: it
//! changes on every write and readers fetch heads linearizably instead — except
//! `heads/catalog/`, the catalog version of each collection name, which changes only on
//! create and drop and lets roles skip listing the catalog in object storage while it has
//! not changed (decision 0012). While the watch is down the view's `catalog` is `None`,
//! which tells roles to poll object storage instead.
//!
//! Invariant: the published view is always derived from one consistent snapshot plus the
//! ordered events after it; undecodable records are skipped with a warning, never fatal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, Txn, TxnOpResponse, WatchOptions};

use strata_types::time::ClockExt;

use super::Inner;
use super::ops::LeaseValue;
use crate::{ClusterView, Lease, LeaseKind, Member, ServingRecord};
use strata_types::{Error, Result};

/// The watched prefixes, relative to the cluster prefix.
const WATCHED: [&str; 4] = ["members/", "leases/", "admin/drain/", "heads/catalog/"];

/// What the view needs of one key-value: the value, its create revision and its etcd lease.
#[derive(Clone)]
struct Entry {
    value: Vec<u8>,
    create_revision: i64,
    lease: i64,
}

impl Entry {
    fn of(kv: &etcd_client::KeyValue) -> (String, Self) {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        (key, Entry { value: kv.value().to_vec(), create_revision: kv.create_revision(), lease: kv.lease() })
    }
}

/// Runs until the handle is dropped (the task is aborted).
pub(super) async fn watch(inner: Arc<Inner>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match follow(&inner).await {
            Ok(()) => delay = Duration::from_millis(100),
            Err(err) => {
                tracing::debug!(error = %err, "etcd view watch interrupted; re-listing");
                // Catalog changes may now go unseen: roles poll storage until re-listed.
                inner.view.send_if_modified(|current| {
                    if current.catalog.is_none() {
                        return false;
                    }
                    *current = Arc::new(ClusterView { catalog: None, ..ClusterView::clone(current) });
                    true
                });
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        inner.clock.sleep(delay).await;
    }
}

/// One list + watch cycle; returns when the watch must be re-established.
async fn follow(inner: &Inner) -> Result<()> {
    let mut client = inner.client.clone();
    let gets = WATCHED.map(|p| etcd_client::TxnOp::get(inner.key(p), Some(GetOptions::new().with_prefix())));
    let listed = inner.bounded("listing the cluster view", client.txn(Txn::new().and_then(gets))).await?;
    let revision = listed.header().map(|h| h.revision()).unwrap_or_default();
    let mut entries = BTreeMap::new();
    for op in listed.op_responses() {
        if let TxnOpResponse::Get(get) = op {
            entries.extend(get.kvs().iter().map(Entry::of));
        }
    }
    publish(inner, &entries);
    inner.listed.send_replace(true);

    let from = revision + 1;
    let options = || WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream =
        inner.bounded("watching the cluster view", client.watch(inner.key(WATCHED[0]), Some(options()))).await?;
    for prefix in &WATCHED[1..] {
        stream
            .watch(inner.key(prefix), Some(options()))
            .await
            .map_err(|e| super::etcd_error("watching the cluster view", e))?;
    }
    loop {
        let Some(response) = stream.message().await.map_err(|e| super::etcd_error("the cluster view watch", e))? else {
            return Err(Error::retryable("etcd closed the cluster view watch"));
        };
        if response.canceled() || response.compact_revision() > 0 {
            return Err(Error::retryable(format!(
                "etcd cancelled the cluster view watch (compacted at {}): {}",
                response.compact_revision(),
                response.cancel_reason()
            )));
        }
        if response.events().is_empty() {
            continue;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => {
                    let (key, entry) = Entry::of(kv);
                    entries.insert(key, entry);
                }
                EventType::Delete => {
                    entries.remove(String::from_utf8_lossy(kv.key()).as_ref());
                }
            }
        }
        publish(inner, &entries);
    }
}

/// Publishes the view built from `entries` if it differs from the current one.
fn publish(inner: &Inner, entries: &BTreeMap<String, Entry>) {
    let view = build(&inner.prefix, entries);
    inner.view.send_if_modified(|current| {
        if **current == view {
            return false;
        }
        *current = Arc::new(view);
        true
    });
}

fn build(prefix: &str, entries: &BTreeMap<String, Entry>) -> ClusterView {
    let mut view = ClusterView { catalog: Some(BTreeMap::new()), ..ClusterView::default() };
    for (key, entry) in entries {
        let Some(rest) = key.strip_prefix(prefix) else { continue };
        if let Some(name) = rest.strip_prefix("heads/catalog/").and_then(|r| r.strip_suffix("/wal")) {
            match std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(version) => _ = view.catalog.get_or_insert_default().insert(name.to_owned(), version),
                None => tracing::warn!(key = %key, "skipping an undecodable catalog version"),
            }
            continue;
        }
        let decoded = if rest.starts_with("members/") {
            serde_json::from_slice::<Member>(&entry.value).map(|m| view.members.push(m))
        } else if rest.starts_with("leases/serve/") {
            serde_json::from_slice::<ServingRecord>(&entry.value).map(|r| view.serving.push(r))
        } else if let Some(node) = rest.strip_prefix("admin/drain/") {
            view.drains.insert(node.to_owned());
            Ok(())
        } else if let Some((kind, lease_key)) = lease_kind(rest) {
            serde_json::from_slice::<LeaseValue>(&entry.value).map(|v| {
                view.leases.push(Lease {
                    kind,
                    key: lease_key.to_owned(),
                    holder: v.holder,
                    epoch: entry.create_revision.unsigned_abs(),
                    session: entry.lease.unsigned_abs(),
                })
            })
        } else {
            Ok(())
        };
        if let Err(err) = decoded {
            tracing::warn!(key = %key, error = %err, "skipping an undecodable coordination record");
        }
    }
    view
}

/// Splits `leases/{kind}/{key}` for writer and compaction leases.
fn lease_kind(rest: &str) -> Option<(LeaseKind, &str)> {
    [LeaseKind::Writer, LeaseKind::Compact]
        .into_iter()
        .find_map(|kind| Some((kind, rest.strip_prefix("leases/")?.strip_prefix(kind.as_str())?.strip_prefix('/')?)))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_view_is_built_from_records_under_the_prefix_only() {
        let entry =
            |value: &str, create_revision| Entry { value: value.as_bytes().to_vec(), create_revision, lease: 7 };
        let member = r#"{"node_id":"q1","role":"query","http_url":"h","grpc_url":"g","started_ms":1}"#;
        let serving = r#"{"collection_id":"c","shard":2,"node_id":"q1","state":"serving"}"#;
        let entries = BTreeMap::from([
            ("/strata/x/members/query/q1".to_owned(), entry(member, 3)),
            ("/strata/x/leases/writer/c/2".to_owned(), entry(r#"{"holder":"i1"}"#, 42)),
            ("/strata/x/leases/compact/c/2".to_owned(), entry(r#"{"holder":"k1"}"#, 43)),
            ("/strata/x/leases/serve/c/2/q1".to_owned(), entry(serving, 44)),
            ("/strata/x/admin/drain/q9".to_owned(), entry("1", 45)),
            ("/strata/x/leases/writer/c/3".to_owned(), entry("not json", 46)),
            ("/strata/y/members/query/q2".to_owned(), entry(member, 47)),
            ("/strata/x/heads/catalog/docs/wal".to_owned(), entry("3", 48)),
            ("/strata/x/heads/catalog/bad/wal".to_owned(), entry("x", 49)),
        ]);
        let view = build("/strata/x/", &entries);
        assert_eq!(view.members.len(), 1);
        let writer = view.lease(LeaseKind::Writer, "c/2").expect("writer lease");
        assert_eq!((writer.holder.as_str(), writer.epoch, writer.session), ("i1", 42, 7));
        assert_eq!(view.lease(LeaseKind::Compact, "c/2").map(|l| l.epoch), Some(43));
        assert_eq!(view.leases.len(), 2, "the undecodable lease is skipped");
        assert_eq!(view.serving_of("c", 2).count(), 1);
        assert!(view.drains.contains("q9"));
        assert_eq!(view.catalog, Some(BTreeMap::from([("docs".to_owned(), 3)])), "catalog versions; bad one skipped");
    }
}
