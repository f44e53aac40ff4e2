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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_coord::{Head, HeadHints, Unavailable};
use strata_storage::attr_types::AttrTypes;
use strata_storage::catalog::{self, CatalogState};
use strata_types::filter::Filter;
use strata_types::{CollectionDef, Error, Result};

use crate::Deps;

/// A cache of resolved collections. Cheap to share.
#[derive(Default)]
pub struct Resolver {
    names: Mutex<HashMap<String, (u64, Arc<CollectionDef>)>>,
    ids: Mutex<HashMap<String, Arc<CollectionDef>>>,
    /// Attribute types per incarnation id.
    types: Mutex<HashMap<String, Arc<AttrTypes>>>,
    /// Bounded reads of the published catalog versions.
    hints: HeadHints,
}

impl Resolver {
    /// The active collection called `name`, or `NotFound`.
    pub async fn resolve(&self, deps: &Deps, name: &str) -> Result<Arc<CollectionDef>> {
        let key = strata_coord::catalog_key(name);
        let published = self.hints.read(deps.coord.as_ref(), deps.clock.as_ref(), &key).await;
        let published = published.map(|head| head.map(|h| h.wal_seq));
        let cached = lock(&self.names).get(name).cloned();
        let store = deps.store.as_ref();
        match (published, &cached) {
            (Ok(Some(published)), Some((version, def))) if *version == published => return Ok(def.clone()),
            (Err(Unavailable), Some((version, def)))
                if catalog::read_entry(store, name, version + 1).await?.is_none() =>
            {
                return Ok(def.clone());
            }
            _ => {}
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
        lock(&self.names).insert(name.to_owned(), (entry.version, def.clone()));
        Ok(def)
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
