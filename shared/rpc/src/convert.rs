//! Conversions between the wire messages (`crate::pb`) and the storage core's types.
//! Forwarded write operations travel in the WAL's own encoding, so there is exactly one
//! binary form of a row; everything decoded from the wire is validated like user input.

use super::{ShardRow, ShardSearch, ShardStats};
use crate::pb;
use strata_storage::wal::{WalEntry, WalOp};
use strata_types::{Attributes, RowId};
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
        vector: req.vector,
        top_k: req.top_k,
        ef: req.ef,
        eventual: req.eventual,
        include_vector: req.include_vector,
        include_attributes: req.include_attributes,
    }
}

pub(crate) fn search_from_pb(msg: pb::SearchShardRequest) -> (Option<pb::ShardRef>, ShardSearch) {
    let req = ShardSearch {
        vector: msg.vector,
        top_k: msg.top_k,
        ef: msg.ef,
        eventual: msg.eventual,
        include_vector: msg.include_vector,
        include_attributes: msg.include_attributes,
    };
    (msg.shard, req)
}

pub(crate) fn get_request(
    collection_id: &str,
    shard: u32,
    ids: Vec<RowId>,
    include_vector: bool,
    include_attributes: bool,
) -> pb::GetRowsRequest {
    pb::GetRowsRequest {
        shard: shard_ref(collection_id, shard),
        ids: ids.into_iter().map(id_to_pb).collect(),
        include_vector,
        include_attributes,
    }
}

pub(crate) fn row_to_pb(row: ShardRow) -> pb::Row {
    pb::Row {
        id: Some(id_to_pb(row.id)),
        distance: row.distance,
        vector: row.vector.unwrap_or_default(),
        attributes_json: row.attributes.map(|a| serde_json::to_string(&a).unwrap_or_default()).unwrap_or_default(),
    }
}

pub(crate) fn rows_from_pb(rows: Vec<pb::Row>) -> Result<Vec<ShardRow>> {
    rows.into_iter()
        .map(|r| {
            let attributes = if r.attributes_json.is_empty() {
                None
            } else {
                Some(
                    serde_json::from_str::<Attributes>(&r.attributes_json)
                        .map_err(|e| Error::internal(format!("a node sent malformed attributes: {e}")))?,
                )
            };
            Ok(ShardRow {
                id: id_from_pb(r.id)?,
                distance: r.distance,
                vector: (!r.vector.is_empty()).then_some(r.vector),
                attributes,
            })
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
            ShardRow { id: RowId::Int(7), distance: Some(0.5), vector: Some(vec![1.0, 2.0]), attributes: Some(attrs) },
            ShardRow { id: RowId::Str("a".into()), distance: None, vector: None, attributes: None },
        ];
        let back = rows_from_pb(rows.clone().into_iter().map(row_to_pb).collect()).unwrap();
        assert_eq!(back, rows);

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
}
