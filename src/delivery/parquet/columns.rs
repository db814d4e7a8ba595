//! Rows held column-wise until the object is finished, then written as row groups.

use super::schema::Column;
use crate::config::ColumnType;
use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::errors::ParquetError;
use parquet::file::writer::SerializedRowGroupWriter;
use parquet::schema::types::{Type, TypePtr};
use std::borrow::Cow;
use std::sync::Arc;

/// String values handed to the column writer at a time.
const STRING_CHUNK: usize = 4096;

/// One value of a converted row (`Null` only in optional columns).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    Bool(bool),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

pub(super) type Row<'a> = Vec<Cell<'a>>;

/// The Parquet message type of `columns`.
pub(super) fn message_type(columns: &[Column]) -> Result<TypePtr, ParquetError> {
    let fields = columns
        .iter()
        .map(|c| {
            let (physical, logical) = match c.kind {
                ColumnType::String => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                ColumnType::Boolean => (Physical::BOOLEAN, None),
                ColumnType::Int => (Physical::INT32, None),
                ColumnType::Bigint => (Physical::INT64, None),
                ColumnType::Float => (Physical::FLOAT, None),
                ColumnType::Double => (Physical::DOUBLE, None),
                ColumnType::Timestamp => (
                    Physical::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
                ),
            };
            let repetition = if c.optional {
                Repetition::OPTIONAL
            } else {
                Repetition::REQUIRED
            };
            Type::primitive_type_builder(&c.name, physical)
                .with_repetition(repetition)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?,
    ))
}

enum Values {
    /// All strings of the column back to back; `ends[i]` closes value i.
    Bytes {
        data: Vec<u8>,
        ends: Vec<usize>,
    },
    /// `Bytes` once writing started: values are slices of one shared buffer, not copies.
    Frozen {
        data: bytes::Bytes,
        ends: Vec<usize>,
    },
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Bytes { ends, .. } | Values::Frozen { ends, .. } => ends.len(),
            Values::Bool(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
        }
    }
}

/// One column's values so far; `defs` (definition levels) only for optional columns.
pub(super) struct ColumnBuf {
    values: Values,
    defs: Option<Vec<i16>>,
}

impl ColumnBuf {
    pub(super) fn new(c: &Column) -> ColumnBuf {
        let values = match c.kind {
            ColumnType::String => Values::Bytes {
                data: Vec::new(),
                ends: Vec::new(),
            },
            ColumnType::Boolean => Values::Bool(Vec::new()),
            ColumnType::Int => Values::I32(Vec::new()),
            ColumnType::Bigint | ColumnType::Timestamp => Values::I64(Vec::new()),
            ColumnType::Float => Values::F32(Vec::new()),
            ColumnType::Double => Values::F64(Vec::new()),
        };
        ColumnBuf {
            values,
            defs: c.optional.then(Vec::new),
        }
    }

    /// Typed appends for the detections table (no `Cell` per value).
    pub(super) fn push_str(&mut self, s: &str) {
        self.defined();
        match &mut self.values {
            Values::Bytes { data, ends } => {
                data.extend_from_slice(s.as_bytes());
                ends.push(data.len());
            }
            _ => unreachable!("a string column"),
        }
    }
    pub(super) fn push_i32(&mut self, v: i32) {
        self.defined();
        match &mut self.values {
            Values::I32(c) => c.push(v),
            _ => unreachable!("an int column"),
        }
    }
    pub(super) fn push_i64(&mut self, v: i64) {
        self.defined();
        match &mut self.values {
            Values::I64(c) => c.push(v),
            _ => unreachable!("a bigint or timestamp column"),
        }
    }
    pub(super) fn push_f64(&mut self, v: f64) {
        self.defined();
        match &mut self.values {
            Values::F64(c) => c.push(v),
            _ => unreachable!("a double column"),
        }
    }
    fn defined(&mut self) {
        if let Some(defs) = &mut self.defs {
            defs.push(1);
        }
    }

    /// Appends a cell the schema produced for this column (so the types match).
    pub(super) fn push(&mut self, cell: &Cell) {
        if let Some(defs) = &mut self.defs {
            defs.push(i16::from(*cell != Cell::Null));
        }
        match (&mut self.values, cell) {
            (_, Cell::Null) => {}
            (Values::Bytes { data, ends }, Cell::Str(s)) => {
                data.extend_from_slice(s.as_bytes());
                ends.push(data.len());
            }
            (Values::Bool(v), Cell::Bool(b)) => v.push(*b),
            (Values::I32(v), Cell::I32(i)) => v.push(*i),
            (Values::I64(v), Cell::I64(i)) => v.push(*i),
            (Values::F32(v), Cell::F32(f)) => v.push(*f),
            (Values::F64(v), Cell::F64(f)) => v.push(*f),
            _ => unreachable!("the schema converts every cell to its column's type"),
        }
    }

    /// Writes rows `rows` (a range of row indexes) as this column's chunk of a row group;
    /// `first_value` is the index of the first value of those rows, returned advanced.
    pub(super) fn write<W: std::io::Write + Send>(
        &mut self,
        rg: &mut SerializedRowGroupWriter<'_, W>,
        rows: std::ops::Range<usize>,
        first_value: usize,
    ) -> Result<usize, ParquetError> {
        let defs = self.defs.as_ref().map(|d| &d[rows.clone()]);
        let count = match defs {
            Some(d) => d.iter().filter(|&&l| l == 1).count(),
            None => rows.len(),
        };
        let vals = first_value..first_value + count;
        debug_assert!(vals.end <= self.values.len());
        let mut col = rg.next_column()?.ok_or_else(|| {
            ParquetError::General("fewer columns in the schema than buffered".into())
        })?;
        if let Values::Bytes { data, ends } = &mut self.values {
            self.values = Values::Frozen {
                data: bytes::Bytes::from(std::mem::take(data)),
                ends: std::mem::take(ends),
            };
        }
        match &self.values {
            Values::Bytes { .. } => unreachable!("frozen above"),
            Values::Frozen { data, ends } => {
                let start = |i: usize| if i == 0 { 0 } else { ends[i - 1] };
                let slices = |r: std::ops::Range<usize>| {
                    r.map(|i| ByteArray::from(data.slice(start(i)..ends[i])))
                        .collect::<Vec<_>>()
                };
                let w = col.typed::<ByteArrayType>();
                match defs {
                    // Required: in chunks, so the slices stay in cache and few are alive.
                    None => {
                        let mut n = 0;
                        for from in vals.clone().step_by(STRING_CHUNK) {
                            let to = (from + STRING_CHUNK).min(vals.end);
                            n += w.write_batch(&slices(from..to), None, None)?;
                        }
                        n
                    }
                    Some(d) => w.write_batch(&slices(vals.clone()), Some(d), None)?,
                }
            }
            Values::Bool(v) => col
                .typed::<BoolType>()
                .write_batch(&v[vals.clone()], defs, None)?,
            Values::I32(v) => col
                .typed::<Int32Type>()
                .write_batch(&v[vals.clone()], defs, None)?,
            Values::I64(v) => col
                .typed::<Int64Type>()
                .write_batch(&v[vals.clone()], defs, None)?,
            Values::F32(v) => col
                .typed::<FloatType>()
                .write_batch(&v[vals.clone()], defs, None)?,
            Values::F64(v) => {
                col.typed::<DoubleType>()
                    .write_batch(&v[vals.clone()], defs, None)?
            }
        };
        col.close()?;
        Ok(vals.end)
    }
}
