//! SQLite schema of the video index. Times are Unix nanoseconds; sizes are bytes.
//!
//! The version lives in SQLite's `user_version`. At open, an index written by a newer vidgest is
//! refused (its meaning may have changed under us), an older one is upgraded step by step inside
//! one transaction, and a new one is created at the current version.

use rusqlite::Connection;

pub const SCHEMA_VERSION: i64 = 1;

/// Upgrades from version `i + 1` to `i + 2` (none yet: version 1 is the first released schema).
const MIGRATIONS: &[&str] = &[];

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the video index has schema version {found}, newer than this vidgest understands \
         ({SCHEMA_VERSION}): run the newer vidgest, or point agent.data_dir elsewhere"
    )]
    Newer { found: i64 },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// Creates, checks or upgrades the schema of the index behind `conn`.
pub fn open(conn: &mut Connection) -> Result<(), SchemaError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(SchemaError::Newer { found });
    }
    let tx = conn.transaction()?;
    if found == 0 {
        create(&tx)?;
    } else {
        for (i, step) in MIGRATIONS.iter().enumerate() {
            if found < i as i64 + 2 {
                tx.execute_batch(step)?;
            }
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn create(conn: &Connection) -> rusqlite::Result<()> {
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_index_is_refused_and_current_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        open(&mut conn).unwrap();
        open(&mut conn).expect("reopening the current version");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = open(&mut conn).unwrap_err();
        assert!(matches!(err, SchemaError::Newer { found } if found == SCHEMA_VERSION + 1));
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
