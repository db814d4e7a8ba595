//! SQLite schema of the video index. Times are Unix nanoseconds; sizes are bytes.

use rusqlite::Connection;

pub const SCHEMA_VERSION: i64 = 1;

pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        r#"
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ns INTEGER NOT NULL,
    -- never decreases, so numbers are not reused after retention or a crash
    next_fragment_number INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS inits (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams(id),
    config_id TEXT NOT NULL,
    codec TEXT NOT NULL,
    codec_string TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (stream_id, config_id)
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams(id),
    created_ns INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    fragment_count INTEGER NOT NULL DEFAULT 0,
    first_producer_ns INTEGER,
    last_producer_end_ns INTEGER,
    last_server_ns INTEGER
);
CREATE INDEX IF NOT EXISTS segments_by_stream ON segments (stream_id, id);
CREATE TABLE IF NOT EXISTS fragments (
    stream_id INTEGER NOT NULL,
    fragment_number INTEGER NOT NULL,
    segment_id INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    producer_ns INTEGER NOT NULL,
    server_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    init_id INTEGER NOT NULL,
    discontinuity INTEGER NOT NULL,
    sample_count INTEGER NOT NULL,
    PRIMARY KEY (stream_id, fragment_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fragments_by_producer ON fragments (stream_id, producer_ns);
CREATE INDEX IF NOT EXISTS fragments_by_server ON fragments (stream_id, server_ns);
CREATE INDEX IF NOT EXISTS fragments_by_segment ON fragments (segment_id);
"#,
    )?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}
