//! A shutdown flag that sleeping threads can wait on.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<(Mutex<bool>, Condvar)>);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        let (flag, cv) = &*self.0;
        *flag.lock() = true;
        cv.notify_all();
    }

    pub fn is_triggered(&self) -> bool {
        *self.0 .0.lock()
    }

    /// Sleeps up to `timeout`; returns true as soon as shutdown is triggered.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (flag, cv) = &*self.0;
        let mut guard = flag.lock();
        cv.wait_while_for(&mut guard, |stop| !*stop, timeout);
        *guard
    }
}
