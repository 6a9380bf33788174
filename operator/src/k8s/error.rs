//! Errors of the I/O layer: one variant per place that can fail, carrying its context.

use crate::api::TargetKind;
use crate::jobs::BuildError;

/// A failure to observe or to carry out a decision. Each is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caches do not show one of the operator's own writes yet (`crate::cache`): nothing
    /// was decided, and it is reconciled again in a moment.
    #[error("waiting for the watch caches to show {0}")]
    CacheBehind(String),
    /// Listing the release's Jobs or pods failed.
    #[error("listing {kind}: {source}")]
    List {
        kind: &'static str,
        source: kube::Error,
    },
    /// Writing the status failed; nothing was done after it.
    #[error("writing the status: {0}")]
    WriteStatus(#[source] kube::Error),
    /// The status write was refused because the AppRelease changed since it was read; nothing
    /// was done, and it is reconciled again soon from fresh state.
    #[error("the AppRelease changed since it was read, so nothing was done: {0}")]
    Stale(#[source] kube::Error),
    /// Building a Job failed.
    #[error("building Job: {0}")]
    BuildJob(#[from] BuildError),
    /// Creating a Job failed.
    #[error("creating Job {name}: {source}")]
    CreateJob { name: String, source: kube::Error },
    /// A Job of that name exists but belongs to something else; it is not adopted.
    #[error("a Job named {name} exists but is not owned by this AppRelease; delete or rename it")]
    ForeignJob { name: String },
    /// Applying images to a target workload failed.
    #[error("applying images to {kind} {name}: {source}")]
    ApplyImages {
        kind: TargetKind,
        name: String,
        source: kube::Error,
    },
    /// Scaling a target workload failed.
    #[error("scaling {kind} {name}: {source}")]
    Scale {
        kind: TargetKind,
        name: String,
        source: kube::Error,
    },
    /// Deleting a StatefulSet pod stuck on a failed version failed.
    #[error("deleting pod {name}: {source}")]
    DeletePod { name: String, source: kube::Error },
    /// Giving a finished Job its owner reference failed.
    #[error("handing Job {name} to its AppRelease: {source}")]
    HandOver { name: String, source: kube::Error },
    /// Adding or removing the operator's finalizer failed (a concurrent change of the
    /// AppRelease makes the patch's test fail; the next reconcile reads it again).
    #[error("updating the finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    /// Writing the status of an on-demand backup or restore failed.
    #[error("writing the status of {name}: {source}")]
    WriteRequestStatus { name: String, source: kube::Error },
}

impl Error {
    /// A short, stable name for metrics labels.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::CacheBehind(_) => "cache_behind",
            Error::List { .. } => "list",
            Error::WriteStatus(_) => "write_status",
            Error::Stale(_) => "stale",
            Error::BuildJob(_) => "build_job",
            Error::CreateJob { .. } => "create_job",
            Error::ForeignJob { .. } => "foreign_job",
            Error::ApplyImages { .. } => "apply_images",
            Error::Scale { .. } => "scale",
            Error::DeletePod { .. } => "delete_pod",
            Error::Finalizer(_) => "finalizer",
            Error::HandOver { .. } => "hand_over",
            Error::WriteRequestStatus { .. } => "write_request_status",
        }
    }
}
