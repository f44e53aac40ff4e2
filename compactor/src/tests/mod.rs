//! Tests of the compactor over real stores (InMemory, LocalFileSystem), a real segment
//! cache and in-process coordination. `harness` builds shards the way the ingest flush
//! does; `hook_store` injects a concurrent commit into a compaction's manifest create.

// The background-loop tests wait for it in real time.
#![allow(clippy::disallowed_methods)]

mod gc_tests;
mod harness;
mod hook_store;
mod loop_tests;
mod merge_tests;
