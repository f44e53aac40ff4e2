//! Attribute types: each attribute keeps one [`AttrType`] per collection, so filters mean
//! one thing and segment columns stay typed.
//!
//! Storage: one create-only object per attribute, `collections/{id}/attributes/{hex key}`
//! (see `paths::attribute_type`), holding `{"key": …, "type": …}`. Types declared at
//! creation (in the definition) hold from the start; any other attribute takes the type of
//! the first value written: before a write is appended to the WAL, every new key in it is
//! registered with a create-only put, and a writer that loses that race adopts the
//! winner's type (and refuses its row if it conflicts). Types never change, so every node
//! caches the ones it has seen for good; an unknown key costs one GET on the write path,
//! and readers list the types at most once per [`RELIST_AFTER`] when a filter names a key
//! they do not know.
//!
//! A write that conflicts is refused whole (`Error::invalid` naming the row and the
//! attribute) before anything is written. Integers written to a `float` attribute are
//! stored as floats.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_types::filter::AttrType;
use strata_types::{CollectionDef, Error, ErrorKind, Result, Row};

use crate::paths;

/// Readers list the types again for an unknown key at most this often.
pub const RELIST_AFTER: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize)]
struct TypeRecord {
    key: String,
    #[serde(rename = "type")]
    ty: AttrType,
}

/// The attribute types of one collection incarnation, as far as this node knows them.
pub struct AttrTypes {
    store: Arc<dyn ObjectStore>,
    collection_id: String,
    known: RwLock<HashMap<String, AttrType>>,
    listed: Mutex<Option<Instant>>,
}

impl AttrTypes {
    pub fn new(store: Arc<dyn ObjectStore>, def: &CollectionDef) -> Self {
        Self {
            store,
            collection_id: def.id.clone(),
            known: RwLock::new(def.attributes.iter().map(|(k, t)| (k.clone(), *t)).collect()),
            listed: Mutex::new(None),
        }
    }

    /// The type of `key`, if this node knows it.
    pub fn get(&self, key: &str) -> Option<AttrType> {
        self.known.read().unwrap_or_else(|p| p.into_inner()).get(key).copied()
    }

    /// Every type this node knows.
    pub fn snapshot(&self) -> BTreeMap<String, AttrType> {
        self.known.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, t)| (k.clone(), *t)).collect()
    }

    fn learn(&self, key: &str, ty: AttrType) {
        self.known.write().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), ty);
    }

    /// Checks every attribute of `rows` against its type, registering the types of keys
    /// seen for the first time, and stores integers of `float` attributes as floats.
    /// Nothing is changed when an error is returned (rows are only normalised once every
    /// check passed).
    pub async fn admit(&self, rows: &mut [&mut Row]) -> Result<()> {
        let mut wanted: BTreeMap<&str, AttrType> = BTreeMap::new();
        let mut float_ints = false;
        for row in rows.iter() {
            for (key, value) in row.attributes.iter().flatten() {
                let Some(ty) = AttrType::of(value) else { continue }; // null: absent
                let expected = match self.get(key) {
                    Some(known) => known,
                    None => *wanted.entry(key).or_insert(ty),
                };
                if !expected.accepts(ty) {
                    return Err(conflict(&row.id.to_string(), key, expected, ty));
                }
                float_ints |= expected == AttrType::Float && ty == AttrType::Int;
            }
        }
        for (key, ty) in &wanted {
            let settled = self.register(key, *ty).await?;
            if settled != *ty {
                // Another writer typed the key first: check our rows against its type.
                return Box::pin(self.admit(rows)).await;
            }
        }
        if float_ints || !wanted.is_empty() {
            for row in rows.iter_mut() {
                for (key, value) in row.attributes.iter_mut().flatten() {
                    if let Value::Number(n) = value
                        && n.is_i64()
                        && self.get(key) == Some(AttrType::Float)
                    {
                        *value = Value::from(n.as_f64().expect("an i64 is a finite f64"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes `ty` the type of `key` unless another is registered; returns the type that holds.
    async fn register(&self, key: &str, ty: AttrType) -> Result<AttrType> {
        let path = paths::attribute_type(&self.collection_id, key);
        let record = serde_json::to_vec(&TypeRecord { key: key.to_owned(), ty }).expect("serialisable");
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        let settled = match self.store.put_opts(&path, PutPayload::from(record), opts).await {
            Ok(_) => ty,
            Err(e) => match crate::storage_error(path.as_ref(), e) {
                e if e.kind() == ErrorKind::Conflict => self.read(key).await?.unwrap_or(ty),
                e => return Err(e),
            },
        };
        self.learn(key, settled);
        Ok(settled)
    }

    async fn read(&self, key: &str) -> Result<Option<AttrType>> {
        let path = paths::attribute_type(&self.collection_id, key);
        let bytes = match self.store.get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| crate::storage_error(path.as_ref(), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(crate::storage_error(path.as_ref(), e)),
        };
        let record: TypeRecord = serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path.as_ref(), e))?;
        Ok(Some(record.ty))
    }

    /// Makes sure this node knows the types of `keys` that have one: lists the
    /// collection's types if any key is unknown, at most once per [`RELIST_AFTER`].
    pub async fn learn_keys(&self, keys: &[&str], now: Instant) -> Result<()> {
        if keys.iter().all(|k| self.get(k).is_some()) {
            return Ok(());
        }
        self.refresh(now).await
    }

    /// Reads the registered types unless they were listed within [`RELIST_AFTER`].
    pub async fn refresh(&self, now: Instant) -> Result<()> {
        {
            let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
            if listed.is_some_and(|at| now.saturating_duration_since(at) < RELIST_AFTER) {
                return Ok(());
            }
            *listed = Some(now);
        }
        self.list().await
    }

    /// Reads every registered type this node does not know yet (one listing, one read
    /// per new type).
    pub async fn list(&self) -> Result<()> {
        let dir = paths::attribute_types_dir(&self.collection_id);
        let metas: Vec<_> =
            self.store.list(Some(&dir)).try_collect().await.map_err(|e| crate::storage_error(dir.as_ref(), e))?;
        let known: std::collections::HashSet<object_store::path::Path> = {
            let known = self.known.read().unwrap_or_else(|p| p.into_inner());
            known.keys().map(|k| paths::attribute_type(&self.collection_id, k)).collect()
        };
        for meta in metas.into_iter().filter(|m| !known.contains(&m.location)) {
            let r =
                self.store.get(&meta.location).await.map_err(|e| crate::storage_error(meta.location.as_ref(), e))?;
            let bytes = r.bytes().await.map_err(|e| crate::storage_error(meta.location.as_ref(), e))?;
            let record: TypeRecord =
                serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(meta.location.as_ref(), e))?;
            self.learn(&record.key, record.ty);
        }
        Ok(())
    }
}

fn conflict(row: &str, key: &str, expected: AttrType, got: AttrType) -> Error {
    Error::invalid(format!(
        "row {row}: attribute {key:?} has type {} in this collection; got a value of type {}",
        expected.name(),
        got.name()
    ))
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use serde_json::json;
    use strata_types::{HnswParams, Metric, RowId};

    use super::*;

    fn def() -> CollectionDef {
        CollectionDef {
            id: "c-1".into(),
            name: "c".into(),
            dimension: 1,
            metric: Metric::L2,
            shards: 1,
            replication: 1,
            hnsw: HnswParams::default(),
            created_at_ms: 0,
            attributes: [("price".to_owned(), AttrType::Float)].into(),
        }
    }

    fn row(id: u64, attrs: serde_json::Value) -> Row {
        Row { id: RowId::Int(id), vector: vec![0.0], attributes: attrs.as_object().cloned() }
    }

    #[tokio::test]
    async fn first_writer_types_a_key_and_other_nodes_follow() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (a, b) = (AttrTypes::new(store.clone(), &def()), AttrTypes::new(store.clone(), &def()));
        let mut r1 = row(1, json!({"year": 2020, "price": 3}));
        a.admit(&mut [&mut r1]).await.unwrap();
        assert_eq!(r1.attributes.as_ref().unwrap()["price"], json!(3.0), "ints of a float attribute become floats");
        // Node b has not seen "year": its first write of another type learns the winner's.
        let mut r2 = row(2, json!({"year": "2021"}));
        let err = b.admit(&mut [&mut r2]).await.unwrap_err();
        assert!(err.to_string().contains("\"year\" has type int"), "{err}");
        assert_eq!(b.get("year"), Some(AttrType::Int));
        // A refused batch changes nothing, the good rows of it included.
        let (mut good, mut bad) = (row(3, json!({"tags": ["x"]})), row(4, json!({"price": "cheap"})));
        assert!(b.admit(&mut [&mut good, &mut bad]).await.is_err());
        assert_eq!(b.get("tags"), None, "no type registered for a refused batch");
        // A reader lists what writers registered.
        let reader = AttrTypes::new(store, &def());
        reader.list().await.unwrap();
        assert_eq!(
            reader.snapshot(),
            [("price".to_owned(), AttrType::Float), ("year".to_owned(), AttrType::Int)].into()
        );
    }
}
