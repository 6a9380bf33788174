//! Everything one simulated cluster shares between its API server and its controllers.

use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::faults::Faults;
use crate::requests::RequestLog;
use crate::store::Store;

/// The shared state of a running simulated cluster.
pub struct Cluster {
    /// Objects.
    pub store: Store,
    /// Scripted faults and outcomes.
    pub faults: Faults,
    /// Request counters.
    pub requests: RequestLog,
    /// Simulated time.
    pub clock: Clock,
    /// Simulated run time of a Job pod no rule matches.
    pub default_job_run: Duration,
    /// Simulated time a Deployment pod takes to become ready.
    pub pod_ready_after: Duration,
    /// Becomes `true` when the cluster shuts down (ends watches and controllers).
    pub shutdown: watch::Receiver<bool>,
}
