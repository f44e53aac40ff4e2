//! The byte format of `attrs.idx`, little-endian throughout:
//!
//! ```text
//! "STRATAX1" | rows: u32 | fields: u32 | field* | crc32 of everything before: u32
//! field = key_len: u16 | key | kind: u8 | values: u32 | value* | offsets: u32 × (values + 1)
//!         | rows: u32 × offsets[last] | present_len: u32 | present (roaring portable format)
//! value = bool: u8 | int: i64 | float: f64 | string: u32 length + UTF-8 bytes
//! kind  = 0 bool, 1 int, 2 float, 3 string, 4 string-list item, 5 unindexed
//! ```
//!
//! The decoder trusts nothing: it checks the checksum, every length against the bytes
//! left, that values are strictly ascending (binary searches rely on it), that offsets
//! start at 0 and never decrease, and that every row is below the segment's row count.
//! Corrupt input is `Error::corrupt`, never a panic.

use std::cmp::Ordering;

use bytes::Bytes;
use roaring::RoaringBitmap;
use strata_types::{Error, Result};

use super::attr_index::{AttrIndex, FieldIndex, Values};

const MAGIC: &[u8; 8] = b"STRATAX1";
const WHAT: &str = "segment attribute index";

impl AttrIndex {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&(self.fields.len() as u32).to_le_bytes());
        for f in &self.fields {
            out.extend_from_slice(&(f.key.len() as u16).to_le_bytes());
            out.extend_from_slice(f.key.as_bytes());
            let (kind, count) = match &f.values {
                Values::Bool(v) => (0u8, v.len()),
                Values::Int(v) => (1, v.len()),
                Values::Float(v) => (2, v.len()),
                Values::Str(v) => (3, v.len()),
                Values::StrList(v) => (4, v.len()),
                Values::Unindexed => (5, 0),
            };
            out.push(kind);
            out.extend_from_slice(&(count as u32).to_le_bytes());
            match &f.values {
                Values::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
                Values::Int(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Values::Float(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                Values::Str(v) | Values::StrList(v) => v.iter().for_each(|s| {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }),
                Values::Unindexed => {}
            }
            f.offsets.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            f.rows.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            out.extend_from_slice(&(f.present.serialized_size() as u32).to_le_bytes());
            f.present.serialize_into(&mut out).expect("writing to a Vec cannot fail");
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<AttrIndex> {
        let corrupt = |why: String| Error::corrupt(WHAT, why);
        let body_len = bytes.len().checked_sub(4).ok_or_else(|| corrupt("too short".into()))?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let mut r = Reader { buf: body };
        if r.take(MAGIC.len()).map_err(corrupt)? != MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        let rows = r.u32().map_err(corrupt)?;
        let count = r.u32().map_err(corrupt)?;
        let mut fields: Vec<FieldIndex> = Vec::new();
        for _ in 0..count {
            let field = r.field(rows).map_err(corrupt)?;
            if fields.last().is_some_and(|last| last.key >= field.key) {
                return Err(corrupt(format!("attribute {:?} is out of order", field.key)));
            }
            fields.push(field);
        }
        if !r.buf.is_empty() {
            return Err(corrupt(format!("{} trailing bytes", r.buf.len())));
        }
        Ok(AttrIndex { rows, fields })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

type Step<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        if n > self.buf.len() {
            return Err(format!("needs {n} bytes, {} left", self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Step<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Step<[u8; 8]> {
        Ok(self.take(8)?.try_into().expect("8 bytes"))
    }

    /// A count of items of at least `item_bytes` each, refused if the bytes left cannot
    /// hold them (so a corrupt count cannot trigger a huge allocation).
    fn count(&mut self, item_bytes: usize) -> Step<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_bytes) > self.buf.len() {
            return Err(format!("{n} items cannot fit in {} bytes", self.buf.len()));
        }
        Ok(n)
    }

    fn string(&mut self) -> Step<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "a value is not UTF-8".to_string())
    }

    fn field(&mut self, rows: u32) -> Step<FieldIndex> {
        let key_len = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        let key = String::from_utf8(self.take(key_len)?.to_vec()).map_err(|_| "a key is not UTF-8".to_string())?;
        let kind = self.take(1)?[0];
        let values = match kind {
            0 => {
                let n = self.count(1)?;
                let raw = self.take(n)?;
                if raw.iter().any(|b| *b > 1) {
                    return Err("a bool value is not 0 or 1".into());
                }
                Values::Bool(raw.iter().map(|b| *b == 1).collect())
            }
            1 => {
                let n = self.count(8)?;
                Values::Int((0..n).map(|_| self.u64().map(i64::from_le_bytes)).collect::<Step<_>>()?)
            }
            2 => {
                let n = self.count(8)?;
                let v: Vec<f64> = (0..n).map(|_| self.u64().map(f64::from_le_bytes)).collect::<Step<_>>()?;
                if v.iter().any(|x| !x.is_finite()) {
                    return Err("a float value is not finite".into());
                }
                Values::Float(v)
            }
            3 | 4 => {
                let n = self.count(4)?;
                let v: Vec<String> = (0..n).map(|_| self.string()).collect::<Step<_>>()?;
                if kind == 3 { Values::Str(v) } else { Values::StrList(v) }
            }
            5 => {
                if self.u32()? != 0 {
                    return Err("an unindexed attribute lists values".into());
                }
                Values::Unindexed
            }
            other => return Err(format!("unknown attribute kind {other}")),
        };
        let ascending = match &values {
            Values::Bool(v) => v.windows(2).all(|w| !w[0] && w[1]),
            Values::Int(v) => v.windows(2).all(|w| w[0] < w[1]),
            Values::Float(v) => v.windows(2).all(|w| w[0].total_cmp(&w[1]) == Ordering::Less),
            Values::Str(v) | Values::StrList(v) => v.windows(2).all(|w| w[0] < w[1]),
            Values::Unindexed => true,
        };
        if !ascending {
            return Err(format!("values of {key:?} are not strictly ascending"));
        }
        let groups = match &values {
            Values::Bool(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Str(v) | Values::StrList(v) => v.len(),
            Values::Unindexed => 0,
        };
        let offsets: Vec<u32> = (0..=groups).map(|_| self.u32()).collect::<Step<_>>()?;
        if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("offsets of {key:?} are not ascending from 0"));
        }
        let total = *offsets.last().expect("at least one offset") as usize;
        if total.saturating_mul(4) > self.buf.len() {
            return Err(format!("{total} rows of {key:?} do not fit"));
        }
        let grouped: Vec<u32> = (0..total).map(|_| self.u32()).collect::<Step<_>>()?;
        if grouped.iter().any(|r| *r >= rows) {
            return Err(format!("a row of {key:?} is out of range"));
        }
        // Listing one value's rows relies on them being ascending.
        if offsets.windows(2).any(|w| grouped[w[0] as usize..w[1] as usize].windows(2).any(|p| p[0] >= p[1])) {
            return Err(format!("rows of a value of {key:?} are not ascending"));
        }
        let present_len = self.u32()? as usize;
        let present = RoaringBitmap::deserialize_from(self.take(present_len)?)
            .map_err(|e| format!("present rows of {key:?}: {e}"))?;
        if present.max().is_some_and(|m| m >= rows) {
            return Err(format!("a present row of {key:?} is out of range"));
        }
        Ok(FieldIndex { key, values, offsets, rows: grouped, present })
    }
}
