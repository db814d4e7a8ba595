//! Firehose-style delivery of shard-stream records to objects (issue: delivery). So far the
//! building blocks, not yet wired into the daemon: the object key language (`prefix`),
//! deterministic object names (`keys`), JSON lines bodies with compression (`format`) and
//! buffering per prefix with safe checkpoints (`buffer`) and Firehose's error
//! records (`errors`). Destinations (object_store), Parquet,
//! the delivery loop on a named consumer and the forwarders build on them.

mod aws;
pub mod body;
pub mod buffer;
pub mod ddl;
pub mod destination;
pub mod errors;
pub mod format;
pub mod forward;
pub mod keys;
pub mod parquet;
pub mod prefix;
pub mod run;
pub mod status;

pub use body::{BodyEncoder, BodyFormat, ConvertError, Jsonl, PushError};
pub use buffer::{Batcher, BufferingHints, ReadyBatch, SourceRecord};
pub use errors::{ErrorOutputType, ErrorRecord};
pub use format::{Compression, JsonlBody};
pub use keys::BatchOrigin;
pub use prefix::{EvalContext, EvalError, Prefix, PrefixError, PrefixKind};
pub use status::{Health, PipeStatus, Pipeline, StatusSnapshot};
