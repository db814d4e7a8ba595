//! Exponential reconnect backoff with jitter (1 s .. 30 s by default).

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            attempt: 0,
        }
    }

    /// The next delay: min * 2^attempt, capped at max, then +-20 % jitter (still within bounds)
    /// so that many cameras behind one failed switch do not reconnect in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter).clamp(self.min, self.max)
    }

    /// After a healthy session, start over from the minimum.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::default();
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_secs(1) && d[0] <= Duration::from_millis(1200));
        assert!(d[2] >= Duration::from_millis(3200) && d[2] <= Duration::from_millis(4800));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(30)));
        assert!(d[7] >= Duration::from_secs(24));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
    }
}
