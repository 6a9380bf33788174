//! The end-to-end harness: a cluster (the simulated one, the local real control plane, or a
//! real one named by `APPRELEASE_E2E_KUBECONFIG`; see `cluster::Backend`), the real
//! `apprelease-operator` binary as a separate process, the example application, and ways to
//! script failures that work on all of them.

pub mod argocd;
pub mod cluster;
pub mod control_plane;
pub mod fixtures;
pub mod flux;
pub mod git_server;
pub mod gitops;
pub mod helm;
pub mod inspect;
pub mod operator;
pub mod plugin;
pub mod proxy;
pub mod scenario;
pub mod scrape;
pub mod testbed;
pub mod wait;
pub mod webhook;

pub use cluster::Cluster;
pub use operator::{Operator, Options};
pub use scenario::Scenario;
