//! Control-plane changes to a video stream made through the API (the KVS `kinesisvideo`
//! UpdateDataRetention, TagStream and UntagStream), kept in the index.
//!
//! Retention precedence: the config's `camera.retention` is applied at every start (and kept in
//! `streams.retention_ns`). UpdateDataRetention stores an override together with the configured
//! value it overrode (`override_of_ns`); the override wins for as long as the config still says
//! that value, across restarts. Once the config's value for that camera changes, the config wins
//! again and the override is dropped (logged; see `apply_config`). Each change of the retention
//! through either path increments the stream's version (DescribeStream's `Version`).

use super::{Inner, Result, State, Store, StoreError, VideoOptions};
use rusqlite::{params, Transaction};
use std::time::Duration;

/// The service's bounds on a stream's retention: at least an hour here (0, "no persistence",
/// makes no sense for a recorder), at most 87 600 hours (10 years of 365 days).
pub const MIN_RETENTION_HOURS: u64 = 1;
pub const MAX_RETENTION_HOURS: u64 = 87_600;
/// The service's limits on tags: per stream, and key and value lengths in characters.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;

const HOUR_NS: i64 = 3_600_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the stream's version is {current}, not {given}")]
    VersionMismatch { current: i64, given: String },
    #[error(
        "the retention would become {hours} hours, outside {MIN_RETENTION_HOURS} ..= {MAX_RETENTION_HOURS} hours"
    )]
    RetentionOutOfRange { hours: f64 },
    #[error("a stream has at most {MAX_TAGS} tags; this change would leave it {0}")]
    TooManyTags(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionChange {
    Increase(u64),
    Decrease(u64),
}

/// A stream's retention after UpdateDataRetention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionUpdate {
    pub version: i64,
    pub retention_ns: i64,
}

/// The policy columns of one `streams` row.
struct Policy {
    version: i64,
    configured_ns: Option<i64>,
    override_ns: Option<i64>,
    override_of_ns: Option<i64>,
}

fn policy(tx: &Transaction, id: i64) -> rusqlite::Result<Policy> {
    tx.query_row(
        "SELECT version, retention_ns, retention_override_ns, override_of_ns FROM streams WHERE id = ?1",
        [id],
        |r| {
            Ok(Policy {
                version: r.get(0)?,
                configured_ns: r.get(1)?,
                override_ns: r.get(2)?,
                override_of_ns: r.get(3)?,
            })
        },
    )
}

/// Persists the configured `opts` of stream `id` and returns the options in force: the API's
/// retention override while the config still says what it overrode, else the config's.
pub(super) fn apply_config(
    st: &mut State,
    id: i64,
    name: &str,
    opts: &VideoOptions,
) -> rusqlite::Result<VideoOptions> {
    let configured = opts.retention.as_nanos().min(i64::MAX as u128) as i64;
    let tx = st.conn.transaction()?;
    let p = policy(&tx, id)?;
    let mut effective = opts.clone();
    match p.override_ns {
        Some(o) if p.override_of_ns == Some(configured) => {
            effective.retention = Duration::from_nanos(o.max(0) as u64);
        }
        Some(o) => {
            tracing::info!(
                camera = name,
                "the config's retention ({}) replaces the retention set through the API ({}), \
                 which overrode {}",
                hours(configured),
                hours(o),
                p.override_of_ns.map_or("nothing".into(), hours),
            );
            tx.execute(
                "UPDATE streams SET retention_override_ns = NULL, override_of_ns = NULL,
                     version = version + 1 WHERE id = ?1",
                [id],
            )?;
        }
        None => {}
    }
    tx.execute(
        "UPDATE streams SET retention_ns = ?2, max_bytes = ?3 WHERE id = ?1",
        params![
            id,
            configured,
            opts.max_bytes.map(|b| b.min(i64::MAX as u64) as i64)
        ],
    )?;
    tx.commit()?;
    Ok(effective)
}

fn hours(ns: i64) -> String {
    format!("{}h", ns as f64 / HOUR_NS as f64)
}

impl Store {
    fn stream_row_id(st: &State, name: &str) -> Result<i64> {
        st.streams
            .get(name)
            .map(|s| s.id)
            .ok_or_else(|| StoreError::UnknownCamera(name.to_string()))
    }

    /// UpdateDataRetention: changes the retention of stream `name` by whole hours, if its version
    /// is `current_version`. Applied by the next retention pass; persisted as an override of the
    /// configured value (see the module doc).
    pub fn update_retention(
        &self,
        name: &str,
        current_version: &str,
        change: RetentionChange,
    ) -> std::result::Result<RetentionUpdate, ControlError> {
        let db = self.root.join(super::INDEX_FILE);
        let sql = |e: rusqlite::Error| ControlError::Store(Inner::from(e).at(&db));
        let mut st = self.lock();
        let id = Self::stream_row_id(&st, name)?;
        let tx = st.conn.transaction().map_err(sql)?;
        let p = policy(&tx, id).map_err(sql)?;
        if p.version.to_string() != current_version {
            return Err(ControlError::VersionMismatch {
                current: p.version,
                given: current_version.to_string(),
            });
        }
        let current = p.override_ns.or(p.configured_ns).unwrap_or(0) as i128;
        let delta = match change {
            RetentionChange::Increase(h) => h as i128 * HOUR_NS as i128,
            RetentionChange::Decrease(h) => -(h as i128) * HOUR_NS as i128,
        };
        let new = current + delta;
        let range = MIN_RETENTION_HOURS as i128 * HOUR_NS as i128
            ..=MAX_RETENTION_HOURS as i128 * HOUR_NS as i128;
        if !range.contains(&new) {
            return Err(ControlError::RetentionOutOfRange {
                hours: new as f64 / HOUR_NS as f64,
            });
        }
        let new = new as i64;
        let version = p.version + 1;
        tx.execute(
            "UPDATE streams SET retention_override_ns = ?2, override_of_ns = ?3, version = ?4
             WHERE id = ?1",
            params![id, new, p.configured_ns, version],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        let retention = Duration::from_nanos(new as u64);
        if let Some(s) = st.streams.get_mut(name) {
            match &mut s.opts {
                Some(o) => o.retention = retention,
                None => {
                    s.opts = Some(VideoOptions {
                        retention,
                        max_bytes: None,
                        segment_size: u64::MAX,
                    })
                }
            }
        }
        tracing::info!(
            camera = name,
            version,
            "retention set to {} through the API (overrides the configured {})",
            hours(new),
            p.configured_ns.map_or("none".into(), hours)
        );
        Ok(RetentionUpdate {
            version,
            retention_ns: new,
        })
    }

    /// TagStream: adds or replaces tags of stream `name`; refused as a whole when the stream would
    /// end up with more than `MAX_TAGS` (keys and values are checked by the caller).
    pub fn tag_stream(
        &self,
        name: &str,
        tags: &[(String, String)],
    ) -> std::result::Result<(), ControlError> {
        let db = self.root.join(super::INDEX_FILE);
        let sql = |e: rusqlite::Error| ControlError::Store(Inner::from(e).at(&db));
        let mut st = self.lock();
        let id = Self::stream_row_id(&st, name)?;
        let tx = st.conn.transaction().map_err(sql)?;
        for (k, v) in tags {
            tx.execute(
                "INSERT INTO stream_tags (stream_id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (stream_id, key) DO UPDATE SET value = excluded.value",
                params![id, k, v],
            )
            .map_err(sql)?;
        }
        let count: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM stream_tags WHERE stream_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if count as usize > MAX_TAGS {
            // dropping the transaction rolls the inserts back
            return Err(ControlError::TooManyTags(count as usize));
        }
        tx.commit().map_err(sql)?;
        Ok(())
    }

    /// UntagStream: removes the tags with these keys (unknown keys are ignored, as the service does).
    pub fn untag_stream(&self, name: &str, keys: &[String]) -> Result<()> {
        let db = self.root.join(super::INDEX_FILE);
        let sql = |e: rusqlite::Error| Inner::from(e).at(&db);
        let mut st = self.lock();
        let id = Self::stream_row_id(&st, name)?;
        let tx = st.conn.transaction().map_err(sql)?;
        for k in keys {
            tx.execute(
                "DELETE FROM stream_tags WHERE stream_id = ?1 AND key = ?2",
                params![id, k],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(())
    }
}
