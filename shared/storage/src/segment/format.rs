//! Encodings of the two immutable files of a segment, both Arrow IPC *file* format held in
//! memory (`bytes::Bytes`), one record batch each.
//!
//! - `ids.arrow`: `{ id_int: UInt64?, id_str: Utf8? }`, exactly one non-null per row.
//! - `rows.arrow`: `{ vector: FixedSizeList<Float32 (non-null), dim> (non-null), attr.{key}... }`
//!   with one column per attribute key seen in the segment, sorted by key. Schema metadata:
//!   `strata.format = "1"`, `strata.dim = "{dim}"`.
//!
//! Attribute column typing, chosen per key over the non-null values of that key in this
//! segment (the rule is part of the format, so the round trip is exact):
//! - all booleans → `Boolean`;
//! - all integers that fit `i64` → `Int64`;
//! - all floats (JSON numbers that are not integers, e.g. `1.5`, `3.0`) → `Float64`;
//! - all strings → `Utf8`;
//! - all arrays of strings → `List<Utf8>` (string lists: tags);
//! - anything else (two or more of the kinds above, any `u64` above `i64::MAX`, arrays or
//!   objects) → `Utf8` holding each value's JSON text, with field metadata
//!   `strata.json = "true"`. Integers mixed with floats land here too rather than in
//!   `Float64`, because a `Float64` column would turn `3` into `3.0`.
//!
//! JSON `null` and an absent key are the same thing: a null cell. Decoding therefore drops
//! `null` members, and a row whose attributes are all null decodes as `None`.
//!
//! Integrity: Arrow IPC has no checksum, and arrow-rs' reader panics (out-of-range buffer
//! slices) or allocates blindly on some malformed inputs. So the writer stores, in the
//! footer's custom metadata (`strata.crc32`), a CRC32 of every byte up to the end of the
//! record batch, leading schema message included. The reader checks the trailer, footer
//! and block bounds itself, verifies the CRC, takes the schema from the checksummed leading
//! message (the footer's copy is not covered), and only then hands the block to arrow's
//! zero-copy `FileDecoder` with validation on. A `catch_unwind` around all of it is the last
//! line of defence: corrupt input is always `Error::corrupt`, never a panic.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, ListArray, RecordBatch,
    StringArray, UInt64Array,
};
use arrow_buffer::Buffer;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Metadata, Schema};
use bytes::Bytes;
use serde_json::Value;

use strata_types::{Attributes, RowId};
use strata_types::{Error, Result};

const FORMAT_VERSION: &str = "1";
const META_FORMAT: &str = "strata.format";
const META_DIM: &str = "strata.dim";
const META_JSON: &str = "strata.json";
const META_CRC: &str = "strata.crc32";
const VECTOR_COLUMN: &str = "vector";
const ATTR_PREFIX: &str = "attr.";
const ID_INT: &str = "id_int";
const ID_STR: &str = "id_str";
const IDS_FILE: &str = "segment ids file";
const ROWS_FILE: &str = "segment rows file";
/// `ARROW1`, then zero padding to the writer's alignment, open every IPC file.
const MAGIC: &[u8; 6] = b"ARROW1";
const LEADING_MAGIC_LEN: usize = 8;
/// The largest alignment an IPC writer pads to.
const MAX_ALIGNMENT: usize = 64;
/// Footer length (i32) plus `ARROW1` close every IPC file.
const TRAILER_LEN: usize = 10;

/// Encodes the ids of a segment's rows, in row order.
pub fn encode_ids(ids: &[RowId]) -> Result<Bytes> {
    let ints: UInt64Array = ids
        .iter()
        .map(|id| match id {
            RowId::Int(v) => Some(*v),
            RowId::Str(_) => None,
        })
        .collect();
    let strs = utf8_array(ids.iter().map(|id| match id {
        RowId::Int(_) => None,
        RowId::Str(s) => Some(Cow::Borrowed(s.as_str())),
    }))?;
    let schema =
        Schema::new(vec![Field::new(ID_INT, DataType::UInt64, true), Field::new(ID_STR, DataType::Utf8, true)])
            .with_metadata([(META_FORMAT, FORMAT_VERSION)]);
    write_file(schema, vec![Arc::new(ints), Arc::new(strs)])
}

/// Decodes an `ids.arrow` file written by [`encode_ids`].
pub fn decode_ids(bytes: &Bytes) -> Result<Vec<RowId>> {
    let batch = read_file(IDS_FILE, bytes)?;
    check_format(IDS_FILE, batch.schema().metadata())?;
    let column =
        |name: &str| batch.column_by_name(name).ok_or_else(|| Error::corrupt(IDS_FILE, format!("no column {name}")));
    let ints = column(ID_INT)?
        .as_any()
        .downcast_ref::<UInt64Array>()
        .ok_or_else(|| Error::corrupt(IDS_FILE, "id_int is not UInt64"))?;
    let strs = column(ID_STR)?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::corrupt(IDS_FILE, "id_str is not Utf8"))?;
    (0..batch.num_rows())
        .map(|row| match (ints.is_valid(row), strs.is_valid(row)) {
            (true, false) => Ok(RowId::Int(ints.value(row))),
            (false, true) => Ok(RowId::Str(strs.value(row).to_owned())),
            _ => Err(Error::corrupt(IDS_FILE, format!("row {row} must hold exactly one id"))),
        })
        .collect()
}

/// The type a key's attribute column gets; see the module docs for the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    StrList,
    Json,
}

impl Kind {
    /// The kind of one non-null value, or `None` for null.
    fn of(value: &Value) -> Option<Kind> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() => Kind::Int,
            Value::Number(n) if n.is_f64() => Kind::Float,
            // A u64 above i64::MAX: only JSON text keeps it exact.
            Value::Number(_) => Kind::Json,
            Value::String(_) => Kind::Str,
            Value::Array(items) if items.iter().all(Value::is_string) => Kind::StrList,
            Value::Array(_) | Value::Object(_) => Kind::Json,
        })
    }

    fn merge(self, other: Kind) -> Kind {
        if self == other { self } else { Kind::Json }
    }
}

/// Encodes a segment's vectors (`attributes.len()` rows of `dim` values, row-major) and
/// their attributes.
pub fn encode_rows(dim: usize, vectors: &[f32], attributes: &[Option<&Attributes>]) -> Result<Bytes> {
    let columns = attribute_columns(attributes)?;
    encode_rows_with(dim, vectors, attributes.len(), &columns)
}

/// Encodes vectors with attribute columns already typed by [`attribute_columns`] (the
/// segment builder also indexes those columns, so it types them once).
pub(crate) fn encode_rows_with(dim: usize, vectors: &[f32], rows: usize, attributes: &[AttrColumn]) -> Result<Bytes> {
    let size = i32::try_from(dim)
        .ok()
        .filter(|d| *d > 0)
        .ok_or_else(|| Error::invalid(format!("segment dimension {dim} is out of range")))?;
    if rows.checked_mul(dim) != Some(vectors.len()) {
        return Err(Error::invalid(format!(
            "{} vector values do not make {rows} rows of dimension {dim}",
            vectors.len()
        )));
    }
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let values = Arc::new(Float32Array::from(vectors.to_vec()));
    let vector = FixedSizeListArray::try_new(item.clone(), size, values, None)
        .map_err(|e| Error::internal("building the vector column").with_source(e))?;
    let mut fields = vec![Field::new(VECTOR_COLUMN, DataType::FixedSizeList(item, size), false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(vector)];
    for column in attributes {
        let name = format!("{ATTR_PREFIX}{}", column.key);
        let (field, array): (Field, ArrayRef) = match &column.values {
            AttrValues::Bool(a) => (Field::new(name, DataType::Boolean, true), Arc::new(a.clone())),
            AttrValues::Int(a) => (Field::new(name, DataType::Int64, true), Arc::new(a.clone())),
            AttrValues::Float(a) => (Field::new(name, DataType::Float64, true), Arc::new(a.clone())),
            AttrValues::Str(a) => (Field::new(name, DataType::Utf8, true), Arc::new(a.clone())),
            AttrValues::StrList(a) => (Field::new(name, string_list_type(), true), Arc::new(a.clone())),
            AttrValues::Json(a) => {
                (Field::new(name, DataType::Utf8, true).with_metadata([(META_JSON, "true")]), Arc::new(a.clone()))
            }
        };
        fields.push(field);
        columns.push(array);
    }
    let schema =
        Schema::new(fields).with_metadata([(META_FORMAT, FORMAT_VERSION.to_owned()), (META_DIM, dim.to_string())]);
    write_file(schema, columns)
}

/// Types the attributes of a segment's rows into columns, one per key seen, sorted by key
/// (the rule is in the module docs).
pub(crate) fn attribute_columns(attributes: &[Option<&Attributes>]) -> Result<Vec<AttrColumn>> {
    // BTreeMap: attribute columns are sorted by key.
    let mut kinds: BTreeMap<&str, Kind> = BTreeMap::new();
    for (key, value) in attributes.iter().flatten().flat_map(|a| a.iter()) {
        if let Some(kind) = Kind::of(value) {
            kinds.entry(key).and_modify(|k| *k = k.merge(kind)).or_insert(kind);
        }
    }
    let mut columns = Vec::with_capacity(kinds.len());
    for (key, kind) in kinds {
        let cells = || attributes.iter().map(|a| a.and_then(|a| a.get(key)).filter(|v| !v.is_null()));
        let values = match kind {
            Kind::Bool => AttrValues::Bool(cells().map(|v| v.and_then(Value::as_bool)).collect()),
            Kind::Int => AttrValues::Int(cells().map(|v| v.and_then(Value::as_i64)).collect()),
            Kind::Float => AttrValues::Float(cells().map(|v| v.and_then(Value::as_f64)).collect()),
            Kind::Str => AttrValues::Str(utf8_array(cells().map(|v| v.and_then(Value::as_str).map(Cow::Borrowed)))?),
            Kind::StrList => AttrValues::StrList(string_list(cells())?),
            Kind::Json => AttrValues::Json(utf8_array(cells().map(|v| v.map(|v| Cow::Owned(v.to_string()))))?),
        };
        columns.push(AttrColumn { key: key.to_owned(), values });
    }
    Ok(columns)
}

/// A `Utf8` array of the cells, refusing (instead of letting arrow panic) a column whose
/// text exceeds the 2 GiB that `Utf8`'s i32 offsets can address.
fn utf8_array<'a>(cells: impl Iterator<Item = Option<Cow<'a, str>>>) -> Result<StringArray> {
    let cells: Vec<Option<Cow<'a, str>>> = cells.collect();
    let total: usize = cells.iter().flatten().map(|s| s.len()).sum();
    if i32::try_from(total).is_err() {
        return Err(Error::invalid(format!("a segment string column of {total} bytes exceeds Arrow's 2 GiB limit")));
    }
    Ok(cells.iter().map(Option::as_deref).collect())
}

fn string_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
}

/// A `List<Utf8>` array of the cells (each an array of strings, or null), with the same
/// 2 GiB bound as [`utf8_array`].
fn string_list<'a>(cells: impl Iterator<Item = Option<&'a Value>>) -> Result<ListArray> {
    let mut total = 0usize;
    let mut builder = ListBuilder::new(StringBuilder::new()).with_field(Field::new("item", DataType::Utf8, false));
    for cell in cells {
        match cell.and_then(Value::as_array) {
            Some(items) => {
                for item in items.iter().filter_map(Value::as_str) {
                    total += item.len();
                    builder.values().append_value(item);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    if i32::try_from(total).is_err() {
        return Err(Error::invalid(format!("a segment string column of {total} bytes exceeds Arrow's 2 GiB limit")));
    }
    Ok(builder.finish())
}

/// One attribute column of a decoded segment, in owned, compact Arrow arrays.
#[derive(Clone, Debug)]
pub(crate) enum AttrValues {
    Bool(BooleanArray),
    Int(Int64Array),
    Float(Float64Array),
    Str(StringArray),
    /// Lists of strings; the items of every list are non-null.
    StrList(ListArray),
    /// JSON text; every non-null cell was checked to parse when the file was decoded.
    Json(StringArray),
}

#[derive(Clone, Debug)]
pub struct AttrColumn {
    pub(crate) key: String,
    pub(crate) values: AttrValues,
}

/// The strings of list cell `row` of a string-list column.
pub(crate) fn list_items(list: &ListArray, row: usize) -> impl Iterator<Item = &str> {
    let offsets = list.value_offsets();
    let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
    let items = list.values().as_any().downcast_ref::<StringArray>().expect("checked when decoded");
    (start..end).map(move |i| items.value(i))
}

impl AttrColumn {
    fn value(&self, row: usize) -> Option<Value> {
        match &self.values {
            AttrValues::Bool(a) => a.is_valid(row).then(|| Value::Bool(a.value(row))),
            AttrValues::Int(a) => a.is_valid(row).then(|| Value::from(a.value(row))),
            // Value::from maps a non-finite float (only a foreign writer could store one)
            // to null, which is then skipped like any null.
            AttrValues::Float(a) => a.is_valid(row).then(|| Value::from(a.value(row))),
            AttrValues::Str(a) => a.is_valid(row).then(|| Value::String(a.value(row).to_owned())),
            AttrValues::StrList(a) => {
                a.is_valid(row).then(|| Value::Array(list_items(a, row).map(|s| Value::String(s.to_owned())).collect()))
            }
            AttrValues::Json(a) => a.is_valid(row).then(|| parse_json_text(a.value(row))).flatten(),
        }
        .filter(|v| !v.is_null())
    }

    fn memory_bytes(&self) -> usize {
        let array = match &self.values {
            AttrValues::Bool(a) => a.get_array_memory_size(),
            AttrValues::Int(a) => a.get_array_memory_size(),
            AttrValues::Float(a) => a.get_array_memory_size(),
            AttrValues::Str(a) | AttrValues::Json(a) => a.get_array_memory_size(),
            AttrValues::StrList(a) => a.get_array_memory_size(),
        };
        std::mem::size_of::<Self>() + self.key.capacity() + array
    }
}

/// Parses a JSON-text attribute cell. Floats are re-parsed with the standard library, whose
/// parsing is correctly rounded, so the shortest-round-trip text serde_json wrote comes back
/// bit-exact whatever serde_json's own float parsing features are.
pub(crate) fn parse_json_text(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value.as_number().is_some_and(serde_json::Number::is_f64) {
        return text.trim().parse::<f64>().ok().map(Value::from);
    }
    Some(value)
}

/// A decoded `rows.arrow`: vectors in one contiguous row-major buffer, attributes kept
/// columnar and materialised per row on demand.
#[derive(Clone, Debug)]
pub struct DecodedRows {
    pub dim: usize,
    /// `len() * dim` values, row-major.
    pub vectors: Vec<f32>,
    rows: usize,
    columns: Vec<AttrColumn>,
}

impl DecodedRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The vector of `row`. Panics if `row >= len()`.
    pub fn vector(&self, row: u32) -> &[f32] {
        let start = row as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// The non-null attributes of `row`, or `None` if it has none. Panics if `row >= len()`.
    pub fn attributes(&self, row: u32) -> Option<Attributes> {
        let row = row as usize;
        assert!(row < self.rows, "row {row} out of range for a segment of {} rows", self.rows);
        let attrs: Attributes = self.columns.iter().filter_map(|c| Some((c.key.clone(), c.value(row)?))).collect();
        (!attrs.is_empty()).then_some(attrs)
    }

    /// The attribute columns, sorted by key.
    pub(crate) fn columns(&self) -> &[AttrColumn] {
        &self.columns
    }

    /// Approximate heap plus inline size, for cache accounting.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.vectors.capacity() * std::mem::size_of::<f32>()
            + self.columns.iter().map(AttrColumn::memory_bytes).sum::<usize>()
    }
}

/// Decodes a `rows.arrow` file written by [`encode_rows`].
pub fn decode_rows(bytes: &Bytes) -> Result<DecodedRows> {
    let batch = read_file(ROWS_FILE, bytes)?;
    let schema = batch.schema();
    check_format(ROWS_FILE, schema.metadata())?;
    let corrupt = |why: String| Error::corrupt(ROWS_FILE, why);
    let dim: usize = schema
        .metadata()
        .get(META_DIM)
        .and_then(|d| d.parse().ok())
        .filter(|d| *d > 0)
        .ok_or_else(|| corrupt("missing or bad strata.dim".into()))?;
    let rows = batch.num_rows();
    if u32::try_from(rows).is_err() {
        return Err(corrupt(format!("{rows} rows exceed the u32 row index")));
    }

    let (first, rest) = schema.fields().split_first().ok_or_else(|| corrupt("no columns".into()))?;
    if first.name() != VECTOR_COLUMN {
        return Err(corrupt(format!("first column is {:?}, not vector", first.name())));
    }
    let list = batch
        .column(0)
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .filter(|l| l.value_length() as usize == dim && l.null_count() == 0)
        .ok_or_else(|| corrupt(format!("vector is not a non-null FixedSizeList of {dim}")))?;
    let values = list
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .filter(|v| v.null_count() == 0 && Some(v.len()) == rows.checked_mul(dim))
        .ok_or_else(|| corrupt(format!("vector values are not {rows}×{dim} non-null Float32")))?;
    let vectors = values.values().to_vec();

    let mut seen = HashSet::new();
    let mut columns = Vec::with_capacity(rest.len());
    for (i, field) in rest.iter().enumerate() {
        let key = field
            .name()
            .strip_prefix(ATTR_PREFIX)
            .filter(|k| !k.is_empty() && seen.insert(k.to_string()))
            .ok_or_else(|| corrupt(format!("unexpected or repeated column {:?}", field.name())))?;
        let array = batch.column(i + 1).as_any();
        let json = field.metadata().get(META_JSON).is_some_and(|v| v == "true");
        let wrong = || corrupt(format!("column {:?} has an unexpected type", field.name()));
        // Rebuilt rather than kept: the decoded arrays are zero-copy slices of the whole
        // file, and keeping one would pin the file's bytes (vectors included) in memory.
        let values = match field.data_type() {
            DataType::Boolean => {
                let a = array.downcast_ref::<BooleanArray>().ok_or_else(wrong)?;
                AttrValues::Bool(a.iter().collect())
            }
            DataType::Int64 => {
                let a = array.downcast_ref::<Int64Array>().ok_or_else(wrong)?;
                AttrValues::Int(a.iter().collect())
            }
            DataType::Float64 => {
                let a = array.downcast_ref::<Float64Array>().ok_or_else(wrong)?;
                AttrValues::Float(a.iter().collect())
            }
            DataType::Utf8 => {
                let a: StringArray = array.downcast_ref::<StringArray>().ok_or_else(wrong)?.iter().collect();
                if !json {
                    AttrValues::Str(a)
                } else if let Some(bad) = a.iter().flatten().find(|t| parse_json_text(t).is_none()) {
                    return Err(corrupt(format!("column {:?} holds invalid JSON {bad:?}", field.name())));
                } else {
                    AttrValues::Json(a)
                }
            }
            DataType::List(item) if item.data_type() == &DataType::Utf8 => {
                let a = array.downcast_ref::<ListArray>().ok_or_else(wrong)?;
                let items = a.values().as_any().downcast_ref::<StringArray>().ok_or_else(wrong)?;
                if items.null_count() != 0 {
                    return Err(corrupt(format!("column {:?} holds a null list item", field.name())));
                }
                // Rebuilt so the column owns compact buffers (see above).
                let owned: Vec<Value> = (0..a.len())
                    .map(|r| {
                        if a.is_valid(r) {
                            Value::Array(list_items(a, r).map(|s| Value::String(s.to_owned())).collect())
                        } else {
                            Value::Null
                        }
                    })
                    .collect();
                AttrValues::StrList(string_list(owned.iter().map(|v| (!v.is_null()).then_some(v)))?)
            }
            _ => return Err(wrong()),
        };
        columns.push(AttrColumn { key: key.to_owned(), values });
    }
    Ok(DecodedRows { dim, vectors, rows, columns })
}

fn check_format(what: &str, metadata: &Metadata) -> Result<()> {
    match metadata.get(META_FORMAT) {
        Some(v) if v == FORMAT_VERSION => Ok(()),
        other => Err(Error::corrupt(what, format!("unsupported strata.format {other:?}"))),
    }
}

/// Writes one record batch as an IPC file, with the CRC32 of everything before the footer
/// in the footer's custom metadata.
fn write_file(schema: Schema, columns: Vec<ArrayRef>) -> Result<Bytes> {
    let encoding = |e| Error::internal("encoding a segment file").with_source(e);
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(encoding)?;
    let mut writer = FileWriter::try_new(Vec::new(), &schema).map_err(encoding)?;
    writer.write(&batch).map_err(encoding)?;
    // FileWriter writes straight into the Vec, so this is every byte before the footer
    // except the end-of-stream marker `finish` adds.
    let crc = crc32fast::hash(writer.get_ref());
    writer.write_metadata(META_CRC, format!("{crc:08x}"));
    writer.finish().map_err(encoding)?;
    Ok(Bytes::from(writer.into_inner().map_err(encoding)?))
}

/// Reads the single record batch of an IPC file written by [`write_file`].
fn read_file(what: &str, bytes: &Bytes) -> Result<RecordBatch> {
    match catch_unwind(AssertUnwindSafe(|| read_file_checked(what, bytes))) {
        Ok(result) => result,
        Err(_) => Err(Error::corrupt(what, "the Arrow decoder rejected the data")),
    }
}

fn read_file_checked(what: &str, bytes: &Bytes) -> Result<RecordBatch> {
    let corrupt = |why: &str| Error::corrupt(what, why);
    let len = bytes.len();
    if len < LEADING_MAGIC_LEN + TRAILER_LEN || !bytes.starts_with(MAGIC) {
        return Err(corrupt("not an Arrow IPC file"));
    }
    let trailer: [u8; TRAILER_LEN] = bytes[len - TRAILER_LEN..].try_into().expect("slice of length 10");
    let footer_len = read_footer_length(trailer).map_err(|e| corrupt(&e.to_string()))?;
    let footer_start = (len - TRAILER_LEN)
        .checked_sub(footer_len)
        .filter(|s| *s >= LEADING_MAGIC_LEN)
        .ok_or_else(|| corrupt("footer length exceeds the file"))?;
    let footer = arrow_ipc::root_as_footer(&bytes[footer_start..len - TRAILER_LEN])
        .map_err(|e| corrupt(&format!("footer: {e}")))?;

    let blocks = footer.recordBatches().ok_or_else(|| corrupt("no record batches"))?;
    if blocks.len() != 1 || footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err(corrupt("expected exactly one record batch and no dictionaries"));
    }
    let block = blocks.get(0);
    let (offset, meta, body) =
        (usize::try_from(block.offset()), usize::try_from(block.metaDataLength()), usize::try_from(block.bodyLength()));
    let (Ok(offset), Ok(meta), Ok(body)) = (offset, meta, body) else {
        return Err(corrupt("negative block bounds"));
    };
    let block_len = meta.checked_add(body).ok_or_else(|| corrupt("block too large"))?;
    let block_end = offset.checked_add(block_len).ok_or_else(|| corrupt("block too large"))?;
    if offset < LEADING_MAGIC_LEN || block_end > footer_start {
        return Err(corrupt("record batch lies outside the file"));
    }

    let stored_crc = footer
        .custom_metadata()
        .into_iter()
        .flatten()
        .find(|kv| kv.key() == Some(META_CRC))
        .and_then(|kv| kv.value())
        .and_then(|v| u32::from_str_radix(v, 16).ok())
        .ok_or_else(|| corrupt("missing strata.crc32"))?;
    if crc32fast::hash(&bytes[..block_end]) != stored_crc {
        return Err(corrupt("checksum mismatch"));
    }

    // The footer repeats the schema outside the checksum; use the stream's leading schema
    // message instead, which the checksum covers.
    let schema = read_schema_message(&bytes[MAGIC.len()..offset]).map_err(|why| corrupt(&why))?;
    let decoder = FileDecoder::new(Arc::new(schema), footer.version());
    let data = Buffer::from(bytes.clone()).slice_with_length(offset, block_len);
    decoder
        .read_record_batch(block, &data)
        .map_err(|e| corrupt(&e.to_string()))?
        .ok_or_else(|| corrupt("empty record batch message"))
}

/// Parses the schema message that follows the leading magic: zero padding (to the
/// writer's alignment, 64 bytes by default), continuation marker, i32 metadata length,
/// flatbuffer `Message` holding a `Schema`.
fn read_schema_message(buf: &[u8]) -> std::result::Result<Schema, String> {
    let padding = buf.iter().take(MAX_ALIGNMENT).take_while(|b| **b == 0).count();
    let buf = &buf[padding..];
    let prefix: [u8; 8] = buf.get(..8).and_then(|p| p.try_into().ok()).ok_or("no schema message")?;
    let (marker, len) = prefix.split_at(4);
    let len = i32::from_le_bytes(len.try_into().map_err(|_| "bad schema length")?);
    if marker != [0xff; 4] {
        return Err("schema message lacks the continuation marker".into());
    }
    let meta = usize::try_from(len).ok().and_then(|len| buf.get(8..8 + len)).ok_or("bad schema length")?;
    let message = arrow_ipc::root_as_message(meta).map_err(|e| format!("schema message: {e}"))?;
    let ipc_schema = message.header_as_schema().ok_or("first message is not a schema")?;
    if !ipc_schema.endianness().equals_to_target_endianness() {
        return Err("written on a machine of the other endianness".into());
    }
    arrow_ipc::convert::try_fb_to_schema(ipc_schema).map_err(|e| e.to_string())
}
