//! The HTTP API subsystem: the one listener, served on the daemon's runtime.

use crate::api::{firehose, ApiState, HttpOptions};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::lifecycle::Handle;
use anyhow::Context;
use std::sync::Arc;

/// The delivery streams the Firehose API serves: every `[[delivery]]`, created now.
pub fn firehose_deliveries(config: &Config, clock: &SharedClock) -> Arc<firehose::Deliveries> {
    Arc::new(firehose::Deliveries::new(
        &config.deliveries,
        clock.now_ns(),
    ))
}

pub fn start(
    runtime: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    state: ApiState,
    options: HttpOptions,
) -> anyhow::Result<Handle> {
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).context("cannot use the API listener")?
    };
    // the state's signal, so that long responses (GetMedia) end with the server
    let shutdown = state.shutdown.clone();
    let server = runtime.spawn(crate::api::serve(listener, state, options, {
        let shutdown = shutdown.clone();
        async move { shutdown.triggered().await }
    }));
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
