//! Rows of an input file, read in batches from a given row on: Parquet (id column u64 /
//! i64 / string, vector column `FixedSizeList<f32>` or `List<f32>`, other scalar columns
//! become attributes), `.npy` and `.fvecs` (read by the benchmark's readers; ids are row
//! numbers).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use strata_types::RowId;

use crate::bench::data::{self, Matrix};

/// One row read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: RowId,
    pub vector: Vec<f32>,
    pub attributes: Option<Map<String, Value>>,
}

enum Kind {
    Matrix(Matrix<f32>),
    Parquet { path: PathBuf, id_column: String, vector_column: String },
}

/// An opened input file.
pub struct Source {
    kind: Kind,
    pub rows: u64,
    pub file_size: u64,
    /// Vector dimension, if known without reading rows.
    pub dimension: Option<usize>,
}

fn is_parquet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

impl Source {
    pub fn open(path: &Path, id_column: &str, vector_column: &str) -> Result<Source> {
        let file_size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
        if is_parquet(path) {
            let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
            let schema = builder.schema().clone();
            let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
            let id = schema.field_with_name(id_column).with_context(|| {
                format!("{}: no id column {id_column:?} (use --id-column); columns: {}", path.display(), names(&schema))
            })?;
            if !matches!(
                id.data_type(),
                DataType::UInt64
                    | DataType::Int64
                    | DataType::UInt32
                    | DataType::Int32
                    | DataType::Utf8
                    | DataType::LargeUtf8
            ) {
                bail!("{}: id column {id_column:?} is {}; expected u64, i64 or string", path.display(), id.data_type());
            }
            let vector = schema.field_with_name(vector_column).with_context(|| {
                format!(
                    "{}: no vector column {vector_column:?} (use --vector-column); columns: {}",
                    path.display(),
                    names(&schema)
                )
            })?;
            let dimension = match vector.data_type() {
                DataType::FixedSizeList(item, n) if item.data_type() == &DataType::Float32 => Some(*n as usize),
                DataType::List(item) | DataType::LargeList(item) if item.data_type() == &DataType::Float32 => None,
                other => bail!(
                    "{}: vector column {vector_column:?} is {other}; expected FixedSizeList<f32> or List<f32>",
                    path.display()
                ),
            };
            Ok(Source {
                kind: Kind::Parquet {
                    path: path.to_owned(),
                    id_column: id_column.to_owned(),
                    vector_column: vector_column.to_owned(),
                },
                rows,
                file_size,
                dimension,
            })
        } else {
            let m = data::read_vectors(path)?;
            Ok(Source { rows: m.rows as u64, dimension: Some(m.cols), kind: Kind::Matrix(m), file_size })
        }
    }

    /// Calls `each` with consecutive batches of at most `batch` rows from row `start` on;
    /// stops early when `each` returns false. Blocking (file I/O and decoding).
    pub fn for_each_batch(
        &self,
        start: u64,
        batch: usize,
        mut each: impl FnMut(Vec<Record>) -> Result<bool>,
    ) -> Result<()> {
        let batch = batch.max(1);
        match &self.kind {
            Kind::Matrix(m) => {
                let mut row = start as usize;
                while row < m.rows {
                    let end = (row + batch).min(m.rows);
                    let recs = (row..end)
                        .map(|i| Record { id: RowId::Int(i as u64), vector: m.row(i).to_vec(), attributes: None })
                        .collect();
                    if !each(recs)? {
                        return Ok(());
                    }
                    row = end;
                }
                Ok(())
            }
            Kind::Parquet { path, id_column, vector_column } => {
                let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
                    .with_batch_size(batch)
                    .with_offset(start as usize)
                    .build()
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                for rb in reader {
                    let rb = rb.with_context(|| format!("{}: cannot decode a record batch", path.display()))?;
                    if !each(records(&rb, id_column, vector_column).with_context(|| path.display().to_string())?)? {
                        return Ok(());
                    }
                }
                Ok(())
            }
        }
    }

    /// The dimension, reading the first row if the schema does not say.
    pub fn probe_dimension(&self) -> Result<usize> {
        if let Some(d) = self.dimension {
            return Ok(d);
        }
        let mut found = None;
        self.for_each_batch(0, 1, |recs| {
            found = recs.first().map(|r| r.vector.len());
            Ok(false)
        })?;
        found.context("the file has no rows; pass --dimension")
    }
}

fn names(schema: &arrow_schema::Schema) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

fn ids_of(col: &ArrayRef) -> Result<Vec<RowId>> {
    if col.null_count() > 0 {
        bail!("the id column has nulls");
    }
    Ok(match col.data_type() {
        DataType::UInt64 => col.as_primitive::<UInt64Type>().values().iter().map(|v| RowId::Int(*v)).collect(),
        DataType::UInt32 => {
            col.as_primitive::<UInt32Type>().values().iter().map(|v| RowId::Int(u64::from(*v))).collect()
        }
        DataType::Int64 => signed(col.as_primitive::<Int64Type>().values().iter().copied())?,
        DataType::Int32 => signed(col.as_primitive::<Int32Type>().values().iter().map(|v| i64::from(*v)))?,
        DataType::Utf8 => col.as_string::<i32>().iter().map(|s| RowId::Str(s.unwrap_or_default().to_owned())).collect(),
        DataType::LargeUtf8 => {
            col.as_string::<i64>().iter().map(|s| RowId::Str(s.unwrap_or_default().to_owned())).collect()
        }
        other => bail!("unsupported id type {other}"),
    })
}

fn signed(values: impl Iterator<Item = i64>) -> Result<Vec<RowId>> {
    values
        .map(|v| u64::try_from(v).map(RowId::Int).map_err(|_| anyhow::anyhow!("id {v} is negative; ids are unsigned")))
        .collect()
}

fn vectors_of(col: &ArrayRef) -> Result<Vec<Vec<f32>>> {
    let one = |i: usize, item: ArrayRef| -> Result<Vec<f32>> {
        if item.null_count() > 0 {
            bail!("row {i}: the vector has null values");
        }
        Ok(item.as_primitive::<Float32Type>().values().to_vec())
    };
    let mut out = Vec::with_capacity(col.len());
    for i in 0..col.len() {
        if col.is_null(i) {
            bail!("row {i}: the vector is null");
        }
        let item = match col.data_type() {
            DataType::FixedSizeList(..) => col.as_fixed_size_list().value(i),
            DataType::List(_) => col.as_list::<i32>().value(i),
            DataType::LargeList(_) => col.as_list::<i64>().value(i),
            other => bail!("unsupported vector type {other}"),
        };
        out.push(one(i, item)?);
    }
    Ok(out)
}

/// A scalar column's value at `i` as JSON; `None` for null or unsupported types.
fn scalar(col: &ArrayRef, i: usize) -> Option<Value> {
    if col.is_null(i) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).into(),
        DataType::Float32 => {
            serde_json::Number::from_f64(f64::from(col.as_primitive::<Float32Type>().value(i)))?.into()
        }
        DataType::Float64 => serde_json::Number::from_f64(col.as_primitive::<Float64Type>().value(i))?.into(),
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(i).to_owned()),
        DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(i).to_owned()),
        _ => return None,
    })
}

fn records(rb: &RecordBatch, id_column: &str, vector_column: &str) -> Result<Vec<Record>> {
    let schema = rb.schema();
    let ids = ids_of(rb.column(schema.index_of(id_column)?))?;
    let vectors = vectors_of(rb.column(schema.index_of(vector_column)?))?;
    let attrs: Vec<(&str, &ArrayRef)> = schema
        .fields()
        .iter()
        .zip(rb.columns())
        .filter(|(f, _)| f.name() != id_column && f.name() != vector_column)
        .map(|(f, c)| (f.name().as_str(), c))
        .collect();
    Ok(ids
        .into_iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (id, vector))| {
            let map: Map<String, Value> =
                attrs.iter().filter_map(|(name, col)| scalar(col, i).map(|v| ((*name).to_owned(), v))).collect();
            Record { id, vector, attributes: (!map.is_empty()).then_some(map) }
        })
        .collect())
}
