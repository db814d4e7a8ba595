//! Placeholder until the shard-stream append benchmark lands.
fn main() {}
