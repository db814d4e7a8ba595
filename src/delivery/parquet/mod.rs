//! Parquet objects (Firehose's record format conversion): each record becomes rows of a table
//! (the built-in `detections` one or declared columns), buffered column-wise in memory and
//! written at `finish` as row groups, with the delivery's column compression. The `parquet`
//! crate without its arrow feature: rows go straight into typed column writers.

mod columns;
mod schema;

pub use schema::{Column, SchemaError, Table, MALFORMED};

use super::body::{BodyEncoder, BodyFormat, PushError};
use super::format::Compression;
use crate::config::SchemaConfig;
use columns::ColumnBuf;
use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::TypePtr;
use std::sync::Arc;

/// Rows per row group: objects are at most 128 MiB of records, so usually one group.
const ROW_GROUP_ROWS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ParquetSetupError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("building the Parquet schema: {0}")]
    Parquet(#[from] ParquetError),
}

/// The Parquet format of a delivery: table, Parquet schema and writer settings, shared by all
/// its encoders.
#[derive(Clone)]
pub struct Parquet {
    table: Arc<Table>,
    row_group_rows: usize,
    message: TypePtr,
    props: WriterPropertiesPtr,
}

impl std::fmt::Debug for Parquet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parquet")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Parquet {
    /// `schema`: the delivery's (None: the built-in detections); `compression` of the columns.
    pub fn new(
        schema: Option<&SchemaConfig>,
        compression: Compression,
    ) -> Result<Parquet, ParquetSetupError> {
        let table = Table::new(schema)?;
        let message = columns::message_type(table.columns())?;
        let codec = match compression {
            Compression::None => Codec::UNCOMPRESSED,
            Compression::Snappy => Codec::SNAPPY,
            Compression::Gzip => Codec::GZIP(GzipLevel::default()),
            Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
        };
        let props = WriterProperties::builder()
            .set_compression(codec)
            .set_created_by(format!("vidgest {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Parquet {
            table: Arc::new(table),
            row_group_rows: ROW_GROUP_ROWS,
            message,
            props: Arc::new(props),
        })
    }

    /// Smaller row groups, so tests can cover the split.
    #[cfg(test)]
    fn with_row_group_rows(mut self, rows: usize) -> Parquet {
        self.row_group_rows = rows;
        self
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// A new object (concrete type; `BodyFormat::encoder` boxes it).
    pub fn body(&self) -> ParquetBody {
        ParquetBody {
            format: self.clone(),
            columns: self.table.columns().iter().map(ColumnBuf::new).collect(),
            rows: 0,
            records: 0,
            raw_bytes: 0,
        }
    }
}

impl BodyFormat for Parquet {
    fn encoder(&self) -> std::io::Result<Box<dyn BodyEncoder>> {
        Ok(Box::new(self.body()))
    }
    fn extension(&self) -> &'static str {
        ".parquet"
    }
}

/// One Parquet object being built.
pub struct ParquetBody {
    format: Parquet,
    columns: Vec<ColumnBuf>,
    rows: usize,
    records: usize,
    raw_bytes: u64,
}

impl ParquetBody {
    /// Rows so far (a record may give none, one or many).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Converts the whole record first, then appends: a record that fails leaves no trace.
    pub fn push(&mut self, data: &[u8]) -> Result<(), PushError> {
        let converted = self.format.table.convert(data)?;
        converted.append(&mut self.columns);
        self.rows += converted.rows();
        self.records += 1;
        self.raw_bytes += data.len() as u64;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<u8>, ParquetError> {
        let mut out = Vec::new();
        let mut writer = SerializedFileWriter::new(
            &mut out,
            self.format.message.clone(),
            self.format.props.clone(),
        )?;
        let mut next_value = vec![0usize; self.columns.len()];
        let mut start = 0;
        while start < self.rows {
            let end = (start + self.format.row_group_rows).min(self.rows);
            let mut rg = writer.next_row_group()?;
            for (buf, next) in self.columns.iter_mut().zip(&mut next_value) {
                *next = buf.write(&mut rg, start..end, *next)?;
            }
            rg.close()?;
            start = end;
        }
        writer.close()?;
        Ok(out)
    }
}

impl BodyEncoder for ParquetBody {
    fn push(&mut self, data: &[u8]) -> Result<(), PushError> {
        ParquetBody::push(self, data)
    }
    fn records(&self) -> usize {
        self.records
    }
    /// Heartbeat-only buffers make no rows: nothing to write.
    fn has_rows(&self) -> bool {
        self.rows > 0
    }
    fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }
    fn finish(self: Box<Self>) -> std::io::Result<Vec<u8>> {
        ParquetBody::finish(*self).map_err(|e| match e {
            ParquetError::External(inner) => std::io::Error::other(inner),
            other => std::io::Error::other(other),
        })
    }
}

#[cfg(test)]
mod tests;
