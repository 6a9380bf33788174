//! Per-object exponential backoff for failed reconciliations.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First retry delay.
const BASE: Duration = Duration::from_secs(2);
/// Longest retry delay: the planner's poll interval while an upgrade runs. A longer one
/// lets transient API errors stall an upgrade in flight past its step deadlines (the flaky-API
/// scenario once waited 2 + 4 + 8 + 16 + 32 s after five failed reconciles in a row).
const MAX: Duration = crate::plan::POLL;

/// The delay before retry number `failures` (1-based): 2s, 4s, 8s, … up to 30 s.
pub fn delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    BASE.saturating_mul(1 << exponent).min(MAX)
}

/// Counts consecutive failures per object.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_string()).or_default();
        *count += 1;
        delay(*count)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_a_ceiling_and_resets() {
        assert_eq!(delay(1), Duration::from_secs(2));
        assert_eq!(delay(3), Duration::from_secs(8));
        assert_eq!(delay(40), MAX);
        let backoff = Backoff::default();
        backoff.failed("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(4));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(2));
    }
}
