//! Where a delivery's objects go, through `object_store` (one code path for a local directory
//! and S3). A put either lands the whole object under its key or fails: the local store writes a
//! temporary file and renames it; we add the fsyncs (file and directory) so a confirmed object
//! survives a power cut, as S3's confirmation does.

use crate::config::{DestinationConfig, S3Destination};
use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a failed put is handled: `Retry` (transient: connection, timeout, 5xx, throttling)
/// or `Fix` (the operator must act: denied, no such bucket); both are retried with the same
/// backoff, `Fix` with an error line that says what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Retry,
    Fix,
}

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid object key `{key}`: {source}")]
    Key {
        key: String,
        source: object_store::path::Error,
    },
    #[error("destination setup: {0}")]
    Setup(object_store::Error),
    #[error("{what} denied writing {location}: {detail}. Check the credentials and that they may s3:PutObject (and kms:GenerateDataKey with aws:kms) on it")]
    Denied {
        what: &'static str,
        location: String,
        detail: String,
    },
    #[error("{location} does not exist: {detail}. Create the bucket or fix destination.bucket")]
    NoBucket { location: String, detail: String },
    #[error("writing {location}: {detail}")]
    Transient { location: String, detail: String },
    #[error("syncing {}: {source}", path.display())]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DestinationError {
    pub fn kind(&self) -> FailureKind {
        match self {
            DestinationError::Denied { .. }
            | DestinationError::NoBucket { .. }
            | DestinationError::Key { .. }
            | DestinationError::Setup(_)
            | DestinationError::CreateDir { .. } => FailureKind::Fix,
            DestinationError::Transient { .. } | DestinationError::Sync { .. } => {
                FailureKind::Retry
            }
        }
    }
}

/// A configured destination, ready to take objects.
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    /// For `dir`: the root, to fsync what the store wrote.
    local_root: Option<PathBuf>,
    /// `s3://bucket` or the directory, for messages.
    location: String,
    attributes: Attributes,
    /// Configured credentials that a server may echo in an error body (S3 names the access key
    /// id in InvalidAccessKeyId): masked in every message.
    redact: Vec<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Per-request limits: our own loop retries with backoff and reports state, so the store's
/// internal retries stay short.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// When neither the config nor the AWS chain names a region (S3-compatible servers ignore it).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Overrides REQUEST_TIMEOUT (milliseconds): tests of a slow endpoint cannot wait minutes.
pub const REQUEST_TIMEOUT_ENV: &str = "VIDGEST_S3_REQUEST_TIMEOUT_MS";

fn request_timeout() -> Duration {
    std::env::var(REQUEST_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(REQUEST_TIMEOUT, Duration::from_millis)
}

impl Destination {
    /// `data_dir` resolves relative `dir` paths.
    pub async fn open(
        cfg: &DestinationConfig,
        data_dir: &Path,
    ) -> Result<Destination, DestinationError> {
        match cfg {
            DestinationConfig::Dir(d) => Self::dir(&d.resolve(data_dir)),
            DestinationConfig::S3(s3) => Self::s3(s3).await,
        }
    }

    pub fn dir(root: &Path) -> Result<Destination, DestinationError> {
        std::fs::create_dir_all(root).map_err(|source| DestinationError::CreateDir {
            path: root.to_path_buf(),
            source,
        })?;
        let root = root
            .canonicalize()
            .map_err(|source| DestinationError::CreateDir {
                path: root.to_path_buf(),
                source,
            })?;
        let removed = remove_staged_leftovers(&root);
        if removed > 0 {
            tracing::info!(
                dir = %root.display(),
                removed,
                "removed temporary files of writes interrupted by a crash"
            );
        }
        let store = LocalFileSystem::new_with_prefix(&root).map_err(DestinationError::Setup)?;
        Ok(Destination {
            store: Arc::new(store),
            location: root.display().to_string(),
            local_root: Some(root),
            attributes: Attributes::new(),
            redact: Vec::new(),
        })
    }

    pub async fn s3(cfg: &S3Destination) -> Result<Destination, DestinationError> {
        install_crypto_provider();
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_timeout(request_timeout())
                    .with_connect_timeout(CONNECT_TIMEOUT),
            )
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            });
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            b = b
                .with_access_key_id(id.expose())
                .with_secret_access_key(secret.expose());
            if let Some(t) = &cfg.session_token {
                b = b.with_token(t.expose());
            }
            b = b.with_region(cfg.region.as_deref().unwrap_or(DEFAULT_REGION));
        } else {
            // The standard AWS chain, as the AWS CLI and SDKs resolve it: environment, shared
            // config/credentials files (`profile`), web identity, container, instance metadata.
            let sdk = super::aws::load_chain(cfg.profile.as_deref(), cfg.region.as_deref()).await;
            b = b
                .with_region(sdk.region)
                .with_credentials(Arc::new(sdk.credentials));
        }
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        // object_store defaults to path-style unless told otherwise; AWS wants virtual-hosted.
        b = b.with_virtual_hosted_style_request(!cfg.path_style && cfg.endpoint.is_none());
        // By their string names: the key enum's encryption part is not exported.
        for (name, value) in [
            ("aws_server_side_encryption", &cfg.sse),
            ("aws_sse_kms_key_id", &cfg.kms_key_id),
        ] {
            if let Some(v) = value {
                let key: AmazonS3ConfigKey = name.parse().map_err(DestinationError::Setup)?;
                b = b.with_config(key, v);
            }
        }
        let redact: Vec<String> = [
            &cfg.access_key_id,
            &cfg.secret_access_key,
            &cfg.session_token,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_string())
        .filter(|s| !s.is_empty())
        .collect();
        let store = b.build().map_err(DestinationError::Setup)?;
        let mut attributes = Attributes::new();
        if let Some(class) = &cfg.storage_class {
            attributes.insert(Attribute::StorageClass, class.clone().into());
        }
        Ok(Destination {
            store: Arc::new(store),
            local_root: None,
            location: format!("s3://{}", cfg.bucket),
            attributes,
            redact,
        })
    }

    /// `s3://bucket` or the directory.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Writes `body` under `key`, replacing what is there (a retried batch overwrites itself).
    /// Returns once the object is durable.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), DestinationError> {
        let path = ObjectPath::parse(key).map_err(|source| DestinationError::Key {
            key: key.to_string(),
            source,
        })?;
        let opts = PutOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        let payload = PutPayload::from(Bytes::from(body));
        if let Err(e) = self.store.put_opts(&path, payload, opts).await {
            return Err(self.classify(key, e));
        }
        if let Some(root) = &self.local_root {
            let file = root.join(key);
            let root = root.clone();
            // fsync is blocking I/O: off the async worker.
            tokio::task::spawn_blocking(move || sync_path(&root, &file))
                .await
                .expect("fsync task does not panic")?;
        }
        Ok(())
    }

    fn classify(&self, key: &str, e: object_store::Error) -> DestinationError {
        let location = format!("{}/{key}", self.location);
        let mask = |text: String| {
            self.redact
                .iter()
                .fold(text, |t, secret| t.replace(secret.as_str(), "***"))
        };
        match e {
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => DestinationError::Denied {
                what: if self.local_root.is_some() {
                    "the file system"
                } else {
                    "S3"
                },
                location,
                detail: mask(describe(source.as_ref())),
            },
            object_store::Error::NotFound { source, .. } => DestinationError::NoBucket {
                location: self.location.clone(),
                detail: mask(describe(source.as_ref())),
            },
            object_store::Error::Generic { source, .. } => DestinationError::Transient {
                location,
                detail: mask(describe(source.as_ref())),
            },
            other => DestinationError::Transient {
                location,
                detail: mask(one_line(&other.to_string())),
            },
        }
    }
}

/// What went wrong, on one line and the same on every attempt: the store's own message leads
/// with the URL (the key again) and the time taken, and carries S3's XML error body with its
/// line breaks, which split the log line and made every attempt a "new" error. Its causes say
/// what happened (status and S3 error code, or the connection error).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let top = e.to_string();
    let mut cause = e.source();
    // The store's request error ("Error performing PUT <url> in <time> - <cause>") is skipped
    // for its cause; any other error keeps its own text (a local path, say).
    if cause.is_none() || !top.starts_with("Error performing ") {
        parts.push(one_line(&top));
    }
    while let Some(c) = cause {
        let text = one_line(&c.to_string());
        // Wrappers often repeat their cause's text.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// `text` without line breaks, an S3 XML error body reduced to its code and message.
fn one_line(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(&text[start..start + len])
    };
    let text = match (
        text.find("<?xml").or_else(|| text.find("<Error>")),
        tag("Code"),
    ) {
        (Some(body), Some(code)) => {
            let head = text[..body].trim_end().trim_end_matches(':');
            match tag("Message") {
                Some(msg) => format!("{head}: {code}: {msg}"),
                None => format!("{head}: {code}"),
            }
        }
        _ => text.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Removes the temporary files (`<key>#<n>`, object_store's staging name) that a write killed
/// before its rename leaves next to the objects: readers of the directory would take them for
/// objects, and a retried write never reuses them (it stages as `#<n+1>`). Best effort.
fn remove_staged_leftovers(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            removed += remove_staged_leftovers(&path);
        } else if kind.is_file()
            && is_staged_name(&entry.file_name().to_string_lossy())
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

fn is_staged_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(key, n)| {
        !key.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// fsync of the file, then of every directory from its parent up to `root` (new directories
/// of a new prefix must be durable too).
fn sync_path(root: &Path, file: &Path) -> Result<(), DestinationError> {
    let sync = |p: &Path| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|source| DestinationError::Sync {
                path: p.to_path_buf(),
                source,
            })
    };
    sync(file)?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        sync(d)?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// reqwest's rustls without a built-in provider: ring, installed once for the process (a no-op
/// if something installed one first).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_become_one_line_with_their_code() {
        let text = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>X</RequestId></Error>";
        assert_eq!(
            one_line(text),
            "Server returned non-2xx status code: 403 Forbidden: AccessDenied: Access Denied"
        );
        assert_eq!(one_line("a\n  b"), "a b");
    }

    #[test]
    fn describe_drops_the_request_line_and_keeps_the_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("Error performing PUT http://h/b/k in 8.2ms - {0}")]
        struct Request(#[source] Cause);
        #[derive(Debug, thiserror::Error)]
        #[error("HTTP error: error sending request")]
        struct Cause(#[source] std::io::Error);
        let e = Request(Cause(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(
            describe(&e),
            "HTTP error: error sending request: connection refused"
        );
        // Any other error keeps its own text.
        let e = std::io::Error::other("disk full");
        assert_eq!(describe(&e), "disk full");
    }

    #[test]
    fn opening_a_dir_removes_temporary_files_of_interrupted_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("out");
        std::fs::create_dir_all(root.join("a/b=1")).unwrap();
        for f in [
            "a/b=1/x.jsonl.gz#1",
            "a/b=1/x.jsonl.gz",
            "a/y#2",
            "a/#1",
            "a/z#tag",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        Destination::dir(&root).unwrap();
        let mut left: Vec<String> = [
            "a/b=1/x.jsonl.gz#1",
            "a/b=1/x.jsonl.gz",
            "a/y#2",
            "a/#1",
            "a/z#tag",
        ]
        .into_iter()
        .filter(|f| root.join(f).exists())
        .map(String::from)
        .collect();
        left.sort();
        assert_eq!(left, ["a/#1", "a/b=1/x.jsonl.gz", "a/z#tag"]);
    }

    #[tokio::test]
    async fn dir_puts_are_whole_files_and_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Destination::dir(&tmp.path().join("out")).unwrap();
        d.put("a/b=1/x.jsonl", b"one\n".to_vec()).await.unwrap();
        d.put("a/b=1/x.jsonl", b"two\n".to_vec()).await.unwrap();
        let path = tmp.path().join("out/a/b=1/x.jsonl");
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        // No temporary files are left next to it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
