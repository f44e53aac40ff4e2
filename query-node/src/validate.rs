//! Validation of read requests, in one place: the router checks what clients send before
//! it fans out, and the wire side (`wire.rs`) checks what other nodes send before it
//! reaches the shards. Shard hosting itself trusts its callers, so a request is checked
//! once on each node it enters, never twice on one.

use strata_rpc::MAX_SCAN_ROWS;
use strata_types::{CollectionDef, Error, Result, RowId};

use crate::QueryConfig;

/// Checks a search against its collection and the configured bounds.
pub(crate) fn search(config: &QueryConfig, def: &CollectionDef, vector: &[f32], top_k: usize, ef: usize) -> Result<()> {
    def.validate_vector(vector)?;
    if top_k == 0 || top_k > config.max_top_k {
        return Err(Error::invalid(format!("top_k must be in 1..={}, got {top_k}", config.max_top_k)));
    }
    if ef == 0 || ef > config.max_ef {
        return Err(Error::invalid(format!("ef must be in 1..={}, got {ef}", config.max_ef)));
    }
    Ok(())
}

/// Checks the ids of a get: how many, and each one.
pub(crate) fn get(config: &QueryConfig, ids: &[RowId]) -> Result<()> {
    let max = config.max_get_ids;
    if ids.is_empty() || ids.len() > max {
        return Err(Error::invalid(format!("ids must hold 1..={max} entries, got {}", ids.len())));
    }
    ids.iter().try_for_each(RowId::validate)
}

/// Checks a scan page request.
pub(crate) fn scan(after: Option<&RowId>, limit: u32) -> Result<()> {
    if !(1..=MAX_SCAN_ROWS).contains(&limit) {
        return Err(Error::invalid(format!("limit must be in 1..={MAX_SCAN_ROWS}, got {limit}")));
    }
    after.map_or(Ok(()), RowId::validate)
}

/// A shard number the collection has.
pub(crate) fn shard(def: &CollectionDef, shard: u32) -> Result<()> {
    if shard >= def.shards {
        return Err(Error::invalid(format!("collection {:?} has no shard {shard} (it has {})", def.name, def.shards)));
    }
    Ok(())
}
