//! The catalog: which collection names exist, and which incarnation (collection id) each
//! name points at. Each name has a create-only chain `catalog/{name}/{version:020}`; the
//! newest entry says `active` (with the id) or `dropped`.
//!
//! Create writes the definition `collections/{id}/definition` first, then the next catalog
//! entry; a crash in between leaves only an unreferenced definition, which garbage
//! collection removes. Two concurrent creates of one name race on the same catalog version
//! and exactly one wins. Drop appends a `dropped` entry; the incarnation's objects are
//! garbage-collected later, and a new create of the name gets a fresh id, so old and new
//! data never mix.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::paths;
use strata_types::filter::AttrType;
use strata_types::{CollectionDef, HnswParams, MAX_DIMENSION, MAX_SHARDS, Metric};

/// Attribute types a collection may declare at creation.
const MAX_DECLARED_ATTRIBUTES: usize = 1024;
use strata_types::{Error, ErrorKind, Result};

/// One entry of a name's catalog chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub version: u64,
    pub collection_id: String,
    pub state: CatalogState,
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogState {
    Active,
    Dropped,
}

/// What a client asks for when creating a collection.
#[derive(Clone, Debug)]
pub struct NewCollection {
    pub name: String,
    pub dimension: u32,
    pub metric: Metric,
    pub shards: u32,
    pub replication: u32,
    pub hnsw: HnswParams,
    /// Declared attribute types.
    pub attributes: BTreeMap<String, AttrType>,
}

/// Collection names: 1–64 characters of `[A-Za-z0-9_-]`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "collection name {name:?} must be 1-64 characters of letters, digits, '_' or '-', starting with a letter or digit"
        )))
    }
}

impl NewCollection {
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.dimension == 0 || self.dimension > MAX_DIMENSION {
            return Err(Error::invalid(format!("dimension must be in 1..={MAX_DIMENSION}, got {}", self.dimension)));
        }
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(Error::invalid(format!("shards must be in 1..={MAX_SHARDS}, got {}", self.shards)));
        }
        if self.replication == 0 || self.replication > 8 {
            return Err(Error::invalid(format!("replication must be in 1..=8, got {}", self.replication)));
        }
        if self.attributes.len() > MAX_DECLARED_ATTRIBUTES {
            return Err(Error::invalid(format!("at most {MAX_DECLARED_ATTRIBUTES} attributes may be declared")));
        }
        for key in self.attributes.keys() {
            strata_types::validate_attribute_key(key)?;
        }
        self.hnsw.validate()
    }
}

/// The newest entry of a name's catalog chain, active or dropped (one listing, one read).
pub async fn newest_entry(store: &dyn ObjectStore, name: &str) -> Result<Option<CatalogEntry>> {
    let dir = paths::catalog_dir(name);
    let metas: Vec<_> =
        store.list(Some(&dir)).try_collect().await.map_err(|e| crate::storage_error(dir.as_ref(), e))?;
    let Some(version) = metas.iter().filter_map(|m| paths::parse_num(&m.location)).max() else {
        return Ok(None);
    };
    read_entry(store, name, version).await
}

/// Catalog entry `version` of `name`, if it exists (one GET). Versions of a name are
/// consecutive, so "no entry `v + 1`" means entry `v` is the newest.
pub async fn read_entry(store: &dyn ObjectStore, name: &str, version: u64) -> Result<Option<CatalogEntry>> {
    let path = paths::catalog_entry(name, version);
    match store.get(&path).await {
        Ok(r) => {
            let bytes = r.bytes().await.map_err(|e| crate::storage_error(path.as_ref(), e))?;
            Ok(Some(serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path.as_ref(), e))?))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(crate::storage_error(path.as_ref(), e)),
    }
}

async fn put_create(store: &dyn ObjectStore, path: &object_store::path::Path, bytes: Vec<u8>) -> Result<()> {
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    store
        .put_opts(path, PutPayload::from(bytes), opts)
        .await
        .map(|_| ())
        .map_err(|e| crate::storage_error(path.as_ref(), e))
}

/// Reads a collection incarnation's definition.
pub async fn read_definition(store: &dyn ObjectStore, collection_id: &str) -> Result<CollectionDef> {
    let path = paths::definition(collection_id);
    let r = store.get(&path).await.map_err(|e| crate::storage_error(path.as_ref(), e))?;
    let bytes = r.bytes().await.map_err(|e| crate::storage_error(path.as_ref(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path.as_ref(), e))
}

/// Creates a collection. `Conflict` if the name is already active (or a concurrent create
/// won). The incarnation id is the name, `now_ms` and a random `nonce`, so dropping and
/// re-creating a name never reuses an id.
pub async fn create(store: &dyn ObjectStore, new: &NewCollection, now_ms: u64, nonce: u32) -> Result<CollectionDef> {
    new.validate()?;
    let newest = newest_entry(store, &new.name).await?;
    if newest.as_ref().is_some_and(|e| e.state == CatalogState::Active) {
        return Err(Error::conflict(format!("collection {:?} already exists", new.name)));
    }
    let version = newest.map_or(1, |e| e.version + 1);
    let id = format!("{}-{:012x}{nonce:08x}", new.name, now_ms);
    let def = CollectionDef {
        id: id.clone(),
        name: new.name.clone(),
        dimension: new.dimension,
        metric: new.metric,
        shards: new.shards,
        replication: new.replication,
        hnsw: new.hnsw,
        created_at_ms: now_ms,
        attributes: new.attributes.clone(),
    };
    put_create(store, &paths::definition(&id), serde_json::to_vec(&def).expect("serialisable")).await?;
    let entry = CatalogEntry { version, collection_id: id, state: CatalogState::Active, at_ms: now_ms };
    put_create(store, &paths::catalog_entry(&new.name, version), serde_json::to_vec(&entry).expect("serialisable"))
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => Error::conflict(format!("collection {:?} was created concurrently", new.name)),
            _ => e,
        })?;
    Ok(def)
}

/// Resolves an active collection name to its incarnation id; `NotFound` otherwise. One
/// listing plus one read: callers that cache definitions (which are immutable per id)
/// need nothing more per request.
pub async fn resolve_id(store: &dyn ObjectStore, name: &str) -> Result<String> {
    validate_name(name).map_err(|_| Error::not_found(format!("collection {name:?} does not exist")))?;
    match newest_entry(store, name).await? {
        Some(e) if e.state == CatalogState::Active => Ok(e.collection_id),
        _ => Err(Error::not_found(format!("collection {name:?} does not exist"))),
    }
}

/// Resolves an active collection name to its definition; `NotFound` otherwise.
pub async fn resolve(store: &dyn ObjectStore, name: &str) -> Result<CollectionDef> {
    let id = resolve_id(store, name).await?;
    read_definition(store, &id).await
}

/// Drops a collection; returns the dropped incarnation's definition.
pub async fn drop_collection(store: &dyn ObjectStore, name: &str, now_ms: u64) -> Result<CollectionDef> {
    let def = resolve(store, name).await?;
    let newest = newest_entry(store, name)
        .await?
        .ok_or_else(|| Error::not_found(format!("collection {name:?} does not exist")))?;
    let entry = CatalogEntry {
        version: newest.version + 1,
        collection_id: def.id.clone(),
        state: CatalogState::Dropped,
        at_ms: now_ms,
    };
    put_create(store, &paths::catalog_entry(name, entry.version), serde_json::to_vec(&entry).expect("serialisable"))
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => Error::conflict(format!("collection {name:?} changed concurrently; retry")),
            _ => e,
        })?;
    Ok(def)
}

/// The newest catalog version of every name (one listing, no reads).
pub async fn newest_versions(store: &dyn ObjectStore) -> Result<BTreeMap<String, u64>> {
    let root = paths::catalog_root();
    let metas: Vec<_> =
        store.list(Some(&root)).try_collect().await.map_err(|e| crate::storage_error(root.as_ref(), e))?;
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for m in &metas {
        let parts: Vec<_> = m.location.parts().collect();
        if let (Some(name), Some(version)) = (parts.get(1), paths::parse_num(&m.location)) {
            let slot = newest.entry(name.as_ref().to_owned()).or_default();
            *slot = (*slot).max(version);
        }
    }
    Ok(newest)
}

/// The newest catalog entry of every name, active or dropped, sorted by name.
pub async fn list_entries(store: &dyn ObjectStore) -> Result<BTreeMap<String, CatalogEntry>> {
    let mut out = BTreeMap::new();
    for (name, version) in newest_versions(store).await? {
        if let Some(entry) = read_entry(store, &name, version).await? {
            out.insert(name, entry);
        }
    }
    Ok(out)
}

/// Definitions of every active collection, sorted by name.
pub async fn list_active(store: &dyn ObjectStore) -> Result<Vec<CollectionDef>> {
    let mut out = Vec::new();
    for entry in list_entries(store).await?.into_values() {
        if entry.state == CatalogState::Active {
            out.push(read_definition(store, &entry.collection_id).await?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn new(name: &str) -> NewCollection {
        NewCollection {
            name: name.into(),
            dimension: 4,
            metric: Metric::L2,
            shards: 2,
            replication: 1,
            hnsw: HnswParams::default(),
            attributes: Default::default(),
        }
    }

    #[tokio::test]
    async fn create_drop_recreate_gives_a_fresh_incarnation() {
        let store = InMemory::new();
        let a = create(&store, &new("docs"), 1, 1).await.unwrap();
        assert_eq!(create(&store, &new("docs"), 2, 2).await.unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(resolve(&store, "docs").await.unwrap(), a);
        drop_collection(&store, "docs", 3).await.unwrap();
        assert_eq!(resolve(&store, "docs").await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(drop_collection(&store, "docs", 3).await.unwrap_err().kind(), ErrorKind::NotFound);
        let b = create(&store, &new("docs"), 4, 4).await.unwrap();
        assert_ne!(a.id, b.id);
        create(&store, &new("other"), 5, 5).await.unwrap();
        let names: Vec<_> = list_active(&store).await.unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["docs", "other"]);
    }

    #[tokio::test]
    async fn bad_definitions_are_refused_before_anything_is_written() {
        let store = InMemory::new();
        for bad in [
            NewCollection { dimension: 0, ..new("a") },
            NewCollection { shards: 0, ..new("a") },
            NewCollection { name: "no/slash".into(), ..new("a") },
            NewCollection { hnsw: HnswParams { m: 1000, ..HnswParams::default() }, ..new("a") },
        ] {
            assert_eq!(create(&store, &bad, 1, 1).await.unwrap_err().kind(), ErrorKind::Invalid);
        }
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert!(listed.is_empty());
    }
}
