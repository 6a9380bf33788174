//! Simulated controllers: garbage collection, Deployments and Jobs. Each runs as a task
//! that reconciles on every store change and on a short tick (simulated time moves on
//! even when nothing changes), until the cluster shuts down.

mod conditions;
pub mod deployment;
pub mod gc;
pub mod job;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::cluster::Cluster;

/// Real time between reconcile passes when nothing changes.
const TICK: Duration = Duration::from_millis(50);

/// Starts every controller.
pub fn start(cluster: &Arc<Cluster>) -> Vec<JoinHandle<()>> {
    let mut deployments = deployment::DeploymentController::default();
    let mut jobs = job::JobController::default();
    vec![
        spawn(cluster.clone(), gc::sweep),
        spawn(cluster.clone(), move |c| deployments.reconcile_all(c)),
        spawn(cluster.clone(), move |c| jobs.reconcile_all(c)),
    ]
}

/// Runs `pass` after each batch of store changes and every tick, until shutdown.
fn spawn(cluster: Arc<Cluster>, mut pass: impl FnMut(&Cluster) + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = cluster.store.subscribe();
        let mut shutdown = cluster.shutdown.clone();
        loop {
            // A bug in one pass must not stop the controller for good: log it and go on.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pass(&cluster)));
            if outcome.is_err() {
                tracing::error!("a simulated controller pass panicked; continuing");
            }
            tokio::select! {
                // Lagging only means several changes piled up; one pass covers them all.
                _ = changes.recv() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    })
}
