//! Beginning an upgrade: the write-ahead record of what is about to change, and its first
//! step. Used when an upgrade starts at rest and when one is chained onto a newer version.

use crate::api::{
    AppReleaseSpec, ContainerImage, MigrationPhase, RolloutStrategy, Step, Upgrade, duration, image,
};

use super::decision::{NoteType, Planner};
use super::retention;
use super::targets;
use super::text::display;

/// Records a new upgrade to `spec.version` from what the targets run now (write-ahead). The
/// dispatcher takes its first step.
pub fn begin(plan: &mut Planner, wanted: Vec<ContainerImage>) {
    let to = plan.spec.version.clone();
    let previous_images = targets::current_images(&wanted, plan.observed);
    let from = plan
        .status
        .current_version
        .clone()
        .or_else(|| {
            previous_images
                .first()
                .and_then(|p| image::tag(&p.image))
                .map(String::from)
        })
        .unwrap_or_default();
    let all_ready = plan
        .observed
        .deployments
        .values()
        .all(|d| d.is_rolled_out());
    if plan.status.current_version.is_none() && !from.is_empty() && all_ready {
        // First visit: the targets run `from` and are ready, so it is the current version.
        plan.status.current_version = Some(from.clone());
    }
    plan.status.attempts += 1;
    plan.status.failed = None;
    plan.status.last_attempted_version = Some(to.clone());
    let now = plan.now();
    let attempt = plan.status.attempts;
    let first = if plan.spec.rollout.strategy == RolloutStrategy::Offline {
        Step::Stopping
    } else {
        after_stop(plan.spec, None, &from, &to)
    };
    plan.note(
        NoteType::Normal,
        "UpgradeStarted",
        format!(
            "upgrading from {} to {to} (attempt {attempt})",
            display(&from)
        ),
    );
    warn_downgrade(plan, &from, &to);
    let backup = takes_backup(plan.spec, None, &from, &to);
    plan.status.upgrade = Some(Upgrade {
        from,
        to,
        attempt,
        step: first,
        started_at: now,
        step_started_at: now,
        targets_done: 0,
        backup: None,
        previous_images,
        previous_replicas: Vec::new(),
        jobs_seen: Vec::new(),
        prune: Vec::new(),
        migration_started: false,
        restored_components: Vec::new(),
        failure: None,
        request: None,
    });
    super::milestone::started(plan);
    if backup {
        plan_prune(plan);
    }
}

/// Goes on from `ended` (just superseded) towards `spec.version`, from the same starting
/// point: the previous images and the backup stay those of the last version that ran, so a
/// rollback still restores a consistent pair of images and data.
pub fn chain(plan: &mut Planner, ended: &Upgrade) {
    let version = plan.spec.version.clone();
    plan.status.attempts += 1;
    plan.status.last_attempted_version = Some(version.clone());
    let now = plan.now();
    // A chain that started as a same-version repair has no backup yet: take one now, before
    // anything moves towards the new version (invariant 1). Offline, the targets are stopped
    // again first (the replica counts recorded at the start are kept).
    let needs_backup = takes_backup(plan.spec, ended.backup.as_deref(), &ended.from, &version);
    let step = if plan.spec.rollout.strategy == RolloutStrategy::Offline {
        Step::Stopping
    } else {
        after_stop(plan.spec, ended.backup.as_deref(), &ended.from, &version)
    };
    let chained = Upgrade {
        to: version.clone(),
        attempt: plan.status.attempts,
        step,
        started_at: now,
        step_started_at: now,
        targets_done: 0,
        jobs_seen: Vec::new(),
        prune: Vec::new(),
        failure: None,
        ..ended.clone()
    };
    plan.note(
        NoteType::Normal,
        "UpgradeStarted",
        format!(
            "upgrading from {} to {version} (attempt {})",
            display(&ended.from),
            chained.attempt
        ),
    );
    plan.status.upgrade = Some(chained);
    super::milestone::started(plan);
    if needs_backup {
        plan_prune(plan);
    }
}

/// Whether an upgrade from `from` to `to` still takes a backup: the spec asks for one, this
/// upgrade has none yet, and the version changes.
fn takes_backup(spec: &AppReleaseSpec, backup: Option<&str>, from: &str, to: &str) -> bool {
    spec.backup.is_some() && backup.is_none() && from != to
}

/// The step once the application is stopped (offline) or straight away (rolling): the
/// backup if one is still to take, else what follows it.
pub fn after_stop(spec: &AppReleaseSpec, backup: Option<&str>, from: &str, to: &str) -> Step {
    if takes_backup(spec, backup, from, to) {
        Step::BackingUp
    } else {
        after_backup(spec, from, to)
    }
}

/// The step after the backup: the migration if it runs first, else the rollout.
pub fn after_backup(spec: &AppReleaseSpec, from: &str, to: &str) -> Step {
    match &spec.migration {
        Some(m) if m.when == MigrationPhase::BeforeRollout && from != to => Step::Migrating,
        _ => Step::RollingOut,
    }
}

/// Decides which backups the new backup Job will prune after its success.
pub fn plan_prune(plan: &mut Planner) {
    let Some(backup) = &plan.spec.backup else {
        return;
    };
    // Never pruned: the backup of the upgrade in flight (once it has one) and that of the last
    // upgrade that took one (what a human would restore after it).
    let in_flight = plan.status.upgrade.as_ref().and_then(|u| u.backup.clone());
    let last_used = plan.status.history.iter().find_map(|h| h.backup.clone());
    // Nor a backup that a pending on-demand restore names.
    let restores = plan
        .observed
        .requests
        .iter()
        .filter(|r| r.kind == crate::api::RequestKind::Restore && !r.is_final())
        .filter_map(|r| r.backup.as_ref());
    let protected: Vec<&str> = in_flight
        .iter()
        .chain(&last_used)
        .chain(restores)
        .map(String::as_str)
        .collect();
    let max_age = backup
        .max_age
        .as_deref()
        .and_then(|a| duration::parse_age(a).ok());
    let prune = retention::to_prune(
        &plan.status.backups,
        retention::Policy {
            keep_last: backup.keep_last,
            max_age,
            now: plan.now(),
        },
        &protected,
    );
    // What the Jobs delete are files: a set's are its components'. The leftovers of sets that
    // failed go with them.
    let mut files = retention::file_ids(&plan.status.backups, &prune);
    files.extend(plan.status.incomplete_backups.iter().cloned());
    if let Some(upgrade) = plan.status.upgrade.as_mut() {
        upgrade.prune = files;
    }
}

/// Going back to an older version by spec runs the older image's migrations forward, which
/// do not undo the newer ones: say so before anything happens.
fn warn_downgrade(plan: &mut Planner, from: &str, to: &str) {
    if crate::api::version::compare(to, from) != Some(std::cmp::Ordering::Less) {
        return;
    }
    let migration = if plan.spec.migration.is_some() {
        format!(
            " The migration Job runs {to}'s migrations, which do not undo {from}'s schema changes."
        )
    } else {
        String::new()
    };
    plan.note(
        NoteType::Warning,
        "Downgrade",
        format!(
            "spec.version {to} is older than the running {from}: this is a downgrade.{migration} If the data must go back too, restore a backup taken at {to} (status.backups lists each backup's version)."
        ),
    );
}
