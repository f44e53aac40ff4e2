//! The active collections, for the background loops of every role (ingest ownership,
//! query serving, the compactor), without listing object storage while nothing changed.
//!
//! Flow: each loop owns an [`ActiveCollections`] and asks it on every tick. It re-lists the
//! catalog from object storage (the truth) only when
//! - the catalog versions in the cluster view differ from those seen at the last listing
//!   (create and drop publish the name's version before they are acknowledged, decision
//!   0004, and the view watches them: a change is noticed within a watch round trip);
//! - the view carries no catalog versions (the etcd watch is down): then every call lists,
//!   i.e. the loops poll storage at their old cadence (decision 0011: nothing may depend on
//!   etcd being up);
//! - or the fallback interval passed since the last listing (a create whose version
//!   publish was lost, e.g. etcd wiped in between, is noticed within it).
//!
//! A listing is one LIST of `catalog/`; entries and definitions are immutable per
//! (name, version) and per id, so only names whose newest version changed are read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_storage::catalog::{self, CatalogState};
use strata_types::{CollectionDef, Result};

use crate::Deps;

/// How often the catalog is listed from object storage while the cluster view says it did
/// not change, when a role's config does not say otherwise: 60 s.
pub const DEFAULT_CATALOG_POLL_MS: u64 = 60_000;

/// The active collections as of the last listing, and when to list again.
pub struct ActiveCollections {
    fallback: Duration,
    /// The view's catalog versions when the last listing started (`None` before the first,
    /// `Some(None)` if the view had none then).
    seen: Option<Option<BTreeMap<String, u64>>>,
    listed_at: Option<Instant>,
    /// Per name: the newest version listed and, when active, its definition.
    known: BTreeMap<String, (u64, Option<Arc<CollectionDef>>)>,
}

impl ActiveCollections {
    /// `fallback`: the slow storage poll while the view reports no change.
    pub fn new(fallback: Duration) -> ActiveCollections {
        ActiveCollections { fallback, seen: None, listed_at: None, known: BTreeMap::new() }
    }

    /// Whether the next [`ActiveCollections::get`] lists object storage.
    fn stale(&self, deps: &Deps, versions: &Option<BTreeMap<String, u64>>) -> bool {
        let due = self.listed_at.is_none_or(|at| deps.clock.now().saturating_duration_since(at) >= self.fallback);
        versions.is_none() || self.seen.as_ref() != Some(versions) || due
    }

    /// Definitions of every active collection, sorted by name (see the module docs for
    /// when this reads object storage).
    pub async fn get(&mut self, deps: &Deps) -> Result<Vec<Arc<CollectionDef>>> {
        let versions = deps.coord.view().borrow().catalog.clone();
        if self.stale(deps, &versions) {
            self.list(deps).await?;
            self.seen = Some(versions);
        }
        Ok(self.known.values().filter_map(|(_, def)| def.clone()).collect())
    }

    /// Forgets the last listing, so the next call lists (an explicit request to act now).
    pub fn invalidate(&mut self) {
        self.seen = None;
    }

    async fn list(&mut self, deps: &Deps) -> Result<()> {
        let store = deps.store.as_ref();
        let started = deps.clock.now();
        let newest = catalog::newest_versions(store).await?;
        let mut known = BTreeMap::new();
        for (name, version) in newest {
            let entry = match self.known.remove(&name) {
                Some(same) if same.0 == version => same,
                _ => {
                    let def = match catalog::read_entry(store, &name, version).await? {
                        Some(e) if e.state == CatalogState::Active => {
                            Some(Arc::new(catalog::read_definition(store, &e.collection_id).await?))
                        }
                        _ => None,
                    };
                    (version, def)
                }
            };
            known.insert(name, entry);
        }
        self.known = known;
        self.listed_at = Some(started);
        Ok(())
    }
}
