//! The end-to-end harness: a cluster (the simulated one, or a real one named by
//! `APPRELEASE_E2E_KUBECONFIG`), the real `apprelease-operator` binary as a separate process,
//! the example application, and ways to script failures that work on both.

pub mod cluster;
pub mod control_plane;
pub mod fixtures;
pub mod inspect;
pub mod operator;
pub mod scenario;
pub mod wait;

pub use cluster::Cluster;
pub use operator::Operator;
pub use scenario::Scenario;
