//! Binary format of a [`Graph`] (little-endian throughout).
//!
//! ```text
//! magic    8 bytes  "STRAHNSW"
//! version  u32      = 1
//! n        u32      rows
//! entry    u32      entry row (0 when n == 0)
//! layers   u32      1 + number of upper layers (1..=MAX_LAYERS)
//! per layer, bottom first:
//!   nodes  u32      node count (layer 0: = n)
//!   edges  u64      neighbour count
//!   ids    u32 × nodes   (upper layers only) rows, strictly increasing
//!   degree u32 × nodes   neighbours per node
//!   nbrs   u32 × edges   neighbour rows, node after node
//! crc32    u32      crc32 (IEEE, crc32fast) of every byte before it
//! ```
//!
//! Flow: `decode` checks length and checksum first, then parses with a bounds-checked
//! reader and validates every invariant listed in `graph.rs`, so a graph that decodes
//! can be searched without out-of-range indexing. Every size is checked against the
//! bytes actually left before anything is allocated, so a corrupt header cannot make us
//! allocate gigabytes. Decode never panics; every failure is a [`DecodeError`].

use super::graph::{Csr, Graph, UpperLayer};
use super::level0::Level0;
use crate::DecodeError;

type Result<T> = std::result::Result<T, DecodeError>;

const MAGIC: &[u8; 8] = b"STRAHNSW";
const VERSION: u32 = 1;
/// hnsw_rs never produces more than 16 layers; leave headroom for other builders.
const MAX_LAYERS: u32 = 64;
const WHAT: &str = "hnsw graph";

pub(super) fn encode(graph: &Graph) -> Vec<u8> {
    let edges: usize = graph.base.edges() + graph.upper.iter().map(|l| l.adj.neighbours.len()).sum::<usize>();
    let nodes: usize = graph.len() + graph.upper.iter().map(|l| 2 * l.nodes.len()).sum::<usize>();
    let mut out = Vec::with_capacity(28 + 12 * (1 + graph.upper.len()) + 4 * (nodes + edges) + 4);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, graph.n);
    put_u32(&mut out, graph.entry);
    put_u32(&mut out, 1 + graph.upper.len() as u32);
    put_layer(&mut out, None, graph.base.edges(), graph.base.lists());
    for layer in &graph.upper {
        let lists = (0..layer.adj.node_count()).map(|i| layer.adj.neighbours(i));
        put_layer(&mut out, Some(&layer.nodes), layer.adj.neighbours.len(), lists);
    }
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    out
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes one layer given its node ids (upper layers), edge count and per-node lists.
fn put_layer<'a>(
    out: &mut Vec<u8>,
    nodes: Option<&[u32]>,
    edges: usize,
    lists: impl Iterator<Item = &'a [u32]> + Clone,
) {
    put_u32(out, lists.clone().count() as u32);
    out.extend_from_slice(&(edges as u64).to_le_bytes());
    for &row in nodes.unwrap_or(&[]) {
        put_u32(out, row);
    }
    for list in lists.clone() {
        put_u32(out, list.len() as u32);
    }
    for list in lists {
        for &nb in list {
            put_u32(out, nb);
        }
    }
}

fn corrupt(why: impl std::fmt::Display) -> DecodeError {
    DecodeError(format!("corrupt {WHAT}: {why}"))
}

pub(super) fn decode(bytes: &[u8]) -> Result<Graph> {
    const HEADER: usize = 8 + 4 * 4;
    if bytes.len() < HEADER + 4 {
        return Err(corrupt(format_args!("{} bytes is shorter than the header", bytes.len())));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(corrupt(format_args!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")));
    }
    if &body[..8] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let mut r = Reader { buf: &body[8..] };
    let version = r.u32()?;
    if version != VERSION {
        return Err(corrupt(format_args!("unsupported version {version}")));
    }
    let n = r.u32()?;
    let entry = r.u32()?;
    let layers = r.u32()?;
    if layers == 0 || layers > MAX_LAYERS {
        return Err(corrupt(format_args!("{layers} layers")));
    }
    if n == 0 && (entry != 0 || layers != 1) {
        return Err(corrupt("an empty graph with an entry point or upper layers"));
    }
    if n > 0 && entry >= n {
        return Err(corrupt(format_args!("entry {entry} outside {n} rows")));
    }

    let base = read_base(&mut r, n)?;
    let mut upper: Vec<UpperLayer> = Vec::with_capacity(layers as usize - 1);
    for level in 1..layers {
        let below = upper.last().map(|l| l.nodes.as_slice());
        let layer = read_upper(&mut r, n, below).map_err(|e| e.context(format_args!("layer {level}")))?;
        upper.push(layer);
    }
    if let Some(top) = upper.last()
        && top.nodes.binary_search(&entry).is_err()
    {
        return Err(corrupt(format_args!("entry {entry} is not on the top layer")));
    }
    if !r.buf.is_empty() {
        return Err(corrupt(format_args!("{} trailing bytes", r.buf.len())));
    }
    Ok(Graph { n, entry, base, upper })
}

fn read_base(r: &mut Reader<'_>, n: u32) -> Result<Level0> {
    let nodes = r.u32()?;
    if nodes != n {
        return Err(corrupt(format_args!("layer 0 has {nodes} nodes, graph has {n} rows")));
    }
    let edges = r.u64()?;
    let degrees = r.u32s(nodes as u64, "degrees")?;
    let adj = read_adjacency(r, &degrees, edges)?;
    if let Some(&bad) = adj.neighbours.iter().find(|&&nb| nb >= n) {
        return Err(corrupt(format_args!("layer 0 neighbour {bad} outside {n} rows")));
    }
    Ok(Level0::from_lists((0..adj.node_count()).map(|i| adj.neighbours(i))))
}

/// Reads one upper layer; `below` is the node list of the layer beneath (None when
/// that is layer 0, which holds every row).
fn read_upper(r: &mut Reader<'_>, n: u32, below: Option<&[u32]>) -> Result<UpperLayer> {
    let count = r.u32()?;
    if count == 0 || count > below.map_or(n, |b| b.len() as u32) {
        return Err(corrupt(format_args!("{count} nodes")));
    }
    let edges = r.u64()?;
    let nodes = r.u32s(count as u64, "node ids")?;
    if nodes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(corrupt("node ids not strictly increasing"));
    }
    let nested = match below {
        None => nodes.last().is_some_and(|&last| last < n),
        Some(below) => nodes.iter().all(|row| below.binary_search(row).is_ok()),
    };
    if !nested {
        return Err(corrupt("node not present on the layer below"));
    }
    let degrees = r.u32s(count as u64, "degrees")?;
    let adj = read_adjacency(r, &degrees, edges)?;
    if adj.neighbours.iter().any(|nb| nodes.binary_search(nb).is_err()) {
        return Err(corrupt("neighbour not present on its layer"));
    }
    Ok(UpperLayer { nodes, adj })
}

/// Reads `edges` neighbour ids and turns `degrees` into offsets, checking they agree.
fn read_adjacency(r: &mut Reader<'_>, degrees: &[u32], edges: u64) -> Result<Csr> {
    // Reading the ids first proves `edges` fits in memory (and in usize) before any
    // offset is converted.
    let neighbours = r.u32s(edges, "neighbours")?;
    let mut offsets = Vec::with_capacity(degrees.len() + 1);
    offsets.push(0usize);
    let mut total: u64 = 0;
    for &d in degrees {
        total += u64::from(d); // cannot overflow: at most 2^32 degrees of < 2^32 each
        if total > edges {
            return Err(corrupt(format_args!("degrees exceed the {edges} declared edges")));
        }
        offsets.push(total as usize);
    }
    if total != edges {
        return Err(corrupt(format_args!("degrees sum to {total}, {edges} edges declared")));
    }
    Ok(Csr { offsets, neighbours })
}

/// A cursor over the body that fails instead of panicking when bytes run out.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.buf.len() < len {
            return Err(corrupt(format_args!("truncated: need {len} bytes, {} left", self.buf.len())));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads `count` u32s, refusing before allocating if the bytes are not there.
    fn u32s(&mut self, count: u64, what: &str) -> Result<Vec<u32>> {
        let len = count
            .checked_mul(4)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l <= self.buf.len())
            .ok_or_else(|| corrupt(format_args!("{count} {what} do not fit in {} bytes", self.buf.len())))?;
        let raw = self.take(len)?;
        Ok(raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Graph {
        Graph {
            n: 4,
            entry: 2,
            base: Level0::from_lists([&[1u32, 2][..], &[0], &[0, 3], &[2]]),
            upper: vec![UpperLayer { nodes: vec![0, 2], adj: Csr::from_lists([&[2u32][..], &[0]]) }],
        }
    }

    #[test]
    fn round_trip_by_hand() {
        let g = sample();
        assert_eq!(Graph::decode(&g.encode()).unwrap(), g);
        let e = Graph::empty();
        assert_eq!(Graph::decode(&e.encode()).unwrap(), e);
    }

    /// Re-seals a hand-edited body with a valid checksum so validation, not the crc,
    /// has to catch the problem.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.truncate(bytes.len() - 4);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn structural_corruption_is_rejected_even_with_valid_crc() {
        let good = sample().encode();
        // entry (offset 16) moved off the top layer.
        let mut b = good.clone();
        b[16] = 1;
        assert!(Graph::decode(&reseal(b)).is_err());
        // First layer-0 neighbour (after 24-byte header, 12-byte layer header, 4 degrees)
        // pointing outside the rows.
        let mut b = good.clone();
        b[24 + 12 + 16] = 9;
        assert!(Graph::decode(&reseal(b)).is_err());
        // Version bump.
        let mut b = good.clone();
        b[8] = 2;
        let err = Graph::decode(&reseal(b)).unwrap_err();
        assert!(err.to_string().contains("corrupt hnsw graph"), "{err}");
        // Absurd edge count must fail without allocating.
        let mut b = good;
        b[24 + 4..24 + 12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Graph::decode(&reseal(b)).is_err());
    }
}
