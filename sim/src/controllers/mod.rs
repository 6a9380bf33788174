//! Simulated controllers: garbage collection, Deployments, StatefulSets and Jobs. Each runs as a task
//! that reconciles on every store change and on a short tick (simulated time moves on
//! even when nothing changes), until the cluster shuts down.

mod conditions;
pub mod deployment;
pub mod gc;
pub mod job;
mod replicas;
pub mod statefulset;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::cluster::Cluster;
use crate::store::{Change, ChangeType, Changes};

/// Real time between reconcile passes when nothing changes.
const TICK: Duration = Duration::from_millis(50);

/// Starts every controller.
pub fn start(cluster: &Arc<Cluster>) -> Vec<JoinHandle<()>> {
    let mut deployments = deployment::DeploymentController::default();
    let mut jobs = job::JobController::default();
    let mut stateful_sets = statefulset::StatefulSetController::default();
    vec![
        spawn(cluster.clone(), None, gc::concerns, gc::sweep),
        spawn(
            cluster.clone(),
            Some(TICK),
            // Deployments, and pods someone deleted (they get replaced).
            |c| c.key == "deployments.apps" || (c.key == "pods" && c.type_ == ChangeType::Deleted),
            move |c| deployments.reconcile_all(c),
        ),
        spawn(
            cluster.clone(),
            Some(TICK),
            // StatefulSets, and pods someone deleted (they get recreated).
            |c| c.key == "statefulsets.apps" || (c.key == "pods" && c.type_ == ChangeType::Deleted),
            move |c| stateful_sets.reconcile_all(c),
        ),
        spawn(
            cluster.clone(),
            Some(TICK),
            |c| c.key == "jobs.batch",
            move |c| jobs.reconcile_all(c),
        ),
    ]
}

/// Runs `pass` after store changes it is `concerned` with and, for controllers that follow
/// simulated time, every `tick`, until shutdown.
fn spawn(
    cluster: Arc<Cluster>,
    tick: Option<Duration>,
    concerned: fn(&Change) -> bool,
    mut pass: impl FnMut(&Cluster) + Send + 'static,
) -> JoinHandle<()> {
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
                _ = next_concern(&mut changes, concerned) => {}
                _ = sleep(tick) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            // One pass covers every change that piled up meanwhile.
            while !matches!(
                changes.try_recv(),
                Err(TryRecvError::Empty | TryRecvError::Closed)
            ) {}
        }
    })
}

/// Waits for a change the controller is concerned with (a lagged receiver may have missed
/// one, so that counts too; a closed channel never wakes it).
async fn next_concern(changes: &mut Changes, concerned: fn(&Change) -> bool) {
    loop {
        match changes.recv().await {
            Ok(change) if concerned(&change) => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}

async fn sleep(tick: Option<Duration>) {
    match tick {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}
