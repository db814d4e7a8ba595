//! Binding `api.listen`, shared by `vidgest run` and `vidgest check` so both explain a failure
//! the same way: the hint depends on why the bind failed.

use std::io::ErrorKind;
use std::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "cannot listen on {addr}: the address is in use (is another vidgest already running?)"
    )]
    InUse { addr: String },
    #[error("cannot listen on {addr}: the address is not on this host (use 127.0.0.1, 0.0.0.0 or an address of one of its interfaces)")]
    NotLocal { addr: String },
    #[error(
        "cannot listen on {addr}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
    )]
    Denied { addr: String },
    // Not `#[source]`: the message already ends with it (anyhow's `{:#}` would print it twice).
    #[error("cannot listen on {addr}: {io}")]
    Other { addr: String, io: std::io::Error },
}

/// Binds the API listener (blocking mode, as std gives it).
pub fn bind_api_listener(addr: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).map_err(|io| {
        let addr = addr.to_owned();
        match io.kind() {
            ErrorKind::AddrInUse => ListenError::InUse { addr },
            ErrorKind::AddrNotAvailable => ListenError::NotLocal { addr },
            ErrorKind::PermissionDenied => ListenError::Denied { addr },
            _ => ListenError::Other { addr, io },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_each_failure() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = bind_api_listener(&addr).unwrap_err();
        assert!(matches!(e, ListenError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("another vidgest"), "{e}");

        // TEST-NET-1 (RFC 5737): never configured on a host.
        let e = bind_api_listener("192.0.2.1:8080").unwrap_err();
        assert!(matches!(e, ListenError::NotLocal { .. }), "{e}");
        assert!(e.to_string().contains("not on this host"), "{e}");
        assert!(!e.to_string().contains("another vidgest"), "{e}");

        assert!(bind_api_listener("127.0.0.1:0").is_ok());
    }
}
