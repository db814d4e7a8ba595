//! HTTPS on the one listener (`[api] tls_cert`, `tls_key`) against the real daemon, with a test
//! CA made here by rcgen (root → intermediate → server, the cert file holding the chain): curl
//! with `--cacert` and stock boto3 with `verify=` succeed (GetDataEndpoint answers https://),
//! plain HTTP to the port fails cleanly, SIGHUP swaps the certificate for new connections and a
//! bad new pair keeps the old one. Start-up and `vidgest check` name the key at fault.

mod harness;
mod support;

use harness::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "tls-reader-token-0123456";
const CAMERA: &str = "cam";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test root CA and the intermediate that signs server certificates.
struct TestCa {
    root_pem: String,
    root_der: CertificateDer<'static>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate file (leaf + intermediate) and its key, as PEM.
struct ServerPair {
    chain_pem: String,
    key_pem: String,
    leaf: CertificateDer<'static>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl TestCa {
    fn new() -> TestCa {
        Self::with_root("vidgest test root")
    }

    fn with_root(name: &str) -> TestCa {
        let root =
            CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().unwrap()).unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("vidgest test intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        TestCa {
            root_pem: root.pem(),
            root_der: root.der().clone(),
            intermediate,
        }
    }

    /// A fresh server certificate for 127.0.0.1 and localhost (new key, new serial).
    fn server(&self) -> ServerPair {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "vidgest");
        let cert = p.signed_by(&key, &self.intermediate).unwrap();
        ServerPair {
            chain_pem: format!("{}{}", cert.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }
}

fn write_pair(dir: &Path, cert_pem: &str, key_pem: &str) {
    std::fs::write(dir.join("server.pem"), cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), key_pem).unwrap();
}

fn config(port: u16, dir: &Path) -> String {
    format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{key}"
[[api.token]]
token = "{TOKEN}"
scope = "read"
[[camera]]
name = "{CAMERA}"
fragment_duration = "500ms"
[camera.source]
kind = "test"
width = 64
height = 48
fps = 10
gop = 5
"#,
        cert = dir.join("server.pem").display(),
        key = dir.join("server.key").display(),
    )
}

/// One HTTPS request with rustls' client trusting only `ca`, offering `versions`: the leaf
/// certificate the server presented, the ALPN protocol it chose and the response text.
fn https_get(
    port: u16,
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<(CertificateDer<'static>, Option<Vec<u8>>, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    // Read to the body ("ok\n") rather than to EOF: the close is the server's business.
    let mut buf = [0u8; 4096];
    while !response.ends_with(b"\r\n\r\nok\n") {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if response.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    let leaf = conn.peer_certificates().expect("a certificate")[0].clone();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    Ok((leaf, alpn, String::from_utf8_lossy(&response).into_owned()))
}

fn served_cert(port: u16, ca: &CertificateDer<'static>) -> CertificateDer<'static> {
    let (leaf, _, response) = https_get(port, ca, rustls::ALL_VERSIONS).expect("HTTPS request");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    leaf
}

/// curl with the test CA; returns (exit success, HTTP code, body).
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    eprintln!(
        "curl {args:?}: {} {code} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), code.to_string(), body.to_string())
}

fn sighup(daemon: &Daemon) {
    let pid = daemon.pid().expect("running") as i32;
    // SAFETY: signals our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

#[test]
fn https_listener_serves_curl_and_boto3_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.root_pem).unwrap();
    let first = ca.server();
    write_pair(dir.path(), &first.chain_pem, &first.key_pem);
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port, dir.path()));
    eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let https = format!("https://127.0.0.1:{port}");
    let cacert = ca_file.display().to_string();

    // curl, trusting only the test root: the chain in the cert file completes the path
    let (ok, code, body) = curl(&["--cacert", &cacert, &format!("{https}/healthz")]);
    assert!(ok && code == "200" && body == "ok\n", "{code} {body:?}");
    let cameras = format!("{https}/api/v1/cameras");
    let (_, code, _) = curl(&["--cacert", &cacert, &cameras]);
    assert_eq!(code, "401", "REST without a token");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (ok, code, body) = curl(&["--cacert", &cacert, "-H", &bearer, &cameras]);
    assert!(
        ok && code == "200" && body.contains(CAMERA),
        "{code} {body}"
    );
    // trusting another CA, curl refuses the certificate
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::with_root("another root").root_pem).unwrap();
    let other_ca = other_ca.display().to_string();
    let (ok, code, _) = curl(&["--cacert", &other_ca, &format!("{https}/healthz")]);
    assert!(
        !ok && code == "000",
        "curl must not trust a certificate of another CA"
    );

    // plain HTTP to the TLS port: a clean client error, and the daemon keeps serving
    let (ok, code, _) = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert!(!ok && code == "000", "plain HTTP must fail, got {code}");
    daemon.assert_running();

    // modern defaults: TLS 1.3 and 1.2 both work; ALPN is http/1.1
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let (leaf, alpn, response) = https_get(port, &ca.root_der, versions).unwrap();
        assert_eq!(leaf, first.leaf);
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    // boto3 with verify=<ca.pem>: kinesis, kinesisvideo (an https:// data endpoint) and the
    // archived-media client on that endpoint
    eventually(Duration::from_secs(90), "a recorded fragment", || {
        daemon.assert_running();
        let f = try_read_fragments(&daemon.data_dir, CAMERA).ok()?;
        (!f.is_empty()).then_some(())
    });
    let python = root().join("vendor/venv/bin/python");
    assert!(python.exists(), "run scripts/bootstrap (vendor/venv)");
    let out = Command::new(python)
        .arg(root().join("tests/py/tls_client.py"))
        .args(["--endpoint", &https, "--ca", &cacert, "--token", TOKEN])
        .args(["--stream", CAMERA])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- tls_client.py ---\n{stdout}{stderr}");
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "tls_client.py failed: {stdout}\n{stderr}"
    );

    // SIGHUP after replacing the files: new connections get the new certificate
    assert_eq!(served_cert(port, &ca.root_der), first.leaf);
    let second = ca.server();
    assert_ne!(second.leaf, first.leaf);
    write_pair(dir.path(), &second.chain_pem, &second.key_pem);
    sighup(&daemon);
    eventually(Duration::from_secs(20), "the new certificate", || {
        daemon.assert_running();
        (served_cert(port, &ca.root_der) == second.leaf).then_some(())
    });

    // a bad new pair (the key of another certificate) is refused; the served one stays
    let third = ca.server();
    write_pair(dir.path(), &third.chain_pem, &first.key_pem);
    sighup(&daemon);
    eventually(
        Duration::from_secs(20),
        "the reload error in the log",
        || {
            daemon.assert_running();
            daemon
                .log_text()
                .contains("TLS reload failed, the current certificate stays: api.tls_key:")
                .then_some(())
        },
    );
    assert_eq!(served_cert(port, &ca.root_der), second.leaf);
    let (ok, code, _) = curl(&["--cacert", &cacert, &format!("{https}/healthz")]);
    assert!(ok && code == "200");
    let log = daemon.log_text();
    for line in first.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "key material in the log");
    }
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

/// A client that connects and never starts the handshake is closed after `header_timeout`
/// (it holds a connection slot only that long); handshakes after it still succeed.
#[test]
fn a_silent_client_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let pair = ca.server();
    write_pair(dir.path(), &pair.chain_pem, &pair.key_pem);
    let port = support::free_port();
    let text = config(port, dir.path()).replace(
        "[[api.token]]",
        "header_timeout = \"500ms\"\nmax_connections = 1\n[[api.token]]",
    );
    let daemon = Daemon::start(dir.path(), &text);
    let mut silent = eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf);
    assert!(
        matches!(n, Ok(0))
            || n.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the silent connection is closed: {n:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // the one connection slot is free again
    assert_eq!(served_cert(port, &ca.root_der), pair.leaf);
    assert!(daemon.terminate().success());
}

/// Missing files, a file without a certificate and a key of another certificate: `vidgest check`
/// and `vidgest run` refuse them, naming the config key.
#[test]
fn start_and_check_name_the_tls_key_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (a, b) = (ca.server(), ca.server());
    let cases = [
        (None, "api.tls_cert: cannot read"),
        (
            Some((a.key_pem.as_str(), a.key_pem.as_str())),
            "api.tls_cert:",
        ),
        (
            Some((a.chain_pem.as_str(), b.key_pem.as_str())),
            "api.tls_key:",
        ),
    ];
    for (files, expect) in cases {
        let _ = std::fs::remove_file(dir.path().join("server.pem"));
        let _ = std::fs::remove_file(dir.path().join("server.key"));
        if let Some((cert, key)) = files {
            write_pair(dir.path(), cert, key);
        }
        let port = support::free_port();
        let text = config(port, dir.path())
            .replace("{data_dir}", &dir.path().join("data").display().to_string());
        let config_file = dir.path().join("vidgest.toml");
        std::fs::write(&config_file, text).unwrap();
        let config_arg = config_file.display().to_string();
        let (ok, _, stderr) = cli(&["check", "--config", &config_arg]);
        assert!(!ok && stderr.contains(expect), "check: {expect}: {stderr}");
        let (ok, _, stderr) = cli(&["run", "--config", &config_arg]);
        assert!(!ok && stderr.contains(expect), "run: {expect}: {stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    }
}
