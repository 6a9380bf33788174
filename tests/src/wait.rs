//! Waiting for the cluster to reach a state. The limits are generous liveness bounds, not
//! performance assertions: a scenario that needs them has failed.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {limit:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
