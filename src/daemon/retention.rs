//! The retention subsystem: one thread that applies age retention and budgets to the video
//! store and the shard streams every `storage.retention_interval`.

use crate::config::format_bytes;
use crate::lifecycle::{Handle, Progress, Shutdown};
use crate::store::Store;
use crate::streams::ShardStreams;
use std::sync::Arc;
use std::time::Duration;

/// `progress` beats for each pass and is idle in between (daemon/notify.rs liveness).
pub fn start(
    store: Arc<Store>,
    streams: Arc<ShardStreams>,
    every: Duration,
    progress: Arc<Progress>,
) -> Handle {
    let shutdown = Shutdown::new();
    let thread = std::thread::Builder::new()
        .name("retention".into())
        .spawn({
            let shutdown = shutdown.clone();
            move || loop {
                progress.beat();
                match streams.enforce_retention() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(segments = n, "shard stream retention pass"),
                    Err(e) => tracing::error!("shard stream retention failed: {e}"),
                }
                match store.enforce_retention() {
                    Ok(r) if !r.deleted.is_empty() => {
                        tracing::info!(segments = r.deleted.len(), freed = %format_bytes(r.bytes_freed()), "retention pass")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!("retention failed: {e}"),
                }
                progress.idle();
                if shutdown.wait(every) {
                    break;
                }
            }
        })
        .expect("spawn retention thread");
    Handle::new(
        "retention",
        move || shutdown.trigger(),
        move || {
            let _ = thread.join();
        },
    )
}
