//! Conversions between the wire messages (`crate::pb`) and the storage core's types.
//! Forwarded write operations travel in the WAL's own encoding, so there is exactly one
//! binary form of a row; everything decoded from the wire is validated like user input.

use super::{Hit, Mutation, Selector, ShardGet, ShardRow, ShardSearch, ShardStats};
use crate::pb;
use std::sync::Arc;
use strata_storage::wal::{WalEntry, WalOp};

use strata_types::consistency::MAX_STALENESS_MS;
use strata_types::filter::Filter;
use strata_types::{Attributes, Consistency, RowId};
use strata_types::{Error, Result};

pub(crate) fn id_to_pb(id: RowId) -> pb::RowId {
    pb::RowId {
        id: Some(match id {
            RowId::Int(v) => pb::row_id::Id::Num(v),
            RowId::Str(s) => pb::row_id::Id::Str(s),
        }),
    }
}

pub(crate) fn id_from_pb(id: Option<pb::RowId>) -> Result<RowId> {
    match id.and_then(|i| i.id) {
        Some(pb::row_id::Id::Num(v)) => Ok(RowId::Int(v)),
        Some(pb::row_id::Id::Str(s)) => Ok(RowId::Str(s)),
        None => Err(Error::invalid("a row id is missing")),
    }
}

pub(crate) fn shard_ref(collection_id: &str, shard: u32) -> Option<pb::ShardRef> {
    Some(pb::ShardRef { collection_id: collection_id.to_owned(), shard })
}

pub(crate) fn search_request(collection_id: &str, shard: u32, req: ShardSearch) -> pb::SearchShardRequest {
    pb::SearchShardRequest {
        shard: shard_ref(collection_id, shard),
        vector: req.vector.to_vec(),
        top_k: req.top_k,
        ef: req.ef,
        eventual: req.consistency == Consistency::Eventual,
        max_staleness_ms: max_staleness_ms(req.consistency),
        include_vector: req.include_vector,
        include_attributes: req.include_attributes,
        filter_json: filter_to_pb(req.filter.as_deref()),
    }
}

pub(crate) fn search_from_pb(msg: pb::SearchShardRequest) -> Result<(Option<pb::ShardRef>, ShardSearch)> {
    let req = ShardSearch {
        vector: msg.vector.into(),
        top_k: msg.top_k,
        ef: msg.ef,
        consistency: consistency_from_pb(msg.eventual, msg.max_staleness_ms)?,
        include_vector: msg.include_vector,
        include_attributes: msg.include_attributes,
        filter: filter_from_pb(&msg.filter_json)?,
    };
    Ok((msg.shard, req))
}

/// The bound of `{"max_staleness_ms": N}` on the wire (next to `eventual`, which old nodes
/// know: they read a bounded read as strong, which is fresher than asked, never staler).
pub(crate) fn max_staleness_ms(consistency: Consistency) -> Option<u64> {
    match consistency {
        Consistency::MaxStaleness { ms } => Some(ms),
        Consistency::Strong | Consistency::Eventual => None,
    }
}

/// A consistency level from the wire, checked like the REST form.
pub(crate) fn consistency_from_pb(eventual: bool, max_staleness_ms: Option<u64>) -> Result<Consistency> {
    match (eventual, max_staleness_ms) {
        (_, Some(ms)) if ms > MAX_STALENESS_MS => {
            Err(Error::invalid(format!("max_staleness_ms must be in 0..={MAX_STALENESS_MS}, got {ms}")))
        }
        (false, Some(ms)) => Ok(Consistency::MaxStaleness { ms }),
        (true, Some(_)) => Err(Error::invalid("a read is either eventual or bounded by max_staleness_ms, not both")),
        (true, None) => Ok(Consistency::Eventual),
        (false, None) => Ok(Consistency::Strong),
    }
}

/// A filter's wire form: its JSON text, empty for none.
pub(crate) fn filter_to_pb(filter: Option<&Filter>) -> String {
    filter.map(|f| f.to_json().to_string()).unwrap_or_default()
}

/// Parses a filter from the wire (input like any other: a bad one is `Invalid`).
pub(crate) fn filter_from_pb(json: &str) -> Result<Option<Arc<Filter>>> {
    if json.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::invalid(format!("filter is not JSON: {e}")))?;
    Ok(Some(Arc::new(Filter::parse(&value)?)))
}

pub(crate) fn get_request(collection_id: &str, shard: u32, req: ShardGet) -> pb::GetRowsRequest {
    pb::GetRowsRequest {
        shard: shard_ref(collection_id, shard),
        ids: req.ids.into_iter().map(id_to_pb).collect(),
        include_vector: req.include_vector,
        include_attributes: req.include_attributes,
        eventual: req.consistency == Consistency::Eventual,
        max_staleness_ms: max_staleness_ms(req.consistency),
    }
}

fn pb_row(id: RowId, distance: Option<f32>, vector: Option<Vec<f32>>, attributes: Option<Attributes>) -> pb::Row {
    pb::Row {
        id: Some(id_to_pb(id)),
        distance,
        vector: vector.unwrap_or_default(),
        attributes_json: attributes.map(|a| serde_json::to_string(&a).unwrap_or_default()).unwrap_or_default(),
    }
}

pub(crate) fn row_to_pb(row: ShardRow) -> pb::Row {
    pb_row(row.id, None, row.vector, row.attributes)
}

pub(crate) fn hit_to_pb(hit: Hit) -> pb::Row {
    pb_row(hit.id, Some(hit.distance), hit.vector, hit.attributes)
}

/// The parts of a wire row: id, distance, vector, attributes.
type RowParts = (RowId, Option<f32>, Option<Vec<f32>>, Option<Attributes>);

/// The parts of a wire row, checked.
fn row_parts(r: pb::Row) -> Result<RowParts> {
    let attributes = if r.attributes_json.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<Attributes>(&r.attributes_json)
                .map_err(|e| Error::internal(format!("a node sent malformed attributes: {e}")))?,
        )
    };
    let vector = (!r.vector.is_empty()).then_some(r.vector);
    Ok((id_from_pb(r.id)?, r.distance, vector, attributes))
}

pub(crate) fn rows_from_pb(rows: Vec<pb::Row>) -> Result<Vec<ShardRow>> {
    rows.into_iter()
        .map(|r| {
            let (id, _, vector, attributes) = row_parts(r)?;
            Ok(ShardRow { id, vector, attributes })
        })
        .collect()
}

pub(crate) fn hits_from_pb(rows: Vec<pb::Row>) -> Result<Vec<Hit>> {
    rows.into_iter()
        .map(|r| {
            let (id, distance, vector, attributes) = row_parts(r)?;
            let distance = distance.ok_or_else(|| Error::internal("a node sent a search hit without a distance"))?;
            Ok(Hit { id, distance, vector, attributes })
        })
        .collect()
}

pub(crate) fn stats_to_pb(s: ShardStats) -> pb::ShardStats {
    pb::ShardStats {
        shard: s.shard,
        rows: s.rows,
        segments: s.segments,
        bytes: s.bytes,
        manifest_version: s.manifest_version,
        flushed_seq: s.flushed_seq,
        head_seq: s.head_seq,
        wal_backlog_ops: s.wal_backlog_ops,
    }
}

pub(crate) fn stats_from_pb(s: pb::ShardStats) -> ShardStats {
    ShardStats {
        shard: s.shard,
        rows: s.rows,
        segments: s.segments,
        bytes: s.bytes,
        manifest_version: s.manifest_version,
        flushed_seq: s.flushed_seq,
        head_seq: s.head_seq,
        wal_backlog_ops: s.wal_backlog_ops,
    }
}

pub(crate) fn write_request(collection: &str, collection_id: &str, shard: u32, ops: Vec<WalOp>) -> pb::WriteRequest {
    // Sequence, epoch and commit id are the receiving writer's to choose; zero here.
    let carrier = WalEntry { seq: 0, writer_epoch: 0, commit_id: 0, created_ms: 0, ops };
    pb::WriteRequest {
        collection: collection.to_owned(),
        collection_id: collection_id.to_owned(),
        shard,
        ops: carrier.encode().to_vec(),
    }
}

pub(crate) fn mutate_request(collection: &str, collection_id: &str, shard: u32, m: &Mutation) -> pb::MutateRequest {
    let (delete, selector, patch) = match m {
        Mutation::Delete(selector) => (true, selector, String::new()),
        Mutation::Update { selector, patch } => (false, selector, serde_json::Value::Object(patch.clone()).to_string()),
    };
    let (filter_json, ids) = match selector {
        Selector::Ids(ids) => (String::new(), ids.iter().cloned().map(id_to_pb).collect()),
        Selector::Filter(filter) => (filter_to_pb(Some(filter)), Vec::new()),
    };
    pb::MutateRequest {
        collection: collection.to_owned(),
        collection_id: collection_id.to_owned(),
        shard,
        delete,
        filter_json,
        ids,
        patch_json: patch,
    }
}

pub(crate) fn mutation_from_pb(msg: &pb::MutateRequest) -> Result<Mutation> {
    let selector = match filter_from_pb(&msg.filter_json)? {
        Some(filter) => Selector::Filter(filter),
        None => Selector::Ids(msg.ids.iter().cloned().map(|id| id_from_pb(Some(id))).collect::<Result<_>>()?),
    };
    if msg.delete {
        return Ok(Mutation::Delete(selector));
    }
    let patch = match serde_json::from_str(&msg.patch_json) {
        Ok(serde_json::Value::Object(patch)) => patch,
        _ => return Err(Error::invalid("the attribute patch is not a JSON object")),
    };
    Ok(Mutation::Update { selector, patch })
}

pub(crate) fn ops_from_pb(bytes: &[u8]) -> Result<Vec<WalOp>> {
    Ok(WalEntry::decode(bytes).map_err(|e| Error::invalid(format!("forwarded operations: {e}")))?.ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_types::Row;

    #[test]
    fn rows_and_ops_round_trip() {
        let mut attrs = Attributes::new();
        attrs.insert("lang".to_owned(), serde_json::json!("en"));
        let rows = vec![
            ShardRow { id: RowId::Int(7), vector: Some(vec![1.0, 2.0]), attributes: Some(attrs.clone()) },
            ShardRow { id: RowId::Str("a".into()), vector: None, attributes: None },
        ];
        let back = rows_from_pb(rows.clone().into_iter().map(row_to_pb).collect()).unwrap();
        assert_eq!(back, rows);
        let hits = vec![
            Hit { id: RowId::Int(7), distance: 0.5, vector: Some(vec![1.0, 2.0]), attributes: Some(attrs) },
            Hit { id: RowId::Str("a".into()), distance: -1.0, vector: None, attributes: None },
        ];
        let back = hits_from_pb(hits.clone().into_iter().map(hit_to_pb).collect()).unwrap();
        assert_eq!(back, hits);
        assert!(hits_from_pb(vec![row_to_pb(rows[1].clone())]).is_err(), "a hit needs its distance");

        let ops = vec![
            WalOp::Upsert(Row { id: RowId::Int(1), vector: vec![0.25, -1.0], attributes: None }),
            WalOp::Delete(RowId::Str("x".into())),
        ];
        let msg = write_request("c", "id-1", 3, ops.clone());
        assert_eq!((msg.collection.as_str(), msg.collection_id.as_str(), msg.shard), ("c", "id-1", 3));
        assert_eq!(ops_from_pb(&msg.ops).unwrap(), ops);
        assert!(ops_from_pb(b"garbage").is_err());
        assert!(id_from_pb(None).is_err());
    }

    /// A routed read carries its consistency level to the replica unchanged.
    #[test]
    fn consistency_levels_cross_the_wire() {
        for consistency in [Consistency::Strong, Consistency::Eventual, Consistency::MaxStaleness { ms: 250 }] {
            let req = ShardSearch {
                vector: vec![1.0].into(),
                top_k: 1,
                ef: 8,
                consistency,
                include_vector: false,
                include_attributes: false,
                filter: None,
            };
            let (_, back) = search_from_pb(search_request("c", 0, req)).unwrap();
            assert_eq!(back.consistency, consistency);
            let get = get_request(
                "c",
                0,
                ShardGet { ids: vec![], include_vector: false, include_attributes: false, consistency },
            );
            assert_eq!(consistency_from_pb(get.eventual, get.max_staleness_ms).unwrap(), consistency);
        }
        assert!(consistency_from_pb(false, Some(MAX_STALENESS_MS + 1)).is_err());
        assert!(consistency_from_pb(true, Some(5)).is_err());
    }
}
