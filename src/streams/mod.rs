//! Shard stream engine (being written).
