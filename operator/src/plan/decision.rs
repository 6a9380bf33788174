//! The planner's output, and the working state one `decide` call builds it in.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::conditions::{self, ConditionStatus, Desired};
use crate::api::{
    APPROVE_ANNOTATION, AppRelease, AppReleaseSpec, AppReleaseStatus, Approval, ContainerImage,
    DowngradePolicy, RETRY_ANNOTATION, RequestKind, RequestStatus, TargetKind,
};
use crate::jobs::names::JobKind;

use super::milestone::Milestone;
use super::observed::Observed;

/// How long to wait before looking again while an upgrade runs, in case a watch event is
/// missed; changes of the Jobs and Deployments wake the controller sooner.
pub const POLL: Duration = Duration::from_secs(30);
/// How long the progress within a step goes unwritten (see `Planner::quiet_progress`).
pub const QUIET_PROGRESS: Duration = Duration::from_secs(10);
/// How long to wait before looking again when idle (drift and first-visit checks).
pub const RESYNC: Duration = Duration::from_secs(300);
/// The shortest requeue: no decision can make the controller spin, whatever deadline
/// arithmetic gives.
pub const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status to write before anything else (write-ahead).
    pub status: AppReleaseStatus,
    /// The actions that status describes, to carry out in order.
    pub actions: Vec<Action>,
    /// Events to publish once the status is written.
    pub notes: Vec<Note>,
    /// Upgrade milestones to notify once the status is written (see `milestone`).
    pub milestones: Vec<Milestone>,
    /// New statuses of on-demand requests, to write after the AppRelease's own.
    pub requests: Vec<RequestUpdate>,
    /// When to look again at the latest.
    pub requeue_after: Duration,
    /// Whether the AppRelease should carry the operator's finalizer: while an upgrade is in
    /// flight, so that deleting it waits for a running data Job and leaves the targets
    /// consistent (see `deletion`).
    pub finalizer: bool,
    /// What this decision changes that is counted in metrics, once its status is written.
    pub telemetry: super::telemetry::Telemetry,
}

/// One change in the cluster. Each is idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create a Job (adopting one of the same name that already exists).
    CreateJob(JobRequest),
    /// Server-side apply of these container images on one target workload.
    SetImages {
        /// Deployment or StatefulSet.
        kind: TargetKind,
        /// Its name.
        deployment: String,
        /// (container, image) pairs.
        images: Vec<(String, String)>,
    },
    /// Gives a finished Job the AppRelease's owner reference, so it is garbage-collected
    /// with it (data Jobs run without one; see `jobs::build`).
    HandOver {
        /// Job name.
        job: String,
    },
    /// `spec.replicas` of one target workload, through its scale subresource.
    Scale {
        /// Deployment or StatefulSet.
        kind: TargetKind,
        /// Its name.
        deployment: String,
        /// The replica count.
        replicas: i32,
    },
    /// Deletes one pod of a StatefulSet target that its controller waits for forever (see
    /// `DeploymentState::stuck_pods`), on the condition that it is still the pod with this
    /// uid. The StatefulSet controller recreates it from the current template.
    DeletePod {
        /// Pod name.
        pod: String,
        /// Its uid (a precondition of the deletion).
        uid: String,
    },
}

/// Everything a Job builder needs to know about the upgrade it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRequest {
    /// Which Job.
    pub kind: JobKind,
    /// The backup set component it backs up or restores; None for every other Job and for
    /// the single backup.
    pub component: Option<String>,
    /// Its name, derived from the intent.
    pub name: String,
    /// Version before the upgrade.
    pub from: String,
    /// Version being installed.
    pub to: String,
    /// Attempt serial.
    pub attempt: i64,
    /// The new version's image of the first target, for containers that name no image.
    pub app_image: String,
    /// Backup id: the one being taken (backup) or restored (restore).
    pub backup_id: Option<String>,
    /// Where that backup is, when known (restore).
    pub backup_location: Option<String>,
    /// Its SHA-256 as recorded in the inventory, when known (restore).
    pub backup_sha256: Option<String>,
    /// Backup ids the backup Job deletes after its own success.
    pub prune: Vec<String>,
    /// `activeDeadlineSeconds`.
    pub timeout: Duration,
}

/// The status an on-demand backup or restore should now have.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestUpdate {
    /// Backup or Restore.
    pub kind: RequestKind,
    /// Its name, in the AppRelease's namespace.
    pub name: String,
    /// Its uid, for the Event.
    pub uid: String,
    /// Its new status.
    pub status: RequestStatus,
    /// An Event for the request itself, when its phase changes.
    pub note: Option<Note>,
}

/// An Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub type_: NoteType,
    /// CamelCase reason.
    pub reason: String,
    /// For a human.
    pub message: String,
}

/// Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteType {
    /// Progress.
    Normal,
    /// A failure or something a human should look at.
    Warning,
}

/// The state of one `decide` call.
pub struct Planner<'a> {
    pub spec: &'a AppReleaseSpec,
    pub name: &'a str,
    pub generation: i64,
    pub retry: String,
    /// The version the `apprelease.io/approve` annotation approves, if any.
    pub approved: Option<String>,
    pub namespace: &'a str,
    pub observed: &'a Observed,
    /// The status as read, which the decision's telemetry compares with the one it writes.
    read: Option<&'a AppReleaseStatus>,
    /// Why another AppRelease owns one of the targets, if it does (see `claims`).
    pub claim: Option<String>,
    pub status: AppReleaseStatus,
    /// On-demand requests refused by this decision (see `requests`).
    pub refused: Vec<super::requests::Refusal>,
    actions: Vec<Action>,
    notes: Vec<Note>,
    milestones: Vec<Milestone>,
    requeue_after: Duration,
}

impl<'a> Planner<'a> {
    pub fn new(release: &'a AppRelease, observed: &'a Observed) -> Self {
        let status = release.status.clone().unwrap_or_default();
        Self {
            spec: &release.spec,
            name: release.metadata.name.as_deref().unwrap_or_default(),
            generation: release.metadata.generation.unwrap_or(0),
            retry: release
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RETRY_ANNOTATION))
                .cloned()
                .unwrap_or_default(),
            approved: release
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(APPROVE_ANNOTATION))
                .map(|v| v.trim().to_string()),
            namespace: release.metadata.namespace.as_deref().unwrap_or_default(),
            observed,
            read: release.status.as_ref(),
            claim: None,
            status,
            refused: Vec::new(),
            actions: Vec::new(),
            notes: Vec::new(),
            milestones: Vec::new(),
            requeue_after: RESYNC,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.observed.now
    }

    pub fn act(&mut self, action: Action) {
        self.actions.push(action);
    }

    pub fn note(&mut self, type_: NoteType, reason: &str, message: impl Into<String>) {
        self.notes.push(Note {
            type_,
            reason: reason.into(),
            message: message.into(),
        });
    }

    pub fn milestone(&mut self, milestone: Milestone) {
        self.milestones.push(milestone);
    }

    /// Look again within `after` at the latest.
    pub fn requeue(&mut self, after: Duration) {
        self.requeue_after = self.requeue_after.min(after);
    }

    /// Look again after `after`, even when that is past [`RESYNC`]: for a wait whose end is
    /// known and that no watch event announces, a maintenance window opening (see `window`).
    /// The idle resync is no upper bound here: it would only poll before that moment for
    /// nothing, since whatever could matter sooner (the spec, the targets, the Jobs) wakes
    /// the controller through a watch anyway. A sooner requeue asked for by this decision
    /// still wins. (kube-runtime clamps any requeue to six months.)
    pub fn requeue_until(&mut self, after: Duration) {
        self.requeue_after = if self.requeue_after == RESYNC {
            after
        } else {
            self.requeue_after.min(after)
        };
    }

    /// Sets Ready, Reconciling and Stalled together, so they never contradict each other
    /// (Stalled and Reconciling are never both true).
    pub fn conditions(
        &mut self,
        ready: Desired,
        reconciling: Option<Desired>,
        stalled: Option<Desired>,
    ) {
        let (generation, now) = (self.generation, self.now());
        let list = &mut self.status.conditions;
        conditions::set(list, conditions::READY, Some(ready), generation, now);
        conditions::set(list, conditions::RECONCILING, reconciling, generation, now);
        conditions::set(list, conditions::STALLED, stalled, generation, now);
    }

    /// An end state that needs a human or a spec change: Ready=False and Stalled with the
    /// same reason; an Event when this is news.
    pub fn blocked(&mut self, reason: &str, message: &str) {
        let news = conditions::get(&self.status.conditions, conditions::READY)
            .is_none_or(|c| c.reason != reason || c.message != message);
        self.conditions(
            Desired::new(ConditionStatus::False, reason, message),
            None,
            Some(Desired::new(ConditionStatus::True, reason, message)),
        );
        if news {
            self.note(NoteType::Warning, reason, message);
        }
    }

    /// Whether the upgrade to `version` may start: approval is automatic, or the annotation
    /// names exactly this version.
    pub fn approved(&self, version: &str) -> bool {
        self.spec.approval == Approval::Automatic || self.approved.as_deref() == Some(version)
    }

    /// Whether going from data at `from` to `to` is a downgrade the spec refuses.
    pub fn refuses_downgrade(&self, from: &str, to: &str) -> bool {
        self.spec.downgrade == DowngradePolicy::Refuse
            && crate::api::version::compare(to, from) == Some(std::cmp::Ordering::Less)
    }

    /// Waiting for a human who was told what to do (not stalled: nothing failed). Ready says
    /// why; an Event when this is news.
    pub fn waiting(&mut self, reason: &str, message: &str) {
        let news = conditions::get(&self.status.conditions, conditions::READY)
            .is_none_or(|c| c.reason != reason || c.message != message);
        self.conditions(
            Desired::new(ConditionStatus::False, reason, message),
            None,
            None,
        );
        if news {
            self.note(NoteType::Normal, reason, message);
        }
    }

    /// Another AppRelease owns a target: change nothing, and look again after a poll
    /// interval, since no watch of ours reports that the other one let go.
    pub fn refuse_claimed(&mut self, message: &str) {
        self.blocked("TargetClaimed", message);
        self.requeue(POLL);
    }

    /// Marks the upgrade as under way at `step`, with a message for Ready.
    pub fn progressing(&mut self, step: &str, message: String) {
        let message = self.quiet_progress(step, message);
        self.conditions(
            Desired::new(ConditionStatus::Unknown, "Progressing", message.clone()),
            Some(Desired::new(ConditionStatus::True, step, message)),
            None,
        );
        self.requeue(POLL);
    }

    /// The message to show while waiting at `step`: `message`, except during the first
    /// [`QUIET_PROGRESS`] of a rollout's target already shown as under way,
    /// where the message already written stays and the decision looks again when that time
    /// is up. A rollout's progress ("0/1 updated", "1/1 updated, 0/1 available", ...) would
    /// otherwise cost a status write at every change of the target's counts, most of the
    /// writes of an upgrade, for counts that a quick rollout has outgrown before anyone reads
    /// them; a slow one still shows its progress after that time, at every change.
    fn quiet_progress(&mut self, step: &str, message: String) -> String {
        let Some((read, upgrade)) = self.read.zip(self.status.upgrade.as_ref()) else {
            return message;
        };
        // Other steps wait on Jobs, whose messages change rarely and may say that one failed.
        if upgrade.step != crate::api::Step::RollingOut {
            return message;
        }
        let same_stretch = read.upgrade.as_ref().is_some_and(|was| {
            (was.attempt, was.step, was.targets_done, was.step_started_at)
                == (
                    upgrade.attempt,
                    upgrade.step,
                    upgrade.targets_done,
                    upgrade.step_started_at,
                )
        });
        let shown = conditions::get(&read.conditions, conditions::RECONCILING)
            .filter(|c| c.status == ConditionStatus::True && c.reason == step);
        let quiet_until = upgrade.step_started_at
            + chrono::Duration::from_std(QUIET_PROGRESS).unwrap_or_default();
        match shown {
            Some(shown) if same_stretch && self.now() < quiet_until => {
                let left = (quiet_until - self.now()).to_std().unwrap_or_default();
                self.requeue(left);
                shown.message.clone()
            }
            _ => message,
        }
    }

    /// The images a migration/verify/downgrade container without one should run: the new
    /// version's image of the first target container.
    pub fn app_image(&self, to: &str, previous: &[ContainerImage]) -> String {
        let repository = self
            .spec
            .targets
            .first()
            .and_then(|t| t.image.clone())
            .or_else(|| {
                previous
                    .first()
                    .map(|p| crate::api::image::repository(&p.image).to_string())
            })
            .unwrap_or_default();
        crate::api::image::with_tag(&repository, to)
    }

    pub fn finish(mut self) -> Decision {
        self.status.observed_generation = Some(self.generation);
        // Last, after whatever this decision learnt from them.
        let finished: Vec<String> = self
            .observed
            .jobs
            .iter()
            .filter(|(_, j)| !j.owned && j.outcome != super::observed::JobOutcome::Running)
            .map(|(name, _)| name.clone())
            .collect();
        for job in finished {
            self.act(Action::HandOver { job });
        }
        let requests = super::requests::updates(&self.status, self.observed, &self.refused);
        let telemetry = super::telemetry::derive(
            self.read.unwrap_or(&AppReleaseStatus::default()),
            &self.status,
            self.now(),
        );
        Decision {
            telemetry,
            requests,
            finalizer: self.status.upgrade.is_some(),
            status: self.status,
            actions: self.actions,
            notes: self.notes,
            milestones: self.milestones,
            requeue_after: self.requeue_after.max(MIN_REQUEUE),
        }
    }
}
