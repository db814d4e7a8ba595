//! The HTTP API subsystem: the one listener, served on the daemon's runtime.

use crate::api::{firehose, ApiState, HttpOptions, Tls, TlsError, TlsFiles};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::lifecycle::Handle;
use anyhow::Context;

/// The delivery streams the Firehose API serves: every `[[delivery]]`, created now.
pub fn firehose_deliveries(config: &Config, clock: &SharedClock) -> firehose::Deliveries {
    firehose::Deliveries::new(&config.deliveries, clock.now_ns())
}

/// The TLS handshake when `[api] tls_cert` / `tls_key` are set; a pair that cannot be used is a
/// start-up error naming the key to fix.
pub fn tls(config: &Config) -> Result<Option<Tls>, TlsError> {
    TlsFiles::from_config(&config.api).map(Tls::new).transpose()
}

/// Re-reads the certificate and key (SIGHUP): new connections get the new pair; one that does
/// not load is logged and the current one kept. Returns whether the new pair is in use.
pub fn reload_tls(tls: &Tls) -> bool {
    match tls.reload() {
        Ok(()) => {
            tracing::info!(
                cert = %tls.files().cert.display(),
                "TLS certificate reloaded: new connections use it"
            );
            true
        }
        Err(e) => {
            tracing::error!("TLS reload failed, the current certificate stays: {e}");
            false
        }
    }
}

pub fn start(
    runtime: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    state: ApiState,
    tls: Option<Tls>,
    options: HttpOptions,
) -> anyhow::Result<Handle> {
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).context("cannot use the API listener")?
    };
    // the state's signal, so that long responses (GetMedia) end with the server
    let shutdown = state.shutdown.clone();
    let stopped = {
        let shutdown = shutdown.clone();
        async move { shutdown.triggered().await }
    };
    let server = match tls {
        Some(tls) => runtime.spawn(crate::api::serve_tls(
            listener, state, tls, options, stopped,
        )),
        None => runtime.spawn(crate::api::serve(listener, state, options, stopped)),
    };
    let rt = runtime.handle().clone();
    Ok(Handle::new(
        "api",
        move || shutdown.trigger(),
        move || match rt.block_on(server) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("HTTP server: {e}"),
            Err(e) => tracing::error!("HTTP server task: {e}"),
        },
    ))
}
