//! The standalone coordinator: everything in one mutex, one session that never ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::{ClusterView, Coordination, Head, Lease, LeaseKind, Member, Role, ServingRecord};
use strata_types::Result;

/// The standalone, in-process implementation of [`Coordination`].
pub struct InProcess {
    state: Mutex<State>,
    view: watch::Sender<Arc<ClusterView>>,
}

#[derive(Default)]
struct State {
    leases: BTreeMap<(LeaseKind, String), Lease>,
    next_epoch: u64,
    heads: HashMap<String, Head>,
    members: BTreeMap<(Role, String), Member>,
    serving: BTreeMap<(String, u32, String), ServingRecord>,
    drains: std::collections::BTreeSet<String>,
}

impl State {
    fn view(&self) -> ClusterView {
        ClusterView {
            members: self.members.values().cloned().collect(),
            leases: self.leases.values().cloned().collect(),
            serving: self.serving.values().cloned().collect(),
            drains: self.drains.clone(),
            catalog: Some(
                self.heads
                    .iter()
                    .filter_map(|(key, head)| Some((key.strip_prefix(CATALOG_PREFIX)?.to_owned(), head.wal_seq)))
                    .collect(),
            ),
        }
    }
}

/// [`crate::catalog_key`]'s prefix: heads under it are catalog versions, part of the view.
const CATALOG_PREFIX: &str = "catalog/";

impl Default for InProcess {
    fn default() -> Self {
        let view = ClusterView { catalog: Some(BTreeMap::new()), ..ClusterView::default() };
        Self { state: Mutex::default(), view: watch::channel(Arc::new(view)).0 }
    }
}

impl InProcess {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` and publishes the new view if it differs.
    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.lock();
        let out = change(&mut state);
        let view = state.view();
        drop(state);
        self.view.send_if_modified(|current| {
            if **current == view {
                return false;
            }
            *current = Arc::new(view);
            true
        });
        out
    }
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(value))
}

impl Coordination for InProcess {
    fn try_acquire(&self, kind: LeaseKind, key: &str, holder: &str) -> BoxFuture<'_, Result<Option<Lease>>> {
        let result = self.update(|state| {
            let slot = (kind, key.to_owned());
            match state.leases.get(&slot) {
                Some(lease) if lease.holder == holder => Some(lease.clone()),
                Some(_) => None,
                None => {
                    state.next_epoch += 1;
                    let lease = Lease {
                        kind,
                        key: key.to_owned(),
                        holder: holder.to_owned(),
                        epoch: state.next_epoch,
                        session: 0,
                    };
                    state.leases.insert(slot, lease.clone());
                    Some(lease)
                }
            }
        });
        ready(Ok(result))
    }

    fn release(&self, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        self.update(|state| {
            let slot = (lease.kind, lease.key.clone());
            if state.leases.get(&slot).is_some_and(|l| l.holder == lease.holder && l.epoch == lease.epoch) {
                state.leases.remove(&slot);
            }
        });
        ready(Ok(()))
    }

    fn lease_valid(&self, lease: &Lease) -> bool {
        self.lock().leases.get(&(lease.kind, lease.key.clone())).is_some_and(|l| l == lease)
    }

    fn publish_head(&self, shard_key: &str, head: Head) -> BoxFuture<'_, Result<()>> {
        // Through `update`: catalog versions are part of the view (shard heads are not, so
        // publishing those changes nothing watchers see).
        self.update(|state| {
            let entry = state.heads.entry(shard_key.to_owned()).or_default();
            entry.wal_seq = entry.wal_seq.max(head.wal_seq);
            entry.manifest_version = entry.manifest_version.max(head.manifest_version);
        });
        ready(Ok(()))
    }

    fn head(&self, shard_key: &str) -> BoxFuture<'_, Result<Option<Head>>> {
        ready(Ok(self.lock().heads.get(shard_key).copied()))
    }

    fn register(&self, member: Member) -> BoxFuture<'_, Result<()>> {
        self.update(|state| state.members.insert((member.role, member.node_id.clone()), member));
        ready(Ok(()))
    }

    fn deregister(&self, node_id: &str) -> BoxFuture<'_, Result<()>> {
        self.update(|state| state.members.retain(|(_, node), _| node != node_id));
        ready(Ok(()))
    }

    fn set_serving(&self, record: ServingRecord) -> BoxFuture<'_, Result<()>> {
        self.update(|state| {
            let slot = (record.collection_id.clone(), record.shard, record.node_id.clone());
            state.serving.insert(slot, record)
        });
        ready(Ok(()))
    }

    fn clear_serving(&self, collection_id: &str, shard: u32, node_id: &str) -> BoxFuture<'_, Result<()>> {
        self.update(|state| state.serving.remove(&(collection_id.to_owned(), shard, node_id.to_owned())));
        ready(Ok(()))
    }

    fn set_drain(&self, node_id: &str, draining: bool) -> BoxFuture<'_, Result<()>> {
        self.update(
            |state| {
                if draining { state.drains.insert(node_id.to_owned()) } else { state.drains.remove(node_id) }
            },
        );
        ready(Ok(()))
    }

    fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.subscribe()
    }
}
