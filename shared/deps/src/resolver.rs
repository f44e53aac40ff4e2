//! Collection names → definitions, cached, for every role that takes names from clients.
//!
//! Create and drop publish the name's newest catalog version as a coordination head before
//! they are acknowledged (decision 0004), so a cached definition is reused exactly while
//! the published version still equals the version it was resolved at; otherwise the name
//! is resolved from the catalog in object storage (the truth) and the version found is
//! published again, so the next call is cheap even after coordination state was lost.
//! Definitions are immutable per incarnation id, so lookups by id are cached for good.
//!
//! When coordination cannot tell the published version (etcd down or stalled: heads are
//! read through [`HeadHints`], decision 0011), a cached definition at version `v` is
//! confirmed by finding no catalog entry `v + 1` in object storage (one GET); anything else
//! resolves from the catalog as usual. Publishing the version found is then skipped: it is
//! an optimisation for later calls, never needed for an answer.
//!
//! Relaxed reads (decision 0015, [`Resolver::resolve_for`]): an `eventual` read takes a
//! cached definition unless the watched cluster view (decision 0012: it carries the
//! published catalog versions) names another version for the name, so it asks neither
//! coordination nor storage; a `max_staleness_ms` read takes one that was confirmed at most
//! that long ago. Anything else resolves as above.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_coord::{Head, HeadHints, Unavailable};
use strata_storage::attr_types::AttrTypes;
use strata_storage::catalog::{self, CatalogState};
use strata_types::filter::Filter;
use strata_types::time::ClockExt;
use strata_types::{CollectionDef, Consistency, Error, Result};

use crate::Deps;

/// A cache of resolved collections. Cheap to share.
#[derive(Default)]
pub struct Resolver {
    names: Mutex<HashMap<String, Resolved>>,
    ids: Mutex<HashMap<String, Arc<CollectionDef>>>,
    /// Attribute types per incarnation id.
    types: Mutex<HashMap<String, Arc<AttrTypes>>>,
    /// Bounded reads of the published catalog versions.
    hints: HeadHints,
}

/// A name resolved at catalog `version`, and when a check that found it current started.
#[derive(Clone)]
struct Resolved {
    version: u64,
    def: Arc<CollectionDef>,
    confirmed: Instant,
}

impl Resolver {
    /// The active collection called `name`, as fresh as `consistency` asks (see the module
    /// docs): `Strong` is [`Resolver::resolve`].
    pub async fn resolve_for(&self, deps: &Deps, name: &str, consistency: Consistency) -> Result<Arc<CollectionDef>> {
        if let Some(cached) = lock(&self.names).get(name).cloned() {
            let fresh_enough = match consistency {
                Consistency::Strong => false,
                Consistency::Eventual => {
                    let view = deps.coord.view();
                    let view = view.borrow();
                    let published = view.catalog.as_ref().and_then(|versions| versions.get(name));
                    published.is_none_or(|v| *v == cached.version)
                }
                Consistency::MaxStaleness { ms } => deps.clock.elapsed(cached.confirmed) <= Duration::from_millis(ms),
            };
            if fresh_enough {
                return Ok(cached.def);
            }
        }
        self.resolve(deps, name).await
    }

    /// The active collection called `name`, or `NotFound`.
    pub async fn resolve(&self, deps: &Deps, name: &str) -> Result<Arc<CollectionDef>> {
        let started = deps.clock.now();
        let key = strata_coord::catalog_key(name);
        let published = self.hints.read(deps.coord.as_ref(), deps.clock.as_ref(), &key).await;
        let published = published.map(|head| head.map(|h| h.wal_seq));
        let cached = lock(&self.names).get(name).cloned();
        let store = deps.store.as_ref();
        let current = match (published, &cached) {
            (Ok(Some(published)), Some(c)) => c.version == published,
            (Err(Unavailable), Some(c)) => catalog::read_entry(store, name, c.version + 1).await?.is_none(),
            _ => false,
        };
        if let Some(cached) = cached.filter(|_| current) {
            self.confirm(name, cached.version, started);
            return Ok(cached.def);
        }
        let not_found = || Error::not_found(format!("collection {name:?} does not exist"));
        catalog::validate_name(name).map_err(|_| not_found())?;
        let entry = catalog::newest_entry(store, name).await?.ok_or_else(not_found)?;
        if let Ok(published) = published
            && published.is_none_or(|p| p < entry.version)
        {
            // Best effort: create and drop publish before they are acknowledged, so a head
            // left behind here is never older than an acknowledged change; it only makes
            // later calls take this slower path.
            let head = Head { wal_seq: entry.version, manifest_version: 0 };
            if let Err(e) = deps.coord.publish_head(&key, head).await {
                tracing::debug!(error = %e, name, "could not republish a catalog version");
            }
        }
        if entry.state != CatalogState::Active {
            lock(&self.names).remove(name);
            return Err(not_found());
        }
        let def = self.by_id(deps, &entry.collection_id).await?;
        lock(&self.names)
            .insert(name.to_owned(), Resolved { version: entry.version, def: def.clone(), confirmed: started });
        Ok(def)
    }

    /// Records that `name` was found current at `version` by a check that started at `at`.
    fn confirm(&self, name: &str, version: u64, at: Instant) {
        if let Some(r) = lock(&self.names).get_mut(name)
            && r.version == version
            && r.confirmed < at
        {
            r.confirmed = at;
        }
    }

    /// The definition of incarnation `collection_id` (active or not).
    pub async fn by_id(&self, deps: &Deps, collection_id: &str) -> Result<Arc<CollectionDef>> {
        if let Some(def) = lock(&self.ids).get(collection_id) {
            return Ok(def.clone());
        }
        let def = Arc::new(catalog::read_definition(deps.store.as_ref(), collection_id).await?);
        lock(&self.ids).insert(collection_id.to_owned(), def.clone());
        Ok(def)
    }
}

impl Resolver {
    /// Parses and type-checks a request's filter against the collection's attribute
    /// types (listed again, at most once a second, when the filter names a key this node
    /// has not seen). `None` for no filter or one that matches every row (`{}`).
    pub async fn filter(
        &self,
        deps: &Deps,
        def: &CollectionDef,
        filter: Option<&serde_json::Value>,
    ) -> Result<Option<Arc<Filter>>> {
        let Some(value) = filter else { return Ok(None) };
        let filter = Filter::parse(value)?;
        if filter.matches_everything() {
            return Ok(None);
        }
        let types = self.attr_types(deps, def);
        let keys: Vec<&str> = filter.keys().into_iter().collect();
        types.learn_keys(&keys, deps.clock.now()).await?;
        filter.check_types(&|key| types.get(key))?;
        Ok(Some(Arc::new(filter)))
    }

    /// The attribute types of a collection incarnation, as this node knows them.
    pub fn attr_types(&self, deps: &Deps, def: &CollectionDef) -> Arc<AttrTypes> {
        lock(&self.types)
            .entry(def.id.clone())
            .or_insert_with(|| Arc::new(AttrTypes::new(deps.store.clone(), def)))
            .clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
