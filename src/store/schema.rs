//! SQLite schema of the video index. Times are Unix nanoseconds; sizes are bytes.
//!
//! The version lives in SQLite's `user_version`. At open, an index written by a newer vidgest is
//! refused (its meaning may have changed under us), an older one is upgraded step by step inside
//! one transaction, and a new one is created at the current version.

use rusqlite::Connection;

pub const SCHEMA_VERSION: i64 = 3;

/// Upgrades from version `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[
    // 2: each stream keeps its retention, so video of a camera removed from the config still ages out.
    "ALTER TABLE streams ADD COLUMN retention_ns INTEGER;
     ALTER TABLE streams ADD COLUMN max_bytes INTEGER;",
    // 3: control-plane changes through the KVS API: a retention override with the configured
    // retention it overrode, the stream's version, and tags.
    "ALTER TABLE streams ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE streams ADD COLUMN retention_override_ns INTEGER;
     ALTER TABLE streams ADD COLUMN override_of_ns INTEGER;
     CREATE TABLE IF NOT EXISTS stream_tags (
         stream_id INTEGER NOT NULL REFERENCES streams(id),
         key TEXT NOT NULL,
         value TEXT NOT NULL,
         PRIMARY KEY (stream_id, key)
     ) WITHOUT ROWID;",
];

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
    next_fragment_number INTEGER NOT NULL DEFAULT 1,
    -- the camera's retention and byte budget when it was last configured (NULL: never / none)
    retention_ns INTEGER,
    max_bytes INTEGER,
    -- UpdateDataRetention's count: DescribeStream's Version
    version INTEGER NOT NULL DEFAULT 1,
    -- retention set through the API (NULL: none), and the configured retention it overrode:
    -- when the config's value differs from `override_of_ns`, the config wins again
    retention_override_ns INTEGER,
    override_of_ns INTEGER
);
CREATE TABLE IF NOT EXISTS stream_tags (
    stream_id INTEGER NOT NULL REFERENCES streams(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (stream_id, key)
) WITHOUT ROWID;
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

    #[test]
    fn version_1_index_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("i.sqlite")).unwrap();
        // The version 1 streams table, with a row.
        conn.execute_batch(
            "CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
               created_ns INTEGER NOT NULL, next_fragment_number INTEGER NOT NULL DEFAULT 1);
             INSERT INTO streams (name, created_ns, next_fragment_number) VALUES ('old', 1, 42);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        open(&mut conn).unwrap();
        let (next, retention): (i64, Option<i64>) = conn
            .query_row(
                "SELECT next_fragment_number, retention_ns FROM streams WHERE name = 'old'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((next, retention), (42, None));
        let (version, tags): (i64, i64) = conn
            .query_row(
                "SELECT version, (SELECT COUNT(*) FROM stream_tags) FROM streams WHERE name = 'old'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, tags), (1, 0));
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
