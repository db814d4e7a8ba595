//! Lifecycle of the daemon's subsystems: one shutdown signal that threads and tokio tasks can
//! both wait on, and the `Handle` every subsystem's `start` returns.
//!
//! The daemon starts subsystems in dependency order and stops them in reverse (see
//! `daemon::Daemon`); a start that fails part-way stops what already runs before it returns.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A one-way stop signal. Threads sleep on it (`wait`), tasks await it (`triggered`).
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    flag: Mutex<bool>,
    cv: Condvar,
    notify: tokio::sync::Notify,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        *self.0.flag.lock() = true;
        self.0.cv.notify_all();
        self.0.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.flag.lock()
    }

    /// Sleeps up to `timeout`; returns true as soon as shutdown is triggered.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut guard = self.0.flag.lock();
        self.0.cv.wait_while_for(&mut guard, |stop| !*stop, timeout);
        *guard
    }

    /// Resolves once shutdown is triggered (at once if it already was).
    pub async fn triggered(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a trigger in between is not missed.
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

type Action = Box<dyn FnOnce() + Send>;

/// A running subsystem: `stop` asks it to finish (non-blocking), `join` waits until it has.
pub struct Handle {
    name: &'static str,
    stop: Option<Action>,
    join: Option<Action>,
}

impl Handle {
    pub fn new(
        name: &'static str,
        stop: impl FnOnce() + Send + 'static,
        join: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self {
            name,
            stop: Some(Box::new(stop)),
            join: Some(Box::new(join)),
        }
    }

    /// A subsystem whose work is driven by others (nothing to stop or wait for).
    pub fn passive(name: &'static str) -> Self {
        Self::new(name, || {}, || {})
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }

    /// Stops (if not yet asked) and waits.
    pub fn join(mut self) {
        self.stop();
        if let Some(join) = self.join.take() {
            tracing::debug!(subsystem = self.name, "waiting for it to stop");
            join();
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("name", &self.name).finish()
    }
}

/// Subsystems started so far, stopped in reverse order on `stop_all` or drop.
#[derive(Debug, Default)]
pub struct Started(Vec<Handle>);

impl Started {
    pub fn push(&mut self, h: Handle) {
        tracing::debug!(subsystem = h.name(), "started");
        self.0.push(h);
    }

    /// Stops and joins every subsystem, newest first.
    pub fn stop_all(&mut self) {
        while let Some(h) = self.0.pop() {
            h.join();
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// When a component last made progress, for the watchdog's liveness check (daemon/notify.rs).
/// One atomic store per beat: cheap enough for a recorder's every access unit.
///
/// A component either beats while it works or says it is `idle` (blocked on input or a timer
/// it chose: a recorder waiting for video, a camera in reconnect backoff, retention between
/// passes). Idle is never stuck; busy without a beat for longer than the watchdog interval is.
#[derive(Debug)]
pub struct Progress(AtomicU64);

/// `Progress` value of an idle component; others hold milliseconds since `epoch()` plus one.
const IDLE: u64 = 0;

/// A process-wide monotonic origin for `Progress` (an `Instant` does not fit an atomic).
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn ms_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64 + 1
}

impl Default for Progress {
    /// Busy as of now: a component that never gets to run shows as stuck.
    fn default() -> Self {
        Self(AtomicU64::new(ms_since_epoch(Instant::now())))
    }
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Working, and made progress now.
    pub fn beat(&self) {
        self.0
            .store(ms_since_epoch(Instant::now()), Ordering::Relaxed);
    }

    /// Blocked on input or a timer of its own choosing: cannot be stuck until the next `beat`.
    pub fn idle(&self) {
        self.0.store(IDLE, Ordering::Relaxed);
    }

    /// How long the component has been busy without a beat at `now`; `None` while idle.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            IDLE => None,
            ms => Some(Duration::from_millis(
                ms_since_epoch(now).saturating_sub(ms),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn threads_and_tasks_both_see_the_trigger() {
        let s = Shutdown::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let task = rt.spawn({
            let s = s.clone();
            async move { s.triggered().await }
        });
        let thread = std::thread::spawn({
            let s = s.clone();
            move || s.wait(Duration::from_secs(30))
        });
        // Let the task park in `triggered` before the trigger (exercises the wake path).
        rt.block_on(async { tokio::task::yield_now().await });
        s.trigger();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("task woke")
                .unwrap()
        });
        assert!(
            thread.join().unwrap(),
            "thread woke by the trigger, not the timeout"
        );
        // Already triggered: resolves at once.
        rt.block_on(s.triggered());
    }

    #[test]
    fn started_subsystems_stop_in_reverse_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let stopped_b = Arc::new(AtomicBool::new(false));
        {
            let mut started = Started::default();
            for name in ["a", "b", "c"] {
                let o = order.clone();
                let flag = stopped_b.clone();
                started.push(Handle::new(
                    name,
                    move || {
                        if name == "b" {
                            flag.store(true, Ordering::SeqCst);
                        }
                    },
                    move || o.lock().push(name),
                ));
            }
        } // dropped: a partial start tears down what ran
        assert_eq!(*order.lock(), vec!["c", "b", "a"]);
        assert!(stopped_b.load(Ordering::SeqCst));
    }

    #[test]
    fn progress_is_stuck_only_when_busy_without_a_beat() {
        let p = Progress::new();
        let later = Instant::now() + Duration::from_secs(5);
        assert!(p.stalled_for(later).unwrap() >= Duration::from_secs(5));
        p.idle();
        assert_eq!(p.stalled_for(later), None, "idle is never stuck");
        p.beat();
        let stalled = p.stalled_for(later).unwrap();
        assert!(stalled >= Duration::from_secs(4) && stalled <= Duration::from_secs(5));
        assert!(p.stalled_for(Instant::now()).unwrap() < Duration::from_secs(1));
    }
}
