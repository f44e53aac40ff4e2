//! Validation of write requests, in one place and before anything is written: a batch is
//! checked whole (sizes, every row against its collection, ids, duplicates) before any
//! shard sees any of it, so a bad row never leaves the rest of its batch half-written.
//! Client requests are checked where they enter (`node.rs`); forwarded ones again on the
//! node that receives them (`routing.rs`), since the wire is input too.

use std::collections::HashSet;

use strata_api::{BulkRow, MAX_BULK_ROWS};
use strata_rpc::{Mutation, Selector};
use strata_storage::wal::WalOp;
use strata_types::{CollectionDef, Error, Result, Row, RowId};

/// A batch holds 1..=`max` entries.
pub(crate) fn batch_size(max: usize, n: usize, what: &str) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if n > max {
        return Err(Error::invalid(format!("{what} has {n} entries; the limit per request is {max}")));
    }
    Ok(())
}

/// Every row against the collection, every id, and ids unique in the batch.
pub(crate) fn ops(def: &CollectionDef, ops: &[WalOp]) -> Result<()> {
    for op in ops {
        match op {
            WalOp::Upsert(row) => def.validate_row(row)?,
            WalOp::Delete(id) => id.validate()?,
        }
    }
    if let Some(dup) = first_duplicate(ops.iter().map(WalOp::id)) {
        return Err(Error::invalid(format!("id {dup} appears more than once in the batch")));
    }
    Ok(())
}

/// Forwarded operations all belong to `shard` (and the collection has it).
pub(crate) fn ops_of_shard(def: &CollectionDef, shard: u32, ops: &[WalOp]) -> Result<()> {
    if shard >= def.shards || ops.iter().any(|op| op.id().shard(def.shards) != shard) {
        return Err(Error::invalid(format!("forwarded operations do not all belong to shard {shard}")));
    }
    Ok(())
}

/// A forwarded mutation: ids valid, within the batch bound and of `shard`; a patch of
/// valid attributes.
pub(crate) fn mutation_of_shard(
    config: &crate::config::IngestConfig,
    def: &CollectionDef,
    shard: u32,
    mutation: &Mutation,
) -> Result<()> {
    let (selector, patch) = match mutation {
        Mutation::Delete(selector) => (selector, None),
        Mutation::Update { selector, patch } => (selector, Some(patch)),
    };
    if let Selector::Ids(ids) = selector {
        batch_size(config.max_batch_rows, ids.len(), "ids")?;
        ids.iter().try_for_each(RowId::validate)?;
        if ids.iter().any(|id| id.shard(def.shards) != shard) {
            return Err(Error::invalid(format!("forwarded ids do not all belong to shard {shard}")));
        }
    }
    patch.map_or(Ok(()), attribute_patch)
}

/// An attribute patch: a non-empty object of valid attributes (a `null` removes one).
pub(crate) fn attribute_patch(patch: &strata_types::Attributes) -> Result<()> {
    if patch.is_empty() {
        return Err(Error::invalid("attributes must name at least one attribute to set or remove (null)"));
    }
    strata_types::validate_attributes(patch)
}

/// A shard number the collection has.
pub(crate) fn shard(def: &CollectionDef, shard: u32) -> Result<()> {
    if shard >= def.shards {
        return Err(Error::invalid(format!("collection {:?} has no shard {shard}", def.name)));
    }
    Ok(())
}

/// A bulk request holds 1..=[`MAX_BULK_ROWS`] rows.
pub(crate) fn bulk_size(n: usize) -> Result<()> {
    if n == 0 || n > MAX_BULK_ROWS {
        return Err(Error::invalid(format!("rows must hold 1..={MAX_BULK_ROWS} entries, got {n}")));
    }
    Ok(())
}

/// Decodes and checks the rows of a bulk request for `shard` (a shard the collection
/// has): vectors (base64), every row against the collection, every row in the shard,
/// ids unique.
pub(crate) fn bulk_rows(def: &CollectionDef, shard: u32, rows: Vec<BulkRow>) -> Result<Vec<Row>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let vector = strata_api::vector_encoding::decode_base64_f32(&r.vector)
            .map_err(|e| Error::invalid(format!("row {}: vector: {e}", r.id)))?;
        let row = Row { id: r.id, vector, attributes: r.attributes };
        def.validate_row(&row)?;
        let of = row.id.shard(def.shards);
        if of != shard {
            return Err(Error::invalid(format!("row {} belongs to shard {of}, not {shard}", row.id)));
        }
        out.push(row);
    }
    if let Some(dup) = first_duplicate(out.iter().map(|r| &r.id)) {
        return Err(Error::invalid(format!("id {dup} appears more than once in the request")));
    }
    Ok(out)
}

/// The first id that appears more than once (refused: the intent is ambiguous).
pub(crate) fn first_duplicate<'a>(ids: impl Iterator<Item = &'a RowId>) -> Option<&'a RowId> {
    let mut seen = HashSet::new();
    ids.into_iter().find(|id| !seen.insert(*id))
}

#[cfg(test)]
mod tests {
    use strata_types::{HnswParams, Metric};

    use super::*;

    fn def() -> CollectionDef {
        CollectionDef {
            id: "c-1".into(),
            name: "c".into(),
            dimension: 2,
            metric: Metric::L2,
            shards: 2,
            replication: 1,
            hnsw: HnswParams::default(),
            created_at_ms: 0,
            attributes: Default::default(),
        }
    }

    #[test]
    fn batches_are_checked_whole() {
        let up = |id, v: Vec<f32>| WalOp::Upsert(Row { id: RowId::Int(id), vector: v, attributes: None });
        assert!(ops(&def(), &[up(1, vec![1.0, 2.0]), WalOp::Delete(RowId::Int(2))]).is_ok());
        let err = ops(&def(), &[up(1, vec![1.0, 2.0]), up(2, vec![1.0])]).unwrap_err();
        assert!(err.to_string().contains("row 2"), "{err}");
        let err = ops(&def(), &[up(1, vec![1.0, 2.0]), WalOp::Delete(RowId::Int(1))]).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
        assert!(batch_size(3, 0, "rows").is_err() && batch_size(3, 4, "rows").is_err());
        assert!(batch_size(3, 3, "rows").is_ok());
        assert_eq!(first_duplicate([RowId::Int(1), RowId::Int(2), RowId::Int(1)].iter()), Some(&RowId::Int(1)));
    }

    #[test]
    fn bulk_rows_must_be_of_their_shard() {
        let def = def();
        let row = |id: u64| BulkRow {
            id: RowId::Int(id),
            vector: strata_api::vector_encoding::encode_base64_f32(&[1.0, 2.0]),
            attributes: None,
        };
        let (mine, other) = {
            let mut ids = (0..).filter(|i| RowId::Int(*i).shard(2) == 0);
            let mine = ids.next().unwrap();
            (mine, (0..).find(|i| RowId::Int(*i).shard(2) == 1).unwrap())
        };
        assert_eq!(bulk_rows(&def, 0, vec![row(mine)]).unwrap().len(), 1);
        let err = bulk_rows(&def, 0, vec![row(other)]).unwrap_err();
        assert!(err.to_string().contains("belongs to shard 1"), "{err}");
        assert!(self::shard(&def, 2).unwrap_err().to_string().contains("no shard 2"));
        assert!(bulk_size(0).is_err() && bulk_size(MAX_BULK_ROWS + 1).is_err() && bulk_size(1).is_ok());
        let bad = BulkRow { vector: "AACA".into(), ..row(mine) };
        assert!(bulk_rows(&def, 0, vec![bad]).unwrap_err().to_string().contains("vector"));
    }
}
