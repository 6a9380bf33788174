#![warn(missing_docs)]
//! A simulated Kubernetes cluster: a loopback HTTP server speaking the parts of the
//! Kubernetes API that kubectl and kube-rs use, with simulated Deployment, StatefulSet and Job
//! controllers whose outcomes can be scripted.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use apprelease_sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig { time_scale: 20.0, ..SimConfig::default() }).await?;
//! sim.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! // ... point kubectl or a kube::Client at it ...
//! println!("{} jobs created", sim.requests().count("create", "jobs"));
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod admission;
pub mod api;
pub mod clock;
mod cluster;
pub mod control;
pub mod controllers;
mod convert;
pub mod error;
pub mod faults;
pub mod glob;
pub mod jsonpath;
pub mod kubeconfig;
pub mod meta;
pub mod patch;
mod rand;
pub mod registry;
pub mod requests;
mod schema;
pub mod selectors;
pub mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cluster::Cluster;
pub use faults::{
    ApiEffect, ApiFault, Fault, FaultSet, ImageEffect, ImageFault, JobMatch, JobResult, JobRule,
};
pub use requests::{RequestLog, RequestRecord};

/// How to start a simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Simulated seconds per real second (20 makes a 60 s rollout take 3 s).
    pub time_scale: f64,
    /// Faults in force from the start.
    pub faults: Vec<Fault>,
    /// Simulated run time of Job pods no rule matches.
    pub default_job_run: Duration,
    /// Simulated time a Deployment pod takes to become ready.
    pub pod_ready_after: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            port: 0,
            time_scale: 1.0,
            faults: Vec::new(),
            default_job_run: Duration::from_secs(2),
            pod_ready_after: Duration::from_secs(2),
        }
    }
}

/// Starts simulated clusters.
pub struct Sim;

impl Sim {
    /// Binds 127.0.0.1 and starts the API server and controllers on the current Tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], config.port))).await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let cluster = Arc::new(Cluster {
            store: store::Store::new(),
            faults: faults::Faults::default(),
            requests: RequestLog::default(),
            clock: clock::Clock::new(config.time_scale),
            default_job_run: config.default_job_run,
            pod_ready_after: config.pod_ready_after,
            shutdown: shutdown_rx.clone(),
        });
        for fault in config.faults {
            cluster.faults.add(fault);
        }
        let app = api::router(cluster.clone());
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulated API server failed");
            }
        });
        let controllers = controllers::start(&cluster);
        tracing::info!(%addr, "simulated cluster listening");
        Ok(SimHandle {
            cluster,
            addr,
            shutdown_tx,
            tasks: controllers.into_iter().chain([server]).collect(),
        })
    }
}

/// A running simulated cluster. Dropping it stops the server and controllers.
pub struct SimHandle {
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for this cluster (context `apprelease-sim`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig::render(&self.url())
    }

    /// Writes [`Self::kubeconfig`] to a file.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        kubeconfig::write(path, &self.url())
    }

    /// The shared cluster state (store, faults, request counters, clock).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Adds a fault or scripted outcome.
    pub fn add_fault(&self, fault: Fault) {
        self.cluster.faults.add(fault);
    }

    /// Scripts how matching Jobs end.
    pub fn script_job(&self, rule: JobRule) {
        self.add_fault(Fault::Job(rule));
    }

    /// Makes an image (glob) never ready, or crash.
    pub fn fault_image(&self, image_glob: &str, effect: ImageEffect) {
        self.add_fault(Fault::Image(ImageFault {
            image: image_glob.to_string(),
            effect,
        }));
    }

    /// Removes every fault and script.
    pub fn clear_faults(&self) {
        self.cluster.faults.clear();
    }

    /// Request counters.
    pub fn requests(&self) -> &RequestLog {
        &self.cluster.requests
    }

    /// Forgets watch history: watches resuming from an older resourceVersion get 410.
    pub fn compact(&self) {
        self.cluster.store.compact();
    }

    /// Stops the server (ending open watches) and the controllers.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}
