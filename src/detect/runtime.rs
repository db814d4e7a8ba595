//! Locating and loading the ONNX Runtime C library. `ort` is built with `load-dynamic`, so the
//! library is found at run time (never linked), and one `ort` environment exists per process.

use super::DetectError;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Minor version of ONNX Runtime 1.x that `ort` 2.0.0-rc.15 needs at least.
const MIN_MINOR: u32 = ort::MINOR_VERSION;
const LIB: &str = "libonnxruntime.so";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// The library that was loaded (as found; may be a symlink).
    pub library: PathBuf,
    /// ONNX Runtime's own version string, e.g. "1.31.1".
    pub version: String,
}

struct Runtime {
    info: RuntimeInfo,
    env: ort::environment::Environment,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Where the library may be, besides an explicit path: what `candidates` reads from the process.
#[derive(Debug, Clone, Default)]
pub struct SearchPlaces {
    /// `$ORT_DYLIB_PATH`.
    pub env: Option<PathBuf>,
    /// The directory of the running executable.
    pub exe_dir: Option<PathBuf>,
    /// The source checkout's vendored library directory: debug builds only.
    pub dev_dir: Option<PathBuf>,
}

impl SearchPlaces {
    /// This process: the environment, its executable, and (debug builds) the source tree.
    pub fn current() -> Self {
        Self {
            env: std::env::var_os("ORT_DYLIB_PATH")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf)),
            dev_dir: dev_dir(),
        }
    }
}

/// The checkout's `vendor/onnxruntime/lib`, for `cargo run` and tests. A release binary has
/// no such fallback (nor the build path in it): it is installed elsewhere.
#[cfg(debug_assertions)]
fn dev_dir() -> Option<PathBuf> {
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/onnxruntime/lib"))
}

#[cfg(not(debug_assertions))]
fn dev_dir() -> Option<PathBuf> {
    None
}

/// Installed places, after the environment and the executable's own `../lib/vidgest`.
const SYSTEM_DIRS: [&str; 4] = [
    "/usr/local/lib/vidgest",
    "/usr/lib/vidgest",
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
];

/// Candidate library paths in search order, for this process (see `candidates_from`).
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    candidates_from(explicit, &SearchPlaces::current())
}

/// Candidate library paths in search order. An explicit path (from the config) is the only
/// candidate when given: silently using another library than the configured one would hide a
/// typo. Otherwise: `$ORT_DYLIB_PATH`, `<exe dir>/../lib/vidgest`, the system directories, and
/// last the source tree in debug builds. Only absolute paths: a library is never looked up
/// relative to the current directory (a relative `$ORT_DYLIB_PATH` is ignored).
pub fn candidates_from(explicit: Option<&Path>, places: &SearchPlaces) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut v = Vec::new();
    match &places.env {
        Some(p) if p.is_absolute() => v.push(p.clone()),
        Some(p) => tracing::warn!(
            path = %p.display(),
            "ORT_DYLIB_PATH is relative and ignored: give an absolute path"
        ),
        None => {}
    }
    // `<exe dir>/../lib/vidgest`, spelled without `..` (the path shows in logs and `doctor`).
    if let Some(prefix) = places
        .exe_dir
        .as_ref()
        .filter(|d| d.is_absolute())
        .and_then(|d| d.parent())
    {
        v.push(prefix.join("lib/vidgest").join(LIB));
    }
    v.extend(SYSTEM_DIRS.iter().map(|d| Path::new(d).join(LIB)));
    if let Some(dir) = &places.dev_dir {
        v.push(dir.join(LIB));
    }
    v
}

/// The first candidate that exists.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    candidates(explicit).into_iter().find(|p| p.is_file())
}

/// `locate`, or the error that says where we looked and how to fix it.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, DetectError> {
    locate(explicit).ok_or_else(|| {
        DetectError::Runtime(format!(
            "ONNX Runtime library not found (looked in {}): run scripts/fetch-model, then set [detect] onnxruntime = \"/path/libonnxruntime.so\" or ORT_DYLIB_PATH (an absolute path), or install it as /usr/lib/vidgest/libonnxruntime.so",
            super::error::list(&candidates(explicit))
        ))
    })
}

/// Loads the library once per process; later calls return the same info or the same error (the
/// first call's `explicit` wins, as `ort` cannot swap libraries).
pub fn init(explicit: Option<&Path>) -> Result<&'static RuntimeInfo, DetectError> {
    match RUNTIME.get_or_init(|| load(explicit).map_err(|e| e.to_string())) {
        Ok(rt) => Ok(&rt.info),
        Err(msg) => Err(DetectError::Runtime(msg.clone())),
    }
}

/// The process-wide `ort` environment (initialising the runtime from the default places if no
/// one called `init` yet).
pub(crate) fn environment() -> Result<&'static ort::environment::Environment, DetectError> {
    init(None)?;
    match RUNTIME.get() {
        Some(Ok(rt)) => Ok(&rt.env),
        _ => unreachable!("init succeeded"),
    }
}

fn load(explicit: Option<&Path>) -> Result<Runtime, DetectError> {
    let found = resolve(explicit)?;
    // `ort` resolves relative paths against the executable's directory, not the cwd.
    let library = std::path::absolute(&found).unwrap_or(found);
    let fail = |msg: String| {
        DetectError::Runtime(format!(
            "ONNX Runtime library {} could not be used: {msg}: run scripts/fetch-model (ONNX Runtime 1.{MIN_MINOR} or newer is needed) or set [detect] onnxruntime to a working libonnxruntime.so",
            library.display()
        ))
    };
    let version = library_version(&library).map_err(|e| fail(e.to_string()))?;
    let minor = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse::<u32>().ok());
    if minor.is_none_or(|m| m < MIN_MINOR) {
        return Err(fail(format!("version {version} is too old")));
    }
    let env = ort::init_from(&library)
        .map_err(|e| fail(e.to_string()))?
        .with_name("vidgest")
        .with_telemetry(false)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    tracing::info!(library = %library.display(), %version, "ONNX Runtime loaded");
    Ok(Runtime {
        info: RuntimeInfo { library, version },
        env,
    })
}

/// Why a candidate library cannot be used as ONNX Runtime.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// dlopen's own words (libloading keeps them as the error's source).
    #[error("{0}")]
    Open(String),
    #[error("it does not export OrtGetApiBase (not ONNX Runtime?)")]
    NotOnnxRuntime,
    #[error("OrtGetApiBase returned null")]
    NoApiBase,
}

/// Reads `OrtGetApiBase()->GetVersionString()` through `libloading`. The library stays loaded
/// on purpose (`ort` opens the same one next and shares it; unloading it under `ort` would be
/// unsound).
fn library_version(path: &Path) -> Result<String, LibraryError> {
    // SAFETY: loading runs the library's initialisers; it is the ONNX Runtime the user pointed
    // us at (or found in a system library directory), which `ort` loads next anyway.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
        let detail = std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string());
        LibraryError::Open(detail)
    })?;
    // SAFETY: the symbol has the C type ONNX Runtime documents
    // (`const OrtApiBase* OrtGetApiBase(void)`).
    let version = unsafe {
        let get: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> = lib
            .get(b"OrtGetApiBase\0")
            .map_err(|_| LibraryError::NotOnnxRuntime)?;
        let base = get();
        if base.is_null() {
            return Err(LibraryError::NoApiBase);
        }
        let v = ((*base).GetVersionString)();
        CStr::from_ptr(v).to_string_lossy().into_owned()
    };
    std::mem::forget(lib);
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LIB);
        std::fs::write(&p, b"not an ELF file").unwrap();
        assert_eq!(locate(Some(&p)), Some(p.clone()));
        let e = library_version(&p).unwrap_err();
        assert!(matches!(e, LibraryError::Open(_)), "{e}");
        assert!(e.to_string().contains("libonnxruntime.so"), "{e}");
        // A real shared library that is not ONNX Runtime.
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if libc.exists() {
            assert!(matches!(
                library_version(libc),
                Err(LibraryError::NotOnnxRuntime)
            ));
        }
    }

    #[test]
    fn explicit_path_is_the_only_candidate() {
        let p = Path::new("/opt/x/libonnxruntime.so");
        assert_eq!(candidates(Some(p)), [p]);
        let places = SearchPlaces {
            env: Some("/env/libonnxruntime.so".into()),
            exe_dir: Some("/opt/vidgest/bin".into()),
            dev_dir: Some("/src/vendor/onnxruntime/lib".into()),
        };
        assert_eq!(candidates_from(Some(p), &places), [p]);
    }

    #[test]
    fn search_order_without_explicit_path() {
        let places = SearchPlaces {
            env: Some("/env/libonnxruntime.so".into()),
            exe_dir: Some("/opt/vidgest/bin".into()),
            dev_dir: Some("/src/vendor/onnxruntime/lib".into()),
        };
        let c = candidates_from(None, &places);
        assert_eq!(c[0], Path::new("/env/libonnxruntime.so"));
        assert_eq!(
            c[1],
            Path::new("/opt/vidgest/lib/vidgest/libonnxruntime.so")
        );
        assert!(c.contains(&PathBuf::from("/usr/lib/vidgest/libonnxruntime.so")));
        assert_eq!(
            c.last().unwrap(),
            Path::new("/src/vendor/onnxruntime/lib/libonnxruntime.so"),
            "the source tree comes last"
        );
    }

    #[test]
    fn never_the_current_directory() {
        let places = SearchPlaces {
            env: Some("libonnxruntime.so".into()),
            exe_dir: Some("bin".into()),
            dev_dir: None,
        };
        let c = candidates_from(None, &places);
        assert!(c.iter().all(|p| p.is_absolute()), "{c:?}");
        // The process's own list too.
        assert!(candidates(None).iter().all(|p| p.is_absolute()));
    }

    #[test]
    fn build_path_only_in_debug_builds() {
        let build = Path::new(env!("CARGO_MANIFEST_DIR"));
        let places = SearchPlaces {
            env: None,
            ..SearchPlaces::current()
        };
        let from_build = candidates_from(None, &places)
            .iter()
            .any(|p| p.starts_with(build));
        // A release binary must work wherever it is installed, with no source tree around.
        assert_eq!(from_build, cfg!(debug_assertions));
    }
}
