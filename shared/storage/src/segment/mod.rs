//! Segments: immutable sets of rows with their HNSW graph.
//!
//! - `format`: the Arrow IPC encodings of a segment's ids and rows;
//! - `ids`: the id column and its hash lookup (which row holds an id);
//! - `attr_index` (+ `attr_index_build`, `attr_index_codec`): per-attribute value → rows
//!   index, for filter planning, counts and exact filtered scans;
//! - `row_filter`: a filter bound to a segment's columns, to test single rows in a walk;
//! - `store`: building a segment from rows (graph included), uploading its files, and
//!   loading it back through the cache for search and gets.
//!
//! File names and paths are `paths`' (`paths::SEGMENT_FILES`).

mod attr_index;
mod attr_index_build;
mod attr_index_codec;
mod format;
mod ids;
mod row_filter;
mod store;

#[cfg(test)]
mod attr_index_tests;
#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod store_tests;

pub use attr_index::AttrIndex;
pub use format::{AttrColumn, DecodedRows, decode_ids, decode_rows, encode_ids, encode_rows};
pub use ids::{IdColumn, IdLookup};
pub use store::{
    BuiltSegment, FilterPlan, LoadedSegment, SegmentIds, build, load_attr_index, load_ids, prepare_query, score_of,
    space_of, upload,
};
