//! Segments: immutable sets of rows with their HNSW graph.
//!
//! - `format`: the Arrow IPC encodings of a segment's ids and rows;
//! - `ids`: the id column and its hash lookup (which row holds an id);
//! - `store`: building a segment from rows (graph included), uploading its files, and
//!   loading it back through the cache for search and gets.
//!
//! File names and paths are `paths`' (`paths::SEGMENT_FILES`).

mod format;
mod ids;
mod store;

#[cfg(test)]
mod format_tests;

pub use format::{DecodedRows, decode_ids, decode_rows, encode_ids, encode_rows};
pub use ids::{IdColumn, IdLookup};
pub use store::{BuiltSegment, LoadedSegment, SegmentIds, build, load_ids, prepare_query, score_of, space_of, upload};
