//! Reads by filter: the router's filter check, `query` (matching rows across every shard,
//! paged with a cursor) and `count`.
//!
//! A filter is parsed and type-checked once, where a request enters (`Resolver::filter`,
//! against the collection's attribute types in `strata_storage::attr_types`).
//!
//! Query paging: the cursor names a shard and the last id returned from it. A page asks
//! that shard for the rows after the id; when the shard has no more, the next shard is
//! asked from its first row, until the page is full or every shard is done. Each shard's
//! page is strongly consistent; rows changed between pages are seen as of each page.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use strata_api::{CountRequest, CountResponse, QueryRequest, QueryResponse, ResultRow};
use strata_rpc::{MAX_SCAN_ROWS, ShardCount, ShardScanRequest};
use strata_types::filter::Filter;
use strata_types::{CollectionDef, Error, ErrorKind, Result, RowId};

use crate::router::Router;

/// Where the next page of a query starts.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Cursor {
    #[serde(rename = "s")]
    shard: u32,
    /// The last id returned from `shard`; `None`: start at its first row.
    #[serde(rename = "a")]
    after: Option<RowId>,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("serialisable"))
    }

    fn decode(text: &str, def: &CollectionDef) -> Result<Cursor> {
        let bad = || Error::invalid("cursor is not one this collection returned; start again without it");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if cursor.shard >= def.shards || cursor.after.as_ref().is_some_and(|a| a.validate().is_err()) {
            return Err(bad());
        }
        Ok(cursor)
    }
}

impl Router {
    /// Parses and type-checks a request's filter (`Resolver::filter`).
    pub(crate) async fn filter(
        &self,
        def: &CollectionDef,
        filter: Option<&serde_json::Value>,
    ) -> Result<Option<Arc<Filter>>> {
        self.resolver.filter(&self.deps, def, filter).await
    }

    /// One page of the rows matching the request's filter, across every shard.
    pub async fn query(&self, name: &str, req: QueryRequest) -> Result<QueryResponse> {
        if !(1..=MAX_SCAN_ROWS).contains(&req.limit) {
            return Err(Error::invalid(format!("limit must be in 1..={MAX_SCAN_ROWS}, got {}", req.limit)));
        }
        let def = self.resolver.resolve(&self.deps, name).await?;
        let filter = self.filter(&def, req.filter.as_ref()).await?;
        let mut cursor = match &req.cursor {
            Some(text) => Cursor::decode(text, &def)?,
            None => Cursor { shard: 0, after: None },
        };
        let mut rows: Vec<ResultRow> = Vec::new();
        loop {
            let shard_req = ShardScanRequest {
                after: cursor.after.clone(),
                limit: req.limit - rows.len() as u32,
                filter: filter.clone(),
                include_vector: req.include_vector,
            };
            let (def, shard) = (&def, cursor.shard);
            let (page, _) = self
                .on_replicas(def, shard, None, move |t| {
                    let shard_req = shard_req.clone();
                    async move { t.scan_shard(&def.id, shard, shard_req).await }
                })
                .await?;
            let last = page.rows.last().map(|r| r.id.clone());
            rows.extend(page.rows.into_iter().map(|r| ResultRow {
                id: r.id,
                score: None,
                vector: r.vector.filter(|_| req.include_vector),
                attributes: r.attributes.filter(|_| req.include_attributes),
            }));
            cursor = match page.next_after {
                Some(_) => Cursor { shard, after: last },
                None if shard + 1 < def.shards => Cursor { shard: shard + 1, after: None },
                None => return Ok(QueryResponse { rows, next_cursor: None }),
            };
            if rows.len() as u32 >= req.limit {
                return Ok(QueryResponse { rows, next_cursor: Some(cursor.encode()) });
            }
        }
    }

    /// How many live rows match the request's filter, summed over every shard. A shard
    /// no replica could count makes the answer `partial` (unless every shard failed).
    pub async fn count(&self, name: &str, req: CountRequest) -> Result<CountResponse> {
        let def = self.resolver.resolve_for(&self.deps, name, req.consistency).await?;
        let filter = self.filter(&def, req.filter.as_ref()).await?;
        let shard_req = ShardCount { filter, consistency: req.consistency };
        let counts = join_all((0..def.shards).map(|shard| {
            let (def, shard_req) = (&def, &shard_req);
            self.on_replicas(def, shard, None, move |t| {
                let shard_req = shard_req.clone();
                async move { t.count_shard(&def.id, shard, shard_req).await }
            })
        }))
        .await;
        let (mut count, mut failed, mut last_error) = (0, 0, None);
        for result in counts {
            match result {
                Ok((n, _)) => count += n,
                Err(e) if e.kind() == ErrorKind::Invalid => return Err(e),
                Err(e) => {
                    failed += 1;
                    last_error = Some(e);
                }
            }
        }
        if failed == def.shards
            && let Some(e) = last_error
        {
            return Err(e.context("no shard could be counted"));
        }
        Ok(CountResponse { count, partial: failed > 0 })
    }
}
