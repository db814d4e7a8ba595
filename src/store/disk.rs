//! Free-space probing of the file system that holds the store (injectable for tests).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub trait DiskSpace: Send + Sync + std::fmt::Debug {
    /// Bytes available to an unprivileged writer on the file system holding `path`.
    fn available(&self, path: &Path) -> io::Result<u64>;
}

/// The real file system, via statvfs(3).
#[derive(Debug, Default, Clone, Copy)]
pub struct Statvfs;

impl DiskSpace for Statvfs {
    fn available(&self, path: &Path) -> io::Result<u64> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
}
