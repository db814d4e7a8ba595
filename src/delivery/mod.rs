//! Firehose-style delivery of shard-stream records to objects (issue: delivery). So far: the
//! object key language (`prefix`) and deterministic object names (`keys`). The buffers, formats,
//! destinations and forwarders build on them.

pub mod keys;
pub mod prefix;

pub use keys::BatchOrigin;
pub use prefix::{EvalContext, EvalError, Prefix, PrefixError, PrefixKind};
