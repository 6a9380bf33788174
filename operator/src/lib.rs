//! The AppRelease operator: upgrades self-hosted applications declared by an `AppRelease`
//! (backup, migrate, roll out, verify, roll back), reconciled by a kube-rs controller.
//!
//! Data flows one way: watch → observe → decide → act → record.
//! - [`api`]: the resource's types, defaults and validation (no I/O);
//! - [`plan`]: the pure planner that decides the next step;
//! - [`jobs`]: pure builders of the Jobs an upgrade runs;
//! - [`cache`]: the watch caches reconciles read, trimmed and indexed, and the operator's
//!   own writes they must show before a decision is taken;
//! - [`k8s`]: reads snapshots from the caches and carries decisions out against the API;
//! - [`notify`]: upgrade milestones to a webhook, delivered in the background;
//! - [`controller`]: the kube-runtime wiring;
//! - [`leader`]: leader election on a Lease, so that of several replicas one writes.

pub mod api;
pub mod backoff;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod http;
pub mod jobs;
pub mod k8s;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod queue;
pub mod shutdown;
