//! The daemon's exclusive hold on `agent.data_dir`.
//!
//! Two daemons on one data dir would both append to the same shard logs and video segments and
//! hand out the same sequence and fragment numbers, destroying acknowledged data. `vidgest run`
//! therefore takes an advisory `flock` on `<data_dir>/vidgest.lock` for its whole life and writes
//! its PID into the file so that a second daemon can name the holder. The kernel drops the lock
//! when the process dies (kill -9 included), so a stale file never blocks a restart. CLI readers
//! (`fragments`, `clip`, `cameras`) never take it: they read through SQLite WAL and the logs'
//! committed lengths.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "vidgest.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open lock file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {dir} is in use by another vidgest (pid {holder}): stop it first, or give \
         this one another agent.data_dir"
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for the daemon's life; dropping it releases the data dir.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the exclusive lock on `data_dir` (creating it), or says who holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, DataDirError> {
        std::fs::create_dir_all(data_dir).map_err(|source| DataDirError::Create {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| DataDirError::Open {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DataDirError::Held {
                    dir: data_dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.chars().take(32).collect()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(DataDirError::Lock { path, source });
            }
        }
        // Best effort: the PID is only there to name the holder in the error above.
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataDirError::Held { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).expect("released on drop");
    }
}
