//! Simulated Kubernetes cluster (being built).
