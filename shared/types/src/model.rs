//! The data model shared by every role: collections, rows, ids and metrics.
//!
//! These types appear in object storage (definitions, WAL entries) and in the REST API, so
//! their serde form is a stable format: add fields with defaults, never rename.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::filter::AttrType;

/// Largest id string accepted, in bytes.
pub const MAX_STRING_ID_BYTES: usize = 512;
/// Largest vector dimension accepted.
pub const MAX_DIMENSION: u32 = 4096;
/// Largest number of shards a collection may have.
pub const MAX_SHARDS: u32 = 256;

/// A row id: an unsigned integer or a non-empty string. `7` and `"7"` are different ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum RowId {
    Int(u64),
    Str(String),
}

/// By hand rather than `untagged`, so a bad id is refused with the rule it breaks instead of
/// serde's "did not match any variant of untagged enum RowId".
impl<'de> Deserialize<'de> for RowId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<RowId, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = RowId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id: an integer in 0..=18446744073709551615 or a non-empty string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<RowId, E> {
                Ok(RowId::Int(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<RowId, E> {
                u64::try_from(v).map(RowId::Int).map_err(|_| E::custom(format!("an id must not be negative, got {v}")))
            }
            /// `7.0` is 7, as JSON Schema's `integer` has it (see [`crate::integer`]); only
            /// below 2^53, where the float is exactly the integer written.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<RowId, E> {
                match crate::integer::from_f64(v) {
                    Some(id) => Ok(RowId::Int(id)),
                    None if v.fract() == 0.0 && v >= 0.0 => Err(E::custom(format!(
                        "an id written as a float must be below 2^53 to be exact; write it as an integer, got {v:?}"
                    ))),
                    None => Err(E::custom(format!("an id is an integer or a string, got the number {v}"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<RowId, E> {
                Ok(RowId::Str(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> std::result::Result<RowId, E> {
                Ok(RowId::Str(v))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// By hand, to state the string form's bounds (see [`RowId::validate`]).
impl utoipa::PartialSchema for RowId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        // No `format`: `int64` would be wrong above 2^63, and `uint64` is no OpenAPI format.
        let int = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(u64::MAX as usize));
        let string = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_STRING_ID_BYTES))
            .description(Some(format!("1..={MAX_STRING_ID_BYTES} bytes of UTF-8, no control characters")));
        OneOfBuilder::new()
            .item(int)
            .item(string)
            .description(Some(
                "A row id: an unsigned integer or a non-empty string. `7` and `\"7\"` are different ids.",
            ))
            .into()
    }
}

impl ToSchema for RowId {}

impl RowId {
    /// Checks the id is acceptable: strings are non-empty, at most [`MAX_STRING_ID_BYTES`]
    /// bytes and contain no control characters.
    pub fn validate(&self) -> Result<()> {
        if let RowId::Str(s) = self {
            if s.is_empty() {
                return Err(Error::invalid("id must not be an empty string"));
            }
            if s.len() > MAX_STRING_ID_BYTES {
                return Err(Error::invalid(format!(
                    "string id is {} bytes long; the limit is {MAX_STRING_ID_BYTES}",
                    s.len()
                )));
            }
            if s.chars().any(char::is_control) {
                return Err(Error::invalid("string id must not contain control characters"));
            }
        }
        Ok(())
    }

    /// The documented, stable 64-bit hash of an id (FNV-1a over a type tag and the id's
    /// bytes). Shard routing and per-segment id lookups both use it; changing it would
    /// move rows between shards, so it is part of the storage format.
    pub fn stable_hash(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        };
        match self {
            RowId::Int(v) => {
                eat(&[0]);
                eat(&v.to_le_bytes());
            }
            RowId::Str(s) => {
                eat(&[1]);
                eat(s.as_bytes());
            }
        }
        h
    }

    /// The shard that owns this id: `stable_hash(id) % shards`.
    pub fn shard(&self, shards: u32) -> u32 {
        (self.stable_hash() % u64::from(shards.max(1))) as u32
    }
}

impl fmt::Display for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowId::Int(v) => write!(f, "{v}"),
            RowId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// Optional row attributes: a JSON object whose values are strings, numbers, booleans,
/// arrays of strings or null (= absent). Stored as typed columns in segments; each key keeps
/// one [`AttrType`] per collection.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// One row: what an upsert writes, the WAL holds and a segment stores. Its REST form
/// (with the vector as numbers or base64) is `strata_api::UpsertRow`; its stored forms are
/// the WAL's and the segment's own encodings.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: RowId,
    pub vector: Vec<f32>,
    pub attributes: Option<Attributes>,
}

/// Similarity metric of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity; score in [-1, 1], higher is closer. Zero vectors are refused.
    Cosine,
    /// Inner product; higher is closer.
    Dot,
    /// Euclidean distance; lower is closer.
    L2,
}

impl Metric {
    /// Whether a higher score means a closer match.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::L2)
    }
}

/// HNSW parameters of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HnswParams {
    /// Graph degree (links per node per layer). Default 16, range 4..=64.
    #[serde(default = "default_m", deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 4, maximum = 64, default = 16)]
    pub m: u32,
    /// Candidate list size while building. Default 200, range 16..=1000.
    #[serde(default = "default_ef_construction", deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 16, maximum = 1000, default = 200)]
    pub ef_construction: u32,
    /// Default candidate list size while searching. Default 64, range 1..=4096.
    #[serde(default = "default_ef", deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 1, maximum = 4096, default = 64)]
    pub ef: u32,
}

fn default_m() -> u32 {
    16
}
fn default_ef_construction() -> u32 {
    200
}
fn default_ef() -> u32 {
    64
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { m: default_m(), ef_construction: default_ef_construction(), ef: default_ef() }
    }
}

impl HnswParams {
    pub fn validate(&self) -> Result<()> {
        if !(4..=64).contains(&self.m) {
            return Err(Error::invalid(format!("hnsw.m must be in 4..=64, got {}", self.m)));
        }
        if !(16..=1000).contains(&self.ef_construction) {
            return Err(Error::invalid(format!(
                "hnsw.ef_construction must be in 16..=1000, got {}",
                self.ef_construction
            )));
        }
        if !(1..=4096).contains(&self.ef) {
            return Err(Error::invalid(format!("hnsw.ef must be in 1..=4096, got {}", self.ef)));
        }
        Ok(())
    }
}

/// The immutable definition of one incarnation of a collection, stored at
/// `collections/{id}/definition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionDef {
    /// Unique per incarnation: dropping and re-creating a name gives a new id.
    pub id: String,
    pub name: String,
    pub dimension: u32,
    pub metric: Metric,
    pub shards: u32,
    pub replication: u32,
    pub hnsw: HnswParams,
    pub created_at_ms: u64,
    /// Attribute types declared at creation; other attributes take the type of the first
    /// value written (see `strata_storage::attr_types`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttrType>,
}

impl CollectionDef {
    /// Checks a row against this collection: id, dimension, finite values, attributes.
    pub fn validate_row(&self, row: &Row) -> Result<()> {
        row.id.validate()?;
        self.validate_vector(&row.vector).map_err(|e| e.context(format!("row {}", row.id)))?;
        if let Some(attrs) = &row.attributes {
            validate_attributes(attrs).map_err(|e| e.context(format!("row {}", row.id)))?;
        }
        Ok(())
    }

    /// Checks a vector's dimension and values (finite; non-zero for cosine).
    pub fn validate_vector(&self, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dimension as usize {
            return Err(Error::invalid(format!(
                "vector has dimension {}, collection {:?} expects {}",
                vector.len(),
                self.name,
                self.dimension
            )));
        }
        if let Some(i) = vector.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("vector value at index {i} is {}; values must be finite", vector[i])));
        }
        if self.metric == Metric::Cosine && vector.iter().all(|v| *v == 0.0) {
            return Err(Error::invalid("a zero vector has no direction; cosine needs a non-zero vector"));
        }
        Ok(())
    }
}

/// Largest attribute key, in bytes, and largest string attribute value.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 128;
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 16 * 1024;

/// Largest number of items in a string-list attribute.
pub const MAX_ATTRIBUTE_LIST_ITEMS: usize = 1024;

/// Checks an attribute key: 1..=[`MAX_ATTRIBUTE_KEY_BYTES`] bytes, not starting with `$`
/// (filters reserve it for operators), no control characters.
pub fn validate_attribute_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > MAX_ATTRIBUTE_KEY_BYTES
        || key.starts_with('$')
        || key.chars().any(char::is_control)
    {
        return Err(Error::invalid(format!(
            "attribute key {key:?} must be 1..={MAX_ATTRIBUTE_KEY_BYTES} bytes, not start with '$' and hold no control characters"
        )));
    }
    Ok(())
}

/// Attributes must be strings, numbers (integers within i64), booleans, arrays of strings
/// or null, with sane keys.
pub fn validate_attributes(attrs: &Attributes) -> Result<()> {
    for (key, value) in attrs {
        validate_attribute_key(key)?;
        match value {
            serde_json::Value::Array(items) => {
                if items.len() > MAX_ATTRIBUTE_LIST_ITEMS {
                    return Err(Error::invalid(format!(
                        "attribute {key:?} has {} items; the limit is {MAX_ATTRIBUTE_LIST_ITEMS}",
                        items.len()
                    )));
                }
                if !items.iter().all(serde_json::Value::is_string) {
                    return Err(Error::invalid(format!("attribute {key:?}: arrays may only hold strings")));
                }
                let bytes: usize = items.iter().filter_map(serde_json::Value::as_str).map(str::len).sum();
                if bytes > MAX_ATTRIBUTE_VALUE_BYTES {
                    return Err(Error::invalid(format!(
                        "attribute {key:?} is {bytes} bytes; the limit is {MAX_ATTRIBUTE_VALUE_BYTES}"
                    )));
                }
            }
            serde_json::Value::Object(_) => {
                return Err(Error::invalid(format!(
                    "attribute {key:?} must be a string, number, boolean, array of strings or null"
                )));
            }
            serde_json::Value::Number(n) if n.as_i64().is_none() && !n.is_f64() => {
                return Err(Error::invalid(format!("attribute {key:?}: integers must fit a signed 64-bit integer")));
            }
            serde_json::Value::String(s) if s.len() > MAX_ATTRIBUTE_VALUE_BYTES => {
                return Err(Error::invalid(format!(
                    "attribute {key:?} is {} bytes; the limit is {MAX_ATTRIBUTE_VALUE_BYTES}",
                    s.len()
                )));
            }
            serde_json::Value::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => {
                return Err(Error::invalid(format!("attribute {key:?} must be finite")));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_from_numbers_and_strings() {
        let ids: Vec<RowId> = serde_json::from_str(r#"[7, "7", "doc-1"]"#).unwrap();
        assert_eq!(ids, vec![RowId::Int(7), RowId::Str("7".into()), RowId::Str("doc-1".into())]);
        assert!(serde_json::from_str::<RowId>("-1").unwrap_err().to_string().contains("must not be negative"));
        assert!(serde_json::from_str::<RowId>("1.5").unwrap_err().to_string().contains("integer or a string"));
        assert_eq!(serde_json::from_str::<RowId>("1.0").unwrap(), RowId::Int(1), "JSON Schema's integer admits 1.0");
        assert!(serde_json::from_str::<RowId>("1e19").unwrap_err().to_string().contains("below 2^53"));
        assert!(serde_json::from_str::<RowId>("true").unwrap_err().to_string().contains("expected an id"));
        // Both forms survive a round trip, the whole u64 range included.
        for id in [RowId::Int(0), RowId::Int(u64::MAX), RowId::Str("ü-1".into())] {
            assert_eq!(serde_json::from_str::<RowId>(&serde_json::to_string(&id).unwrap()).unwrap(), id);
        }
    }

    #[test]
    fn stable_hash_is_pinned() {
        // These values are part of the storage format: shard routing depends on them.
        // Values computed independently (FNV-1a over tag byte + id bytes).
        assert_eq!(RowId::Int(0).stable_hash(), 0xe604_823a_2490_29bf);
        assert_eq!(RowId::Int(42).stable_hash(), 0x8f91_9d01_1520_8895);
        assert_eq!(RowId::Str("doc-1".into()).stable_hash(), 0x87f9_dc58_011f_4e64);
        assert_eq!((RowId::Int(42).shard(8), RowId::Str("doc-1".into()).shard(8)), (5, 4));
        assert_ne!(RowId::Int(7).stable_hash(), RowId::Str("7".into()).stable_hash());
        let counts = (0..10_000u64).fold([0u32; 4], |mut c, i| {
            c[RowId::Int(i).shard(4) as usize] += 1;
            c
        });
        assert!(counts.iter().all(|&n| n > 2300), "uneven shards: {counts:?}");
    }
}
