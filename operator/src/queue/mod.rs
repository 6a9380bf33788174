//! The reconciles waiting for their turn.
//!
//! kube-runtime's controller hands each woken AppRelease to a reconcile in the order its
//! scheduler woke them, with no notion of priority: during a burst (a thousand releases
//! upgraded at once, a cold start) a single user's spec change would wait behind every
//! rollout-progress reconcile. So the controller runs its reconciles unbounded and each one
//! first takes a turn at the [`Gate`], which admits `--concurrency` at a time in a fair order
//! ([`fair`]): spec changes before progress, and namespaces in turn within each.
//! [`Waiting`] counts what waits, for the queue-depth gauge.

pub mod fair;
mod gate;
mod waiting;

pub use fair::Lane;
pub use gate::{Gate, Turn};
pub use waiting::Waiting;
