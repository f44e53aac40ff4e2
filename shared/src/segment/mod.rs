//! Segment file formats.

mod format;
mod ids;

#[cfg(test)]
mod format_tests;

pub use format::{DecodedRows, decode_ids, decode_rows, encode_ids, encode_rows};
pub use ids::{IdColumn, IdLookup};

// ---- Added by the lead (segment layout and whole-segment build/load); keep when editing. ----
pub mod store;

/// The files of one segment, under `segments/{segment}/`: row ids, vectors with
/// attributes, and the HNSW graph (absent for small segments, which are searched exactly).
pub const IDS_FILE: &str = "ids.arrow";
pub const ROWS_FILE: &str = "rows.arrow";
pub const GRAPH_FILE: &str = "graph.hnsw";
pub const SEGMENT_FILES: [&str; 3] = [IDS_FILE, ROWS_FILE, GRAPH_FILE];
