//! HTTPS on the one listener (`[api] tls_cert`, `tls_key`): a `Handshake` over tokio-rustls with
//! the ring provider, TLS 1.2 and 1.3 with rustls' default (safe) cipher suites, ALPN http/1.1.
//! The certificate is held behind a lock that `reload` swaps (SIGHUP): connections accepted after
//! a reload get the new pair, a pair that does not load leaves the old one in place.

use super::server::Handshake;
use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

/// Why a certificate/key pair cannot be used; each message names the config key to fix. Key
/// material never appears in them (PEM syntax details of the key file are left out).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("api.tls_cert: cannot read {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("api.tls_cert: {} is not valid PEM: {source}", path.display())]
    CertPem { path: PathBuf, source: pem::Error },
    #[error("api.tls_cert: {} holds no certificate (PEM `CERTIFICATE` section)", path.display())]
    NoCert { path: PathBuf },
    #[error("api.tls_cert: the first certificate in {} is not usable: {source}", path.display())]
    BadCert {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("api.tls_key: cannot read {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("api.tls_key: {} is not valid PEM", path.display())]
    KeyPem { path: PathBuf },
    #[error("api.tls_key: {} holds no private key (PKCS#8, PKCS#1 or SEC1 PEM)", path.display())]
    NoKey { path: PathBuf },
    #[error("api.tls_key: {} is not a usable private key: {source}", path.display())]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("api.tls_key: {} does not match the certificate in api.tls_cert ({})", key.display(), cert.display())]
    Mismatch { key: PathBuf, cert: PathBuf },
}

/// The two PEM files of `[api]`: the certificate (chain, leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files when TLS is configured (config validation makes them both or neither).
    pub fn from_config(api: &crate::config::ApiConfig) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: api.tls_cert.clone()?,
            key: api.tls_key.clone()?,
        })
    }

    /// Reads and checks the pair: at least one certificate, a key the provider can sign with,
    /// and the key belongs to the first (leaf) certificate.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        load_pair(&self.cert, &self.key, &provider())
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| match e {
            pem::Error::Io(source) => TlsError::ReadCert {
                path: cert.into(),
                source,
            },
            source => TlsError::CertPem {
                path: cert.into(),
                source,
            },
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert { path: cert.into() });
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        pem::Error::Io(source) => TlsError::ReadKey {
            path: key.into(),
            source,
        },
        pem::Error::NoItemsFound => TlsError::NoKey { path: key.into() },
        _ => TlsError::KeyPem { path: key.into() },
    })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|source| TlsError::BadKey {
            path: key.into(),
            source,
        })?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => Ok(pair),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                key: key.into(),
                cert: cert.into(),
            })
        }
        // ring can always tell; a key whose public half is unknown is taken as rustls does
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(source) => Err(TlsError::BadCert {
            path: cert.into(),
            source,
        }),
    }
}

/// The certificate every new handshake gets; `reload` replaces it.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The TLS handshake of the listener, and the handle that reloads its certificate.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    current: Arc<CurrentCert>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads the pair (a start-up error names the config key) and builds the server config.
    pub fn new(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = provider();
        let pair = load_pair(&files.cert, &files.key, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(pair))));
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            files,
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Re-reads the two files; on success new connections get the new certificate, otherwise
    /// the current one stays. Kept small so a full config reload (SIGHUP) can call it.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = self.files.load()?;
        *self.current.0.write() = Arc::new(pair);
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

impl Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Self::Io> {
        self.acceptor.accept(tcp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn self_signed(name: &str) -> Pair {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Pair {
            cert: c.cert.pem(),
            key: c.signing_key.serialize_pem(),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            cert: write(dir, "cert.pem", cert),
            key: write(dir, "key.pem", key),
        }
    }

    #[test]
    fn a_matching_pair_loads_and_reload_swaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (self_signed("a.test"), self_signed("b.test"));
        let f = files(dir.path(), &a.cert, &a.key);
        let tls = Tls::new(f.clone()).unwrap();
        let served = || tls.current.0.read().cert[0].clone();
        let first = served();
        files(dir.path(), &b.cert, &b.key);
        tls.reload().unwrap();
        let second = served();
        assert_ne!(first, second);
        // a mismatched pair is refused and the served certificate stays
        files(dir.path(), &a.cert, &b.key);
        assert!(matches!(tls.reload(), Err(TlsError::Mismatch { .. })));
        assert_eq!(served(), second);
    }

    #[test]
    fn errors_name_the_config_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed("a.test");
        let b = self_signed("b.test");
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let e = missing.load().unwrap_err().to_string();
        assert!(e.starts_with("api.tls_cert: cannot read"), "{e}");

        let only_key = files(dir.path(), &a.key, &a.key);
        let e = only_key.load().unwrap_err().to_string();
        assert!(
            e.starts_with("api.tls_cert:") && e.contains("no certificate"),
            "{e}"
        );

        let no_key = files(dir.path(), &a.cert, &a.cert);
        let e = no_key.load().unwrap_err().to_string();
        assert!(
            e.starts_with("api.tls_key:") && e.contains("no private key"),
            "{e}"
        );

        let f = files(dir.path(), &a.cert, &a.key);
        std::fs::remove_file(&f.key).unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(e.starts_with("api.tls_key: cannot read"), "{e}");

        let mismatched = files(dir.path(), &a.cert, &b.key);
        let e = mismatched.load().unwrap_err().to_string();
        assert!(
            e.starts_with("api.tls_key:") && e.contains("does not match"),
            "{e}"
        );
    }

    /// A key file with broken PEM must not echo its lines (they are key material).
    #[test]
    fn key_errors_never_quote_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed("a.test");
        let broken: String = a.key.lines().take(3).collect::<Vec<_>>().join("\n");
        let f = files(dir.path(), &a.cert, &broken);
        let e = f.load().unwrap_err().to_string();
        assert!(e.starts_with("api.tls_key:"), "{e}");
        for line in a.key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!e.contains(line), "{e}");
        }
    }
}
