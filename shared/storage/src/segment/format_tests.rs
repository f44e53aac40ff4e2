//! Round-trip, typing and corruption tests of the segment encodings and the id lookup.

use std::io::Cursor;

use arrow_ipc::reader::FileReader;
use arrow_schema::DataType;
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use strata_types::ErrorKind;
use strata_types::{Attributes, RowId};

fn row_id() -> impl Strategy<Value = RowId> {
    prop_oneof![any::<u64>().prop_map(RowId::Int), "\\PC{1,24}".prop_map(RowId::Str)]
}

/// Values of every kind, so a key often sees several kinds within one segment.
fn attr_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        proptest::num::f64::NORMAL.prop_map(Value::from),
        (-1000i32..1000).prop_map(|v| Value::from(f64::from(v))),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

/// Keys drawn from a small pool (so rows share keys) plus arbitrary unicode keys.
fn attributes() -> impl Strategy<Value = Option<Attributes>> {
    let key =
        prop_oneof![prop::sample::select(vec!["a", "b", "ключ", "🦀", "z.z"]).prop_map(str::to_owned), "\\PC{1,8}",];
    proptest::option::of(proptest::collection::btree_map(key, attr_value(), 0..6))
        .prop_map(|m| m.map(|m| m.into_iter().collect()))
}

/// What decoding must give back: nulls dropped, an empty map is no attributes.
fn expected(attrs: &Option<Attributes>) -> Option<Attributes> {
    let kept: Attributes =
        attrs.iter().flatten().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    (!kept.is_empty()).then_some(kept)
}

/// Exact equality, floats compared by bits (JSON `==` would equate `-0.0` and `0.0`).
fn same(a: &Option<Attributes>, b: &Option<Attributes>) -> bool {
    let bits = |m: &Attributes| -> Vec<(String, String, Option<u64>)> {
        m.iter().map(|(k, v)| (k.clone(), v.to_string(), v.as_f64().map(f64::to_bits))).collect()
    };
    a.as_ref().map(bits) == b.as_ref().map(bits)
}

fn encode(dim: usize, vectors: &[f32], attrs: &[Option<Attributes>]) -> Bytes {
    let refs: Vec<Option<&Attributes>> = attrs.iter().map(Option::as_ref).collect();
    encode_rows(dim, vectors, &refs).unwrap()
}

fn rows_strategy() -> impl Strategy<Value = (usize, Vec<f32>, Vec<Option<Attributes>>)> {
    (1usize..6, 0usize..24).prop_flat_map(|(dim, n)| {
        (Just(dim), proptest::collection::vec(any::<f32>(), n * dim), proptest::collection::vec(attributes(), n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn ids_round_trip(ids in proptest::collection::vec(row_id(), 0..64)) {
        let bytes = encode_ids(&ids).unwrap();
        prop_assert_eq!(decode_ids(&bytes).unwrap(), ids);
    }

    #[test]
    fn rows_round_trip((dim, vectors, attrs) in rows_strategy()) {
        let decoded = decode_rows(&encode(dim, &vectors, &attrs)).unwrap();
        prop_assert_eq!(decoded.dim, dim);
        prop_assert_eq!(decoded.len(), attrs.len());
        prop_assert_eq!(decoded.is_empty(), attrs.is_empty());
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&decoded.vectors), bits(&vectors));
        for (row, want) in attrs.iter().enumerate() {
            prop_assert_eq!(bits(decoded.vector(row as u32)), bits(&vectors[row * dim..(row + 1) * dim]));
            let got = decoded.attributes(row as u32);
            prop_assert!(same(&got, &expected(want)), "row {row}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn id_lookup_finds_every_id_and_nothing_else(
        ids in proptest::collection::hash_set(row_id(), 0..200),
        probe in row_id(),
    ) {
        let ids: Vec<RowId> = ids.into_iter().collect();
        let lookup = IdLookup::new(&ids);
        let column = IdColumn::from(ids.clone());
        prop_assert!(column.iter().map(|id| id.into_owned()).eq(ids.iter().cloned()));
        for (row, id) in ids.iter().enumerate() {
            prop_assert_eq!(lookup.find(id, &column), Some(row as u32));
        }
        prop_assert_eq!(lookup.find(&probe, &column), ids.iter().position(|i| *i == probe).map(|r| r as u32));
    }

    #[test]
    fn random_bytes_are_rejected(junk in proptest::collection::vec(any::<u8>(), 0..512)) {
        let junk = Bytes::from(junk);
        prop_assert_eq!(decode_rows(&junk).unwrap_err().kind(), ErrorKind::Internal);
        prop_assert_eq!(decode_ids(&junk).unwrap_err().kind(), ErrorKind::Internal);
    }
}

/// The field types and metadata of a rows file, read with plain arrow.
fn columns(bytes: &Bytes) -> Vec<(String, DataType, bool)> {
    let reader = FileReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
    reader
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.metadata().get("strata.json").is_some()))
        .collect()
}

fn attrs(value: Value) -> Option<Attributes> {
    match value {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[test]
fn attribute_columns_are_typed_by_the_values_seen() {
    let rows = vec![
        attrs(json!({"flag": true, "n": 1, "x": 1.5, "s": "a", "mix": 1, "nf": 1, "big": 1, "nul": null})),
        attrs(json!({"flag": false, "n": -7, "x": 3.0, "s": "b", "mix": "1", "nf": 2.5, "big": u64::MAX})),
        None,
        attrs(json!({"only_null": null})),
    ];
    let bytes = encode(2, &[0.0; 8], &rows);
    let text = (DataType::Utf8, true);
    let want = [
        ("attr.big", text.clone()),
        ("attr.flag", (DataType::Boolean, false)),
        ("attr.mix", text.clone()),
        ("attr.n", (DataType::Int64, false)),
        ("attr.nf", text.clone()),
        ("attr.s", (DataType::Utf8, false)),
        ("attr.x", (DataType::Float64, false)),
    ];
    let got = columns(&bytes);
    assert_eq!(got[0].0, "vector");
    let got: Vec<_> = got[1..].iter().map(|(n, t, j)| (n.as_str(), (t.clone(), *j))).collect();
    assert_eq!(got, want);

    let reader = FileReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
    let meta = reader.schema().metadata().clone();
    assert_eq!(meta.get("strata.format").map(String::as_str), Some("1"));
    assert_eq!(meta.get("strata.dim").map(String::as_str), Some("2"));

    let decoded = decode_rows(&bytes).unwrap();
    let row1 = decoded.attributes(1).unwrap();
    assert_eq!(row1["big"], json!(u64::MAX));
    assert!(row1["nf"].is_f64() && row1["x"].is_f64());
    assert_eq!(decoded.attributes(0).unwrap()["nf"], json!(1));
    assert!(decoded.attributes(0).unwrap()["nf"].is_i64());
    assert_eq!(decoded.attributes(2), None);
    assert_eq!(decoded.attributes(3), None, "all-null attributes decode as none");
}

#[test]
fn empty_segment_round_trips() {
    let decoded = decode_rows(&encode(3, &[], &[])).unwrap();
    assert!(decoded.is_empty());
    assert_eq!(decoded.dim, 3);
    assert_eq!(decode_ids(&encode_ids(&[]).unwrap()).unwrap(), Vec::<RowId>::new());
}

#[test]
fn bad_encode_input_is_invalid() {
    assert_eq!(encode_rows(0, &[], &[]).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(encode_rows(2, &[1.0; 3], &[None, None]).unwrap_err().kind(), ErrorKind::Invalid);
}

#[test]
fn memory_bytes_counts_vectors_but_not_the_file() {
    let n = 1000;
    let rows: Vec<_> = (0..n).map(|i| attrs(json!({"i": i}))).collect();
    let decoded = decode_rows(&encode(64, &vec![1.0; n * 64], &rows)).unwrap();
    let vectors = n * 64 * 4;
    assert!(decoded.memory_bytes() >= vectors + n * 8);
    // The attribute column is rebuilt, so it does not pin the whole file (≈ 2× vectors).
    assert!(decoded.memory_bytes() < vectors + 64 * 1024, "{}", decoded.memory_bytes());
}

/// Every truncation and every single-byte change is either detected or harmless.
#[test]
fn corrupt_files_are_errors_not_panics() {
    let ids = vec![RowId::Int(7), RowId::Str("seven".into())];
    let rows = vec![attrs(json!({"a": 1, "b": "x"})), None];
    let vectors = [1.0, 2.0, 3.0, 4.0];
    let files = [(encode_ids(&ids).unwrap(), true), (encode(2, &vectors, &rows), false)];
    for (file, is_ids) in files {
        let check = |bytes: Bytes, what: &str| {
            let outcome = if is_ids {
                decode_ids(&bytes).map(|got| got == ids)
            } else {
                decode_rows(&bytes).map(|got| got.vectors == vectors && got.attributes(0) == rows[0])
            };
            match outcome {
                Ok(intact) => assert!(intact, "{what}: decoded to different data"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Internal, "{what}: {e}"),
            }
        };
        for len in 0..file.len() {
            let cut = file.slice(..len);
            let outcome = if is_ids { decode_ids(&cut).err() } else { decode_rows(&cut).err() };
            assert!(outcome.is_some_and(|e| e.kind() == ErrorKind::Internal), "truncated to {len}");
        }
        for pos in 0..file.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = file.to_vec();
                bad[pos] ^= flip;
                check(Bytes::from(bad), &format!("byte {pos} ^ {flip:#x}"));
            }
        }
    }
}

#[test]
fn foreign_or_unversioned_files_are_rejected() {
    use arrow_array::{Int32Array, RecordBatch};
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter([("a", Arc::new(Int32Array::from(vec![1])) as _)]).unwrap();
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::FileWriter::try_new(&mut out, &batch.schema()).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    let err = decode_rows(&Bytes::from(out)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.message().contains("crc32"), "{err}");
}
